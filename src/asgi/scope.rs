//! Building the ASGI `http` and `websocket` scopes, to equal what uvicorn builds for the same
//! request.
//!
//! Keys are interned once, constant sub-objects are cached and copied, and the only
//! per-request allocations are the objects the app can mutate or that carry request data.

use std::net::SocketAddr;

use http::{HeaderName, HeaderValue, Method, Version};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::jobs::{RequestHead, WebSocketHead};
use crate::net::{ConnInfo, TrustedProxies, X_FORWARDED_FOR, X_FORWARDED_PROTO};
use crate::percent::percent_decode;
use crate::tls::TlsInfo;

/// The ASGI HTTP spec version this server implements (2.4: `send()` raises after disconnect).
pub const HTTP_SPEC_VERSION: &str = "2.4";

/// Python objects reused for every scope of one server.
pub struct ScopeCache {
    /// Every scope key, with the values that never change, one template per HTTP version and
    /// transport (`http_version` and `scheme` filled in: [`ScopeCache::template`]). Copying one
    /// costs about a memcpy and the per-request values then overwrite existing keys, so the dict
    /// never resizes (built key by key, a 14-key dict is resized twice).
    http10: Templates,
    http11: Templates,
    http2: Templates,
    asgi: Py<PyDict>,
    root_path_text: String,
    state: Option<Py<PyDict>>,
    proxies: Option<TrustedProxies>,
}

/// A version's templates: over TCP and over TLS.
struct Templates {
    plain: Py<PyDict>,
    tls: Py<PyDict>,
}

impl ScopeCache {
    pub fn root_path(&self) -> &str {
        &self.root_path_text
    }

    /// The template of a request's version (as [`http_version`] names it) and transport.
    fn template(&self, version: Version, tls: bool) -> &Py<PyDict> {
        let templates = match version {
            Version::HTTP_10 => &self.http10,
            Version::HTTP_2 => &self.http2,
            _ => &self.http11,
        };
        if tls {
            &templates.tls
        } else {
            &templates.plain
        }
    }

    pub fn new(
        py: Python<'_>,
        root_path: &str,
        state: Option<Py<PyDict>>,
        asgi_version: &str,
        proxies: Option<TrustedProxies>,
    ) -> PyResult<Self> {
        let asgi = PyDict::new(py);
        asgi.set_item(intern!(py, "version"), asgi_version)?;
        asgi.set_item(intern!(py, "spec_version"), HTTP_SPEC_VERSION)?;
        let template = PyDict::new(py);
        for key in [
            intern!(py, "type"),
            intern!(py, "asgi"),
            intern!(py, "http_version"),
            intern!(py, "server"),
            intern!(py, "client"),
            intern!(py, "scheme"),
            intern!(py, "method"),
            intern!(py, "root_path"),
            intern!(py, "path"),
            intern!(py, "raw_path"),
            intern!(py, "query_string"),
            intern!(py, "headers"),
            intern!(py, "state"),
            intern!(py, "extensions"),
        ] {
            template.set_item(key, py.None())?;
        }
        template.set_item(intern!(py, "type"), intern!(py, "http"))?;
        template.set_item(intern!(py, "root_path"), PyString::new(py, root_path))?;
        let filled = |version: Version, tls: bool| -> PyResult<Py<PyDict>> {
            let filled = template.copy()?;
            filled.set_item(intern!(py, "http_version"), http_version(py, version))?;
            filled.set_item(intern!(py, "scheme"), scheme(py, tls))?;
            Ok(filled.unbind())
        };
        let templates = |version: Version| -> PyResult<Templates> {
            Ok(Templates {
                plain: filled(version, false)?,
                tls: filled(version, true)?,
            })
        };
        Ok(Self {
            http10: templates(Version::HTTP_10)?,
            http11: templates(Version::HTTP_11)?,
            http2: templates(Version::HTTP_2)?,
            asgi: asgi.unbind(),
            root_path_text: root_path.to_owned(),
            state,
            proxies,
        })
    }
}

