//! The ASGI `websocket` scope: the request scope's keys without `method`, with `scheme`
//! ws/wss, the offered `subprotocols` and the `websocket.http.response` extension.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use super::upgrade::WsHead;
use crate::scope::{build_request_scope, ScopeCache};

pub fn build_websocket_scope<'py>(
    py: Python<'py>,
    cache: &ScopeCache,
    head: &WsHead,
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
