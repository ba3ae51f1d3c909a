//! One open WebSocket on the tokio side: reads the client's frames, reassembles messages for
//! the app, writes the app's messages, answers pings, keeps the connection alive and runs the
//! closing handshake.
//!
//! The session is a single future that polls the socket for reading and writing itself (no
//! split halves, no extra task). It runs over any `AsyncRead + AsyncWrite`: the upgraded
//! HTTP/1.1 connection or an HTTP/2 extended-CONNECT stream alike.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::channel::{Channel, Inbound, Outbound};
use super::deflate::{Deflate, DeflateParams};
use super::frame::{
    close_payload, encode_frame, encode_header, parse_close, parse_header, unmask, OpCode,
};
use crate::flow::ZERO_COPY_MIN;
use crate::phase::Phase;
use crate::settings::WebSocketSettings;

/// Free room kept in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// The most room reserved ahead for the next frame, from the size of the last large one.
const READ_AHEAD_MAX: usize = 256 * 1024;
/// Buffers in one vectored write.
const MAX_IOVECS: usize = 64;
/// Encoded bytes buffered for the socket before the app's queue is left alone.
const WRITE_LIMIT: usize = 256 * 1024;
/// Rounds of work in one poll before yielding to other connections.
const MAX_ROUNDS: usize = 32;
/// How long to wait for the client's close frame after sending ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a finished session may take to write out its last frames.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(1);
/// The code a session ends with when the connection was lost or force-closed (RFC 6455 §7.4.1).
const ABNORMAL_CLOSURE: u16 = 1006;

/// Why the session ended, with what the app is told in `websocket.disconnect`.
struct End {
    code: u16,
    reason: &'static str,
}

/// A failure that closes the connection with `code`.
struct Fail {
    code: u16,
    reason: &'static str,
}

impl Fail {
    fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

/// A message being reassembled from fragments.
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// Bytes of an uncompressed text message already known to be valid UTF-8 (fail fast).
    checked: usize,
}

type PhaseFuture = Pin<Box<dyn Future<Output = Phase> + Send>>;

fn wait_for_phase(
    mut phase: tokio::sync::watch::Receiver<Phase>,
    past: fn(Phase) -> bool,
) -> PhaseFuture {
    Box::pin(async move {
        match phase.wait_for(|p| past(*p)).await {
            Ok(value) => *value,
            Err(_) => Phase::Stopped,
        }
    })
}

