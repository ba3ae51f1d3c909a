//! `Core`: the Python handle on one server's Rust side.
//!
//! Python binds the sockets and creates a `Core` with the loop and callbacks; `start()` moves
//! the tokio runtime onto its own thread; `drain()` (the loop's reader callback on the
//! bridge's eventfd) starts apps for new requests and completes waiting futures.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::awaitable::Done;
use crate::bridge::{mark_io_thread, Bridge, Event};
use crate::errors::CoreError;
use crate::exchange::{split_wake_id, RequestHead};
use crate::http2::Http2Settings;
use crate::listener::Listener;
use crate::protocol::{Active, AppProtocol, HttpProtocol, PyContext};
use crate::proxy::TrustedProxies;
use crate::scope::{build_http_scope, ScopeCache};
use crate::server::{serve, Endpoint, Phase, Settings, Shared};
use crate::tls::{TlsOptions, TlsSetup};
use crate::websocket::protocol::WebSocketProtocol;
use crate::websocket::scope::build_websocket_scope;
use crate::websocket::upgrade::WsHead;
use crate::websocket::{WsConfig, WsSettings};
use crate::TlsConfigError;

/// Runs on the I/O thread when it starts.
fn io_thread_setup() {
    mark_io_thread();
    // SCHED_BATCH: the I/O thread's wake-ups (a request arriving) do not preempt the Python
    // thread in the middle of an app's work; it runs when Python yields, which is when the
    // batch it is about to hand over can be taken. Best effort: ignored where not permitted.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// The `--ssl-*` options, checked and turned into a rustls configuration. Built once at startup
/// (an error is one line and exit code 3) and handed to each `Core`.
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
        let options = TlsOptions {
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
            TlsSetup::new(&options).map_err(|err| TlsConfigError::new_err(err.to_string()))?;
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

/// The HTTP/2 settings, as a dict from the Python side (keys as in [`Http2Settings`]).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct Http2Options {
    max_concurrent_streams: u32,
    initial_stream_window_size: u32,
    initial_connection_window_size: u32,
    max_frame_size: u32,
    max_header_list_size: u32,
    keep_alive_interval: Option<f64>,
    keep_alive_timeout: f64,
}

impl Http2Options {
    fn into_settings(self) -> PyResult<Http2Settings> {
        // RFC 9113 §6.5.2 bounds; hyper would panic on values outside them.
        if !(16_384..=16_777_215).contains(&self.max_frame_size) {
            return Err(PyValueError::new_err(
                "http2 max_frame_size must be between 16384 and 16777215",
            ));
        }
        let window_max = (1u32 << 31) - 1;
        if self.initial_stream_window_size > window_max
            || self.initial_connection_window_size > window_max
        {
            return Err(PyValueError::new_err(
                "http2 window sizes must be below 2**31",
            ));
        }
        if self.initial_connection_window_size < 65_535 {
            return Err(PyValueError::new_err(
                "http2 initial_connection_window_size must be at least 65535",
            ));
        }
        let seconds = |value: f64, name: &str| {
            if value.is_finite() && value > 0.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(PyValueError::new_err(format!(
                    "http2 {name} must be positive"
                )))
            }
        };
        Ok(Http2Settings {
            max_concurrent_streams: self.max_concurrent_streams,
            initial_stream_window_size: self.initial_stream_window_size,
            initial_connection_window_size: self.initial_connection_window_size,
            max_frame_size: self.max_frame_size,
            max_header_list_size: self.max_header_list_size,
            keep_alive_interval: self
                .keep_alive_interval
                .map(|v| seconds(v, "keep_alive_interval"))
                .transpose()?,
            keep_alive_timeout: seconds(self.keep_alive_timeout, "keep_alive_timeout")?,
        })
    }
}

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct Core {
    shared: Arc<Shared>,
    ctx: Arc<PyContext>,
    runtime: Option<tokio::runtime::Runtime>,
    endpoints: Vec<Endpoint>,
    started: bool,
    spare: Vec<Event>,
    total_requests: u64,
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (
        *, loop_, runner, log, access_log=None, root_path=String::new(), state=None,
        default_headers=Vec::new(), keep_alive_timeout=5.0, max_header_size=None,
        date_header=true, asgi_version="3.0", reset_contextvars=false,
        limit_concurrency=None, forwarded_allow_ips=None, tls=None, tls_handshake_timeout=10.0, http2=None,
        websocket=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        loop_: &Bound<'_, PyAny>,
        runner: Py<PyAny>,
        log: Py<PyAny>,
        access_log: Option<Py<PyAny>>,
        root_path: String,
        state: Option<Py<PyDict>>,
        default_headers: Vec<(Vec<u8>, Vec<u8>)>,
        keep_alive_timeout: f64,
        max_header_size: Option<usize>,
        date_header: bool,
        asgi_version: &str,
        reset_contextvars: bool,
        limit_concurrency: Option<usize>,
        forwarded_allow_ips: Option<Vec<String>>,
        tls: Option<PyRef<'_, TlsConfig>>,
        tls_handshake_timeout: f64,
        http2: Option<Http2Options>,
        websocket: Option<WsConfig>,
    ) -> PyResult<Self> {
        let proxies = forwarded_allow_ips.map(|entries| TrustedProxies::parse(&entries));
        if !(keep_alive_timeout.is_finite() && keep_alive_timeout > 0.0) {
            return Err(PyValueError::new_err("keep_alive_timeout must be positive"));
        }
        if !(tls_handshake_timeout.is_finite() && tls_handshake_timeout > 0.0) {
            return Err(PyValueError::new_err(
                "tls_handshake_timeout must be positive",
            ));
        }
        if let Some(size) = max_header_size {
            if size < 1024 {
                return Err(PyValueError::new_err(
                    "max_header_size must be at least 1024",
                ));
            }
        }
        let bridge = Arc::new(Bridge::new()?);
        let park_bridge = bridge.clone();
        // One worker thread. The multi-thread scheduler (with a single worker) is used for its
        // parker: a wake from the Python thread writes to the driver's eventfd only when the
        // worker is parked, so a batch of responses costs one syscall. The current-thread
        // scheduler unparks on every remote wake: one syscall per response (measured).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("ferrocorn-io")
            .on_thread_start(io_thread_setup)
            // Everything the I/O pass produced goes to Python in one wake-up.
            .on_thread_park(move || park_bridge.flush())
            .build()
            .map_err(CoreError::Io)?;
        let settings = Settings {
            keep_alive_timeout: Duration::from_secs_f64(keep_alive_timeout),
            max_header_size,
            date_header,
            limit_concurrency,
            proxies: proxies.clone(),
            http2: http2.map(Http2Options::into_settings).transpose()?,
            tls_handshake_timeout: Duration::from_secs_f64(tls_handshake_timeout),
            websocket: websocket.map(|config| Arc::new(WsSettings::from_config(&config))),
        };
        let tls = tls.map(|config| config.setup.clone());
        let shared = Arc::new(Shared::new(bridge, settings, tls));
        let scope_cache = ScopeCache::new(py, &root_path, state, asgi_version, proxies)?;
        let default_headers = default_headers
            .into_iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(&name)
                    .map_err(|_| PyValueError::new_err("invalid default header name"))?;
                let value = HeaderValue::from_bytes(&value)
                    .map_err(|_| PyValueError::new_err("invalid default header value"))?;
                Ok((name, value))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let ctx = Arc::new(PyContext {
            create_future: loop_.getattr(intern!(py, "create_future"))?.unbind(),
            create_task: loop_.getattr(intern!(py, "create_task"))?.unbind(),
            runner,
            fresh_context: if reset_contextvars {
                Some(py.import("contextvars")?.getattr("Context")?.unbind())
            } else {
                None
            },
            log,
            access_log,
            scope_cache,
            done: Py::new(py, Done)?,
            default_headers,
            runtime: runtime.handle().clone(),
            active: Mutex::new(HashMap::new()),
        });
        Ok(Self {
            shared,
            ctx,
            runtime: Some(runtime),
            endpoints: Vec::new(),
            started: false,
            spare: Vec::with_capacity(256),
            total_requests: 0,
        })
    }

    /// Serve on (a duplicate of) the listening socket `fd`. For a Unix socket, `unix_path` is
    /// what the scope reports as `server`.
    #[pyo3(signature = (fd, unix_path=None))]
    fn listen(&mut self, fd: RawFd, unix_path: Option<String>) -> PyResult<()> {
        let runtime = self.runtime.as_ref().ok_or(CoreError::AlreadyStarted)?;
        let _entered = runtime.enter();
        let listener = Listener::from_fd(fd)?;
        self.endpoints.push(Endpoint {
            listener,
            unix_path: unix_path.map(Arc::from),
        });
        Ok(())
    }

    /// Start accepting connections on the I/O thread.
    fn start(&mut self) -> PyResult<()> {
        if self.endpoints.is_empty() {
            return Err(CoreError::NotListening.into());
        }
        let runtime = self.runtime.as_ref().ok_or(CoreError::AlreadyStarted)?;
        if self.started {
            return Err(CoreError::AlreadyStarted.into());
        }
        self.started = true;
        runtime.spawn(serve(
            self.shared.clone(),
            std::mem::take(&mut self.endpoints),
        ));
        Ok(())
    }

    /// The eventfd the event loop must watch; call `drain()` when it is readable.
    fn fileno(&self) -> RawFd {
        self.shared.bridge.fileno()
    }

    /// Handle everything the I/O thread queued since the last call.
    fn drain(&mut self, py: Python<'_>) -> PyResult<()> {
        let mut events = self.shared.bridge.take(std::mem::take(&mut self.spare));
        for event in events.drain(..) {
            let outcome = match event {
                Event::Request(head) => self.dispatch(py, head),
                Event::WebSocket(head) => self.dispatch_websocket(py, head),
                Event::Wake(id) => self.wake(py, id),
                Event::Log(level, message) => self
                    .ctx
                    .log
                    .call1(py, (level.as_python_level(), message))
                    .map(drop),
            };
            if let Err(err) = outcome {
                // One request's failure must not stop the others: report it and go on.
                self.report(py, err);
            }
        }
        self.spare = events;
        Ok(())
    }

    /// Stop accepting; in-flight requests finish, idle keep-alive connections close.
    fn stop_accepting(&self) {
        self.shared.set_phase(Phase::Draining);
    }

    /// Close every connection now.
    fn force_close(&self) {
        self.shared.set_phase(Phase::ForceClose);
    }

    /// Stop the I/O thread and wait for it. Idempotent.
    fn close(&mut self, py: Python<'_>) {
        self.shared.set_phase(Phase::Stopped);
        if let Some(runtime) = self.runtime.take() {
            // Connection tasks still running are dropped, which closes their sockets.
            py.detach(|| runtime.shutdown_timeout(Duration::from_secs(5)));
        }
    }

    /// Open connections.
    #[getter]
    fn connections(&self) -> usize {
        self.shared.connection_count()
    }

    /// Requests whose app is still running.
    #[getter]
    fn tasks(&self) -> usize {
        self.ctx.active.lock().len()
    }

    /// Requests handed to the app since start.
    #[getter]
    fn total_requests(&self) -> u64 {
        self.total_requests
    }

    /// Cancel every running app task (graceful-shutdown timeout). Returns how many.
    fn cancel_tasks(&self, py: Python<'_>) -> PyResult<usize> {
        let tasks: Vec<Py<PyAny>> = self
            .ctx
            .active
            .lock()
            .values()
            .map(|active| active.task.clone_ref(py))
            .collect();
        for task in &tasks {
            task.call_method0(py, intern!(py, "cancel"))?;
        }
        Ok(tasks.len())
    }
}

