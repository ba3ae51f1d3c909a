//! One request/response exchange, shared between the tokio side (hyper's service future, the
//! request-body pump, the response body) and the Python side (the ASGI `receive`/`send`).
//!
//! Both directions are byte queues with a high-water mark. Request bodies are read from the
//! socket only while the app has less than [`HIGH_WATER`] bytes unread, and the app's `send()`
//! only suspends while more than [`HIGH_WATER`] response bytes wait for the socket, so neither
//! side can make the other buffer without bound.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};

use crate::bridge::{Bridge, Event};
use crate::errors::BodyAborted;

/// Bytes buffered in one direction before the producer is made to wait.
pub const HIGH_WATER: usize = 64 * 1024;
/// The producer is resumed once the buffer drains below this.
pub const LOW_WATER: usize = 16 * 1024;

/// What the ASGI scope needs to know about the connection a request arrived on.
pub struct ConnInfo {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// For Unix sockets, the path the scope reports as `server`.
    pub unix_path: Option<Arc<str>>,
    /// What the TLS handshake negotiated; `None` in cleartext.
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
    /// The peer is a trusted proxy: its X-Forwarded-* headers are applied to the scope.
    pub trusted_proxy: bool,
    /// The scope's `client` and `server` tuples, built by the first request on this connection
    /// and shared by the rest (tuples are immutable). Dropping them off the GIL is deferred by
    /// PyO3 to the next time the GIL is held.
    pub py_addresses: std::sync::OnceLock<(pyo3::Py<pyo3::PyAny>, pyo3::Py<pyo3::PyAny>)>,
}

/// A parsed request on its way to the Python side.
pub struct RequestHead {
    pub id: u64,
    pub parts: http::request::Parts,
    pub body: RequestBody,
    pub conn: Arc<ConnInfo>,
    pub exchange: Arc<Exchange>,
}

/// Where a request's body is when the request reaches Python.
pub enum RequestBody {
    /// The request has no body.
    Empty,
    /// Already being read into the exchange (bounded by the high-water mark).
    Pumping,
    /// Read only once the app first calls `receive()`: the client sent `Expect: 100-continue`,
    /// and `100 Continue` must not go out before the app asks for the body.
    OnFirstReceive(Incoming),
}

/// Which Python waiter a wake-up is for. Encoded in the low bit of the wake id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitKind {
    Receive = 0,
    Send = 1,
}

pub fn wake_id(request_id: u64, kind: WaitKind) -> u64 {
    (request_id << 1) | kind as u64
}

pub fn split_wake_id(id: u64) -> (u64, WaitKind) {
    let kind = if id & 1 == 0 {
        WaitKind::Receive
    } else {
        WaitKind::Send
    };
    (id >> 1, kind)
}

#[derive(Default)]
pub struct ExchangeState {
    /// Hands the response head to hyper's service future; taken when the app starts sending.
    responder: Option<oneshot::Sender<http::Response<ResponseBody>>>,
    /// The client is gone (connection closed, or the request body broke off).
    pub disconnected: bool,
    /// The app has finished; the pump should stop reading.
    pub app_done: bool,

    // Request body: produced by the pump, consumed by `receive()`.
    pub chunks: VecDeque<Bytes>,
    pub buffered: usize,
    pub body_done: bool,
    pub body_failed: bool,
    pub recv_waiting: bool,

    // Response body: produced by `send()`, consumed by hyper.
    out: VecDeque<Bytes>,
    out_buffered: usize,
    out_done: bool,
    out_aborted: bool,
    /// On abort, hyper is first given one `Pending` so that it flushes what it has (the head,
    /// the bytes sent so far) before the error ends the connection.
    abort_flushed: bool,
    out_waker: Option<Waker>,
    pub send_waiting: bool,
}

