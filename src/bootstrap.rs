//! The contract between a parent and the child it starts.
//!
//! A child is this same binary run again. It learns that it is a child, and who it is, from
//! one environment variable, [`BOOTSTRAP_ENV`], holding a hex-encoded [`Bootstrap`] (a message
//! like the others, so its type is in [`protocol`](crate::protocol)): its
//! name and identity, its parent, how deeply it is nested, the log level it inherits and the
//! frame limit. Nothing secret travels there: the key comes first on the socket the child
//! inherits as its standard input (see [`transport::auth`](crate::transport::auth)), so it
//! is on no command line and in no environment.
//!
//! [`spawn`](crate::spawn) writes the variable; [`init`](crate::init) reads it, removes it
//! (so programs the child runs do not see it) and diverts the child to serving calls.

use std::sync::atomic::AtomicBool;

pub(crate) use crate::protocol::Bootstrap;

/// The environment variable that tells a re-executed binary it is a child.
pub(crate) const BOOTSTRAP_ENV: &str = "MULTIPROC_BOOTSTRAP";

/// How deep processes may nest before spawning is refused as runaway recursion.
pub(crate) const MAX_DEPTH: u32 = 16;

/// Set by [`init`](crate::init); spawning without it (or test support) would run the
/// application's `main` again in the child.
pub(crate) static INIT_CALLED: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::current::ProcessInfo;

    #[test]
    fn a_bootstrap_survives_its_encoding_and_garbage_is_refused() {
        let bootstrap = Bootstrap {
            name: "Process-1:2".into(),
            identity: vec![1, 2],
            daemon: true,
            parent: ProcessInfo {
                name: "Process-1".into(),
                pid: 42,
                daemon: false,
            },
            depth: 2,
            log_level: 3,
            forward_level: 0,
            max_frame_len: 1 << 20,
            stall: false,
            one_call: true,
            spawned_by_main_thread: false,
        };
        let decoded = Bootstrap::decode(&bootstrap.encode()).unwrap();
        assert_eq!(decoded.name, "Process-1:2");
        assert_eq!(decoded.parent.pid, 42);
        assert!(decoded.daemon && decoded.one_call);
        assert!(Bootstrap::decode("zz").is_none());
        assert!(Bootstrap::decode("0").is_none());
    }
}
