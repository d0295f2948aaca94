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
//! a corrupt or hostile length is an error, never a 4 GiB allocation. Below the maximum, a
//! frame costs what arrived, not what was announced: its buffer starts at 64 KiB and doubles
//! as the body arrives, so a peer that announces 200 MiB and sends nothing holds 64 KiB. A
//! large body's buffer is kept once the frame is dropped (see [`buffers`](crate::buffers)),
//! so the next large frame is read straight into memory already in place. A writer writes a frame at
//! once, from the sending thread, while the socket keeps up; frames sent while the socket is
//! busy are coalesced by the writer's task into few writes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{
    AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::sync::Notify;

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
    /// Bytes already written, when a write took only part of the frame.
    sent: usize,
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
        Ok(OutFrame {
            head,
            payload,
            sent: 0,
        })
    }

    /// What is left to write, as two buffers (either may be empty).
    fn unsent(&self) -> [IoSlice<'_>; 2] {
        let head = self.sent.min(self.head.len());
        let payload = self.sent - head;
        [
            IoSlice::new(&self.head[head..]),
            IoSlice::new(&self.payload[payload..]),
        ]
    }

    /// Counts `written` bytes as sent; returns how many of them were beyond this frame.
    fn advance(&mut self, written: usize) -> usize {
        let left = self.head.len() + self.payload.len() - self.sent;
        let taken = written.min(left);
        self.sent += taken;
        written - taken
    }

    /// Writes the whole frame with blocking writes, its payload straight from where it lies;
    /// for a process that has no runtime (yet).
    pub(crate) fn write_blocking(mut self, out: &mut impl io::Write) -> io::Result<()> {
        while !self.is_sent() {
            match out.write_vectored(&self.unsent()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.advance(written);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn is_sent(&self) -> bool {
        self.sent == self.head.len() + self.payload.len()
    }
}

impl Drop for OutFrame {
    fn drop(&mut self) {
        crate::buffers::give_back(std::mem::take(&mut self.payload));
    }
}

impl InFrame {
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
        let mut body = std::mem::take(&mut self.body);
        body.drain(..4 + self.header_len);
        body
    }
}

impl Drop for InFrame {
    /// A large body, once read, is kept for the next one, which then costs no page faults.
    fn drop(&mut self) {
        crate::buffers::give_back(std::mem::take(&mut self.body));
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

    /// Whether a whole frame has already arrived, so that [`read`](Self::read) returns it
    /// without waiting.
    pub(crate) fn has_buffered_frame(&self) -> bool {
        let buffered = self.inner.buffer();
        buffered.len() >= 4
            && buffered.len() - 4
                >= u32::from_le_bytes(buffered[..4].try_into().expect("4 bytes")) as usize
    }

    /// The header of the next frame, if that frame has already arrived whole; consumes
    /// nothing.
    pub(crate) fn peek_header<H: DeserializeOwned>(&self) -> Option<H> {
        if !self.has_buffered_frame() {
            return None;
        }
        let buffered = self.inner.buffer();
        let header_len = u32::from_le_bytes(buffered.get(4..8)?.try_into().ok()?) as usize;
        postcard::from_bytes(buffered.get(8..8 + header_len)?).ok()
    }

    /// Reads the next frame, waiting for it if need be, then every whole frame already
    /// buffered after it, and hands each to `handle` under one [`Cork`]: whatever `handle`
    /// sends goes out once the burst is handled, in one write per connection. A peer that sent
    /// many requests in one write thus gets its answers in one write.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled read may have consumed part of a frame.
    pub(crate) async fn read_burst(
        &mut self,
        mut handle: impl FnMut(InFrame) -> ControlFlow<()>,
    ) -> Result<Burst> {
        let Some(mut frame) = self.read().await? else {
            return Ok(Burst::Ended);
        };
        let _cork = Cork::begin();
        loop {
            if handle(frame).is_break() {
                return Ok(Burst::Stopped);
            }
            match self.next_buffered() {
                Some(next) => frame = next?,
                None => return Ok(Burst::Handled),
            }
        }
    }

    /// The next frame if it has arrived whole already; never waits.
    fn next_buffered(&mut self) -> Option<Result<InFrame>> {
        if !self.has_buffered_frame() {
            return None;
        }
        let buffered = self.inner.buffer();
        let body_len = u32::from_le_bytes(buffered[..4].try_into().expect("4 bytes")) as usize;
        if let Err(error) = self.check_body_len(body_len) {
            return Some(Err(error));
        }
        let body = buffered[4..4 + body_len].to_vec();
        Pin::new(&mut self.inner).consume(4 + body_len);
        Some(InFrame::from_body(body))
    }

    fn check_body_len(&self, body_len: usize) -> Result<()> {
        check_body_len(body_len, self.max_len)
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
        self.check_body_len(body_len)?;
        let mut body = first_body_buffer(body_len);
        while body.len() < body_len {
            if body.len() == body.capacity() {
                body.reserve_exact(next_room(body.len(), body_len) - body.len());
            }
            // Into the buffer's spare room, which is not zeroed first; no further than this
            // frame, whose successors stay buffered.
            let read = (&mut self.inner)
                .take((body_len - body.len()) as u64)
                .read_buf(&mut body)
                .await
                .map_err(|error| Error::io("reading a frame", error))?;
            if read == 0 {
                return Err(truncated_frame());
            }
        }
        InFrame::from_body(body).map(Some)
    }
}

/// The most a body's buffer holds before any of it has arrived.
const FIRST_BODY_CAPACITY: usize = 64 * 1024;

/// The buffer a body of `body_len` bytes is read into: a kept one that holds it all if there
/// is one (memory this process holds anyway), else room for its first bytes only, so that a
/// peer that announces a large frame and sends nothing costs no more than that.
fn first_body_buffer(body_len: usize) -> Vec<u8> {
    crate::buffers::take_kept(body_len)
        .unwrap_or_else(|| Vec::with_capacity(body_len.min(FIRST_BODY_CAPACITY)))
}

/// How much of a body of `body_len` bytes to make room for once `arrived` bytes have:
/// twice as much, at most all of it. A body's buffer thus never holds more than twice what
/// arrived (plus the first step), and a large body is moved only a few times as it arrives.
fn next_room(arrived: usize, body_len: usize) -> usize {
    (arrived * 2).clamp(FIRST_BODY_CAPACITY.min(body_len), body_len)
}

fn truncated_frame() -> Error {
    Error::io("reading a frame", io::ErrorKind::UnexpectedEof.into())
}

fn check_body_len(body_len: usize, max_len: usize) -> Result<()> {
    if body_len > max_len {
        return Err(Error::new(
            ErrorKind::FrameTooLarge,
            format!(
                "the peer sent a frame of {body_len} bytes, over the maximum of {max_len} bytes"
            ),
        ));
    }
    if body_len < 4 {
        return Err(Error::new(
            ErrorKind::Protocol,
            "a frame too short to hold a header",
        ));
    }
    Ok(())
}

/// Reads one frame with blocking reads, and nothing after it; for a process that has no
/// runtime (yet). `Ok(None)` is a clean end of stream.
pub(crate) fn read_frame_blocking(
    input: &mut impl io::Read,
    max_len: usize,
) -> Result<Option<InFrame>> {
    let mut prefix = [0u8; 4];
    match input.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(Error::io("reading a frame", error)),
    }
    let body_len = u32::from_le_bytes(prefix) as usize;
    check_body_len(body_len, max_len)?;
    let mut body = first_body_buffer(body_len);
    let mut arrived = 0;
    while arrived < body_len {
        if arrived == body.len() {
            body.resize(next_room(arrived, body_len), 0);
        }
        match input.read(&mut body[arrived..]) {
            Ok(0) => return Err(truncated_frame()),
            Ok(read) => arrived += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(Error::io("reading a frame", error)),
        }
    }
    InFrame::from_body(body).map(Some)
}

/// How a [`FrameReader::read_burst`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Burst {
    /// Every frame that had arrived was handled; read again.
    Handled,
    /// The handler asked to stop.
    Stopped,
    /// The peer closed the connection cleanly, between frames.
    Ended,
}

