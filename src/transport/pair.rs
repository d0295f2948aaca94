//! A child's connection to its parent: one end of a socket pair made before the child is
//! spawned, inherited as its standard input.
//!
//! A socket pair has no name, nothing to bind or accept, and nobody else can reach either
//! end, so it needs no challenge: the parent writes the key on it first ([`hand_over`]),
//! ahead of any frame, and the child reads it with blocking reads before it has a runtime
//! ([`take_parent_socket`]), then answers with a hello that proves it ([`greet_parent`]).
//! The key is thus on no command line and in no environment.

use std::io::Write as _;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;

use super::frame::HANDSHAKE_MAX_FRAME_LEN;
use super::{Connection, Hello, OutFrame, adopt, auth, split};
use crate::error::{Error, ErrorKind, Result};

/// The two ends of a connection to a child about to be started: ours, and the one the child
/// inherits.
///
/// The two ends are a socket pair: nobody else can reach either of them, and there is no
/// name to guess or to clean up.
pub(crate) fn child_pair() -> Result<(UnixStream, OwnedFd)> {
    // Megabyte arguments and results go through in a few large writes rather than many
    // wake-ups of a writer waiting for room (the default is about 200 KiB).
    const CHILD_SEND_BUFFER: libc::c_int = 2 * 1024 * 1024;
    let (ours, theirs) =
        UnixStream::pair().map_err(|error| Error::io("creating a socket pair", error))?;
    for end in [ours.as_raw_fd(), theirs.as_raw_fd()] {
        let size: libc::c_int = CHILD_SEND_BUFFER;
        // SAFETY: `end` is an open socket and `size` outlives the call. A failure (or the
        // system's cap, `net.core.wmem_max`) leaves the default, which only costs speed.
        unsafe {
            libc::setsockopt(
                end,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok((ours, OwnedFd::from(theirs)))
}

/// Writes the key on our end of a [`child_pair`] and makes a connection of it. Done once the
/// child is started, while it is still loading: the key comes ahead of any frame, so the
/// child, which gets its end as standard input, reads it first, before it has a runtime.
pub(crate) fn hand_over(ours: UnixStream, max_frame_len: usize) -> Result<Connection> {
    // At most a few dozen kilobytes into an empty socket: this write cannot block.
    (&ours)
        .write_all(&auth::handover())
        .map_err(|error| Error::io("handing over the key", error))?;
    let mut connection = split(adopt(ours)?, 0, HANDSHAKE_MAX_FRAME_LEN);
    connection.writer.set_max_len(max_frame_len);
    Ok(connection)
}

/// Waits for the hello of the child at the other end of a [`hand_over`], and checks its key
/// and that it is the process `pid`.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled read may have consumed part of the hello.
pub(crate) async fn await_child(
    connection: &mut Connection,
    pid: u32,
    max_frame_len: usize,
) -> Result<()> {
    let hello = read_hello(connection).await?;
    if hello.pid != pid {
        return Err(Error::new(
            ErrorKind::Auth,
            format!("expected a hello from pid {pid}, not {}", hello.pid),
        ));
    }
    connection.peer_pid = pid;
    connection.reader.set_max_len(max_frame_len);
    Ok(())
}

/// Sends this child's hello on its end of its [`child_pair`], once the key has been read.
/// Written at once, with a blocking write, before the child has a runtime: the parent learns
/// the child is up while the child gets ready to serve.
pub(crate) fn greet_parent(socket: &UnixStream) -> Result<()> {
    let hello = OutFrame::new(&auth::hello(), Vec::new(), HANDSHAKE_MAX_FRAME_LEN)?;
    // A few dozen bytes into a socket nobody has written to yet: this cannot block.
    hello
        .write_blocking(&mut &*socket)
        .map_err(|error| Error::io("greeting the parent", error))
}

/// The child's end of its [`child_pair`], after [`greet_parent`]: its connection to the parent.
pub(crate) fn inherited(socket: UnixStream, max_frame_len: usize) -> Result<Connection> {
    Ok(split(adopt(socket)?, 0, max_frame_len))
}

/// Reads the first frame of a connection, with the handshake's size limit, and checks the key.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled read may have consumed part of the hello.
async fn read_hello(connection: &mut Connection) -> Result<Hello> {
    let hello: Hello = match connection.reader.read().await {
        Ok(Some(frame)) => frame.header()?,
        Ok(None) => {
            return Err(Error::new(
                ErrorKind::Auth,
                "the peer closed before its hello",
            ));
        }
        Err(error) => return Err(Error::new(ErrorKind::Auth, format!("a bad hello: {error}"))),
    };
    auth::verify(&hello)?;
    Ok(hello)
}

/// Reads the key from standard input, the child's end of its parent's socket pair, and moves
/// that socket off standard input, which becomes `/dev/null` as in Python's children. Done
/// once, first thing in a child.
pub(crate) fn take_parent_socket() -> std::io::Result<UnixStream> {
    // SAFETY: fd 0 is open (the parent passed the socket there) and is not closed here: the
    // File is never dropped.
    let mut stdin = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    // Unbuffered, so that nothing after the keys is read here: the frames that follow belong
    // to the connection.
    auth::receive_handover(&mut *stdin)?;
    // SAFETY: plain descriptor calls on descriptors this function owns or knows to be open.
    unsafe {
        let socket = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        if socket < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let socket = UnixStream::from_raw_fd(socket);
        let null = std::fs::File::open("/dev/null")?;
        if libc::dup2(null.as_raw_fd(), 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(socket)
    }
}
