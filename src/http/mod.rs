//! HTTP on top of hyper: the request service both protocols share (Host validation, the
//! hand-off to Python, the WebSocket hook), the HTTP/1.1 and HTTP/2 glue, and the executor that
//! polls an HTTP/2 connection's streams inside its own task.

mod framing;
mod h1;
mod h2;
mod host;
mod limits;
mod service;
mod stream_executor;
mod upgrade;

pub use h1::{builder as http1_builder, serve as serve_http1};
pub use h2::serve as serve_http2;
#[cfg(feature = "fuzzing")]
pub(crate) use {framing::check_framing, host::validate_host};