pub fn build_http_scope<'py>(
    py: Python<'py>,
    cache: &ScopeCache,
    head: &RequestHead,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = build_request_scope(py, cache, &head.parts, &head.conn)?;
    if let Some(extensions) = scope.get_item(intern!(py, "extensions"))? {
        let extensions = extensions.cast::<PyDict>()?;
        add_http_extensions(py, extensions, &head.parts)?;
        if head.exchange.early_hints_offered() {
            extensions.set_item(intern!(py, "http.response.early_hint"), PyDict::new(py))?;
        }
    }
    Ok(scope)
}

/// The `send` extensions an `http` scope offers (`docs/extensions` in asgiref):
/// `http.response.pathsend` and `http.response.zerocopysend` always, and `http.response.trailers` where the trailers reach the client: always on HTTP/2, and on
/// HTTP/1.1 when the request said `TE: trailers` (hyper drops them otherwise, as the spec asks).
/// (`http.response.early_hint` where the connection has an interim writer: `build_http_scope`.)
fn add_http_extensions(
    py: Python<'_>,
    extensions: &Bound<'_, PyDict>,
    parts: &http::request::Parts,
) -> PyResult<()> {
    if trailers_reach_client(parts) {
        extensions.set_item(intern!(py, "http.response.trailers"), PyDict::new(py))?;
    }
    extensions.set_item(intern!(py, "http.response.pathsend"), PyDict::new(py))?;
    extensions.set_item(intern!(py, "http.response.zerocopysend"), PyDict::new(py))?;
    Ok(())
}

/// HTTP/2 always carries trailers; HTTP/1.1 only in a chunked response to a request whose `TE`
/// lists `trailers` (RFC 9110 §6.5.1, §10.1.4) and whose response names them in `Trailer`;
/// HTTP/1.0 has no chunked framing.
fn trailers_reach_client(parts: &http::request::Parts) -> bool {
    match parts.version {
        Version::HTTP_2 => true,
        // The same test as hyper's, which decides whether it writes them.
        Version::HTTP_11 => parts.headers.get_all(http::header::TE).iter().any(|value| {
            value
                .as_bytes()
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        }),
        _ => false,
    }
}

/// The `websocket` scope: the request scope's keys without `method`, with `scheme` ws/wss, the
/// offered `subprotocols` and the `websocket.http.response` extension.
pub fn build_websocket_scope<'py>(
    py: Python<'py>,
    cache: &ScopeCache,
    head: &WebSocketHead,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = build_request_scope(py, cache, &head.parts, &head.conn)?;
    scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
    scope.del_item(intern!(py, "method"))?;
    // The request scope says http/https (possibly from X-Forwarded-Proto); map to ws/wss.
    if let Some(scheme) = scope.get_item(intern!(py, "scheme"))? {
        let mapped = match scheme.cast::<PyString>().map(|s| s.to_cow()) {
            Ok(Ok(text)) if text == "https" || text == "wss" => intern!(py, "wss"),
            _ => intern!(py, "ws"),
        };
        scope.set_item(intern!(py, "scheme"), mapped)?;
    }
    scope.set_item(
        intern!(py, "subprotocols"),
        PyList::new(py, &head.handshake.subprotocols)?,
    )?;
    let extensions = match scope.get_item(intern!(py, "extensions"))? {
        Some(existing) => existing.cast_into::<PyDict>()?,
        None => {
            let fresh = PyDict::new(py);
            scope.set_item(intern!(py, "extensions"), &fresh)?;
            fresh
        }
    };
    extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
    Ok(scope)
}

