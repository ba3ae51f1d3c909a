//! What every protocol object of one server shares on the Python side: the loop's callbacks,
//! the scope cache, the default headers, and the table of running apps.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use pyo3::prelude::*;

use super::awaitable::Done;
use super::scope::ScopeCache;
use crate::bridge::LogLevel;

pub struct PyContext {
    pub create_future: Py<PyAny>,
    /// `create_task(coroutine)`: the loop's, or one starting the task eagerly (its first step
    /// runs at once, inside the call).
    pub create_task: Py<PyAny>,
    /// Whether `create_task` starts tasks eagerly.
    pub eager: bool,
    /// `runner(scope, protocol)` returns the coroutine that runs the app for one request.
    pub runner: Py<PyAny>,
    /// `contextvars.Context`, when every request must start from an empty context.
    pub fresh_context: Option<Py<PyAny>>,
    /// `log(level, message)`.
    pub log: Py<PyAny>,
    /// `access_log(scope, status)`, when access logging is on.
    pub access_log: Option<Py<PyAny>>,
    pub scope_cache: ScopeCache,
    pub done: Py<Done>,
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    pub runtime: tokio::runtime::Handle,
    /// Apps still running, by request id.
    pub active: Mutex<ActiveApps>,
}

/// Apps still running, by request id.
pub type ActiveApps = HashMap<u64, Active, BuildHasherDefault<IdHasher>>;

/// The hash of a request id. Ids are handed out in sequence by the server, never chosen by a
/// client, so they need no flood-resistant hash (SipHash: ~150 instructions per lookup, two
/// lookups per request): a multiplication by an odd constant spreads a sequence over the
/// table's buckets (the low bits) and its tags (the high bits).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64((self.0 << 8) | u64::from(byte));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A running app: its task (to cancel at shutdown) and its protocol object (to wake: an
/// `HttpProtocol` or a `WebSocketProtocol`, told apart by the dispatcher).
pub struct Active {
    pub protocol: Py<PyAny>,
    pub task: Py<PyAny>,
}

impl PyContext {
    /// The awaitable for a `send()` or `receive()` that completed at once.
    pub fn done(&self, py: Python<'_>) -> Py<PyAny> {
        self.done.clone_ref(py).into_any()
    }

    pub fn new_future(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.create_future.call0(py)
    }

    /// How many fields a response head gets after the app's: the defaults below, and the two
    /// hyper inserts into the map itself on HTTP/2 (`date`, `content-length`). The app's
    /// headers are read into a map with room for these too, or it regrows (rehashes) for them.
    pub fn fields_added(&self) -> usize {
        self.default_headers.len() + 2
    }

    /// `server` and the `--header` defaults, unless the app set a header of the same name.
    pub fn add_default_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.default_headers {
            // One lookup: the name is cloned only when inserted. (Past the map's size limit
            // the default is left out.)
            if let Ok(Entry::Vacant(vacant)) = headers.try_entry(name) {
                let _ = vacant.try_insert(value.clone());
            }
        }
    }

    /// The app of request `id` has finished: it no longer gets wake-ups or cancellation.
    pub fn release(&self, id: u64) {
        self.active.lock().remove(&id);
    }

    /// Log `message` through the server's logger.
    pub fn log(&self, py: Python<'_>, level: LogLevel, message: String) -> PyResult<()> {
        self.log.call1(py, (level.as_python_level(), message))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::IdHasher;

    #[test]
    fn sequential_ids_fill_every_bucket_and_vary_the_tags() {
        let hasher = BuildHasherDefault::<IdHasher>::default();
        let hashes: Vec<u64> = (1_000u64..1_064).map(|id| hasher.hash_one(id)).collect();
        let mut buckets: Vec<u64> = hashes.iter().map(|hash| hash & 63).collect();
        buckets.sort_unstable();
        buckets.dedup();
        assert_eq!(buckets.len(), 64, "64 sequential ids, 64 buckets");
        let mut tags: Vec<u64> = hashes.iter().map(|hash| hash >> 57).collect();
        tags.sort_unstable();
        tags.dedup();
        assert!(tags.len() > 32, "the top 7 bits vary: {}", tags.len());
    }
}