pub struct Session<S> {
    io: S,
    channel: Arc<Channel>,
    settings: Arc<WebSocketSettings>,
    /// Read buffer: the bytes received and not yet handled.
    rbuf: BytesMut,
    /// Free room wanted in `rbuf` before a read: enough for a frame as large as the last one,
    /// so that a large frame arrives in one read, straight into the buffer it leaves in.
    read_room: usize,
    /// Bytes still to come of the frame at the start of `rbuf` (0: not known).
    frame_missing: usize,
    wbuf: WriteQueue,
    partial: Option<Partial>,
    deflate: Option<Deflate>,
    /// Our close frame is in `wbuf` (or written): no more data frames.
    close_sent: bool,
    close_received: bool,
    /// End as soon as `wbuf` is written (protocol failure, server shutdown).
    end_after_flush: Option<End>,
    /// The app's queue is exhausted and it will send nothing more.
    app_done: bool,
    read_paused: bool,
    keepalive: Pin<Box<Sleep>>,
    keepalive_on: bool,
    /// The payload of the ping in flight, if any.
    ping_payload: Option<[u8; 4]>,
    pings_sent: u32,
    close_deadline: Option<Pin<Box<Sleep>>>,
    /// Armed while the socket refuses every write (`--timeout-response-write`): a client that
    /// stopped reading ends the session when it fires.
    write_stall: Option<Pin<Box<Sleep>>>,
    phase: PhaseFuture,
    phase_rx: tokio::sync::watch::Receiver<Phase>,
    draining: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        io: S,
        channel: Arc<Channel>,
        settings: Arc<WebSocketSettings>,
        deflate: Option<&DeflateParams>,
        phase: tokio::sync::watch::Receiver<Phase>,
    ) -> Self {
        let keepalive_on = settings.ping_interval.is_some();
        let first_ping =
            Instant::now() + settings.ping_interval.unwrap_or(Duration::from_secs(3600));
        Self {
            io,
            channel,
            settings,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            read_room: READ_CHUNK,
            frame_missing: 0,
            wbuf: WriteQueue::default(),
            partial: None,
            deflate: deflate.map(Deflate::new),
            close_sent: false,
            close_received: false,
            end_after_flush: None,
            app_done: false,
            read_paused: false,
            keepalive: Box::pin(tokio::time::sleep_until(first_ping)),
            keepalive_on,
            ping_payload: None,
            pings_sent: 0,
            close_deadline: None,
            write_stall: None,
            phase: wait_for_phase(phase.clone(), |p| p != Phase::Running),
            phase_rx: phase,
            draining: false,
        }
    }

    /// Run until the connection is over; the app is told how it ended.
    pub async fn run(mut self) {
        let end = std::future::poll_fn(|cx| self.poll_session(cx)).await;
        self.channel.end(end.code, end.reason);
        if end.code != ABNORMAL_CLOSURE {
            // Write out what is still buffered (the close frame) and end the stream: an
            // HTTP/2 stream dropped with unsent data is reset, and the data discarded; over
            // TCP the server closes first, as RFC 6455 §7.1.1 asks. Bounded: the peer may
            // not read at all.
            let _ = tokio::time::timeout(CLOSE_FLUSH_LIMIT, self.io.shutdown()).await;
        }
    }

    fn poll_session(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        for _ in 0..MAX_ROUNDS {
            let mut progress = false;
            if let Poll::Ready(end) = self.poll_events(cx) {
                return Poll::Ready(end);
            }
            if !self.close_sent && self.wbuf.len() < WRITE_LIMIT {
                self.fill_from_app(cx);
            }
            match self.poll_write(cx) {
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Ready(Ok(wrote)) => progress |= wrote,
                Poll::Pending => {}
            }
            if self.wbuf.is_empty() {
                if let Some(end) = self.end_after_flush.take() {
                    let _ = Pin::new(&mut self.io).poll_flush(cx);
                    return Poll::Ready(end);
                }
                if self.close_sent && self.close_received {
                    let _ = Pin::new(&mut self.io).poll_flush(cx);
                    return Poll::Ready(End {
                        code: 1005,
                        reason: "",
                    });
                }
            }
            if self.can_read(cx) {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(end)) => return Poll::Ready(end),
                    Poll::Pending => {}
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Plenty done in one go: let other connections run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Timers and the server's shutdown phases.
    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if let Poll::Ready(phase) = self.phase.as_mut().poll(cx) {
            match phase {
                Phase::Running => {}
                Phase::Draining if !self.draining => {
                    // Graceful shutdown: close with 1012 (Service Restart), as uvicorn does.
                    self.draining = true;
                    self.phase = wait_for_phase(self.phase_rx.clone(), |p| {
                        matches!(p, Phase::ForceClose | Phase::Stopped)
                    });
                    self.send_close(1012, "");
                    self.channel.end(1012, "");
                    self.end_after_flush = Some(End {
                        code: 1012,
                        reason: "",
                    });
                }
                _ => {
                    return Poll::Ready(End {
                        code: ABNORMAL_CLOSURE,
                        reason: "",
                    })
                }
            }
        }
        if self.keepalive_on && !self.close_sent && self.keepalive.as_mut().poll(cx).is_ready() {
            if self.ping_payload.is_some() {
                // The previous ping went unanswered: the peer is dead. Tell it, if the socket
                // takes the frame now, but do not wait for it.
                self.send_close(1011, "keepalive ping timeout");
                let _ = self.poll_write(cx);
                return Poll::Ready(End {
                    code: 1011,
                    reason: "keepalive ping timeout",
                });
            }
            self.send_ping();
        }
        if let Some(stall) = self.write_stall.as_mut() {
            if stall.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End {
                    code: ABNORMAL_CLOSURE,
                    reason: "",
                });
            }
        }
        if let Some(deadline) = self.close_deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End {
                    code: ABNORMAL_CLOSURE,
                    reason: "",
                });
            }
        }
        Poll::Pending
    }

    fn send_ping(&mut self) {
        self.pings_sent = self.pings_sent.wrapping_add(1);
        let payload = (self.pings_sent ^ (self.channel.id() as u32).rotate_left(16)).to_be_bytes();
        if !self.close_sent {
            encode_frame(self.wbuf.tail(), OpCode::Ping, false, &payload);
        }
        self.ping_payload = Some(payload);
        let wait = match self.settings.ping_timeout {
            Some(timeout) => timeout,
            None => {
                self.ping_payload = None;
                self.settings
                    .ping_interval
                    .unwrap_or(Duration::from_secs(3600))
            }
        };
        self.keepalive.as_mut().reset(Instant::now() + wait);
    }

    fn on_pong(&mut self, payload: &[u8]) {
        if self
            .ping_payload
            .is_some_and(|expected| expected == payload)
        {
            self.ping_payload = None;
            if let Some(interval) = self.settings.ping_interval {
                self.keepalive.as_mut().reset(Instant::now() + interval);
            }
        }
    }

    /// Queue our close frame (once) and start waiting for the client's.
    fn send_close(&mut self, code: u16, reason: &str) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        encode_frame(
            self.wbuf.tail(),
            OpCode::Close,
            false,
            &close_payload(code, reason),
        );
        if !self.close_received && self.close_deadline.is_none() {
            self.close_deadline = Some(Box::pin(tokio::time::sleep(CLOSE_TIMEOUT)));
        }
    }

    fn fill_from_app(&mut self, cx: &mut Context<'_>) {
        let Self {
            channel,
            wbuf,
            deflate,
            ..
        } = self;
        let mut close = None;
        let ended = channel.drain_out(cx.waker(), |message| {
            match message {
                Outbound::Text(data) => encode_data(wbuf, deflate.as_mut(), OpCode::Text, data),
                Outbound::Binary(data) => encode_data(wbuf, deflate.as_mut(), OpCode::Binary, data),
                Outbound::Close(code, reason) => {
                    close = Some((code, reason));
                    return false;
                }
            }
            wbuf.len() < WRITE_LIMIT
        });
        if let Some((code, reason)) = close {
            self.send_close(code, &reason);
        } else if ended && !self.app_done {
            // The app ended without closing (its runner queues a close; this is a backstop).
            self.app_done = true;
        }
    }

    /// Write what is buffered. `Ok(true)` if anything was written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, End>> {
        let mut wrote = false;
        while !self.wbuf.is_empty() {
            let written = if self.wbuf.chunks.is_empty() {
                Pin::new(&mut self.io).poll_write(cx, &self.wbuf.tail)
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = self.wbuf.io_slices(&mut slices);
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
            };
            match written {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    return Poll::Ready(Err(self.abnormal_end()))
                }
                Poll::Ready(Ok(n)) => {
                    self.wbuf.advance(n);
                    wrote = true;
                    self.write_stall = None;
                }
                Poll::Pending => {
                    return if wrote {
                        Poll::Ready(Ok(true))
                    } else {
                        self.arm_write_stall(cx);
                        Poll::Pending
                    }
                }
            }
        }
        if wrote {
            // TLS and HTTP/2 streams buffer: push the frames out now.
            if let Poll::Ready(Err(_)) = Pin::new(&mut self.io).poll_flush(cx) {
                return Poll::Ready(Err(self.abnormal_end()));
            }
        }
        Poll::Ready(Ok(wrote))
    }

    /// The socket refused a write: start the write clock, unless it runs already.
    fn arm_write_stall(&mut self, cx: &mut Context<'_>) {
        if self.write_stall.is_none() {
            if let Some(limit) = self.settings.write_timeout {
                let mut stall = Box::pin(tokio::time::sleep(limit));
                // Registers the waker; it cannot have fired yet.
                let _ = stall.as_mut().poll(cx);
                self.write_stall = Some(stall);
            }
        }
    }

    fn abnormal_end(&mut self) -> End {
        match self.end_after_flush.take() {
            Some(end) => end,
            None => End {
                code: ABNORMAL_CLOSURE,
                reason: "",
            },
        }
    }

    fn can_read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.end_after_flush.is_some() || (self.close_received && self.close_sent) {
            return false;
        }
        if self.read_paused {
            if !self.channel.wait_for_room(cx.waker()) {
                return false;
            }
            self.read_paused = false;
        }
        true
    }

    /// Read once and handle every complete frame. `Ok` if bytes arrived.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), End>> {
        // Frames already buffered (left over when the queue filled up) go first.
        if !self.rbuf.is_empty() {
            if let Err(fail) = self.process_frames() {
                return Poll::Ready(self.fail(fail));
            }
            if self.read_paused {
                return Poll::Pending;
            }
        }
        // Room for the rest of a partly read frame (reserved once its header arrived, so never
        // a reallocation), else for a frame as large as the last one.
        let want = match self.frame_missing {
            0 => self.read_room,
            missing => missing,
        };
        if self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.reserve(want);
        }
        let spare = self.rbuf.spare_capacity_mut();
        let start = spare.as_ptr();
        let mut buf = ReadBuf::uninit(spare);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(End {
                code: ABNORMAL_CLOSURE,
                reason: "",
            })),
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                let n = filled.len();
                if n == 0 {
                    // EOF. After our close, a client may just hang up.
                    return Poll::Ready(Err(self.abnormal_end()));
                }
                if filled.as_ptr() != start.cast::<u8>() {
                    // The reader swapped the buffer (an `AsyncRead` contract breach).
                    return Poll::Ready(Err(End {
                        code: 1006,
                        reason: "",
                    }));
                }
                // SAFETY: `ReadBuf` guarantees its first `n` bytes, which are the first `n`
                // bytes of the spare capacity (checked just above), are initialized.
                unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
                match self.process_frames() {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(fail) => Poll::Ready(self.fail(fail)),
                }
            }
        }
    }

    /// Fail the connection: close frame with the error's code, then hang up once written.
    fn fail(&mut self, fail: Fail) -> Result<(), End> {
        self.send_close(fail.code, fail.reason);
        self.channel.end(fail.code, fail.reason);
        self.end_after_flush = Some(End {
            code: fail.code,
            reason: fail.reason,
        });
        Ok(())
    }

    fn max_frame(&self) -> usize {
        // A compressed frame may be a little larger than its message; the message size is
        // checked exactly once it is whole.
        match self.deflate {
            Some(_) => self.settings.max_size.saturating_add(1024),
            None => self.settings.max_size,
        }
    }

    fn process_frames(&mut self) -> Result<(), Fail> {
        let max_frame = self.max_frame();
        self.frame_missing = 0;
        while !self.rbuf.is_empty() && !self.read_paused {
            if self.close_received {
                // Nothing may follow a close frame; whatever does is ignored.
                self.rbuf.clear();
                break;
            }
            let header = match parse_header(&self.rbuf, self.deflate.is_some(), max_frame) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(err) => return Err(Fail::new(err.close_code(), "")),
            };
            let total = header.header_len + header.payload_len;
            if self.rbuf.len() < total {
                // Make sure the whole frame fits once it has arrived (its size is bounded by
                // `max_frame`), so that it is read straight into place.
                self.frame_missing = total - self.rbuf.len();
                self.rbuf.reserve(self.frame_missing);
                break;
            }
            unmask(&mut self.rbuf[header.header_len..total], header.mask);
            self.read_room = total.clamp(READ_CHUNK, READ_AHEAD_MAX);
            if header.payload_len >= ZERO_COPY_MIN {
                // Large: the frame leaves the buffer without a copy.
                let mut frame = self.rbuf.split_to(total).freeze();
                frame.advance(header.header_len);
                let payload = frame.clone();
                self.on_frame(
                    header.opcode,
                    header.fin,
                    header.rsv1,
                    &payload,
                    Some(frame),
                )?;
            } else {
                // Split borrows: the payload lives in `rbuf`, the frame handler uses the rest.
                let buffered = std::mem::take(&mut self.rbuf);
                let outcome = self.on_frame(
                    header.opcode,
                    header.fin,
                    header.rsv1,
                    &buffered[header.header_len..total],
                    None,
                );
                self.rbuf = buffered;
                self.rbuf.advance(total);
                outcome?;
            }
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
        owned: Option<Bytes>,
    ) -> Result<(), Fail> {
        match opcode {
            OpCode::Ping => {
                if !self.close_sent {
                    encode_frame(self.wbuf.tail(), OpCode::Pong, false, payload);
                }
                Ok(())
            }
            OpCode::Pong => {
                self.on_pong(payload);
                Ok(())
            }
            OpCode::Close => self.on_close(payload),
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(Fail::new(1002, "expected a continuation frame"));
                }
                let text = opcode == OpCode::Text;
                if fin && !rsv1 {
                    if payload.len() > self.settings.max_size {
                        return Err(Fail::new(1009, "message too big"));
                    }
                    if text && std::str::from_utf8(payload).is_err() {
                        return Err(Fail::new(1007, "invalid UTF-8"));
                    }
                    let data = owned.unwrap_or_else(|| Bytes::copy_from_slice(payload));
                    self.deliver(text, data);
                    return Ok(());
                }
                let mut partial = Partial {
                    text,
                    compressed: rsv1,
                    data: Vec::with_capacity(payload.len() * 2),
                    checked: 0,
                };
                partial.data.extend_from_slice(payload);
                self.partial = Some(partial);
                self.continue_message(fin)
            }
            OpCode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(Fail::new(1002, "unexpected continuation frame"));
                };
                if rsv1 {
                    return Err(Fail::new(1002, "RSV1 set on a continuation frame"));
                }
                if partial.data.len() + payload.len() > self.settings.max_size.saturating_add(1024)
                {
                    return Err(Fail::new(1009, "message too big"));
                }
                partial.data.extend_from_slice(payload);
                self.continue_message(fin)
            }
        }
    }

    /// Check the message so far; deliver it if it is complete.
    fn continue_message(&mut self, fin: bool) -> Result<(), Fail> {
        let max_size = self.settings.max_size;
        let Some(partial) = self.partial.as_mut() else {
            return Ok(());
        };
        if !partial.compressed {
            if partial.data.len() > max_size {
                return Err(Fail::new(1009, "message too big"));
            }
            if partial.text {
                partial.checked = check_utf8(&partial.data, partial.checked, fin)
                    .ok_or(Fail::new(1007, "invalid UTF-8"))?;
            }
        }
        if !fin {
            return Ok(());
        }
        let Some(partial) = self.partial.take() else {
            return Ok(());
        };
        let data = if partial.compressed {
            let Some(deflate) = self.deflate.as_mut() else {
                return Err(Fail::new(
                    1002,
                    "compressed message without permessage-deflate",
                ));
            };
            let data = deflate
                .decompress(&partial.data, max_size)
                .map_err(|err| Fail::new(err.close_code(), ""))?;
            if partial.text && std::str::from_utf8(&data).is_err() {
                return Err(Fail::new(1007, "invalid UTF-8"));
            }
            data
        } else {
            partial.data
        };
        if data.len() > max_size {
            return Err(Fail::new(1009, "message too big"));
        }
        self.deliver(partial.text, Bytes::from(data));
        Ok(())
    }

    fn deliver(&mut self, text: bool, data: Bytes) {
        if self.close_sent {
            return; // the app is past its close
        }
        let message = if text {
            Inbound::Text(data)
        } else {
            Inbound::Binary(data)
        };
        if !self.channel.push_inbound(message) {
            self.read_paused = true;
        }
    }

    fn on_close(&mut self, payload: &[u8]) -> Result<(), Fail> {
        let (code, reason) = parse_close(payload).map_err(|err| Fail::new(err.close_code(), ""))?;
        self.close_received = true;
        if !self.close_sent {
            // Echo the code (RFC 6455 §5.5.1); an empty close is answered with an empty one.
            self.close_sent = true;
            let echo = if code == 1005 {
                Vec::new()
            } else {
                code.to_be_bytes().to_vec()
            };
            encode_frame(self.wbuf.tail(), OpCode::Close, false, &echo);
        }
        self.close_deadline = None;
        self.channel.end(code, &reason);
        Ok(())
    }
}

