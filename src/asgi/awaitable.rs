//! Awaitables that complete without a trip through the event loop.
//!
//! Most `receive()` and `send()` calls can answer at once (the data is there, the buffer has
//! room). Returning one of these instead of an `asyncio.Future` means the app's `await`
//! finishes inside the same step of its task: no scheduling, no extra loop iteration.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

/// An awaitable already holding its result.
#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub fn new(value: Py<PyAny>) -> Self {
        Self { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> PyResult<Option<Py<PyAny>>> {
        match self.value.take() {
            // StopIteration(value) is how an iterator-based awaitable returns a value.
            Some(value) => Err(PyStopIteration::new_err((value,))),
            None => Ok(None),
        }
    }
}

/// An awaitable that completes at once with `None`. Stateless, so one instance serves all.
#[pyclass(module = "ferrocorn._ferrocorn", frozen)]
pub struct Done;

#[pymethods]
impl Done {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Returning `None` ends the iteration with no exception object at all.
    fn __next__(&self) -> Option<Py<PyAny>> {
        None
    }
}
