//! What one access record is made of: the request's side, taken before the app runs, and the
//! response's side, added as the response starts and ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use super::AccessLog;
use crate::net::{ConnInfo, TrustedProxies, X_FORWARDED_FOR};

/// The scope's `client`, as the access line prints it.
pub enum Client {
    Addr(SocketAddr),
    /// Named by a trusted proxy's `X-Forwarded-For` (the scope's port is then 0).
    Forwarded(String),
    /// A Unix socket: no client address.
    None,
}

/// The request's side of a record.
pub struct AccessEntry {
    pub(super) started: Instant,
    pub(super) client: Client,
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    /// The values of `AccessLog::request_headers`, in its order (several field lines of one
    /// name joined with `,`).
    pub(super) request_headers: Vec<Option<HeaderValue>>,
}

impl AccessEntry {
    pub(super) fn new<B>(
        request: &Request<B>,
        conn: &ConnInfo,
        proxies: Option<&TrustedProxies>,
        wanted: &[HeaderName],
    ) -> Self {
        let forwarded = match (conn.trusted_proxy, proxies) {
            (true, Some(proxies)) => request
                .headers()
                .get(X_FORWARDED_FOR)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| proxies.client_from_forwarded_for(value))
                .map(str::to_owned),
            _ => None,
        };
        let client = match (forwarded, conn.client) {
            (Some(host), _) => Client::Forwarded(host),
            (None, Some(addr)) => Client::Addr(addr),
            (None, None) => Client::None,
        };
        Self {
            started: Instant::now(),
            client,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            request_headers: wanted
                .iter()
                .map(|name| joined(request.headers(), name))
                .collect(),
        }
    }

    /// The value of the `index`th wanted request header.
    pub(super) fn request_header(
        &self,
        log: &AccessLog,
        name: &HeaderName,
    ) -> Option<&HeaderValue> {
        let index = log
            .request_headers
            .iter()
            .position(|wanted| wanted == name)?;
        self.request_headers.get(index)?.as_ref()
    }
}

/// A whole record: the request's side, the response's status and headers, what was sent.
pub struct Finished {
    pub entry: AccessEntry,
    pub status: u16,
    /// The values of `AccessLog::response_headers`, in its order.
    pub response_headers: Vec<Option<HeaderValue>>,
    /// Response body bytes handed to the connection.
    pub bytes: u64,
    pub(super) ended: Instant,
    pub(super) wall_clock: SystemTime,
}

impl Finished {
    /// The response started with `status` and `headers`; `bytes` and the end come later
    /// ([`Finished::end`]).
    pub fn new(log: &Arc<AccessLog>, entry: AccessEntry, status: u16, headers: &HeaderMap) -> Self {
        Self {
            entry,
            status,
            response_headers: log
                .response_headers
                .iter()
                .map(|name| joined(headers, name))
                .collect(),
            bytes: 0,
            ended: Instant::now(),
            wall_clock: SystemTime::now(),
        }
    }

    /// The response ended now.
    pub fn end(&mut self) {
        self.ended = Instant::now();
        self.wall_clock = SystemTime::now();
    }

    pub(super) fn response_header(
        &self,
        log: &AccessLog,
        name: &HeaderName,
    ) -> Option<&HeaderValue> {
        let index = log
            .response_headers
            .iter()
            .position(|wanted| wanted == name)?;
        self.response_headers.get(index)?.as_ref()
    }

    /// The response's duration in whole microseconds.
    pub(super) fn micros(&self) -> u128 {
        self.ended.duration_since(self.entry.started).as_micros()
    }
}

/// Every field line named `name`, joined with `,` (as the Python access log does).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for value in std::iter::once(second).chain(values) {
        joined.push(b',');
        joined.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}