/// Encode one data message, compressed when that is negotiated and worthwhile.
fn encode_data(out: &mut WriteQueue, deflate: Option<&mut Deflate>, opcode: OpCode, data: Bytes) {
    if let Some(compressed) = deflate.and_then(|deflate| deflate.compress(&data)) {
        encode_frame(out.tail(), opcode, true, &compressed);
        return;
    }
    encode_header(out.tail(), true, false, opcode, data.len());
    out.push_payload(data);
}

/// Encoded frames waiting for the socket: shared payloads (`chunks`, written as they are)
/// followed by `tail`, where headers and small frames are encoded.
#[derive(Default)]
struct WriteQueue {
    chunks: VecDeque<Bytes>,
    chunks_len: usize,
    tail: BytesMut,
}

impl WriteQueue {
    fn len(&self) -> usize {
        self.chunks_len + self.tail.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the next frame bytes are encoded.
    fn tail(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Append a payload after what `tail` holds: copied when small, shared when large.
    fn push_payload(&mut self, data: Bytes) {
        if data.len() < ZERO_COPY_MIN {
            self.tail.extend_from_slice(&data);
            return;
        }
        if !self.tail.is_empty() {
            let encoded = self.tail.split().freeze();
            self.chunks_len += encoded.len();
            self.chunks.push_back(encoded);
        }
        self.chunks_len += data.len();
        self.chunks.push_back(data);
    }

    /// Fill `slices` with the queued bytes in order; returns how many were used.
    fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let tail = (!self.tail.is_empty()).then_some(&self.tail[..]);
        for (slot, chunk) in slices
            .iter_mut()
            .zip(self.chunks.iter().map(|chunk| &chunk[..]).chain(tail))
        {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        count
    }

    /// Drop `n` written bytes from the front.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n.min(self.tail.len()));
                return;
            };
            if n < front.len() {
                front.advance(n);
                self.chunks_len -= n;
                return;
            }
            n -= front.len();
            self.chunks_len -= front.len();
            self.chunks.pop_front();
        }
    }
}

/// Validate `data[from..]` as UTF-8. A code point cut at the end is fine unless the message is
/// complete. Returns the new validated length, `None` if the text is invalid.
pub(crate) fn check_utf8(data: &[u8], from: usize, complete: bool) -> Option<usize> {
    let rest = data.get(from..)?;
    match std::str::from_utf8(rest) {
        Ok(_) => Some(data.len()),
        Err(err) if err.error_len().is_none() && !complete => Some(from + err.valid_up_to()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::check_utf8;

    #[test]
    fn utf8_is_checked_incrementally() {
        let text = "κόσμε".as_bytes();
        // Cut inside a code point: fine while the message goes on.
        assert_eq!(check_utf8(&text[..3], 0, false), Some(2));
        assert_eq!(check_utf8(&text[..3], 0, true), None);
        assert_eq!(check_utf8(text, 2, true), Some(text.len()));
        // An invalid byte fails at once, even mid-message.
        assert_eq!(check_utf8(&[0xCE, 0xBA, 0xFF], 0, false), None);
    }
}