pub struct Exchange {
    pub id: u64,
    state: Mutex<ExchangeState>,
    body_space: Notify,
    bridge: Arc<Bridge>,
    /// The server's count of live exchanges, for `--limit-concurrency`.
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Exchange {
    pub fn new(
        id: u64,
        bridge: Arc<Bridge>,
        in_flight: Arc<AtomicUsize>,
        responder: oneshot::Sender<http::Response<ResponseBody>>,
    ) -> Self {
        in_flight.fetch_add(1, Ordering::AcqRel);
        Self {
            id,
            state: Mutex::new(ExchangeState {
                responder: Some(responder),
                ..Default::default()
            }),
            body_space: Notify::new(),
            bridge,
            in_flight,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, ExchangeState> {
        self.state.lock()
    }

    fn wake_python(&self, state: &mut ExchangeState, kind: WaitKind) {
        let waiting = match kind {
            WaitKind::Receive => &mut state.recv_waiting,
            WaitKind::Send => &mut state.send_waiting,
        };
        if std::mem::take(waiting) {
            self.bridge.push(Event::Wake(wake_id(self.id, kind)));
        }
    }

    /// The client went away: every Python waiter must learn it.
    pub fn client_gone(&self) {
        let mut state = self.state.lock();
        state.disconnected = true;
        self.wake_python(&mut state, WaitKind::Receive);
        self.wake_python(&mut state, WaitKind::Send);
        drop(state);
        self.body_space.notify_one();
    }

    /// Hand the response head (and body handle) to hyper. `Err` means the client is gone.
    pub fn respond(&self, response: http::Response<ResponseBody>) -> Result<(), ()> {
        let responder = self.state.lock().responder.take();
        match responder {
            Some(tx) => tx.send(response).map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Called by `receive()` after taking a chunk: lets the pump read more.
    pub fn body_consumed(&self) {
        self.body_space.notify_one();
    }

    /// The app has returned (or failed); stop any body reading still going on.
    pub fn finish_app(&self) {
        self.state.lock().app_done = true;
        self.body_space.notify_one();
    }

    /// Queue response bytes from `send()`. Returns `Ok(true)` when the caller must wait for the
    /// socket to drain before sending more, `Err` when the client is gone.
    pub fn push_out(&self, chunk: Bytes, more: bool) -> Result<bool, ()> {
        let mut state = self.state.lock();
        if state.disconnected {
            return Err(());
        }
        if !chunk.is_empty() {
            state.out_buffered += chunk.len();
            state.out.push_back(chunk);
        }
        if !more {
            state.out_done = true;
        }
        let must_wait = more && state.out_buffered >= HIGH_WATER;
        if must_wait {
            state.send_waiting = true;
        }
        let waker = state.out_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(must_wait)
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

    /// Whether `send()` may continue after having been told to wait (state already locked).
    pub fn out_room_locked(&self, state: &ExchangeState) -> bool {
        state.out_buffered < HIGH_WATER
    }

    fn poll_out(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        let mut state = self.state.lock();
        if let Some(chunk) = state.out.pop_front() {
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
            return Poll::Ready(None);
        }
        state.out_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn out_dropped(&self) {
        let finished = {
            let state = self.state.lock();
            state.out_done && state.out.is_empty()
        };
        if !finished {
            self.client_gone();
        }
    }
}

/// Reads the request body from hyper into the exchange, pausing at the high-water mark.
/// Started on the app's first `receive()`, so `Expect: 100-continue` is answered only then.
pub async fn pump_request_body(exchange: Arc<Exchange>, mut body: Incoming) {
    loop {
        loop {
            let space = exchange.body_space.notified();
            {
                let state = exchange.state.lock();
                if state.app_done || state.disconnected {
                    return;
                }
                if state.buffered < HIGH_WATER {
                    break;
                }
            }
            space.await;
        }
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let mut state = exchange.state.lock();
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        state.buffered += data.len();
                        state.chunks.push_back(data);
                    }
                }
                // Trailers are not part of the ASGI body; they are dropped here.
                state.body_done = body.is_end_stream();
            }
            Some(Err(_)) => {
                state.body_done = true;
                state.body_failed = true;
                state.disconnected = true;
            }
            None => state.body_done = true,
        }
        let done = state.body_done;
        exchange.wake_python(&mut state, WaitKind::Receive);
        if done {
            return;
        }
    }
}

/// The body of a response as hyper sees it.
pub enum ResponseBody {
    Full(Option<Bytes>),
    Stream(StreamBody),
}

/// A plain-text answer from the server itself (errors it produces); the connection closes after.
pub fn plain_response(
    status: http::StatusCode,
    text: &'static str,
) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(ResponseBody::Full(Some(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// A response body fed chunk by chunk by the app's `send()`.
pub struct StreamBody(pub Arc<Exchange>);

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.0.out_dropped();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(stream) => stream.0.poll_out(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{split_wake_id, wake_id, WaitKind};

    #[test]
    fn wake_ids_round_trip() {
        for id in [1_u64, 2, 12345, u64::MAX >> 1] {
            assert_eq!(
                split_wake_id(wake_id(id, WaitKind::Receive)),
                (id, WaitKind::Receive)
            );
            assert_eq!(
                split_wake_id(wake_id(id, WaitKind::Send)),
                (id, WaitKind::Send)
            );
        }
    }
}
