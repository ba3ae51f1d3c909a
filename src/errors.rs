//! Every error type of the core, and the Python exceptions they become. Nothing on the request
//! path panics: failures are values.

use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

create_exception!(
    ferrocorn._ferrocorn,
    ClientDisconnected,
    PyOSError,
    "Raised by send() once the client has gone (ASGI spec 2.4)."
);

create_exception!(
    ferrocorn._ferrocorn,
    TlsConfigError,
    PyValueError,
    "The --ssl-* options cannot be used: a file, key, password or cipher is wrong."
);

/// Failures of the server itself (binding, the runtime), reported to Python as `OSError` or
/// `RuntimeError` so the Python side can log one line and exit with code 3.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("[Errno 98] error while attempting to bind on address ({addr}): {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    #[error("the server is already running")]
    AlreadyStarted,
    #[error("the server is not listening on any socket")]
    NotListening,
}

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        match err {
            CoreError::Io(e) => PyOSError::new_err(e.to_string()),
            CoreError::Bind { .. } => PyOSError::new_err(err.to_string()),
            other => PyRuntimeError::new_err(other.to_string()),
        }
    }
}

/// A setting Python passed that the core cannot use; raised as `ValueError` at startup.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingError(pub String);

impl From<SettingError> for PyErr {
    fn from(err: SettingError) -> PyErr {
        PyValueError::new_err(err.0)
    }
}

/// The peer of an exchange or a WebSocket is gone: nothing more can be sent. Raised inside the
/// app as [`ClientDisconnected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Disconnected {
    #[error("client disconnected")]
    Client,
    /// `send()` on a WebSocket the app has closed.
    #[error("connection closed")]
    Closed,
}

impl From<Disconnected> for PyErr {
    fn from(err: Disconnected) -> PyErr {
        ClientDisconnected::new_err(err.to_string())
    }
}

/// The app failed after the response started: the body must not end as if it were complete.
#[derive(Debug, thiserror::Error)]
#[error("the application aborted the response body")]
pub struct BodyAborted;

/// A message the app sent that breaks the ASGI `http` or `websocket` protocol; raised inside the
/// app as `RuntimeError`, with uvicorn's wording.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("ASGI message has no 'type'.")]
    MissingType,
    #[error("Invalid HTTP header name {0:?}.")]
    InvalidHeaderName(String),
    #[error("Invalid HTTP header value for {0:?}.")]
    InvalidHeaderValue(String),
    #[error("Too many HTTP headers (at most {0}).")]
    TooManyHeaders(usize),

    // The `http` protocol.
    #[error("Expected ASGI message 'http.response.start', but got '{0}'.")]
    ExpectedStart(String),
    #[error("Expected ASGI message 'http.response.body', but got '{0}'.")]
    ExpectedBody(String),
    #[error("Unexpected ASGI message '{0}' sent, after response already completed.")]
    AfterComplete(String),
    #[error("Invalid HTTP status code {0}.")]
    InvalidStatus(i64),
    #[error("Response content longer than Content-Length")]
    TooLong,
    #[error("Response content shorter than Content-Length")]
    TooShort,
    #[error("Invalid Content-Length header value.")]
    InvalidContentLength,
    #[error("Expected ASGI message 'http.response.trailers', but got '{0}'.")]
    ExpectedTrailers(String),
    #[error("'http.response.pathsend' needs an absolute 'path', got {0:?}.")]
    PathNotAbsolute(String),
    #[error("'http.response.zerocopysend' needs a 'file' with a fileno().")]
    ZeroCopyFile,

    // The `websocket` protocol.
    #[error("Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start' but got '{0}'.")]
    ExpectedHandshake(String),
    #[error("Expected ASGI message 'websocket.http.response.body' but got '{0}'.")]
    ExpectedResponseBody(String),
    #[error("Expected ASGI message 'websocket.send' or 'websocket.close', but got '{0}'.")]
    ExpectedSendOrClose(String),
    #[error("Invalid HTTP status code '{0}' in response.")]
    InvalidDenialStatus(i64),
    #[error("Invalid subprotocol {0:?}.")]
    InvalidSubprotocol(String),
    #[error("Invalid WebSocket close code {0}.")]
    InvalidCloseCode(i64),
    #[error("A 'websocket.send' message needs 'bytes' or 'text'.")]
    EmptySend,
}

impl From<ProtocolError> for PyErr {
    fn from(err: ProtocolError) -> PyErr {
        PyRuntimeError::new_err(err.to_string())
    }
}

/// A PROXY protocol header (`--proxy-protocol`) that cannot be used: the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("PROXY protocol v{0} header, which --proxy-protocol does not accept")]
    WrongVersion(&'static str),
    #[error("malformed PROXY protocol header ({0})")]
    Malformed(&'static str),
    #[error("PROXY protocol v1 header longer than 107 bytes")]
    TooLong,
}

/// Why the PROXY protocol step of a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyReadError {
    #[error(transparent)]
    Header(#[from] ProxyHeaderError),
    #[error("connection closed before the PROXY protocol header ended")]
    Closed,
    /// Closed before sending a byte (a TCP health check, a port probe): not worth a log line.
    #[error("connection closed before sending anything")]
    Silent,
    #[error("PROXY protocol header from a peer not in --forwarded-allow-ips")]
    Untrusted,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
