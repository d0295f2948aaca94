//! Length-prefixed frames: the only byte format that crosses a process boundary.
//!
//! ```text
//! [u32 LE body length][u32 LE header length][header: postcard][payload: raw bytes]
//! ```
//!
//! The header is a small postcard-encoded message (a call id, a worker name); the payload is an
//! already-encoded value (the arguments or the result) that is written as it is, so a large
//! buffer is copied once into the frame's payload and never re-encoded inside the header.
//!
//! A reader refuses a frame whose announced length exceeds its maximum *before* allocating, so
//! a corrupt or hostile length is an error, never a 4 GiB allocation. Writers coalesce: every
//! frame queued while the socket is busy goes out in the same write.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};

/// The default maximum frame size: 256 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 256 * 1024 * 1024;

/// The maximum size of the first frame of a connection, read before the peer is authenticated.
pub(crate) const HANDSHAKE_MAX_FRAME_LEN: usize = 256;

const BUFFER_SIZE: usize = 64 * 1024;

/// A frame ready to be written: its prefix and header in `head`, its payload apart.
#[derive(Debug)]
pub(crate) struct OutFrame {
    head: Vec<u8>,
    payload: Vec<u8>,
}

impl OutFrame {
    /// Encodes `header`; fails if the frame would exceed `max_len`.
    pub(crate) fn new<H: Serialize>(header: &H, payload: Vec<u8>, max_len: usize) -> Result<Self> {
        let mut head = postcard::to_extend(header, vec![0u8; 8])
            .map_err(|source| Error::serialization("a message header", source))?;
        let header_len = head.len() - 8;
        let body_len = 4 + header_len + payload.len();
        if body_len > max_len {
            return Err(Error::new(
                ErrorKind::FrameTooLarge,
                format!(
                    "a frame of {body_len} bytes exceeds the maximum of {max_len} bytes; \
                     send smaller values or raise max_frame_len"
                ),
            ));
        }
        head[0..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        head[4..8].copy_from_slice(&(header_len as u32).to_le_bytes());
        Ok(OutFrame { head, payload })
    }
}

impl OutFrame {
    /// Writes the frame to `out` (a child's standard input) as it would go on a socket.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(&self.head).await?;
        out.write_all(&self.payload).await
    }
}

impl InFrame {
    /// Reads one frame from a blocking reader; `Ok(None)` at a clean end of stream.
    pub(crate) fn read_blocking(
        input: &mut impl std::io::Read,
        max_len: usize,
    ) -> Result<Option<Self>> {
        let mut prefix = [0u8; 4];
        match input.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(Error::io("reading a frame", error)),
        }
        let body_len = u32::from_le_bytes(prefix) as usize;
        if !(4..=max_len).contains(&body_len) {
            return Err(Error::new(
                ErrorKind::FrameTooLarge,
                format!("a frame of {body_len} bytes is outside 4..={max_len}"),
            ));
        }
        let mut body = vec![0u8; body_len];
        input
            .read_exact(&mut body)
            .map_err(|error| Error::io("reading a frame", error))?;
        Self::from_body(body).map(Some)
    }

    fn from_body(body: Vec<u8>) -> Result<Self> {
        let header_len = u32::from_le_bytes(body[0..4].try_into().expect("4 bytes")) as usize;
        if header_len > body.len() - 4 {
            return Err(Error::new(
                ErrorKind::Protocol,
                "a frame header longer than its frame",
            ));
        }
        Ok(InFrame { body, header_len })
    }
}

/// Fails, before anything is spawned or sent, if a payload of `payload_len` bytes cannot fit
/// in a frame of at most `max_len` bytes (allowing room for a header).
pub(crate) fn check_payload_len(payload_len: usize, max_len: usize, what: &str) -> Result<()> {
    const HEADER_ROOM: usize = 512;
    if payload_len + HEADER_ROOM > max_len {
        return Err(Error::new(
            ErrorKind::FrameTooLarge,
            format!(
                "{what} take {payload_len} bytes, over the frame limit of {max_len} bytes; \
                 send smaller values or raise max_frame_len"
            ),
        ));
    }
    Ok(())
}

/// A frame as read: its header still encoded, its payload in place.
#[derive(Debug)]
pub(crate) struct InFrame {
    body: Vec<u8>,
    header_len: usize,
}

