//! Every setting the server runs with, read from what Python passes and checked once at
//! startup: a value the core cannot use is one `ValueError` before any socket is served.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::access::{AccessFormat, AccessLog, Atom, Segment};
use crate::errors::{SettingError, TlsConfigError};
use crate::metrics::Metrics;
use crate::net::{ProxyVersions, TrustedProxies};
use crate::tls::{TlsSettings, TlsSetup};

/// Request line plus headers, in bytes, above which a request gets 431. uvicorn's h11 uses 16 KiB,
/// which large SSO cookies exceed; nginx allows 4 x 8 KiB per line.
/// `--h11-max-incomplete-event-size` overrides it.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;

/// The server's settings: `Core(settings=...)`, a dict with these keys (the `.pyi`'s
/// `ServerSettings`).
pub struct ServerSettings {
    pub root_path: String,
    /// The access log, when the core writes it (`native_access_log`); `None` when Python logs
    /// each record (or there is no access log).
    pub access_log: Option<Arc<AccessLog>>,
    /// `server`, `date` and the `--header` defaults, added to responses that lack them.
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    /// `--timeout-keep-alive`: the idle limit of keep-alive connections, HTTP/2 connections and
    /// protocol detection.
    pub keep_alive_timeout: Duration,
    /// The most bytes of request line and headers.
    pub max_header_size: usize,
    pub date_header: bool,
    /// `--early-hints-http1`: offer `http.response.early_hint` on HTTP/1.1 (always on HTTP/2).
    pub early_hints_http1: bool,
    pub asgi_version: String,
    /// `--reset-contextvars`: each app task starts from an empty context.
    pub reset_contextvars: bool,
    /// `--limit-concurrency`: connections or in-flight requests allowed before answering 503.
    pub limit_concurrency: Option<usize>,
    /// `--forwarded-allow-ips` when `--proxy-headers` is on; `None` when it is off.
    pub proxies: Option<TrustedProxies>,
    pub tls: Option<Arc<TlsSetup>>,
    /// A TLS client must finish its handshake within this time.
    pub tls_handshake_timeout: Duration,
    /// `None` serves HTTP/1.1 only.
    pub http2: Option<Http2Settings>,
    /// `None` with `--ws none` (upgrades are served as plain HTTP).
    pub websocket: Option<Arc<WebSocketSettings>>,
    /// `--limit-request-body-size`: the largest request body (413 past it); `None`: no limit.
    pub limit_request_body_size: Option<u64>,
    /// `--limit-request-headers`: the most header fields in a request (431 past it).
    pub limit_request_headers: usize,
    /// `--limit-request-line`: the longest HTTP/1.x request line, or HTTP/2 `:path` (414 past
    /// it); `None` (0 on the command line, as gunicorn): no limit.
    pub limit_request_line: Option<usize>,
    /// `--limit-request-field-size`: the longest header field, name and value (431 past it);
    /// `None` (0): no limit.
    pub limit_request_field_size: Option<usize>,
    /// `--timeout-request-head`: an HTTP/1.1 request head must be complete this long after its
    /// first byte.
    pub request_head_timeout: Duration,
    /// `--timeout-request-body`: the longest silence in a request body (408 past it).
    pub request_body_timeout: Duration,
    /// `--timeout-response-write`: the longest a client may leave the socket unwritable.
    pub response_write_timeout: Duration,
    /// `--proxy-protocol`; `None` when off.
    pub proxy_protocol: Option<ProxyProtocolSettings>,
    /// `--metrics-bind`: this worker's slot of the metrics block (off: counts nothing).
    pub metrics: Metrics,
}

