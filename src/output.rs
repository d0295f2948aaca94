//! Where a child's standard output and standard error go, and the lines of a child whose
//! output is piped to its parent.
//!
//! [`std::process::Command`] lets the caller choose each stream of a child with a
//! [`std::process::Stdio`]; the builders of [`Process`](crate::Process),
//! [`Pool`](crate::Pool) and [`Manager`](crate::Manager) do the same with this module's
//! [`Stdio`], through their `stdout` and `stderr` methods:
//!
//! | `Stdio` | the child's stream goes to |
//! |---|---|
//! | [`Inherit`](Stdio::Inherit) (the default) | the parent's own stream |
//! | [`Null`](Stdio::Null) | `/dev/null` |
//! | [`File`](Stdio::File) | a file of yours (all the workers of a pool write to it) |
//! | [`Lines`](Stdio::Lines) | the parent, as a [`Stream`] of [`OutputLine`]s, each tagged with the child's name and pid and with the stream it came from |
//!
//! A child's standard input is not configurable: it is the child's connection to its parent
//! at start-up, then `/dev/null`, as in Python.
//!
//! # Lines
//!
//! With [`Stdio::Lines`] for stdout, stderr or both, the parent reads the child's output line
//! by line and hands it out through the [`OutputLines`] stream that `take_output()` returns
//! once ([`Process::take_output`](crate::Process::take_output),
//! [`Pool::take_output`](crate::Pool::take_output),
//! [`Manager::take_output`](crate::Manager::take_output)). A pool's stream merges the lines
//! of all its workers, replacements included; the lines of one worker's stream (its stdout,
//! say) keep their order, but nothing orders the lines of two workers, or of one child's
//! stdout and stderr, which travel on separate pipes.
//!
//! ```no_run
//! use futures::StreamExt;
//! use multiproc::{worker, Process, Stdio};
//!
//! #[worker]
//! fn chatty() { println!("hello"); eprintln!("careful"); }
//!
//! # async fn demo() -> multiproc::Result<()> {
//! let p = Process::new(chatty, ()).stdout(Stdio::Lines).stderr(Stdio::Lines).start().await?;
//! let mut lines = p.take_output().expect("stdout is piped");
//! while let Some(line) = lines.next().await {
//!     println!("[{} {}] {:?}: {}", line.name, line.pid, line.stream, line.line);
//! }
//! p.join().await?;
//! # Ok(()) }
//! ```
//!
//! The stream ends once every child that writes to it has closed its pipes (it exited) and,
//! for a pool or a manager, once the pool or manager is gone. Lines are read as bytes and
//! converted lossily to UTF-8, without their line ending; a line longer than
//! [`MAX_LINE_LEN`] bytes is handed out in pieces of that length.
//!
//! Read the stream. As with [`std::process::Stdio::piped`], a child whose lines are not read
//! blocks in its next write once about a thousand lines wait for the reader (and the pipe's
//! buffer is full); dropping the [`OutputLines`] lets children write freely again, their
//! lines being discarded.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// The longest line handed out whole; a longer one comes in pieces of this many bytes.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// How many lines may wait for the reader of an [`OutputLines`] before the children
/// writing them block.
const WAITING_LINES: usize = 1024;

/// Where a child's stdout or stderr goes; see the [module docs](self).
///
/// Our counterpart of [`std::process::Stdio`], which cannot be inspected or shared by the
/// workers of a pool. A [`std::fs::File`] converts into [`Stdio::File`], so
/// `.stdout(file)` works as with `std::process::Command`.
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum Stdio {
    /// The parent's own stream (the default).
    ///
    /// In an integration test with [`test_support!`](crate::test_support), a child's stdout
    /// is discarded by default unless the test runner shows output, as a test body's is; an
    /// explicit `Inherit` shows it always.
    #[default]
    Inherit,
    /// Discarded (`/dev/null`).
    Null,
    /// Written to this file, which must be open for writing. Each child gets a duplicate of
    /// its descriptor, sharing its offset, so the workers of a pool write one after the
    /// other into the same file, as the commands of `(a; b) > file` do in a shell.
    File(std::fs::File),
    /// Piped to the parent, and read as [`OutputLine`]s from `take_output()`. Read them, or
    /// drop the stream to discard them: a child blocks once about a thousand of its lines
    /// wait unread (see the [module docs](self)).
    Lines,
}

impl From<std::fs::File> for Stdio {
    fn from(file: std::fs::File) -> Self {
        Stdio::File(file)
    }
}