impl Core {
    fn dispatch(&mut self, py: Python<'_>, head: Box<RequestHead>) -> PyResult<()> {
        self.total_requests += 1;
        let scope = build_http_scope(py, &self.ctx.scope_cache, &head)?;
        let RequestHead {
            id,
            parts,
            body,
            exchange,
            ..
        } = *head;
        let keep_scope = self.ctx.access_log.as_ref().map(|_| scope.clone().unbind());
        let is_head = parts.method == http::Method::HEAD;
        let protocol = Py::new(
            py,
            HttpProtocol::new(self.ctx.clone(), exchange, body, is_head, keep_scope),
        )?;
        let task = self.start_app(py, scope, protocol.clone_ref(py).into_any())?;
        self.ctx.active.lock().insert(
            id,
            Active {
                protocol: AppProtocol::Http(protocol),
                task,
            },
        );
        Ok(())
    }

    fn dispatch_websocket(&mut self, py: Python<'_>, head: Box<WsHead>) -> PyResult<()> {
        self.total_requests += 1;
        let scope = build_websocket_scope(py, &self.ctx.scope_cache, &head)?;
        let WsHead {
            id,
            parts,
            channel,
            handshake,
            ..
        } = *head;
        let client = match scope.get_item(intern!(py, "client"))? {
            Some(client) if !client.is_none() => {
                let (host, port) = client.extract::<(String, u16)>()?;
                format!("{host}:{port}")
            }
            _ => String::new(),
        };
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let log_prefix = format!(
            "{client} - \"WebSocket {}{target}\"",
            self.ctx.scope_cache.root_path()
        );
        let protocol = Py::new(
            py,
            WebSocketProtocol::new(self.ctx.clone(), channel, handshake, log_prefix),
        )?;
        let task = self.start_app(py, scope, protocol.clone_ref(py).into_any())?;
        self.ctx.active.lock().insert(
            id,
            Active {
                protocol: AppProtocol::WebSocket(protocol),
                task,
            },
        );
        Ok(())
    }