impl ServerSettings {
    pub fn from_py(dict: &Bound<'_, PyDict>) -> PyResult<Self> {
        let max_header_size = match item::<Option<usize>>(dict, "max_header_size")? {
            Some(size) if size < 1024 => {
                return Err(setting_error("max_header_size must be at least 1024"))
            }
            Some(size) => size,
            None => DEFAULT_MAX_HEADER_SIZE,
        };
        let tls = match dict.get_item("tls")? {
            Some(tls) if !tls.is_none() => Some(tls.cast::<TlsConfig>()?.get().setup.clone()),
            _ => None,
        };
        let http2 = match dict.get_item("http2")? {
            Some(http2) if !http2.is_none() => Some(Http2Settings::from_py(http2.cast()?)?),
            _ => None,
        };
        let websocket = match dict.get_item("websocket")? {
            Some(ws) if !ws.is_none() => Some(Arc::new(WebSocketSettings::from_py(ws.cast()?)?)),
            _ => None,
        };
        Ok(Self {
            root_path: item(dict, "root_path")?,
            default_headers: default_headers(item(dict, "default_headers")?)?,
            keep_alive_timeout: positive_seconds(dict, "", "keep_alive_timeout")?,
            max_header_size,
            date_header: item(dict, "date_header")?,
            early_hints_http1: item(dict, "early_hints_http1")?,
            asgi_version: item(dict, "asgi_version")?,
            reset_contextvars: item(dict, "reset_contextvars")?,
            limit_concurrency: item(dict, "limit_concurrency")?,
            proxies: item::<Option<Vec<String>>>(dict, "forwarded_allow_ips")?
                .map(|entries| TrustedProxies::parse(&entries)),
            tls,
            tls_handshake_timeout: positive_seconds(dict, "", "tls_handshake_timeout")?,
            http2,
            websocket,
            limit_request_body_size: item(dict, "limit_request_body_size")?,
            limit_request_headers: match item::<usize>(dict, "limit_request_headers")? {
                0 => return Err(setting_error("limit_request_headers must be at least 1")),
                count => count,
            },
            limit_request_line: zero_means_unlimited(item(dict, "limit_request_line")?),
            limit_request_field_size: zero_means_unlimited(item(dict, "limit_request_field_size")?),
            request_head_timeout: positive_seconds(dict, "", "request_head_timeout")?,
            request_body_timeout: positive_seconds(dict, "", "request_body_timeout")?,
            response_write_timeout: positive_seconds(dict, "", "response_write_timeout")?,
            proxy_protocol: ProxyProtocolSettings::from_py(dict)?,
            access_log: native_access_log(dict, item(dict, "root_path")?)?,
            metrics: metrics_slot(dict)?,
        })
    }
}

/// The `metrics` setting: `None`, or `{"path": str, "slot": int}`, the shared-memory block
/// (`python/ferrocorn/metrics.py`) and this worker's slot in it.
fn metrics_slot(dict: &Bound<'_, PyDict>) -> PyResult<Metrics> {
    let Some(metrics) = dict.get_item("metrics")?.filter(|value| !value.is_none()) else {
        return Ok(Metrics::default());
    };
    let metrics = metrics.cast::<PyDict>()?;
    let path: PathBuf = item(metrics, "path")?;
    let slot: usize = item(metrics, "slot")?;
    Metrics::map(&path, slot).map_err(|err| {
        setting_error(&format!(
            "metrics: cannot map slot {slot} of {}: {err}",
            path.display()
        ))
    })
}

/// `--proxy-protocol`: the header versions TCP connections start with, and the peers trusted to
/// send one (`--forwarded-allow-ips`, whether or not `--proxy-headers` is on).
#[derive(Clone, Debug)]
pub struct ProxyProtocolSettings {
    pub versions: ProxyVersions,
    pub trusted: TrustedProxies,
}

impl ProxyProtocolSettings {
    /// The `proxy_protocol` setting: `None`, or `{"version": "v1"|"v2"|"auto", "allow_ips": [...]}`.
    fn from_py(settings: &Bound<'_, PyDict>) -> PyResult<Option<Self>> {
        let dict = match settings.get_item("proxy_protocol")? {
            Some(value) if !value.is_none() => value.cast_into::<PyDict>()?,
            _ => return Ok(None),
        };
        let versions = match item::<String>(&dict, "version")?.as_str() {
            "v1" => ProxyVersions::V1,
            "v2" => ProxyVersions::V2,
            "auto" => ProxyVersions::Any,
            _ => {
                return Err(setting_error(
                    "proxy_protocol version must be v1, v2 or auto",
                ))
            }
        };
        Ok(Some(Self {
            versions,
            trusted: TrustedProxies::parse(&item::<Vec<String>>(&dict, "allow_ips")?),
        }))
    }
}

