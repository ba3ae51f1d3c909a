//! `WebSocketProtocol`: the ASGI `receive()`/`send()` of one WebSocket, as seen by the app.
//!
//! Runs on the asyncio thread with the GIL held and talks to the tokio side only through the
//! connection's [`Channel`]. Like `HttpProtocol`, it returns ready awaitables when it can
//! answer at once, and an `asyncio.Future` (woken through the bridge) when it must wait.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use super::channel::{Channel, Inbound, Outbound};
use super::frame::is_valid_app_code;
use super::handshake::Handshake;
use crate::awaitable::Ready;
use crate::exchange::{plain_response, ResponseBody, WaitKind};
use crate::protocol::PyContext;
use crate::ClientDisconnected;

/// A message the app sent that breaks the ASGI websocket protocol; raised as `RuntimeError`.
#[derive(Debug, thiserror::Error)]
pub enum WsProtocolError {
    #[error("Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start' but got '{0}'.")]
    ExpectedHandshake(String),
    #[error("Expected ASGI message 'websocket.http.response.body' but got '{0}'.")]
    ExpectedResponseBody(String),
    #[error("Expected ASGI message 'websocket.send' or 'websocket.close', but got '{0}'.")]
    ExpectedSendOrClose(String),
    #[error("Invalid HTTP status code '{0}' in response.")]
    InvalidStatus(i64),
    #[error("Invalid HTTP header name {0:?}.")]
    InvalidHeaderName(String),
    #[error("Invalid HTTP header value for {0:?}.")]
    InvalidHeaderValue(String),
    #[error("Invalid subprotocol {0:?}.")]
    InvalidSubprotocol(String),
    #[error("Invalid WebSocket close code {0}.")]
    InvalidCloseCode(i64),
    #[error("A 'websocket.send' message needs 'bytes' or 'text'.")]
    EmptySend,
    #[error("ASGI message has no 'type'.")]
    MissingType,
}

impl From<WsProtocolError> for PyErr {
    fn from(err: WsProtocolError) -> PyErr {
        PyRuntimeError::new_err(err.to_string())
    }
}

enum State {
    /// `websocket.connect` delivered (or about to be); waiting for the app's answer.
    Connecting,
    /// The app is sending a denial response (`websocket.http.response`).
    Denying {
        head: http::response::Parts,
        body: Vec<u8>,
    },
    Open,
    /// Closed by the app or denied: `send()` raises.
    Closed,
}

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct WebSocketProtocol {
    ctx: Arc<PyContext>,
    channel: Arc<Channel>,
    handshake: Handshake,
    state: State,
    connect_delivered: bool,
    /// `client - "WebSocket /path"`, for uvicorn's log lines.
    log_prefix: String,
    recv_future: Option<Py<PyAny>>,
    send_future: Option<Py<PyAny>>,
}

impl WebSocketProtocol {
    pub fn new(
        ctx: Arc<PyContext>,
        channel: Arc<Channel>,
        handshake: Handshake,
        log_prefix: String,
    ) -> Self {
        Self {
            ctx,
            channel,
            handshake,
            state: State::Connecting,
            connect_delivered: false,
            log_prefix,
            recv_future: None,
            send_future: None,
        }
    }

