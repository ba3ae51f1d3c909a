//! `Core`: the Python handle on one server's Rust side.
//!
//! Python binds the sockets and creates a `Core` with the loop, its callbacks and the
//! [`ServerSettings`]; `start()` moves the tokio runtime onto its own thread; `drain()` (the
//! loop's reader callback on the bridge's eventfd) starts apps for new requests and completes
//! waiting futures.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::asgi::awaitable::Done;
use crate::asgi::context::{ActiveApps, PyContext};
use crate::asgi::dispatch::Dispatcher;
use crate::asgi::scope::ScopeCache;
use crate::errors::CoreError;
use crate::http::http1_builder;
use crate::jobs::Bridge;
use crate::net::Listener;
use crate::phase::Phase;
use crate::server::{build_runtime, serve, Endpoint};
use crate::settings::ServerSettings;
use crate::shared::Shared;

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct Core {
    shared: Arc<Shared>,
    dispatcher: Dispatcher,
    runtime: Option<tokio::runtime::Runtime>,
    endpoints: Vec<Endpoint>,
    started: bool,
}

#[pymethods]
impl Core {
    /// `runner(scope, protocol)` returns the coroutine that runs the app for one request;
    /// `log(level, message)` and `access_log(scope, status)` log; `state` is the lifespan state
    /// each scope gets a copy of. `eager_task(coroutine)`, when given, creates each request's
    /// task with an eager start instead of `loop_.create_task`.
    #[new]
    #[pyo3(signature = (*, loop_, runner, log, settings, access_log=None, state=None, eager_task=None))]
    #[allow(clippy::too_many_arguments)] // the keyword-only constructor Python calls
    fn new(
        py: Python<'_>,
        loop_: &Bound<'_, PyAny>,
        runner: Py<PyAny>,
        log: Py<PyAny>,
        settings: &Bound<'_, PyDict>,
        access_log: Option<Py<PyAny>>,
        state: Option<Py<PyDict>>,
        eager_task: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let settings = ServerSettings::from_py(settings)?;
        let bridge = Arc::new(Bridge::new()?);
        let runtime =
            build_runtime(bridge.clone(), settings.access_log.clone()).map_err(CoreError::Io)?;
        let ctx = Arc::new(PyContext {
            create_future: loop_.getattr(intern!(py, "create_future"))?.unbind(),
            eager: eager_task.is_some(),
            create_task: match eager_task {
                Some(eager_task) => eager_task,
                None => loop_.getattr(intern!(py, "create_task"))?.unbind(),
            },
            runner,
            fresh_context: if settings.reset_contextvars {
                Some(py.import("contextvars")?.getattr("Context")?.unbind())
            } else {
                None
            },
            log,
            access_log,
            scope_cache: ScopeCache::new(
                py,
                &settings.root_path,
                state,
                &settings.asgi_version,
                settings.proxies.clone(),
            )?,
            done: Py::new(py, Done)?,
            default_headers: settings.default_headers.clone(),
            runtime: runtime.handle().clone(),
            active: Mutex::new(ActiveApps::default()),
        });
        let http1 = http1_builder(&settings);
        let shared = Arc::new(Shared::new(bridge.clone(), settings, http1));
        Ok(Self {
            shared,
            dispatcher: Dispatcher::new(ctx, bridge),
            runtime: Some(runtime),
            endpoints: Vec::new(),
            started: false,
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
    fn drain(&self, py: Python<'_>) {
        self.dispatcher.drain(py);
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
        self.dispatcher.running()
    }

    /// Requests handed to the app since start.
    #[getter]
    fn total_requests(&self) -> u64 {
        self.dispatcher.total_requests()
    }

    /// Cancel every running app task (graceful-shutdown timeout). Returns how many.
    fn cancel_tasks(&self, py: Python<'_>) -> PyResult<usize> {
        self.dispatcher.cancel_all(py)
    }
}