thread_local! {
    /// The writers that frames were held on since this thread's [`Cork`] began.
    static CORKED: RefCell<Option<Vec<Arc<WriterLink>>>> = const { RefCell::new(None) };
}

/// While alive, frames this thread sends are held; when it is dropped, each connection's
/// held frames go out in one write. Not `Send`, so it cannot be held across an `await`.
pub(crate) struct Cork {
    outermost: bool,
    _not_send: PhantomData<*const ()>,
}

impl Cork {
    pub(crate) fn begin() -> Cork {
        let outermost = CORKED.with(|corked| {
            let mut corked = corked.borrow_mut();
            corked.is_none() && {
                *corked = Some(Vec::new());
                true
            }
        });
        Cork {
            outermost,
            _not_send: PhantomData,
        }
    }

    /// Whether this thread is corked; if so, remembers `link` for the release.
    fn hold(link: &Arc<WriterLink>) -> bool {
        CORKED.with(|corked| match corked.borrow_mut().as_mut() {
            Some(links) => {
                if !links.iter().any(|held| Arc::ptr_eq(held, link)) {
                    links.push(link.clone());
                }
                true
            }
            None => false,
        })
    }
}

impl Drop for Cork {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let links = CORKED.with(|corked| corked.borrow_mut().take().unwrap_or_default());
        for link in links {
            // A connection that broke meanwhile tells its next sender.
            let _ = link.release(&mut link.lock());
        }
    }
}

