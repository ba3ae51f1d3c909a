//! The asyncio futures an app is parked on (at most one `receive()` and one `send()`), and how a
//! wake-up from the tokio side completes them. Shared by the HTTP and WebSocket protocols.

use pyo3::intern;
use pyo3::prelude::*;

use super::context::PyContext;
use crate::bridge::{SendRoom, WaitKind};
use crate::errors::Disconnected;

/// A protocol object whose app can park in `receive()` or `send()`.
pub trait Wakeable {
    fn parked(&mut self) -> &mut Parked;
    /// The message for the parked `receive()`, if one is ready now (else it parks again).
    fn poll_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>>;
    /// Whether the parked `send()` may go on (else it parks again).
    fn send_room(&self) -> SendRoom;
}

#[derive(Default)]
pub struct Parked {
    receive: Option<Py<PyAny>>,
    send: Option<Py<PyAny>>,
}

impl Parked {
    fn slot(&mut self, kind: WaitKind) -> &mut Option<Py<PyAny>> {
        match kind {
            WaitKind::Receive => &mut self.receive,
            WaitKind::Send => &mut self.send,
        }
    }

    /// A new future for the app to await until a wake-up of `kind`.
    pub fn park(&mut self, py: Python<'_>, ctx: &PyContext, kind: WaitKind) -> PyResult<Py<PyAny>> {
        let future = ctx.new_future(py)?;
        *self.slot(kind) = Some(future.clone_ref(py));
        Ok(future)
    }

    /// The `receive()` future, if the app is parked on it: the request is over.
    pub fn take_receive(&mut self) -> Option<Py<PyAny>> {
        self.receive.take()
    }
}

/// Complete the future an app is parked on, if the wake-up lets it go on.
pub fn on_wake<W: Wakeable>(protocol: &mut W, py: Python<'_>, kind: WaitKind) -> PyResult<()> {
    let Some(future) = protocol.parked().slot(kind).take() else {
        return Ok(());
    };
    if is_done(py, &future)? {
        // Cancelled: what it waited for stays queued for the next call.
        return Ok(());
    }
    match kind {
        WaitKind::Receive => match protocol.poll_receive(py)? {
            Some(message) => set_result(py, &future, message),
            None => {
                *protocol.parked().slot(kind) = Some(future);
                Ok(())
            }
        },
        WaitKind::Send => match protocol.send_room() {
            SendRoom::Available => set_result(py, &future, py.None()),
            SendRoom::Gone => {
                let error = PyErr::from(Disconnected::Client);
                future.call_method1(py, intern!(py, "set_exception"), (error,))?;
                Ok(())
            }
            SendRoom::Parked => {
                *protocol.parked().slot(kind) = Some(future);
                Ok(())
            }
        },
    }
}

pub fn is_done(py: Python<'_>, future: &Py<PyAny>) -> PyResult<bool> {
    future.call_method0(py, intern!(py, "done"))?.is_truthy(py)
}

pub fn set_result(py: Python<'_>, future: &Py<PyAny>, value: Py<PyAny>) -> PyResult<()> {
    future.call_method1(py, intern!(py, "set_result"), (value,))?;
    Ok(())
}