impl Stdio {
    /// The `std` form of this choice, for one child.
    pub(crate) fn to_std(&self) -> Result<std::process::Stdio> {
        Ok(match self {
            Stdio::Inherit => std::process::Stdio::inherit(),
            Stdio::Null => std::process::Stdio::null(),
            Stdio::File(file) => file
                .try_clone()
                .map_err(|error| Error::io("duplicating a child's output file", error))?
                .into(),
            Stdio::Lines => std::process::Stdio::piped(),
        })
    }
}

/// Which of a child's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StdStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a child wrote to a stream set to [`Stdio::Lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutputLine {
    /// The child's name: `Process-1`, `PoolWorker-3`, or a name given with
    /// [`ProcessBuilder::name`](crate::ProcessBuilder::name).
    pub name: String,
    /// The child's pid.
    pub pid: u32,
    /// Whether the line came from stdout or stderr.
    pub stream: StdStream,
    /// The line, without its line ending (`\n` or `\r\n`), converted lossily to UTF-8.
    pub line: String,
}

/// The lines of the children whose stdout or stderr is [`Stdio::Lines`]: a [`Stream`] of
/// [`OutputLine`]s. See the [module docs](self).
#[must_use = "children block once their unread lines fill the buffer; drop the stream to discard them"]
pub struct OutputLines {
    receiver: mpsc::Receiver<OutputLine>,
}

impl Stream for OutputLines {
    type Item = OutputLine;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<OutputLine>> {
        self.receiver.poll_recv(cx)
    }
}

impl fmt::Debug for OutputLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputLines")
            .field("waiting", &self.receiver.len())
            .finish()
    }
}

/// The writing side of an [`OutputLines`], shared by every child whose lines go there.
#[derive(Debug, Clone)]
pub(crate) struct LineSink {
    sender: mpsc::Sender<OutputLine>,
}

/// A new stream of lines, and the sink that feeds it.
pub(crate) fn channel() -> (LineSink, OutputLines) {
    let (sender, receiver) = mpsc::channel(WAITING_LINES);
    (LineSink { sender }, OutputLines { receiver })
}

impl LineSink {
    /// Reads `pipe`, one of a child's streams, to its end in a task of its own, sending each
    /// line tagged with the child's `name` and `pid`. Once the stream is dropped the lines are
    /// read and discarded, so that the child never blocks writing them.
    ///
    /// `skip_test_preamble` drops the leading lines that libtest prints before it runs the
    /// `test_support!()` helper in a child of a test binary (an empty line and
    /// `running 1 test`): they are not the child's output.
    pub(crate) fn read<R>(
        &self,
        pipe: R,
        name: String,
        pid: u32,
        stream: StdStream,
        skip_test_preamble: bool,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(pipe);
            let mut bytes = Vec::new();
            let mut in_preamble = skip_test_preamble;
            while read_line(&mut reader, &mut bytes).await {
                let line = String::from_utf8_lossy(&bytes).into_owned();
                if in_preamble && (line.is_empty() || line == "running 1 test") {
                    continue;
                }
                in_preamble = false;
                let line = OutputLine {
                    name: name.clone(),
                    pid,
                    stream,
                    line,
                };
                // A closed stream discards the line; the pipe is still read to its end.
                let _ = sender.send(line).await;
            }
        });
    }
}

/// Reads the next line into `bytes`, without its line ending, stopping at [`MAX_LINE_LEN`]
/// bytes; false at the end of the pipe (or on a read error, which ends it as well).
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, bytes: &mut Vec<u8>) -> bool {
    bytes.clear();
    match (&mut *reader)
        .take(MAX_LINE_LEN as u64)
        .read_until(b'\n', bytes)
        .await
    {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn lines_lose_their_endings_and_long_ones_come_in_pieces() {
        let (sink, mut lines) = channel();
        let mut text = b"\nrunning 1 test\nfirst\r\n\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 3));
        let pipe = std::io::Cursor::new(text);
        sink.read(pipe, "P-1".into(), 7, StdStream::Stdout, true);
        drop(sink);
        let got: Vec<OutputLine> = lines.by_ref().collect().await;
        let lengths: Vec<usize> = got.iter().map(|line| line.line.len()).collect();
        assert_eq!(got[0].line, "first");
        assert_eq!(lengths, [5, 0, MAX_LINE_LEN, 3]);
        assert!(got.iter().all(|line| line.name == "P-1" && line.pid == 7));
    }
}