/// The writing half of a connection: a cheap, clonable handle through which any task or
/// thread sends frames.
///
/// A frame sent while nothing else is waiting to go out is written at once, from the sending
/// thread, with one non-blocking system call (where the connection allows it: see
/// [`spawn_direct`](Self::spawn_direct)). Only when the socket is full, or frames are already
/// waiting, does the frame go to the writer task, which owns the socket's write side until
/// its queue is empty and coalesces everything queued meanwhile into few writes. Frames go out
/// in the order they were sent either way.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    link: Arc<WriterLink>,
    max_len: usize,
}

struct WriterLink {
    state: Mutex<WriteState>,
    /// Wakes the writer task: frames to write, or the last handle gone.
    wake: Notify,
    /// Wakes those waiting for the queue to be written: the task gave up the write side,
    /// or the connection broke.
    written: Notify,
    /// Writes without waiting, for the fast path; `None` where the stream has no such call.
    direct: Option<Box<dyn TryWrite>>,
    handles: AtomicUsize,
}

impl std::fmt::Debug for WriterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterLink")
            .field("direct", &self.direct.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct WriteState {
    /// Frames not yet (wholly) written, oldest first.
    queue: VecDeque<OutFrame>,
    /// The writer task owns the socket's write side until it has emptied the queue; nobody
    /// else writes meanwhile, which keeps frames in order.
    task_writes: bool,
    /// A write failed: the connection is gone.
    broken: bool,
    /// Every handle is gone: the task writes what is left and shuts the write side.
    closing: bool,
}

/// A stream that can attempt a write without waiting (tokio's `try_write_vectored`).
pub(crate) trait TryWrite: Send + Sync + 'static {
    /// Writes what the socket takes now; `WouldBlock` if it takes nothing.
    fn try_write_vectored(&self, buffers: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// The most frames gathered into one direct write (two buffers each, under `IOV_MAX`).
const MAX_FRAMES_PER_WRITE: usize = 256;

impl FrameWriter {
    /// Starts the writer task on the current tokio runtime for a stream without a
    /// non-blocking write: every frame goes through the task. The task ends, after writing
    /// everything queued, once every clone of the writer is dropped.
    pub(crate) fn spawn<W: AsyncWrite + Unpin + Send + 'static>(
        inner: W,
        max_len: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        Self::spawn_inner(inner, None, max_len)
    }

    /// As [`spawn`](Self::spawn), for a stream whose clone `direct` can write without
    /// waiting: frames are written from the sending thread while the socket keeps up.
    pub(crate) fn spawn_direct<W: AsyncWrite + TryWrite + Clone + Unpin>(
        inner: W,
        max_len: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let direct: Box<dyn TryWrite> = Box::new(inner.clone());
        Self::spawn_inner(inner, Some(direct), max_len)
    }

    fn spawn_inner<W: AsyncWrite + Unpin + Send + 'static>(
        inner: W,
        direct: Option<Box<dyn TryWrite>>,
        max_len: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        // The hello must fit whatever limit the caller chose for the rest.
        let max_len = max_len.max(HANDSHAKE_MAX_FRAME_LEN);
        let link = Arc::new(WriterLink {
            state: Mutex::new(WriteState::default()),
            wake: Notify::new(),
            written: Notify::new(),
            direct,
            handles: AtomicUsize::new(1),
        });
        let task = tokio::spawn(write_frames(inner, link.clone()));
        (FrameWriter { link, max_len }, task)
    }

    /// Raises (or lowers) the largest frame this writer accepts: the handshake's limit is
    /// lifted once the peer is authenticated.
    pub(crate) fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Sends a frame: written now if the socket takes it, else queued for the writer task.
    /// Fails if the frame is too large or the connection is gone.
    pub(crate) fn send<H: Serialize>(&self, header: &H, payload: Vec<u8>) -> Result<()> {
        self.send_frame(OutFrame::new(header, payload, self.max_len)?)
    }

    /// As [`send`](Self::send), for a frame encoded already.
    pub(crate) fn send_frame(&self, frame: OutFrame) -> Result<()> {
        let mut state = self.enqueue(frame)?;
        if Cork::hold(&self.link) {
            return Ok(());
        }
        self.link.release(&mut state)
    }

    /// Queues a frame without writing it, so that frames produced in a burst go out in one
    /// write: the next [`send`](Self::send) or [`release`](Self::release) writes it, ahead of
    /// anything sent after it.
    pub(crate) fn hold(&self, frame: OutFrame) -> Result<()> {
        self.enqueue(frame).map(drop)
    }

    /// Writes the frames [`hold`](Self::hold) kept back.
    pub(crate) fn release(&self) -> Result<()> {
        self.link.release(&mut self.link.lock())
    }

    /// Waits until every frame sent so far is written to the socket, not merely queued, so
    /// that the process may exit right after without losing it.
    ///
    /// # Errors
    ///
    /// [`Closed`](ErrorKind::Closed) if the connection broke before.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the frames are written all the same.
    pub(crate) async fn written(&self) -> Result<()> {
        loop {
            let written = self.link.written.notified();
            tokio::pin!(written);
            // Registered before looking, so a notification in between is not missed.
            written.as_mut().enable();
            {
                let state = self.link.lock();
                if state.broken {
                    return Err(connection_closed());
                }
                if state.queue.is_empty() && !state.task_writes {
                    return Ok(());
                }
            }
            written.await;
        }
    }

    fn enqueue(&self, frame: OutFrame) -> Result<std::sync::MutexGuard<'_, WriteState>> {
        let mut state = self.link.lock();
        if state.broken || state.closing {
            return Err(connection_closed());
        }
        state.queue.push_back(frame);
        Ok(state)
    }
}

