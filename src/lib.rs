//! The Rust core of Ferrocorn: sockets, HTTP parsing and the bridge to asyncio. This file is
//! the Python module only; `docs/architecture.md` has the layer map, lowest first:
//!
//! `errors`, `phase`, `flow`, `percent`, `metrics` → `bridge` → `tls`, `net` → `access` →
//! `settings` → `exchange`, `websocket` → `jobs` → `shared` → `conn` → `http` → `server` →
//! `asgi` → `core`.

mod access;
mod asgi;
mod bridge;
mod conn;
mod core;
mod errors;
mod exchange;
mod flow;
mod http;
mod jobs;
mod metrics;
mod net;
mod percent;
mod phase;
mod server;
mod settings;
mod shared;
mod stamp;
mod tls;
mod websocket;

/// The entry points of the fuzz targets in `fuzz/` (feature `fuzzing` only).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

use pyo3::prelude::*;

/// mimalloc instead of the system allocator: requests are allocated on one thread and freed on
/// the other, which glibc's per-thread arenas handle poorly (measured: see docs/performance.md).
#[cfg(not(feature = "fuzzing"))] // the sanitizers watch the system allocator
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _ferrocorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<core::Core>()?;
    m.add_class::<settings::TlsConfig>()?;
    m.add_class::<asgi::http::HttpProtocol>()?;
    m.add_class::<asgi::websocket::WebSocketProtocol>()?;
    m.add_class::<asgi::awaitable::Ready>()?;
    m.add_class::<asgi::awaitable::Done>()?;
    m.add("TlsConfigError", py.get_type::<errors::TlsConfigError>())?;
    m.add(
        "ClientDisconnected",
        py.get_type::<errors::ClientDisconnected>(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("HTTP_SPEC_VERSION", asgi::scope::HTTP_SPEC_VERSION)?;
    Ok(())
}
