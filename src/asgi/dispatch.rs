//! The asyncio side of the bridge: each batch of events becomes app tasks started (one per
//! request or WebSocket), parked futures woken, and log records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::context::{Active, PyContext};
use super::http::HttpProtocol;
use super::scope::{build_http_scope, build_websocket_scope};
use super::websocket::WebSocketProtocol;
use crate::bridge::{split_wake_id, LogLevel};
use crate::jobs::{Bridge, Event, Job, RequestHead, WebSocketHead};

pub struct Dispatcher {
    ctx: Arc<PyContext>,
    bridge: Arc<Bridge>,
    /// The event vector handed back to the bridge, so that the steady state allocates nothing.
    /// Taken out for the length of a drain: the app's first step may run inside it (eager
    /// start), and nothing here is borrowed meanwhile, so the app may read the core's counters.
    spare: Mutex<Vec<Event>>,
    total_requests: AtomicU64,
}

impl Dispatcher {
    pub fn new(ctx: Arc<PyContext>, bridge: Arc<Bridge>) -> Self {
        Self {
            ctx,
            bridge,
            spare: Mutex::new(Vec::with_capacity(256)),
            total_requests: AtomicU64::new(0),
        }
    }

    /// Handle everything the I/O thread queued since the last call.
    pub fn drain(&self, py: Python<'_>) {
        let spare = std::mem::take(&mut *self.spare.lock());
        let mut events = self.bridge.take(spare);
        for event in events.drain(..) {
            let outcome = match event {
                Event::Start(Job::Request(head)) => self.start_request(py, head),
                Event::Start(Job::WebSocket(head)) => self.start_websocket(py, head),
                Event::Wake(id) => self.wake(py, id),
                Event::Log(level, message) => self.ctx.log(py, level, message),
            };
            if let Err(err) = outcome {
                // One request's failure must not stop the others: report it and go on.
                self.report(py, err);
            }
        }
        *self.spare.lock() = events;
    }

    /// Requests and WebSockets handed to an app since start.
    pub fn total_requests(&self) -> u64 {
        self.total_requests.load(Ordering::Relaxed)
    }

    /// Apps still running.
    pub fn running(&self) -> usize {
        self.ctx.active.lock().len()
    }

    /// Cancel every running app task (graceful-shutdown timeout). Returns how many.
    pub fn cancel_all(&self, py: Python<'_>) -> PyResult<usize> {
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

    fn start_request(&self, py: Python<'_>, head: Box<RequestHead>) -> PyResult<()> {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
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
        self.start_app(py, id, scope, protocol.into_any())
    }

    fn start_websocket(&self, py: Python<'_>, head: Box<WebSocketHead>) -> PyResult<()> {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        let scope = build_websocket_scope(py, &self.ctx.scope_cache, &head)?;
        let WebSocketHead {
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
        self.start_app(py, id, scope, protocol.into_any())
    }

    /// Create the asyncio task running the app for request `id`, and record it as running.
    fn start_app(
        &self,
        py: Python<'_>,
        id: u64,
        scope: Bound<'_, PyDict>,
        protocol: Py<PyAny>,
    ) -> PyResult<()> {
        let coroutine = self.ctx.runner.call1(py, (scope, protocol.clone_ref(py)))?;
        let task = match &self.ctx.fresh_context {
            // --reset-contextvars: the task starts from an empty context instead of a copy of the
            // loop's. Created inside one (a Task copies the current context), not with
            // `create_task(context=...)`, which CPython 3.10 does not have.
            Some(context_class) => context_class.call0(py)?.call_method1(
                py,
                intern!(py, "run"),
                (&self.ctx.create_task, coroutine),
            )?,
            None => self.ctx.create_task.call1(py, (coroutine,))?,
        };
        // With an eager start (CPython 3.12+, `server.py`) the app's first step has run inside
        // `create_task`: an app that finished there has already released its id.
        if self.ctx.eager && task.call_method0(py, intern!(py, "done"))?.is_truthy(py)? {
            return Ok(());
        }
        self.ctx.active.lock().insert(id, Active { protocol, task });
        Ok(())
    }

    fn wake(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        let (request_id, kind) = split_wake_id(id);
        let protocol = self
            .ctx
            .active
            .lock()
            .get(&request_id)
            .map(|active| active.protocol.clone_ref(py));
        let Some(protocol) = protocol else {
            return Ok(()); // the app has already finished
        };
        let protocol = protocol.into_bound(py);
        if let Ok(http) = protocol.cast::<HttpProtocol>() {
            return http.borrow_mut().on_wake(py, kind);
        }
        protocol
            .cast::<WebSocketProtocol>()?
            .borrow_mut()
            .on_wake(py, kind)
    }

    fn report(&self, py: Python<'_>, err: PyErr) {
        let message = format!("Error in the ferrocorn core: {err}");
        if self.ctx.log(py, LogLevel::Error, message).is_err() {
            err.print(py);
        }
    }
}