impl Clone for FrameWriter {
    fn clone(&self) -> Self {
        self.link.handles.fetch_add(1, Ordering::Relaxed);
        FrameWriter {
            link: self.link.clone(),
            max_len: self.max_len,
        }
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        if self.link.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.link.lock().closing = true;
            self.link.wake.notify_one();
        }
    }
}

fn connection_closed() -> Error {
    Error::closed("the connection is closed")
}

impl WriterLink {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.state.lock().expect("writer lock")
    }

    /// Marks the connection broken, for the writer task that failed to write.
    fn break_off(&self) {
        self.lock().broken = true;
        self.written.notify_waiters();
    }

    /// Writes the queue directly as far as the socket takes it, unless the task owns the
    /// write side; hands the rest to the task.
    fn release(&self, state: &mut WriteState) -> Result<()> {
        if state.broken {
            return Err(connection_closed());
        }
        if state.task_writes || state.queue.is_empty() {
            return Ok(());
        }
        if let Some(direct) = &self.direct {
            while !state.queue.is_empty() {
                match write_some(direct.as_ref(), &mut state.queue) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) => {
                        state.broken = true;
                        self.wake.notify_one();
                        self.written.notify_waiters();
                        return Err(connection_closed());
                    }
                }
            }
            if state.queue.is_empty() {
                return Ok(());
            }
        }
        state.task_writes = true;
        self.wake.notify_one();
        Ok(())
    }
}