/// The HTTP/2 knobs users tune (`--http2-*`); the CLI's defaults live in `config.py`.
#[derive(Clone, Debug)]
pub struct Http2Settings {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub max_frame_size: u32,
    pub max_header_list_size: u32,
    pub keep_alive_interval: Option<Duration>,
    pub keep_alive_timeout: Duration,
}

impl Http2Settings {
    fn from_py(dict: &Bound<'_, PyDict>) -> PyResult<Self> {
        let settings = Self {
            max_concurrent_streams: item(dict, "max_concurrent_streams")?,
            initial_stream_window_size: item(dict, "initial_stream_window_size")?,
            initial_connection_window_size: item(dict, "initial_connection_window_size")?,
            max_frame_size: item(dict, "max_frame_size")?,
            max_header_list_size: item(dict, "max_header_list_size")?,
            keep_alive_interval: match item::<Option<f64>>(dict, "keep_alive_interval")? {
                Some(_) => Some(positive_seconds(dict, "http2 ", "keep_alive_interval")?),
                None => None,
            },
            keep_alive_timeout: positive_seconds(dict, "http2 ", "keep_alive_timeout")?,
        };
        // RFC 9113 §6.5.2 bounds; hyper would panic on values outside them.
        if !(16_384..=16_777_215).contains(&settings.max_frame_size) {
            return Err(setting_error(
                "http2 max_frame_size must be between 16384 and 16777215",
            ));
        }
        let window_max = (1u32 << 31) - 1;
        if settings.initial_stream_window_size > window_max
            || settings.initial_connection_window_size > window_max
        {
            return Err(setting_error("http2 window sizes must be below 2**31"));
        }
        if settings.initial_connection_window_size < 65_535 {
            return Err(setting_error(
                "http2 initial_connection_window_size must be at least 65535",
            ));
        }
        Ok(settings)
    }
}

/// The `--ws-*` settings.
#[derive(Clone, Debug)]
pub struct WebSocketSettings {
    /// `--ws-max-size`: a larger message closes the connection with 1009.
    pub max_size: usize,
    /// `--ws-max-queue`: messages waiting for the app before the socket is no longer read.
    pub max_queue: usize,
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Option<Duration>,
    pub per_message_deflate: bool,
    /// `--timeout-response-write`: a session whose socket refuses every write this long ends.
    pub write_timeout: Option<Duration>,
}

impl WebSocketSettings {
    fn from_py(dict: &Bound<'_, PyDict>) -> PyResult<Self> {
        // uvicorn treats a zero or negative interval or timeout as "off".
        let off_unless_positive = |value: Option<f64>| {
            value
                .filter(|secs| secs.is_finite() && *secs > 0.0)
                .map(Duration::from_secs_f64)
        };
        Ok(Self {
            max_size: item::<usize>(dict, "max_size")?.max(1),
            max_queue: item::<usize>(dict, "max_queue")?.max(1),
            ping_interval: off_unless_positive(item(dict, "ping_interval")?),
            ping_timeout: off_unless_positive(item(dict, "ping_timeout")?),
            per_message_deflate: item(dict, "per_message_deflate")?,
            write_timeout: off_unless_positive(item(dict, "write_timeout")?),
        })
    }
}

/// The `--ssl-*` options, checked and turned into a rustls configuration. Built once at startup
/// (an error is one line and exit code 3) and passed in `ServerSettings.tls`.
#[pyclass(module = "ferrocorn._ferrocorn", frozen)]
pub struct TlsConfig {
    setup: Arc<TlsSetup>,
}

