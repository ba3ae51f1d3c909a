//! The ASGI `receive` and `send` of one HTTP request, as seen by the app.
//!
//! Everything here runs on the asyncio thread with the GIL held. It talks to the tokio side
//! only through the request's [`Exchange`] (a mutex-guarded buffer) and the runtime handle.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::awaitable::{Done, Ready};
use crate::errors::ProtocolError;
use crate::exchange::{
    plain_response, pump_request_body, Exchange, RequestBody, ResponseBody, StreamBody, WaitKind,
};
use crate::scope::ScopeCache;
use crate::ClientDisconnected;

/// What every protocol of one server shares on the Python side.
pub struct PyContext {
    pub create_future: Py<PyAny>,
    pub create_task: Py<PyAny>,
    /// `runner(scope, protocol)` returns the coroutine that runs the app for one request.
    pub runner: Py<PyAny>,
    /// `contextvars.Context`, when every request must start from an empty context.
    pub fresh_context: Option<Py<PyAny>>,
    /// `log(level, message)`.
    pub log: Py<PyAny>,
    /// `access_log(scope, status)`, when access logging is on.
    pub access_log: Option<Py<PyAny>>,
    pub scope_cache: ScopeCache,
    pub done: Py<Done>,
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    pub runtime: tokio::runtime::Handle,
    /// Requests whose app is running, by request id.
    pub active: Mutex<HashMap<u64, Active>>,
}

pub struct Active {
    pub protocol: AppProtocol,
    pub task: Py<PyAny>,
}

/// The protocol object of a running app: an HTTP request or a WebSocket.
pub enum AppProtocol {
    Http(Py<HttpProtocol>),
    WebSocket(Py<crate::websocket::protocol::WebSocketProtocol>),
}

enum ResponseState {
    /// Nothing sent yet.
    Idle,
    /// `http.response.start` received; the head waits for the first body message so that a
    /// single-message response goes out as one fixed-length write.
    Started {
        head: http::response::Parts,
        content_length: Option<u64>,
    },
    Streaming {
        remaining: Option<u64>,
    },
    Complete,
}

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct HttpProtocol {
    ctx: Arc<PyContext>,
    exchange: Arc<Exchange>,
    /// The request body, if it waits for the app's first `receive()` (100-continue).
    body: Option<Incoming>,
    has_body: bool,
    /// The app has been given the message with `more_body=False`.
    body_delivered: bool,
    response: ResponseState,
    is_head: bool,
    /// Kept only when access logging needs it.
    scope: Option<Py<PyDict>>,
    recv_future: Option<Py<PyAny>>,
    send_future: Option<Py<PyAny>>,
}

impl HttpProtocol {
    pub fn new(
        ctx: Arc<PyContext>,
        exchange: Arc<Exchange>,
        body: RequestBody,
        is_head: bool,
        scope: Option<Py<PyDict>>,
    ) -> Self {
        Self {
            ctx,
            exchange,
            has_body: !matches!(body, RequestBody::Empty),
            body: match body {
                RequestBody::OnFirstReceive(incoming) => Some(incoming),
                RequestBody::Empty | RequestBody::Pumping => None,
            },
            body_delivered: false,
            response: ResponseState::Idle,
            is_head,
            scope,
            recv_future: None,
            send_future: None,
        }
    }