/// The keys every request scope has (the `websocket` scope starts from this too).
fn build_request_scope<'py>(
    py: Python<'py>,
    cache: &ScopeCache,
    parts: &http::request::Parts,
    conn: &ConnInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = cache
        .template(parts.version, conn.tls.is_some())
        .bind(py)
        .copy()?;
    scope.set_item(intern!(py, "asgi"), cache.asgi.bind(py).copy()?)?;
    scope.set_item(intern!(py, "method"), method(py, &parts.method))?;

    let raw_path = parts.uri.path().as_bytes();
    let decoded = percent_decode(raw_path);
    let path_text = String::from_utf8_lossy(&decoded);
    if cache.root_path_text.is_empty() {
        scope.set_item(intern!(py, "path"), PyString::new(py, &path_text))?;
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
    } else {
        // uvicorn prefixes both with root_path; apps written for it rely on that.
        let path = format!("{}{}", cache.root_path_text, path_text);
        scope.set_item(intern!(py, "path"), PyString::new(py, &path))?;
        let mut full_raw = Vec::with_capacity(cache.root_path_text.len() + raw_path.len());
        full_raw.extend_from_slice(cache.root_path_text.as_bytes());
        full_raw.extend_from_slice(raw_path);
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, &full_raw))?;
    }
    let query = parts.uri.query().unwrap_or("").as_bytes();
    scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;

    // One pass over the request's headers: the scope's list, and what the checks below need
    // (no hash lookups).
    let headers = PyList::empty(py);
    let proxies = cache.proxies.as_ref().filter(|_| conn.trusted_proxy);
    let mut forwarded = Forwarded::default();
    let mut has_host = false;
    for (name, value) in parts.headers.iter() {
        if *name == http::header::HOST {
            has_host = true;
        } else if proxies.is_some() {
            forwarded.note(name, value);
        }
        headers.append(header_pair(py, name.as_str().as_bytes(), value.as_bytes())?)?;
    }
    if parts.version == Version::HTTP_2 && !has_host {
        // HTTP/2 carries the host as `:authority`; ASGI apps expect a `host` header, first.
        if let Some(authority) = parts.uri.authority() {
            headers.insert(0, header_pair(py, b"host", authority.as_str().as_bytes())?)?;
        }
    }
    scope.set_item(intern!(py, "headers"), headers)?;
    let (mut client, server) = connection_addresses(py, conn)?;
    if let Some(proxies) = proxies {
        if let Some(scheme) = apply_proxy_headers(py, proxies, &forwarded, &mut client)? {
            scope.set_item(intern!(py, "scheme"), scheme)?;
        }
    }
    scope.set_item(intern!(py, "server"), server)?;
    scope.set_item(intern!(py, "client"), client)?;
    match &cache.state {
        Some(state) => scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?,
        None => scope.set_item(intern!(py, "state"), PyDict::new(py))?,
    }
    let extensions = PyDict::new(py);
    if let Some(info) = &conn.tls {
        extensions.set_item(intern!(py, "tls"), tls_extension(py, conn, info)?)?;
    }
    scope.set_item(intern!(py, "extensions"), extensions)?;
    Ok(scope)
}

/// A `(name, value)` pair of the scope's headers, untracked by the cyclic GC from the start: a
/// tuple of two `bytes` can be part of no reference cycle, and CPython's collector untracks such
/// tuples itself, but only in a collection that has walked them first. With hundreds of HTTP/2
/// requests in flight, collections run while their scopes are alive.
fn header_pair<'py>(py: Python<'py>, name: &[u8], value: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let pair = PyTuple::new(py, [PyBytes::new(py, name), PyBytes::new(py, value)])?;
    // SAFETY: `pair` is a live tuple, created just now with the GIL held; untracking it only
    // takes it off the collector's lists (it stays reference-counted, and its deallocation
    // checks whether it is tracked), and its items, `bytes`, refer to no other object.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(pair.as_ptr().cast()) };
    Ok(pair)
}

/// The ASGI `tls` extension (TLS spec 0.2): present only on TLS connections. Built by the
/// connection's first request and copied for each, the list too: every request gets objects it
/// may change without the next one seeing it.
fn tls_extension<'py>(
    py: Python<'py>,
    conn: &ConnInfo,
    info: &TlsInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let template = match conn.py_tls.get() {
        Some(template) => template.bind(py).clone(),
        None => {
            let built = build_tls_extension(py, info)?;
            let _ = conn.py_tls.set(built.clone().unbind());
            built
        }
    };
    let tls = template.copy()?;
    let chain_key = intern!(py, "client_cert_chain");
    if let Some(chain) = template.get_item(chain_key)? {
        let chain = chain.cast_into::<PyList>()?;
        tls.set_item(chain_key, chain.get_slice(0, chain.len()))?;
    }
    Ok(tls)
}

