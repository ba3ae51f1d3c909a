//! The request body: where it is when the request reaches Python, and the pump that reads it
//! from hyper into the exchange, pausing at the high-water mark.

use std::pin::Pin;
use std::sync::Arc;

use http_body::Body;
use hyper::body::Incoming;

use super::Exchange;
use crate::bridge::WaitKind;
use crate::flow::HIGH_WATER;

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

/// Reads the request body from hyper into the exchange, pausing at the high-water mark.
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
