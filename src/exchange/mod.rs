//! One request/response exchange, shared between the tokio side (hyper's service future, the
//! request-body pump, the response body) and the Python side (the ASGI `receive`/`send`).
//!
//! Both directions are byte queues with a high-water mark. Request bodies are read from the
//! socket only while the app has less than [`HIGH_WATER`] bytes unread, and the app's `send()`
//! only suspends while more than [`HIGH_WATER`] response bytes wait for the socket, so neither
//! side can make the other buffer without bound. The state is private: each side moves it
//! through the methods below, under one lock.

mod file_body;
mod request_body;
mod response_body;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Frame;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::bridge::{SendRoom, WaitKind, Waiting, WakeSink};
use crate::errors::{BodyAborted, Disconnected};
use crate::flow::{HIGH_WATER, LOW_WATER};
use crate::net::interim::HintTarget;
use crate::net::sendfile::SendfileQueue;

pub use file_body::{dup_file, open_file, FileBody};
pub use request_body::{pump_request_body, BodyLimits, RequestBody};
pub use response_body::{plain_response, ResponseBody};

/// Hands a response head (and body handle) to hyper's service future...
pub type Responder = oneshot::Sender<http::Response<ResponseBody>>;
/// ...which waits for it on this end.
pub type ResponseReceiver = oneshot::Receiver<http::Response<ResponseBody>>;

/// What `receive()` can give the app next.
pub enum BodyEvent {
    /// Everything of the body read since the last `receive()`, in order; `more` is false when
    /// it ends the body.
    Chunk { data: BodyBytes, more: bool },
    /// The body ended and its last message is still to be delivered.
    End,
    /// The client is gone.
    Disconnected,
    /// Nothing yet: the app is parked until a wake-up.
    Pending,
}

/// Body bytes handed to the app in one message: usually one chunk as hyper read it, or several
/// when the app fell behind the socket. They become one `bytes` object, so a body that arrived
/// in several reads is copied once, not once per read and again when the app joins them.
pub enum BodyBytes {
    One(Bytes),
    Many(VecDeque<Bytes>),
}

