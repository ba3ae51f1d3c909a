//! Error types of the core. Nothing on the request path panics: failures are values.

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::PyErr;

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

/// The app failed after the response started: the body must not end as if it were complete.
#[derive(Debug, thiserror::Error)]
#[error("the application aborted the response body")]
pub struct BodyAborted;

/// A message the app sent that breaks the ASGI protocol; raised inside the app as `RuntimeError`.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("Expected ASGI message 'http.response.start', but got '{0}'.")]
    ExpectedStart(String),
    #[error("Expected ASGI message 'http.response.body', but got '{0}'.")]
    ExpectedBody(String),
    #[error("Unexpected ASGI message '{0}' sent, after response already completed.")]
    AfterComplete(String),
    #[error("Invalid HTTP status code {0}.")]
    InvalidStatus(i64),
    #[error("Invalid HTTP header name {0:?}.")]
    InvalidHeaderName(String),
    #[error("Invalid HTTP header value for {0:?}.")]
    InvalidHeaderValue(String),
    #[error("Response content longer than Content-Length")]
    TooLong,
    #[error("Response content shorter than Content-Length")]
    TooShort,
    #[error("Invalid Content-Length header value.")]
    InvalidContentLength,
}

impl From<ProtocolError> for PyErr {
    fn from(err: ProtocolError) -> PyErr {
        PyRuntimeError::new_err(err.to_string())
    }
}