#[pymethods]
impl TlsConfig {
    #[new]
    #[pyo3(signature = (
        *, certfile, keyfile=None, password=None, ca_certs=None, cert_reqs=0,
        ciphers=String::from("TLSv1"), version=17, http2=true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        certfile: String,
        keyfile: Option<String>,
        password: Option<String>,
        ca_certs: Option<String>,
        cert_reqs: i32,
        ciphers: String,
        version: i32,
        http2: bool,
    ) -> PyResult<Self> {
        let settings = TlsSettings {
            certfile,
            keyfile,
            password,
            ca_certs,
            cert_reqs,
            ciphers,
            version,
            http2,
        };
        let setup =
            TlsSetup::new(&settings).map_err(|err| TlsConfigError::new_err(err.to_string()))?;
        Ok(Self {
            setup: Arc::new(setup),
        })
    }

    /// Problems worth a warning that do not stop the server (cipher names rustls lacks).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.setup.warnings.clone()
    }
}

/// The value under `key`, which must be present.
fn item<'py, T: FromPyObjectOwned<'py>>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    let value = dict
        .get_item(key)?
        .ok_or_else(|| PyKeyError::new_err(format!("missing setting {key:?}")))?;
    value.extract::<T>().map_err(Into::into)
}

/// A size limit where 0 means none (gunicorn's convention).
fn zero_means_unlimited(limit: usize) -> Option<usize> {
    (limit > 0).then_some(limit)
}

/// A number of seconds under `key` that must be positive and finite; `section` names the
/// group in the error ("http2 ").
fn positive_seconds(dict: &Bound<'_, PyDict>, section: &str, key: &str) -> PyResult<Duration> {
    let seconds: f64 = item(dict, key)?;
    if seconds.is_finite() && seconds > 0.0 {
        return Ok(Duration::from_secs_f64(seconds));
    }
    Err(setting_error(&format!("{section}{key} must be positive")))
}

fn default_headers(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> PyResult<Vec<(HeaderName, HeaderValue)>> {
    pairs
        .into_iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(&name)
                .map_err(|_| setting_error("invalid default header name"))?;
            let value = HeaderValue::from_bytes(&value)
                .map_err(|_| setting_error("invalid default header value"))?;
            Ok((name, value))
        })
        .collect()
}

fn setting_error(message: &str) -> PyErr {
    SettingError(message.to_owned()).into()
}

/// `native_access_log`: `None`, or `{"style": "uvicorn"|"atoms"|"json", "colors": bool,
/// "segments": [("literal", text) | ("atom", key), ...] | None, "fd": int,
/// "phrases": {status: phrase}}`.
fn native_access_log(
    settings: &Bound<'_, PyDict>,
    root_path: String,
) -> PyResult<Option<Arc<AccessLog>>> {
    let dict = match settings.get_item("native_access_log")? {
        Some(value) if !value.is_none() => value.cast_into::<PyDict>()?,
        _ => return Ok(None),
    };
    let segments = match item::<Option<Vec<(String, String)>>>(&dict, "segments")? {
        None => None,
        Some(pairs) => Some(
            pairs
                .into_iter()
                .map(|(kind, text)| match kind.as_str() {
                    "literal" => Ok(Segment::Literal(text)),
                    "atom" => Atom::parse(&text).map(Segment::Atom).ok_or_else(|| {
                        setting_error(&format!("native_access_log: unknown atom {text:?}"))
                    }),
                    _ => Err(setting_error(
                        "native_access_log segments are literal or atom",
                    )),
                })
                .collect::<PyResult<Vec<_>>>()?,
        ),
    };
    let format = match (item::<String>(&dict, "style")?.as_str(), segments) {
        ("uvicorn", _) => AccessFormat::Uvicorn {
            colors: item(&dict, "colors")?,
        },
        ("atoms", Some(segments)) => AccessFormat::Atoms(segments),
        ("json", message) => AccessFormat::Json { message },
        _ => {
            return Err(setting_error(
                "native_access_log style must be uvicorn, atoms (with segments) or json",
            ))
        }
    };
    let mut phrases: Vec<(u16, String)> =
        item::<std::collections::HashMap<u16, String>>(&dict, "phrases")?
            .into_iter()
            .collect();
    phrases.sort_unstable();
    Ok(Some(Arc::new(AccessLog::new(
        format,
        item(&dict, "fd")?,
        root_path,
        phrases,
    ))))
}
