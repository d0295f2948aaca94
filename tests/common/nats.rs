#![allow(dead_code)] // each test file uses its own part of it
//! A `nats-server -js` and node processes for the cluster tests, each killed on drop.
//!
//! A node process is the test binary re-executed into its `node_process` test, which reads
//! its settings from `MP_TEST_NODE_*` variables. Without `nats-server` on the `PATH`,
//! [`Server::start`] returns `None` and the test is skipped with a message.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server -js` on a free port of 127.0.0.1 with a temporary store, killed on drop.
pub struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    /// Starts a server, or returns `None` without `nats-server`.
    pub fn start() -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("multiproc-test-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spawned = die_with_parent(
            Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .spawn();
        let Ok(child) = spawned else {
            eprintln!("nats-server is not installed; skipping (apt-get install nats-server)");
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        let server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node: this test binary re-executed into its `node_process` test, killed on drop.
pub struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    /// Starts node `name` with `slots` slots, and the extra `MP_TEST_NODE_*` settings `env`.
    pub fn start(server: &Server, name: &str, slots: usize, env: &[(&str, &str)]) -> NodeProcess {
        let child = die_with_parent(
            Command::new(std::env::current_exe().unwrap())
                .envs(env.iter().copied())
                .args(["node_process", "--exact", "--nocapture", "--test-threads=1"])
                .env("MP_TEST_NODE_URL", server.url())
                .env("MP_TEST_NODE_NAME", name)
                .env("MP_TEST_NODE_SLOTS", slots.to_string())
                .stdout(Stdio::null()),
        )
        .spawn()
        .expect("starting a node process");
        NodeProcess { child }
    }

    /// Waits (at most `limit`) for the node process to exit, and returns whether it did.
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the process get `SIGKILL` if the test process dies first.
fn die_with_parent(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Waits (bounded) until `pool` sees `count` live nodes.
pub async fn wait_for_nodes(pool: &multiproc::Pool, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = pool.nodes().await.unwrap();
        if nodes.len() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {nodes:?} of {count} nodes came up in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
