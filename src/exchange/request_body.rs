//! The request body: where it is when the request reaches Python, and the pump that reads it
//! from hyper into the exchange, pausing at the high-water mark and enforcing the body's size
//! limit and idle timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_body::Body;
use hyper::body::Incoming;

use super::Exchange;
use crate::bridge::WaitKind;
use crate::flow::HIGH_WATER;
use crate::metrics::Metrics;

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

/// The limits a request body is read under. Past either, the body fails: the app's `receive()`
/// gets `http.disconnect` and, if the app had not started a response, the client gets the
/// status ([`Exchange::body_failure_status`]) and the connection closes.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodyLimits {
    /// `--limit-request-body-size`: a body growing past it fails with 413.
    pub max_size: Option<u64>,
    /// `--timeout-request-body`: a body with no bytes for this long (while the server waits
    /// for them) fails with 408.
    pub idle_timeout: Option<Duration>,
    /// `--metrics-bind`: where the body's bytes are counted.
    pub metrics: Metrics,
}

impl Exchange {
    /// Sets the limits the body is read under; before the pump starts.
    pub fn limit_body(&self, limits: BodyLimits) {
        self.state.lock().body_limits = limits;
    }

    /// The server's answer to a failed body when the app has not responded: 400 for a malformed
    /// or cut-off body, 413 past the size limit, 408 when it stalled.
    pub fn body_failure_status(&self) -> StatusCode {
        self.state
            .lock()
            .body_failure
            .unwrap_or(StatusCode::BAD_REQUEST)
    }

    /// The body fails for a reason of the server's (`status`): the app sees the disconnect.
    fn fail_body(&self, status: StatusCode) {
        let mut state = self.state.lock();
        state.body_done = true;
        state.body_failed = true;
        state.disconnected = true;
        state.body_failure = Some(status);
        self.wake_python(&mut state, WaitKind::Receive);
        self.wake_python(&mut state, WaitKind::Send);
    }
}

/// Reads the request body from hyper into the exchange, pausing at the high-water mark.
pub async fn pump_request_body(exchange: Arc<Exchange>, mut body: Incoming) {
    let limits = exchange.state.lock().body_limits;
    let mut received: u64 = 0;
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
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match limits.idle_timeout {
            Some(limit) => match tokio::time::timeout(limit, next).await {
                Ok(frame) => frame,
                Err(_elapsed) => {
                    exchange.fail_body(StatusCode::REQUEST_TIMEOUT);
                    return;
                }
            },
            None => next.await,
        };
        let mut state = exchange.state.lock();
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received =
                        received.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
                    if limits.max_size.is_some_and(|max| received > max) {
                        drop(state);
                        exchange.fail_body(StatusCode::PAYLOAD_TOO_LARGE);
                        return;
                    }
                    if !data.is_empty() {
                        limits.metrics.request_bytes(data.len());
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