    /// A message for `receive()` if one is ready; otherwise arms the wake-up and returns None.
    fn poll_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if matches!(self.response, ResponseState::Complete) {
            return disconnect_message(py).map(Some);
        }
        if !self.has_body && !self.body_delivered {
            self.body_delivered = true;
            return request_message(py, b"", false).map(Some);
        }
        if let Some(body) = self.body.take() {
            // First receive(): only now is the body read (and 100 Continue sent).
            self.ctx
                .runtime
                .spawn(pump_request_body(self.exchange.clone(), body));
        }
        let mut state = self.exchange.lock();
        if let Some(chunk) = state.chunks.pop_front() {
            state.buffered -= chunk.len();
            let more = !(state.chunks.is_empty() && state.body_done && !state.body_failed);
            drop(state);
            self.exchange.body_consumed();
            if !more {
                self.body_delivered = true;
            }
            return request_message(py, &chunk, more).map(Some);
        }
        if state.disconnected {
            drop(state);
            return disconnect_message(py).map(Some);
        }
        if state.body_done && !self.body_delivered {
            drop(state);
            self.body_delivered = true;
            return request_message(py, b"", false).map(Some);
        }
        // Either more body is on its way, or the body is done and the next event the app can
        // get is the disconnect: both arrive as a wake-up.
        state.recv_waiting = true;
        Ok(None)
    }

    /// Called by the core when the tokio side woke one of this request's waiters.
    pub fn on_wake(&mut self, py: Python<'_>, kind: WaitKind) -> PyResult<()> {
        match kind {
            WaitKind::Receive => {
                let Some(future) = self.recv_future.take() else {
                    return Ok(());
                };
                if is_done(py, &future)? {
                    return Ok(()); // cancelled: the data stays queued for the next receive()
                }
                match self.poll_receive(py)? {
                    Some(message) => set_result(py, &future, message)?,
                    None => self.recv_future = Some(future),
                }
            }
            WaitKind::Send => {
                let Some(future) = self.send_future.take() else {
                    return Ok(());
                };
                if is_done(py, &future)? {
                    return Ok(());
                }
                let mut state = self.exchange.lock();
                if state.disconnected {
                    drop(state);
                    let error = ClientDisconnected::new_err("client disconnected");
                    future.call_method1(py, intern!(py, "set_exception"), (error,))?;
                } else if self.exchange.out_room_locked(&state) {
                    drop(state);
                    set_result(py, &future, py.None())?;
                } else {
                    state.send_waiting = true;
                    drop(state);
                    self.send_future = Some(future);
                }
            }
        }
        Ok(())
    }

    fn new_future(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.ctx.create_future.call0(py)
    }

    fn done(&self, py: Python<'_>) -> Py<PyAny> {
        self.ctx.done.clone_ref(py).into_any()
    }

    fn start(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let status = match message.get_item(intern!(py, "status"))? {
            Some(status) => status.extract::<i64>()?,
            None => return Err(ProtocolError::InvalidStatus(0).into()),
        };
        let status = u16::try_from(status)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(ProtocolError::InvalidStatus(status))?;
        let (mut head, ()) = Response::new(()).into_parts();
        head.status = status;
        let mut content_length = None;
        if let Some(headers) = message.get_item(intern!(py, "headers"))? {
            for pair in headers.try_iter()? {
                let pair = pair?;
                let (name, value) = match pair.cast::<PyTuple>() {
                    Ok(tuple) if tuple.len() == 2 => (tuple.get_item(0)?, tuple.get_item(1)?),
                    _ => (pair.get_item(0)?, pair.get_item(1)?),
                };
                let name = bytes_of(&name)?;
                let value = bytes_of(&value)?;
                let name = HeaderName::from_bytes(name).map_err(|_| {
                    ProtocolError::InvalidHeaderName(String::from_utf8_lossy(name).into_owned())
                })?;
                let value = HeaderValue::from_bytes(value)
                    .map_err(|_| ProtocolError::InvalidHeaderValue(name.as_str().to_owned()))?;
                if name == TRANSFER_ENCODING {
                    continue; // the server decides the framing (ASGI spec)
                }
                if name == CONTENT_LENGTH {
                    let length = std::str::from_utf8(value.as_bytes())
                        .ok()
                        .and_then(|text| text.trim().parse::<u64>().ok())
                        .ok_or(ProtocolError::InvalidContentLength)?;
                    content_length = Some(length);
                }
                head.headers.append(name, value);
            }
        }
        self.add_default_headers(&mut head.headers);
        if let (Some(access_log), Some(scope)) = (&self.ctx.access_log, &self.scope) {
            access_log.call1(py, (scope.clone_ref(py), status.as_u16()))?;
        }
        if self.is_head {
            content_length = None; // hyper sends no body for HEAD, whatever the app writes
        }
        self.response = ResponseState::Started {
            head,
            content_length,
        };
        Ok(())
    }

    fn send_body(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let body = match message.get_item(intern!(py, "body"))? {
            Some(body) => body_bytes(body)?,
            None => Bytes::new(),
        };
        let more = match message.get_item(intern!(py, "more_body"))? {
            Some(flag) => flag.is_truthy()?,
            None => false,
        };
        // Checked before any state change, so that a violation leaves the response to be
        // aborted by the failure path.
        let declared = match &self.response {
            ResponseState::Started { content_length, .. } => *content_length,
            ResponseState::Streaming { remaining } => *remaining,
            _ => None,
        };
        let remaining = check_length(declared, body.len(), more)?;
        match std::mem::replace(&mut self.response, ResponseState::Complete) {
            ResponseState::Started { head, .. } => {
                if !more {
                    let response = Response::from_parts(head, ResponseBody::Full(Some(body)));
                    self.response_complete(py)?;
                    return match self.exchange.respond(response) {
                        Ok(()) => Ok(self.done(py)),
                        Err(()) => Err(ClientDisconnected::new_err("client disconnected")),
                    };
                }
                let stream = ResponseBody::Stream(StreamBody(self.exchange.clone()));
                if self
                    .exchange
                    .respond(Response::from_parts(head, stream))
                    .is_err()
                {
                    return Err(ClientDisconnected::new_err("client disconnected"));
                }
                self.response = ResponseState::Streaming { remaining };
                self.push(py, body, remaining != Some(0))
            }
            ResponseState::Streaming { .. } => {
                if more {
                    self.response = ResponseState::Streaming { remaining };
                } else {
                    self.response_complete(py)?;
                }
                // Once every declared byte is queued the response is complete on the wire (hyper
                // ends it there), even if the app's closing `more_body=False` is still to come.
                self.push(py, body, more && remaining != Some(0))
            }
            other => {
                self.response = other;
                unreachable_state()
            }
        }
    }

    fn push(&mut self, py: Python<'_>, body: Bytes, more: bool) -> PyResult<Py<PyAny>> {
        match self.exchange.push_out(body, more) {
            Err(()) => Err(ClientDisconnected::new_err("client disconnected")),
            Ok(false) => Ok(self.done(py)),
            Ok(true) => {
                let future = self.new_future(py)?;
                self.send_future = Some(future.clone_ref(py));
                Ok(future)
            }
        }
    }

    /// The response is complete: a pending `receive()` now gets `http.disconnect`.
    fn response_complete(&mut self, py: Python<'_>) -> PyResult<()> {
        self.response = ResponseState::Complete;
        if let Some(future) = self.recv_future.take() {
            if !is_done(py, &future)? {
                set_result(py, &future, disconnect_message(py)?)?;
            }
        }
        Ok(())
    }

    /// Reply with a plain-text error and close the connection.
    fn respond_error(&mut self, status: StatusCode) {
        let text = status.canonical_reason().unwrap_or("Error");
        let mut response = plain_response(status, text);
        self.add_default_headers(response.headers_mut());
        self.response = ResponseState::Complete;
        let _ = self.exchange.respond(response);
    }

    /// `server` and the `--header` defaults, unless the app set a header of the same name.
    fn add_default_headers(&self, headers: &mut http::HeaderMap) {
        for (name, value) in &self.ctx.default_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }

    /// End a response that cannot be completed: the client must see a broken body (the
    /// connection closes), never one that looks complete.
    fn abort_response(&mut self) {
        match std::mem::replace(&mut self.response, ResponseState::Complete) {
            ResponseState::Started { head, .. } => {
                let stream = ResponseBody::Stream(StreamBody(self.exchange.clone()));
                self.exchange.abort_out();
                let _ = self.exchange.respond(Response::from_parts(head, stream));
            }
            ResponseState::Streaming { .. } => self.exchange.abort_out(),
            ResponseState::Idle | ResponseState::Complete => {}
        }
    }

    fn release(&mut self) {
        self.exchange.finish_app();
        self.ctx.active.lock().remove(&self.exchange.id);
    }
}