    fn poll_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut state = self.channel.lock();
        if let Some(message) = self.channel.pop_inbound(&mut state) {
            drop(state);
            return receive_message(py, message).map(Some);
        }
        if let Some((code, reason)) = &state.ended {
            let (code, reason) = (*code, reason.clone());
            drop(state);
            return disconnect_message(py, code, &reason).map(Some);
        }
        state.recv_waiting = true;
        Ok(None)
    }

    /// Called by the core when the tokio side woke one of this connection's waiters.
    pub fn on_wake(&mut self, py: Python<'_>, kind: WaitKind) -> PyResult<()> {
        match kind {
            WaitKind::Receive => {
                let Some(future) = self.recv_future.take() else {
                    return Ok(());
                };
                if is_done(py, &future)? {
                    return Ok(()); // cancelled: the message stays queued
                }
                match self.poll_receive(py)? {
                    Some(message) => {
                        future.call_method1(py, intern!(py, "set_result"), (message,))?;
                    }
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
                let mut state = self.channel.lock();
                if state.gone && !matches!(self.state, State::Closed) {
                    drop(state);
                    let error = ClientDisconnected::new_err("client disconnected");
                    future.call_method1(py, intern!(py, "set_exception"), (error,))?;
                } else if state.gone || self.channel.out_has_room(&state) {
                    drop(state);
                    future.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
                } else {
                    state.send_waiting = true;
                    drop(state);
                    self.send_future = Some(future);
                }
            }
        }
        Ok(())
    }

    fn done(&self, py: Python<'_>) -> Py<PyAny> {
        self.ctx.done.clone_ref(py).into_any()
    }

    fn log_info(&self, py: Python<'_>, outcome: &str) -> PyResult<()> {
        let line = format!("{} {}", self.log_prefix, outcome);
        self.ctx.log.call1(py, (20, line))?;
        Ok(())
    }

    /// `server` and the `--header` defaults, unless the app set a header of the same name.
    fn add_default_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.ctx.default_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }

    fn accept(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let mut response = Response::new(ResponseBody::Full(None));
        let headers = response.headers_mut();
        if let Some(accept) = &self.handshake.accept {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept.clone());
        }
        if let Some(subprotocol) = optional_str(message, intern!(py, "subprotocol"))? {
            let value = HeaderValue::from_str(&subprotocol)
                .map_err(|_| WsProtocolError::InvalidSubprotocol(subprotocol.clone()))?;
            headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
        if let Some(deflate) = &self.handshake.deflate {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, deflate.response_header());
        }
        if let Some(extra) = message.get_item(intern!(py, "headers"))? {
            append_headers(headers, &extra)?;
        }
        self.add_default_headers(response.headers_mut());
        *response.status_mut() = if self.handshake.http2 {
            StatusCode::OK
        } else {
            StatusCode::SWITCHING_PROTOCOLS
        };
        self.log_info(py, "[accepted]")?;
        if self.channel.respond(response).is_err() {
            self.state = State::Closed;
            return Err(ClientDisconnected::new_err("client disconnected"));
        }
        self.state = State::Open;
        Ok(self.done(py))
    }

    /// `websocket.close` before accept: 403, as the ASGI spec says.
    fn deny(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.log_info(py, "403")?;
        let mut response = plain_response(StatusCode::FORBIDDEN, "");
        self.add_default_headers(response.headers_mut());
        self.state = State::Closed;
        let sent = self.channel.respond(response);
        self.channel.app_ended(1006, "");
        match sent {
            Ok(()) => Ok(self.done(py)),
            Err(_) => Err(ClientDisconnected::new_err("client disconnected")),
        }
    }

    fn start_denial(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let status = match message.get_item(intern!(py, "status"))? {
            Some(status) => status.extract::<i64>()?,
            None => 0,
        };
        let code = u16::try_from(status)
            .ok()
            .filter(|code| (100..600).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(WsProtocolError::InvalidStatus(status))?;
        let (mut head, ()) = Response::new(()).into_parts();
        head.status = code;
        if let Some(headers) = message.get_item(intern!(py, "headers"))? {
            append_headers(&mut head.headers, &headers)?;
        }
        self.log_info(py, &code.as_u16().to_string())?;
        self.state = State::Denying {
            head,
            body: Vec::new(),
        };
        Ok(())
    }

    fn denial_body(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let more = match message.get_item(intern!(py, "more_body"))? {
            Some(flag) => flag.is_truthy()?,
            None => false,
        };
        if let (Some(chunk), State::Denying { body, .. }) =
            (message.get_item(intern!(py, "body"))?, &mut self.state)
        {
            body.extend_from_slice(chunk.cast::<PyBytes>()?.as_bytes());
        }
        if more {
            return Ok(self.done(py));
        }
        let State::Denying { mut head, body } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Ok(self.done(py));
        };
        if !head.headers.contains_key(CONTENT_TYPE) {
            head.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        if !self.handshake.http2 {
            // The connection cannot go on as HTTP/1.1 after a refused upgrade. (HTTP/2 has no
            // connection-specific headers: only this stream ends.)
            head.headers
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        self.add_default_headers(&mut head.headers);
        let response = Response::from_parts(head, ResponseBody::Full(Some(Bytes::from(body))));
        let sent = self.channel.respond(response);
        self.channel.app_ended(1006, "");
        match sent {
            Ok(()) => Ok(self.done(py)),
            Err(_) => Err(ClientDisconnected::new_err("client disconnected")),
        }
    }

    fn send_data(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let outbound = match message.get_item(intern!(py, "bytes"))? {
            Some(data) if !data.is_none() => Outbound::Binary(data_bytes(data)?),
            _ => match message.get_item(intern!(py, "text"))? {
                Some(text) if !text.is_none() => {
                    let text = text.cast_into::<PyString>()?;
                    Outbound::Text(Bytes::copy_from_slice(text.to_str()?.as_bytes()))
                }
                _ => return Err(WsProtocolError::EmptySend.into()),
            },
        };
        match self.channel.push_out(outbound) {
            Err(_) => Err(ClientDisconnected::new_err("client disconnected")),
            Ok(false) => Ok(self.done(py)),
            Ok(true) => {
                let future = self.ctx.create_future.call0(py)?;
                self.send_future = Some(future.clone_ref(py));
                Ok(future)
            }
        }
    }

    fn close(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let code = match message.get_item(intern!(py, "code"))? {
            Some(code) if !code.is_none() => code.extract::<i64>()?,
            _ => 1000,
        };
        if !is_valid_app_code(code) {
            return Err(WsProtocolError::InvalidCloseCode(code).into());
        }
        let code = code as u16;
        let reason = optional_str(message, intern!(py, "reason"))?.unwrap_or_default();
        self.state = State::Closed;
        let queued = self.channel.push_out(Outbound::Close(code, reason.clone()));
        self.channel.app_ended(code, &reason);
        match queued {
            Ok(_) => Ok(self.done(py)),
            Err(_) => Err(ClientDisconnected::new_err("client disconnected")),
        }
    }

    /// End the connection for an app that is done: 500 before the handshake completed, a
    /// close frame with `code` after.
    fn finish(&mut self, code: u16) {
        self.ctx.active.lock().remove(&self.channel.id);
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Connecting | State::Denying { .. } => {
                let mut response =
                    plain_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                self.add_default_headers(response.headers_mut());
                let _ = self.channel.respond(response);
                self.channel.app_ended(1006, "");
            }
            State::Open => {
                let _ = self.channel.push_out(Outbound::Close(code, String::new()));
                self.channel.app_ended(code, "");
            }
            State::Closed => {}
        }
    }
}