impl BodyBytes {
    pub fn len(&self) -> usize {
        match self {
            BodyBytes::One(bytes) => bytes.len(),
            BodyBytes::Many(chunks) => chunks.iter().map(Bytes::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the bytes into `out`, which is [`BodyBytes::len`] long (a shorter `out` gets
    /// what fits).
    pub fn copy_to(&self, out: &mut [u8]) {
        let mut rest = out;
        for chunk in self.chunks() {
            let n = chunk.len().min(rest.len());
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
            head.copy_from_slice(chunk.get(..n).unwrap_or_default());
            rest = tail;
        }
    }

    fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        let (one, many) = match self {
            BodyBytes::One(bytes) => (Some(bytes), None),
            BodyBytes::Many(chunks) => (None, Some(chunks.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[derive(Default)]
struct ExchangeState {
    responder: Option<Responder>,
    /// The client is gone (connection closed, or the request body broke off).
    disconnected: bool,
    /// The app has finished; the pump should stop reading.
    app_done: bool,
    waiting: Waiting,

    // Request body: produced by the pump, consumed by `receive()`.
    chunks: VecDeque<Bytes>,
    buffered: usize,
    body_done: bool,
    body_failed: bool,
    /// The limits the pump reads the body under (set by the service before it starts).
    body_limits: BodyLimits,
    /// The server's answer when the body failed for a reason other than bad framing (413, 408).
    body_failure: Option<http::StatusCode>,

    // Response body: produced by `send()`, consumed by hyper.
    out: VecDeque<OutChunk>,
    out_buffered: usize,
    out_done: bool,
    /// The `http.response.trailers` headers, sent after the last body frame.
    out_trailers: Option<http::HeaderMap>,
    out_aborted: bool,
    /// On abort, hyper is first given one `Pending` so that it flushes what it has (the head,
    /// the bytes sent so far) before the error ends the connection.
    abort_flushed: bool,
    out_waker: Option<Waker>,
}

/// One entry of the response queue: bytes from `http.response.body`, or a range of a file
/// (`http.response.zerocopysend`), read only as hyper asks for it. A range counts as buffered
/// until it has all been sent, for its length but at least [`FILE_WEIGHT_MIN`] and at most
/// [`HIGH_WATER`]: a large range makes `send()` wait until it is sent (as `sendfile` would), and
/// small ones cannot pile up (each holds a descriptor).
enum OutChunk {
    Bytes(Bytes),
    File(FileBody, usize),
}

/// What the smallest file range counts as in the response queue.
const FILE_WEIGHT_MIN: usize = 4096;

pub struct Exchange {
    id: u64,
    state: Mutex<ExchangeState>,
    body_space: Notify,
    wakes: Arc<dyn WakeSink>,
    /// The server's count of live exchanges, for `--limit-concurrency`.
    in_flight: Arc<AtomicUsize>,
    /// Where file bodies queue ranges for sendfile(2): cleartext HTTP/1.1 only.
    sendfile: Option<Arc<SendfileQueue>>,
    /// Where `http.response.early_hint` messages go, when the connection can carry them.
    hints: Option<HintTarget>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Exchange {
    pub fn new(
        id: u64,
        wakes: Arc<dyn WakeSink>,
        in_flight: Arc<AtomicUsize>,
        responder: Responder,
        sendfile: Option<Arc<SendfileQueue>>,
        hints: Option<HintTarget>,
    ) -> Self {
        in_flight.fetch_add(1, Ordering::AcqRel);
        Self {
            id,
            state: Mutex::new(ExchangeState {
                responder: Some(responder),
                ..Default::default()
            }),
            body_space: Notify::new(),
            wakes,
            in_flight,
            sendfile,
            hints,
        }
    }

    /// A body of `len` bytes of `file` from `offset`, sent with sendfile(2) where the
    /// connection allows it.
    pub fn file_body(&self, file: std::fs::File, offset: u64, len: u64) -> FileBody {
        FileBody::new(file, offset, len, self.sendfile.clone())
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn wake_python(&self, state: &mut ExchangeState, kind: WaitKind) {
        state.waiting.wake(kind, self.id, &*self.wakes);
    }

    // --- tokio side -------------------------------------------------------------------------

    /// The client went away: every Python waiter must learn it.
    pub fn client_gone(&self) {
        let mut state = self.state.lock();
        state.disconnected = true;
        self.wake_python(&mut state, WaitKind::Receive);
        self.wake_python(&mut state, WaitKind::Send);
        drop(state);
        self.body_space.notify_one();
    }

    fn poll_out(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        let mut state = self.state.lock();
        while let Some(OutChunk::File(file, weight)) = state.out.front_mut() {
            let weight = *weight;
            match file.poll_frame(cx) {
                Poll::Ready(None) => {
                    state.out.pop_front();
                    state.out_buffered -= weight;
                    if state.out_buffered < LOW_WATER {
                        self.wake_python(&mut state, WaitKind::Send);
                    }
                }
                other => return other,
            }
        }
        if let Some(OutChunk::Bytes(chunk)) = state.out.pop_front() {
            state.out_buffered -= chunk.len();
            if state.out_buffered < LOW_WATER {
                self.wake_python(&mut state, WaitKind::Send);
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if state.out_aborted {
            if !state.abort_flushed {
                state.abort_flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(BodyAborted)));
        }
        if state.out_done {
            return Poll::Ready(state.out_trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        state.out_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// hyper dropped the response body: unless it was complete, the client is gone.
    fn out_dropped(&self) {
        let finished = {
            let state = self.state.lock();
            state.out_done && state.out.is_empty() && state.out_trailers.is_none()
        };
        if !finished {
            self.client_gone();
        }
    }

    /// The connection's interim writer for this request, if it can send early hints.
    pub fn hints(&self) -> Option<&HintTarget> {
        self.hints.as_ref()
    }

    // --- Python side ------------------------------------------------------------------------

    /// Whether `http.response.early_hint` is offered to the app.
    pub fn early_hints_offered(&self) -> bool {
        self.hints.is_some()
    }

    /// `http.response.early_hint`: queue a `103` with these `Link` values (before the response
    /// head is handed over). False when it was dropped (no interim writer, or too large).
    pub fn early_hint(&self, links: &[http::HeaderValue]) -> bool {
        self.hints.as_ref().is_some_and(|hints| hints.send(links))
    }

    /// Hand the response head (and body handle) to hyper.
    pub fn respond(&self, response: http::Response<ResponseBody>) -> Result<(), Disconnected> {
        let responder = self.state.lock().responder.take();
        match responder {
            Some(tx) => tx.send(response).map_err(|_| Disconnected::Client),
            None => Err(Disconnected::Client),
        }
    }

    /// The next body event for `receive()`; parks the app when there is none.
    /// `end_delivered`: the app already has the body's last message.
    pub fn receive(&self, end_delivered: bool) -> BodyEvent {
        let mut state = self.state.lock();
        let data = match state.chunks.len() {
            0 => None,
            1 => state.chunks.pop_front().map(BodyBytes::One),
            _ => Some(BodyBytes::Many(std::mem::take(&mut state.chunks))),
        };
        if let Some(data) = data {
            state.buffered = 0;
            let more = !state.body_done || state.body_failed;
            drop(state);
            // The pump may read more.
            self.body_space.notify_one();
            return BodyEvent::Chunk { data, more };
        }
        if state.disconnected {
            return BodyEvent::Disconnected;
        }
        if state.body_done && !end_delivered {
            return BodyEvent::End;
        }
        // Either more body is on its way, or the body is done and the next event the app can
        // get is the disconnect: both arrive as a wake-up.
        state.waiting.park(WaitKind::Receive);
        BodyEvent::Pending
    }

    /// Queue response bytes from `send()`. `Ok(true)`: the caller must wait for the socket to
    /// drain before sending more.
    pub fn push_out(&self, chunk: Bytes, more: bool) -> Result<bool, Disconnected> {
        self.push_chunk(OutChunk::Bytes(chunk), more)
    }

    /// Queue a range of a file (`http.response.zerocopysend`); as [`Exchange::push_out`].
    pub fn push_out_file(&self, file: FileBody, more: bool) -> Result<bool, Disconnected> {
        let weight = usize::try_from(file.remaining())
            .unwrap_or(HIGH_WATER)
            .clamp(FILE_WEIGHT_MIN, HIGH_WATER);
        self.push_chunk(OutChunk::File(file, weight), more)
    }

    fn push_chunk(&self, chunk: OutChunk, more: bool) -> Result<bool, Disconnected> {
        let mut state = self.state.lock();
        if state.disconnected {
            return Err(Disconnected::Client);
        }
        match chunk {
            OutChunk::Bytes(bytes) if bytes.is_empty() => {}
            OutChunk::Bytes(bytes) => {
                state.out_buffered += bytes.len();
                state.out.push_back(OutChunk::Bytes(bytes));
            }
            OutChunk::File(file, weight) => {
                state.out_buffered += weight;
                state.out.push_back(OutChunk::File(file, weight));
            }
        }
        if !more {
            state.out_done = true;
        }
        let must_wait = more && state.out_buffered >= HIGH_WATER;
        if must_wait {
            state.waiting.park(WaitKind::Send);
        }
        let waker = state.out_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(must_wait)
    }

    /// End the response body with trailer fields (`http.response.trailers`).
    pub fn push_trailers(&self, trailers: http::HeaderMap) -> Result<(), Disconnected> {
        let mut state = self.state.lock();
        if state.disconnected {
            return Err(Disconnected::Client);
        }
        state.out_trailers = Some(trailers);
        state.out_done = true;
        let waker = state.out_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether a `send()` told to wait may go on; parks it again if not.
    pub fn send_room(&self) -> SendRoom {
        let state = &mut *self.state.lock();
        state
            .waiting
            .send_room(state.disconnected, state.out_buffered)
    }

    /// The app failed mid-response: the body must end as an error, never as a complete body.
    pub fn abort_out(&self) {
        let mut state = self.state.lock();
        state.out_aborted = true;
        let waker = state.out_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The app has returned (or failed); stop any body reading still going on.
    pub fn finish_app(&self) {
        self.state.lock().app_done = true;
        self.body_space.notify_one();
    }

    pub fn is_disconnected(&self) -> bool {
        self.state.lock().disconnected
    }

    /// The request body was malformed or cut off (the app saw `http.disconnect`).
    pub fn body_failed(&self) -> bool {
        self.state.lock().body_failed
    }
}
