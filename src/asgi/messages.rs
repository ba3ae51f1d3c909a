//! Reading what the app sends: header lists, byte payloads (shared instead of copied when
//! large) and optional string fields, with the ASGI spec's errors.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors::ProtocolError;
use crate::flow::ZERO_COPY_MIN;

/// The most distinct header names a `HeaderMap` holds (`http`'s limit): past it an app's
/// response is refused, not a panic.
const MAX_HEADERS: usize = 32_768;

/// Append the app's `[(name, value), ...]` (bytes pairs) to `headers`, with room for
/// `room_after` more fields that the server adds after them (`PyContext::fields_added`).
pub fn append_headers(
    headers: &mut HeaderMap,
    pairs: &Bound<'_, PyAny>,
    room_after: usize,
) -> PyResult<()> {
    reserve_headers(headers, pairs, room_after)?;
    for_each_header(pairs, |name, value| append_header(headers, name, value))
}

/// Room in `headers`, made once, for the app's pairs and `room_after` more fields (a map that
/// grows field by field rehashes on the way).
pub fn reserve_headers(
    headers: &mut HeaderMap,
    pairs: &Bound<'_, PyAny>,
    room_after: usize,
) -> PyResult<()> {
    let count = pairs.len().unwrap_or(0);
    headers
        .try_reserve(count.saturating_add(room_after))
        .map_err(|_| ProtocolError::TooManyHeaders(MAX_HEADERS))?;
    Ok(())
}

/// `headers.append`, refused with the protocol error past the map's limit.
pub fn append_header(
    headers: &mut HeaderMap,
    name: HeaderName,
    value: HeaderValue,
) -> PyResult<()> {
    headers
        .try_append(name, value)
        .map_err(|_| ProtocolError::TooManyHeaders(MAX_HEADERS))?;
    Ok(())
}

/// Each of the app's `[(name, value), ...]` (bytes pairs), checked, in order. A list (what apps
/// send) is read by index: no iterator object per response.
pub fn for_each_header(
    pairs: &Bound<'_, PyAny>,
    mut each: impl FnMut(HeaderName, HeaderValue) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(list) = pairs.cast::<PyList>() {
        for pair in list.iter() {
            let (name, value) = checked_pair(&pair)?;
            each(name, value)?;
        }
        return Ok(());
    }
    for pair in pairs.try_iter()? {
        let (name, value) = checked_pair(&pair?)?;
        each(name, value)?;
    }
    Ok(())
}

/// One `(name, value)` pair of bytes, as a valid header field.
fn checked_pair(pair: &Bound<'_, PyAny>) -> PyResult<(HeaderName, HeaderValue)> {
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
    Ok((name, value))
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
