//! The Rust core of Ferrocorn: sockets, HTTP parsing and the bridge to asyncio.
//!
//! Module map: `listener` (sockets) → `server` (accept loop, shutdown phases) → `conn` (TLS
//! handshake via `tls`, protocol choice, driving a connection) → `http1` / `http2` (hyper glue;
//! one request service) → `exchange` (one request's buffers) → `bridge` (hand-off to the loop)
//! → `core` (the Python handle) → `protocol` (ASGI receive/send) and `scope` (the scope dict).

use pyo3::create_exception;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

mod awaitable;
mod bridge;
mod conn;
mod core;
mod errors;
mod exchange;
mod http1;
mod http2;
mod listener;
mod protocol;
mod proxy;
mod rewind;
mod scope;
mod server;
mod stream_tasks;
mod tls;
mod websocket;

/// mimalloc instead of the system allocator: requests are allocated on one thread and freed on
/// the other, which glibc's per-thread arenas handle poorly (measured: see docs/architecture.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(
    ferrocorn._ferrocorn,
    ClientDisconnected,
    PyOSError,
    "Raised by send() once the client has gone (ASGI spec 2.4)."
);

create_exception!(
    ferrocorn._ferrocorn,
    TlsConfigError,
    pyo3::exceptions::PyValueError,
    "The --ssl-* options cannot be used: a file, key, password or cipher is wrong."
);

#[pymodule]
fn _ferrocorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<core::Core>()?;
    m.add_class::<core::TlsConfig>()?;
    m.add("TlsConfigError", m.py().get_type::<TlsConfigError>())?;
    m.add_class::<protocol::HttpProtocol>()?;
    m.add_class::<websocket::protocol::WebSocketProtocol>()?;
    m.add_class::<awaitable::Ready>()?;
    m.add_class::<awaitable::Done>()?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<ClientDisconnected>(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("HTTP_SPEC_VERSION", scope::HTTP_SPEC_VERSION)?;
    Ok(())
}