impl InFrame {
    pub(crate) fn header<H: DeserializeOwned>(&self) -> Result<H> {
        postcard::from_bytes(&self.body[4..4 + self.header_len])
            .map_err(|source| Error::serialization("a message header", source))
    }

    pub(crate) fn payload(&self) -> &[u8] {
        &self.body[4 + self.header_len..]
    }

    pub(crate) fn into_payload(mut self) -> Vec<u8> {
        self.body.drain(..4 + self.header_len);
        self.body
    }
}

/// The reading half of a connection.
pub(crate) struct FrameReader<R> {
    inner: BufReader<R>,
    max_len: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(inner: R, max_len: usize) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(BUFFER_SIZE, inner),
            max_len,
        }
    }

    pub(crate) fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Reads the next frame. `Ok(None)` is a clean end of stream between frames.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled read may have consumed part of a frame.
    pub(crate) async fn read(&mut self) -> Result<Option<InFrame>> {
        let mut prefix = [0u8; 4];
        match self.inner.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(Error::io("reading a frame", error)),
        }
        let body_len = u32::from_le_bytes(prefix) as usize;
        if body_len > self.max_len {
            return Err(Error::new(
                ErrorKind::FrameTooLarge,
                format!(
                    "the peer sent a frame of {body_len} bytes, over the maximum of {} bytes",
                    self.max_len
                ),
            ));
        }
        if body_len < 4 {
            return Err(Error::new(
                ErrorKind::Protocol,
                "a frame too short to hold a header",
            ));
        }
        let mut body = vec![0u8; body_len];
        self.inner
            .read_exact(&mut body)
            .await
            .map_err(|error| Error::io("reading a frame", error))?;
        InFrame::from_body(body).map(Some)
    }
}

/// The writing half of a connection: a cheap handle to a task that owns the socket's write side
/// and coalesces queued frames into few writes.
#[derive(Debug, Clone)]
pub(crate) struct FrameWriter {
    queue: mpsc::UnboundedSender<Queued>,
    max_len: usize,
}

#[derive(Debug)]
enum Queued {
    Frame(OutFrame),
    /// Answered once every frame queued before it has been written and flushed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl FrameWriter {
    /// Starts the writer task on the current tokio runtime. The task ends, after writing
    /// everything queued, once every clone of the writer is dropped.
    pub(crate) fn spawn<W: AsyncWrite + Unpin + Send + 'static>(
        inner: W,
        max_len: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        // The hello must fit whatever limit the caller chose for the rest.
        let max_len = max_len.max(HANDSHAKE_MAX_FRAME_LEN);
        let (queue, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_frames(inner, frames));
        (FrameWriter { queue, max_len }, task)
    }

    /// Raises (or lowers) the largest frame this writer accepts: the handshake's limit is
    /// lifted once the peer is authenticated.
    pub(crate) fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Queues a frame. Fails if the frame is too large or the connection's writer has stopped.
    pub(crate) fn send<H: Serialize>(&self, header: &H, payload: Vec<u8>) -> Result<()> {
        let frame = OutFrame::new(header, payload, self.max_len)?;
        self.queue
            .send(Queued::Frame(frame))
            .map_err(|_| Error::closed("the connection is closed"))
    }

    /// Waits until every frame queued so far is written to the socket, so that it survives
    /// the end of this runtime.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the frames are written whether or not anyone waits.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.queue
            .send(Queued::Flush(done))
            .map_err(|_| Error::closed("the connection is closed"))?;
        flushed
            .await
            .map_err(|_| Error::closed("the connection closed before a flush"))
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(inner: W, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let mut out = BufWriter::with_capacity(BUFFER_SIZE, inner);
    while let Some(first) = queue.recv().await {
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(queued) = next.take() {
            match queued {
                Queued::Frame(frame) => {
                    if write_frame(&mut out, &frame).await.is_err() {
                        return;
                    }
                }
                Queued::Flush(done) => waiting.push(done),
            }
            next = queue.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
    let _ = out.shutdown().await;
}

async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut BufWriter<W>,
    frame: &OutFrame,
) -> io::Result<()> {
    out.write_all(&frame.head).await?;
    out.write_all(&frame.payload).await
}