#[pymethods]
impl WebSocketProtocol {
    /// ASGI `receive()`.
    fn receive(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.connect_delivered {
            self.connect_delivered = true;
            let message = PyDict::new(py);
            message.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            return Ok(Py::new(py, Ready::new(message.into_any().unbind()))?.into_any());
        }
        if let Some(message) = self.poll_receive(py)? {
            return Ok(Py::new(py, Ready::new(message))?.into_any());
        }
        let future = self.ctx.create_future.call0(py)?;
        self.recv_future = Some(future.clone_ref(py));
        Ok(future)
    }

    /// ASGI `send(message)`.
    fn send(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let kind = message
            .get_item(intern!(py, "type"))?
            .ok_or(WsProtocolError::MissingType)?;
        let kind = kind.cast_into::<PyString>()?;
        let kind = kind.to_str()?;
        match (&self.state, kind) {
            (State::Connecting, "websocket.accept") => self.accept(py, message),
            (State::Connecting, "websocket.close") => self.deny(py),
            (State::Connecting, "websocket.http.response.start") => {
                self.start_denial(py, message)?;
                Ok(self.done(py))
            }
            (State::Connecting, other) => {
                Err(WsProtocolError::ExpectedHandshake(other.to_owned()).into())
            }
            (State::Denying { .. }, "websocket.http.response.body") => {
                self.denial_body(py, message)
            }
            (State::Denying { .. }, other) => {
                Err(WsProtocolError::ExpectedResponseBody(other.to_owned()).into())
            }
            (State::Open, "websocket.send") => self.send_data(py, message),
            (State::Open, "websocket.close") => self.close(py, message),
            (State::Open, other) => {
                Err(WsProtocolError::ExpectedSendOrClose(other.to_owned()).into())
            }
            // ASGI 2.4: send() on a closed connection raises an OSError subclass.
            (State::Closed, _) => Err(ClientDisconnected::new_err("connection closed")),
        }
    }

