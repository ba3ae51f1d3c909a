//! Reading what the app sends: header lists, byte payloads (shared instead of copied when
//! large) and optional string fields, with the ASGI spec's errors.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::errors::ProtocolError;
use crate::flow::ZERO_COPY_MIN;

/// Append the app's `[(name, value), ...]` (bytes pairs) to `headers`.
pub fn append_headers(headers: &mut HeaderMap, pairs: &Bound<'_, PyAny>) -> PyResult<()> {
    for_each_header(pairs, |name, value| {
        headers.append(name, value);
    })
}

/// Each of the app's `[(name, value), ...]` (bytes pairs), checked, in order.
pub fn for_each_header(
    pairs: &Bound<'_, PyAny>,
    mut each: impl FnMut(HeaderName, HeaderValue),
) -> PyResult<()> {
    for pair in pairs.try_iter()? {
        let pair = pair?;
        let (name, value) = match pair.cast::<PyTuple>() {
            Ok(tuple) if tuple.len() == 2 => (tuple.get_item(0)?, tuple.get_item(1)?),
            _ => (pair.get_item(0)?, pair.get_item(1)?),
        };
        let name = name.cast::<PyBytes>()?.as_bytes();
        let value = value.cast::<PyBytes>()?.as_bytes();
        let name = HeaderName::from_bytes(name).map_err(|_| {
            ProtocolError::InvalidHeaderName(String::from_utf8_lossy(name).into_owned())
        })?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| ProtocolError::InvalidHeaderValue(name.as_str().to_owned()))?;
        each(name, value);
    }
    Ok(())
}

/// A `bytes` payload as `Bytes`. Large ones share the Python object (dropped on the I/O thread
/// once written; PyO3 defers the decref to the next GIL holder); small ones are copied.
pub fn bytes_from_py(data: Bound<'_, PyAny>) -> PyResult<Bytes> {
    let bytes = data.cast_into::<PyBytes>()?;
    if bytes.as_bytes().len() < ZERO_COPY_MIN {
        return Ok(Bytes::copy_from_slice(bytes.as_bytes()));
    }
    Ok(Bytes::from_owner(PyBackedBytes::from(bytes)))
}

/// `message[key]` as a string; `None` when missing or `None`.
pub fn optional_str(
    message: &Bound<'_, PyDict>,
    key: &Bound<'_, PyString>,
) -> PyResult<Option<String>> {
    match message.get_item(key)? {
        Some(value) if !value.is_none() => Ok(Some(value.extract::<String>()?)),
        _ => Ok(None),
    }
}

/// `message[key]`'s truth value; false when missing.
pub fn flag(message: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> PyResult<bool> {
    match message.get_item(key)? {
        Some(value) => value.is_truthy(),
        None => Ok(false),
    }
}