#[pymethods]
impl HttpProtocol {
    /// ASGI `receive()`.
    fn receive(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(message) = self.poll_receive(py)? {
            return Ok(Py::new(py, Ready::new(message))?.into_any());
        }
        let future = self.new_future(py)?;
        self.recv_future = Some(future.clone_ref(py));
        Ok(future)
    }

    /// ASGI `send(message)`.
    fn send(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let kind = match message.get_item(intern!(py, "type"))? {
            Some(kind) => kind,
            None => return Err(ProtocolError::ExpectedStart("None".to_owned()).into()),
        };
        let kind = kind.cast_into::<PyString>()?;
        let kind = kind.to_str()?;
        match (&self.response, kind) {
            (ResponseState::Idle, "http.response.start") => {
                self.start(py, message)?;
                Ok(self.done(py))
            }
            (ResponseState::Idle, other) => {
                Err(ProtocolError::ExpectedStart(other.to_owned()).into())
            }
            (
                ResponseState::Started { .. } | ResponseState::Streaming { .. },
                "http.response.body",
            ) => self.send_body(py, message),
            (ResponseState::Started { .. } | ResponseState::Streaming { .. }, other) => {
                Err(ProtocolError::ExpectedBody(other.to_owned()).into())
            }
            (ResponseState::Complete, other) => {
                if self.exchange.lock().disconnected {
                    return Err(ClientDisconnected::new_err("client disconnected"));
                }
                Err(ProtocolError::AfterComplete(other.to_owned()).into())
            }
        }
    }