    /// The app returned. Returns the error to log, if any.
    fn app_returned(&mut self) -> Option<&'static str> {
        let problem = match self.state {
            State::Connecting if !self.client_gone() => {
                Some("ASGI callable returned without completing handshake.")
            }
            State::Denying { .. } if !self.client_gone() => {
                Some("ASGI callable returned without completing response.")
            }
            _ => None,
        };
        self.finish(1000);
        problem
    }

    /// The app raised: 500 before the handshake completed, close 1011 after.
    fn app_failed(&mut self) {
        self.finish(1011);
    }

    /// Whether the client is known to be gone (so a failure need not be logged).
    #[getter]
    fn client_gone(&self) -> bool {
        let state = self.channel.lock();
        state.gone && state.ended.as_ref().is_some_and(|(code, _)| *code == 1006)
    }
}

fn append_headers(headers: &mut HeaderMap, pairs: &Bound<'_, PyAny>) -> PyResult<()> {
    for pair in pairs.try_iter()? {
        let pair = pair?;
        let (name, value) = match pair.cast::<PyTuple>() {
            Ok(tuple) if tuple.len() == 2 => (tuple.get_item(0)?, tuple.get_item(1)?),
            _ => (pair.get_item(0)?, pair.get_item(1)?),
        };
        let name = name.cast::<PyBytes>()?.as_bytes();
        let value = value.cast::<PyBytes>()?.as_bytes();
        let name = HeaderName::from_bytes(name).map_err(|_| {
            WsProtocolError::InvalidHeaderName(String::from_utf8_lossy(name).into_owned())
        })?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| WsProtocolError::InvalidHeaderValue(name.as_str().to_owned()))?;
        headers.append(name, value);
    }
    Ok(())
}

fn optional_str(
    message: &Bound<'_, PyDict>,
    key: &Bound<'_, PyString>,
) -> PyResult<Option<String>> {
    match message.get_item(key)? {
        Some(value) if !value.is_none() => Ok(Some(value.extract::<String>()?)),
        _ => Ok(None),
    }
}

/// Payloads at least this large are handed to the socket without a copy.
const ZERO_COPY_MIN: usize = 16 * 1024;

fn data_bytes(data: Bound<'_, PyAny>) -> PyResult<Bytes> {
    let bytes = data.cast_into::<PyBytes>()?;
    if bytes.as_bytes().len() < ZERO_COPY_MIN {
        return Ok(Bytes::copy_from_slice(bytes.as_bytes()));
    }
    Ok(Bytes::from_owner(PyBackedBytes::from(bytes)))
}

fn is_done(py: Python<'_>, future: &Py<PyAny>) -> PyResult<bool> {
    future.call_method0(py, intern!(py, "done"))?.is_truthy(py)
}

fn receive_message(py: Python<'_>, message: Inbound) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
    match message {
        Inbound::Text(data) => {
            // Checked on the I/O side; a failure here would be a bug, reported as an error.
            let text = std::str::from_utf8(&data)
                .map_err(|_| PyRuntimeError::new_err("invalid UTF-8 in a text message"))?;
            dict.set_item(intern!(py, "text"), PyString::new(py, text))?;
        }
        Inbound::Binary(data) => {
            dict.set_item(intern!(py, "bytes"), PyBytes::new(py, &data))?;
        }
    }
    Ok(dict.into_any().unbind())
}

fn disconnect_message(py: Python<'_>, code: u16, reason: &str) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
    dict.set_item(intern!(py, "code"), code)?;
    dict.set_item(intern!(py, "reason"), reason)?;
    Ok(dict.into_any().unbind())
}