    /// Create the asyncio task running the app for one request or WebSocket.
    fn start_app(
        &self,
        py: Python<'_>,
        scope: Bound<'_, PyDict>,
        protocol: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let coroutine = self.ctx.runner.call1(py, (scope, protocol))?;
        let task = match &self.ctx.fresh_context {
            // --reset-contextvars: the task runs in an empty context instead of a copy.
            Some(context_class) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "context"), context_class.call0(py)?)?;
                self.ctx.create_task.call(py, (coroutine,), Some(&kwargs))?
            }
            None => self.ctx.create_task.call1(py, (coroutine,))?,
        };
        Ok(task)
    }

    fn wake(&mut self, py: Python<'_>, id: u64) -> PyResult<()> {
        let (request_id, kind) = split_wake_id(id);
        let protocol =
            self.ctx
                .active
                .lock()
                .get(&request_id)
                .map(|active| match &active.protocol {
                    AppProtocol::Http(http) => AppProtocol::Http(http.clone_ref(py)),
                    AppProtocol::WebSocket(ws) => AppProtocol::WebSocket(ws.clone_ref(py)),
                });
        match protocol {
            Some(AppProtocol::Http(protocol)) => protocol.borrow_mut(py).on_wake(py, kind),
            Some(AppProtocol::WebSocket(protocol)) => protocol.borrow_mut(py).on_wake(py, kind),
            None => Ok(()), // the app has already finished
        }
    }

    fn report(&self, py: Python<'_>, err: PyErr) {
        let message = format!("Error in the ferrocorn core: {err}");
        if self.ctx.log.call1(py, (40, message)).is_err() {
            err.print(py);
        }
    }
}