    /// The app returned. Answers what it left undone; returns the error to log, if any.
    fn app_returned(&mut self) -> Option<&'static str> {
        self.release();
        match self.response {
            ResponseState::Complete => None,
            ResponseState::Idle => {
                let state = self.exchange.lock();
                let (body_failed, gone) = (state.body_failed, state.disconnected);
                drop(state);
                if body_failed {
                    // The request body was malformed or cut off: the app saw http.disconnect.
                    self.respond_error(StatusCode::BAD_REQUEST);
                    None
                } else {
                    self.respond_error(StatusCode::INTERNAL_SERVER_ERROR);
                    (!gone).then_some("ASGI callable returned without starting response.")
                }
            }
            ResponseState::Started { .. } | ResponseState::Streaming { .. } => {
                let gone = self.exchange.lock().disconnected;
                self.abort_response();
                (!gone).then_some("ASGI callable returned without completing response.")
            }
        }
    }

    /// The app raised: 500 if nothing was sent yet (400 if the request body was malformed),
    /// otherwise a broken-off response.
    fn app_failed(&mut self) {
        self.release();
        match self.response {
            ResponseState::Idle if self.exchange.lock().body_failed => {
                self.respond_error(StatusCode::BAD_REQUEST)
            }
            ResponseState::Idle => self.respond_error(StatusCode::INTERNAL_SERVER_ERROR),
            _ => self.abort_response(),
        }
    }

    /// Whether the client is known to be gone (so a failure need not be logged).
    #[getter]
    fn client_gone(&self) -> bool {
        self.exchange.lock().disconnected
    }
}

fn unreachable_state() -> PyResult<Py<PyAny>> {
    Err(ProtocolError::AfterComplete("http.response.body".to_owned()).into())
}

/// Enforce a declared Content-Length; returns the bytes still owed.
fn check_length(declared: Option<u64>, len: usize, more: bool) -> PyResult<Option<u64>> {
    let Some(declared) = declared else {
        return Ok(None);
    };
    let len = len as u64;
    if len > declared {
        return Err(ProtocolError::TooLong.into());
    }
    let left = declared - len;
    if !more && left > 0 {
        return Err(ProtocolError::TooShort.into());
    }
    Ok(Some(left))
}

/// Bodies at least this large are handed to hyper without a copy: the `Bytes` keeps the Python
/// object alive. Smaller ones are copied, which costs less than releasing the object later.
const ZERO_COPY_MIN: usize = 16 * 1024;

fn body_bytes(body: Bound<'_, PyAny>) -> PyResult<Bytes> {
    let bytes = body.cast_into::<PyBytes>()?;
    if bytes.as_bytes().len() < ZERO_COPY_MIN {
        return Ok(Bytes::copy_from_slice(bytes.as_bytes()));
    }
    // Dropped on the I/O thread once written; PyO3 defers the decref to the next GIL holder.
    Ok(Bytes::from_owner(PyBackedBytes::from(bytes)))
}

fn bytes_of<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    Ok(value.cast::<PyBytes>()?.as_bytes())
}

fn is_done(py: Python<'_>, future: &Py<PyAny>) -> PyResult<bool> {
    future.call_method0(py, intern!(py, "done"))?.is_truthy(py)
}

fn set_result(py: Python<'_>, future: &Py<PyAny>, value: Py<PyAny>) -> PyResult<()> {
    future.call_method1(py, intern!(py, "set_result"), (value,))?;
    Ok(())
}

fn request_message(py: Python<'_>, body: &[u8], more: bool) -> PyResult<Py<PyAny>> {
    let message = PyDict::new(py);
    message.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    message.set_item(intern!(py, "body"), PyBytes::new(py, body))?;
    message.set_item(intern!(py, "more_body"), more)?;
    Ok(message.into_any().unbind())
}

fn disconnect_message(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let message = PyDict::new(py);
    message.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
    Ok(message.into_any().unbind())
}

#[cfg(test)]
mod tests {
    use super::check_length;

    #[test]
    fn content_length_is_enforced() {
        assert_eq!(check_length(None, 10, false).ok(), Some(None));
        assert_eq!(check_length(Some(10), 4, true).ok(), Some(Some(6)));
        assert_eq!(check_length(Some(10), 10, false).ok(), Some(Some(0)));
        assert!(
            check_length(Some(10), 11, true).is_err(),
            "longer than declared"
        );
        assert!(check_length(Some(10), 9, false).is_err(), "ended short");
    }
}