/// One non-blocking write of the frames at the head of `queue`; drops what was wholly
/// written. `Ok(false)` once the socket takes no more.
fn write_some(direct: &dyn TryWrite, queue: &mut VecDeque<OutFrame>) -> io::Result<bool> {
    // One frame, the usual case on this path, needs no list of buffers.
    let attempt = match queue.len() {
        1 => direct.try_write_vectored(&queue[0].unsent()),
        _ => {
            let buffers: Vec<IoSlice<'_>> = queue
                .iter()
                .take(MAX_FRAMES_PER_WRITE)
                .flat_map(OutFrame::unsent)
                .collect();
            direct.try_write_vectored(&buffers)
        }
    };
    let mut written = match attempt {
        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
        Ok(written) => written,
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        Err(error) => return Err(error),
    };
    while written > 0 {
        let frame = queue.front_mut().expect("no more written than queued");
        written = frame.advance(written);
        if frame.is_sent() {
            queue.pop_front();
        }
    }
    Ok(true)
}

async fn write_frames<W: AsyncWrite + Unpin>(inner: W, link: Arc<WriterLink>) {
    let mut out = BufWriter::with_capacity(BUFFER_SIZE, inner);
    loop {
        let (batch, closing) = loop {
            {
                let mut state = link.lock();
                if state.broken {
                    return;
                }
                if state.closing || (state.task_writes && !state.queue.is_empty()) {
                    break (std::mem::take(&mut state.queue), state.closing);
                }
            }
            link.wake.notified().await;
        };
        for frame in &batch {
            if write_frame(&mut out, frame).await.is_err() {
                return link.break_off();
            }
        }
        if out.flush().await.is_err() {
            return link.break_off();
        }
        if closing {
            let _ = out.shutdown().await;
            return;
        }
        let mut state = link.lock();
        if state.queue.is_empty() {
            state.task_writes = false;
            link.written.notify_waiters();
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut BufWriter<W>,
    frame: &OutFrame,
) -> io::Result<()> {
    for part in frame.unsent() {
        out.write_all(&part).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::io::ReadBuf;

    use super::*;

    /// A peer that sends `bytes` a few at a time, then nothing more (without closing, or
    /// closing when `then_close`), and remembers the most room a read ever offered it.
    struct Trickle {
        bytes: Vec<u8>,
        sent: usize,
        step: usize,
        then_close: bool,
        most_room_offered: Arc<AtomicUsize>,
    }

    impl Trickle {
        fn new(bytes: Vec<u8>, then_close: bool) -> Self {
            Trickle {
                bytes,
                sent: 0,
                step: 0,
                then_close,
                most_room_offered: Arc::default(),
            }
        }

        /// Up to this many bytes per read: sizes that straddle frame and buffer boundaries.
        fn next_chunk(&mut self) -> usize {
            self.step += 1;
            [1, 3, 4096, 7, 70_000, 65_536, 300_000][self.step % 7]
        }
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.most_room_offered
                .fetch_max(buf.remaining(), Ordering::Relaxed);
            let left = self.bytes.len() - self.sent;
            if left == 0 {
                return if self.then_close {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let chunk = self.next_chunk().min(left).min(buf.remaining());
            buf.put_slice(&self.bytes[self.sent..self.sent + chunk]);
            self.sent += chunk;
            Poll::Ready(Ok(()))
        }
    }

    impl io::Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let chunk = self
                .next_chunk()
                .min(self.bytes.len() - self.sent)
                .min(out.len());
            out[..chunk].copy_from_slice(&self.bytes[self.sent..self.sent + chunk]);
            self.sent += chunk;
            Ok(chunk)
        }
    }

    fn encoded(header: &str, payload: Vec<u8>) -> Vec<u8> {
        let frame = OutFrame::new(&header, payload, DEFAULT_MAX_FRAME_LEN).unwrap();
        let mut bytes = Vec::new();
        frame.write_blocking(&mut bytes).unwrap();
        bytes
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_frame_announced_large_costs_only_what_arrived() {
        const ANNOUNCED: usize = 24 * 1024 * 1024;
        let mut bytes = (ANNOUNCED as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 1000]);
        let peer = Trickle::new(bytes, false);
        let most_room_offered = peer.most_room_offered.clone();
        let mut reader = FrameReader::new(peer, DEFAULT_MAX_FRAME_LEN);
        let read = tokio::time::timeout(Duration::from_millis(200), reader.read()).await;
        assert!(read.is_err(), "a frame was read that never arrived");
        let offered = most_room_offered.load(Ordering::Relaxed);
        assert!(
            offered <= 2 * FIRST_BODY_CAPACITY,
            "1000 bytes of a frame announced as {ANNOUNCED} arrived, yet the reader made room \
             for {offered}"
        );
    }

    #[tokio::test]
    async fn frames_arriving_in_pieces_read_whole() {
        let mut bytes = encoded("large", pattern(3 * 1024 * 1024 + 5));
        bytes.extend(encoded("small", pattern(10)));
        bytes.extend(encoded("empty", Vec::new()));
        let mut reader = FrameReader::new(Trickle::new(bytes.clone(), true), DEFAULT_MAX_FRAME_LEN);
        let mut blocking = Trickle::new(bytes, true);
        for (header, payload_len) in [("large", 3 * 1024 * 1024 + 5), ("small", 10), ("empty", 0)] {
            let frame = reader.read().await.unwrap().expect("a frame");
            assert_eq!(frame.header::<String>().unwrap(), header);
            assert_eq!(frame.payload(), pattern(payload_len));
            let frame = read_frame_blocking(&mut blocking, DEFAULT_MAX_FRAME_LEN)
                .unwrap()
                .expect("a frame");
            assert_eq!(frame.header::<String>().unwrap(), header);
            assert_eq!(frame.payload(), pattern(payload_len));
        }
        assert!(reader.read().await.unwrap().is_none());
        assert!(
            read_frame_blocking(&mut blocking, DEFAULT_MAX_FRAME_LEN)
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error() {
        let mut bytes = encoded("cut", pattern(200_000));
        bytes.truncate(150_000);
        let mut reader = FrameReader::new(Trickle::new(bytes.clone(), true), DEFAULT_MAX_FRAME_LEN);
        assert!(reader.read().await.is_err());
        let mut blocking = Trickle::new(bytes, true);
        assert!(read_frame_blocking(&mut blocking, DEFAULT_MAX_FRAME_LEN).is_err());
    }
}
