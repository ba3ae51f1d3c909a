//! How an HTTP/2 response is getting on: since when hyper has held a piece of its body without
//! coming back for the next one. hyper asks for the next piece once the previous one was given to
//! h2 within the stream's and the connection's flow-control windows; a client that keeps reading
//! the socket but never opens its window leaves hyper holding a piece for ever (and the app's
//! `send()` waiting behind it). The stream's watchdog (`http::stream_executor`) resets a stream
//! stalled this way for `--timeout-response-write`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub struct StreamProgress {
    origin: Instant,
    /// When hyper took the piece it still holds (microseconds since `origin`); 0 while hyper
    /// waits for the body instead.
    handed_us: AtomicU64,
}

impl StreamProgress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            handed_us: AtomicU64::new(0),
        })
    }

    /// hyper took a piece of the body.
    pub fn handed(&self) {
        let us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.handed_us.store(us.max(1), Ordering::Relaxed);
    }

    /// hyper asks for the next piece: the previous one is on its way.
    pub fn pulled(&self) {
        self.handed_us.store(0, Ordering::Relaxed);
    }

    /// Since when hyper has held a piece without asking for the next, if it does.
    pub fn stalled_since(&self) -> Option<Instant> {
        match self.handed_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.origin + Duration::from_micros(us)),
        }
    }
}
