//! The Rust core of Ferrocorn: sockets, HTTP parsing and the bridge to asyncio.
//!
//! Module map: `listener` (sockets) → `server` (accept loop, shutdown phases) → `http1`
//! (hyper glue) → `exchange` (one request's buffers) → `bridge` (hand-off to the loop) →
//! `core` (the Python handle) → `protocol` (ASGI receive/send) and `scope` (the scope dict).

use pyo3::create_exception;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

mod awaitable;
mod bridge;
mod core;
mod errors;
mod exchange;
mod http1;
mod listener;
mod protocol;
mod proxy;
mod scope;
mod server;
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

#[pymodule]
fn _ferrocorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<core::Core>()?;
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