fn build_tls_extension<'py>(py: Python<'py>, info: &TlsInfo) -> PyResult<Bound<'py, PyDict>> {
    let tls = PyDict::new(py);
    tls.set_item(intern!(py, "server_cert"), &*info.server_cert_pem)?;
    tls.set_item(
        intern!(py, "client_cert_chain"),
        PyList::new(py, &info.client_cert_chain)?,
    )?;
    tls.set_item(
        intern!(py, "client_cert_name"),
        info.client_cert_name.as_deref(),
    )?;
    // rustls refuses a client certificate that fails verification, so none reaches the app.
    tls.set_item(intern!(py, "client_cert_error"), py.None())?;
    tls.set_item(intern!(py, "tls_version"), info.version)?;
    tls.set_item(intern!(py, "cipher_suite"), info.cipher_suite)?;
    Ok(tls)
}

fn http_version(py: Python<'_>, version: Version) -> &Bound<'_, PyString> {
    match version {
        Version::HTTP_10 => intern!(py, "1.0"),
        Version::HTTP_2 => intern!(py, "2"),
        _ => intern!(py, "1.1"),
    }
}

/// The scheme of a connection, before any `X-Forwarded-Proto`.
fn scheme(py: Python<'_>, tls: bool) -> &Bound<'_, PyString> {
    if tls {
        intern!(py, "https")
    } else {
        intern!(py, "http")
    }
}

fn method<'py>(py: Python<'py>, method: &Method) -> Bound<'py, PyString> {
    let interned = match *method {
        Method::GET => intern!(py, "GET"),
        Method::POST => intern!(py, "POST"),
        Method::PUT => intern!(py, "PUT"),
        Method::DELETE => intern!(py, "DELETE"),
        Method::HEAD => intern!(py, "HEAD"),
        Method::OPTIONS => intern!(py, "OPTIONS"),
        Method::PATCH => intern!(py, "PATCH"),
        _ => return PyString::new(py, method.as_str()),
    };
    interned.clone()
}

/// The first `X-Forwarded-Proto` and `X-Forwarded-For` of a request (what `HeaderMap::get` gives).
#[derive(Default)]
struct Forwarded<'a> {
    proto: Option<&'a HeaderValue>,
    for_: Option<&'a HeaderValue>,
}

impl<'a> Forwarded<'a> {
    fn note(&mut self, name: &HeaderName, value: &'a HeaderValue) {
        if *name == X_FORWARDED_PROTO {
            self.proto.get_or_insert(value);
        } else if *name == X_FORWARDED_FOR {
            self.for_.get_or_insert(value);
        }
    }
}

/// X-Forwarded-Proto sets the scheme (http, https, ws, wss: returned, if set) and X-Forwarded-For
/// the client, whose port is then unknown (0), as uvicorn's ProxyHeadersMiddleware does.
fn apply_proxy_headers<'py>(
    py: Python<'py>,
    proxies: &TrustedProxies,
    forwarded: &Forwarded<'_>,
    client: &mut Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyString>>> {
    let scheme = forwarded
        .proto
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|proto| matches!(*proto, "http" | "https" | "ws" | "wss"))
        .map(|proto| PyString::new(py, proto));
    if let Some(host) = forwarded
        .for_
        .and_then(|value| value.to_str().ok())
        .and_then(|value| proxies.client_from_forwarded_for(value))
    {
        *client = (host, 0).into_bound_py_any(py)?;
    }
    Ok(scheme)
}

/// The `(client, server)` scope values of a connection, built once per connection.
fn connection_addresses<'py>(
    py: Python<'py>,
    conn: &ConnInfo,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Some((client, server)) = conn.py_addresses.get() {
        return Ok((client.bind(py).clone(), server.bind(py).clone()));
    }
    let server = match (&conn.unix_path, conn.server) {
        (Some(path), _) => (path.as_ref(), py.None()).into_bound_py_any(py)?,
        (None, Some(addr)) => addr_tuple(py, addr)?.into_any(),
        (None, None) => py.None().into_bound(py),
    };
    let client = match conn.client {
        Some(addr) => addr_tuple(py, addr)?.into_any(),
        None => py.None().into_bound(py),
    };
    let _ = conn
        .py_addresses
        .set((client.clone().unbind(), server.clone().unbind()));
    Ok((client, server))
}

fn addr_tuple(py: Python<'_>, addr: SocketAddr) -> PyResult<Bound<'_, PyTuple>> {
    let host = addr.ip().to_string().into_bound_py_any(py)?;
    let port = addr.port().into_bound_py_any(py)?;
    PyTuple::new(py, [host, port])
}
