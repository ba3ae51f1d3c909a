//! What the ASGI scope needs to know about the connection a request arrived on.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use pyo3::types::PyDict;
use pyo3::{Py, PyAny};

use super::sendfile::SendfileQueue;
use crate::tls::TlsInfo;

pub struct ConnInfo {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// For Unix sockets, the path the scope reports as `server`.
    pub unix_path: Option<Arc<str>>,
    /// What the TLS handshake negotiated; `None` in cleartext.
    pub tls: Option<Arc<TlsInfo>>,
    /// The peer is a trusted proxy: its X-Forwarded-* headers are applied to the scope.
    pub trusted_proxy: bool,
    /// The scope's `client` and `server` tuples, built by the first request on this connection
    /// and shared by the rest (tuples are immutable). Dropping them off the GIL is deferred by
    /// PyO3 to the next time the GIL is held.
    pub py_addresses: OnceLock<(Py<PyAny>, Py<PyAny>)>,
    /// TLS connections: the scope's `tls` extension as the first request built it, copied for
    /// the rest (its values are the connection's; the certificate's PEM alone is a kilobyte or
    /// two of text to convert).
    pub py_tls: OnceLock<Py<PyDict>>,
    /// Cleartext connections: the transport's queue of file ranges to send with sendfile(2).
    /// Only HTTP/1.1 bodies use it (HTTP/2 frames the bytes itself).
    pub sendfile: Option<Arc<SendfileQueue>>,
}

impl ConnInfo {
    /// A TCP connection from `client` to `server`.
    pub fn tcp(client: SocketAddr, server: Option<SocketAddr>, trusted_proxy: bool) -> Self {
        Self {
            client: Some(client),
            server,
            unix_path: None,
            tls: None,
            trusted_proxy,
            py_addresses: OnceLock::new(),
            py_tls: OnceLock::new(),
            sendfile: None,
        }
    }

    /// A connection on the Unix socket at `path`.
    pub fn unix(path: Option<Arc<str>>, trusted_proxy: bool) -> Self {
        Self {
            client: None,
            server: None,
            unix_path: path,
            tls: None,
            trusted_proxy,
            py_addresses: OnceLock::new(),
            py_tls: OnceLock::new(),
            sendfile: None,
        }
    }
}
