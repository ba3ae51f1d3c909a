//! How an HTTP/2 response is getting on: since when hyper has held a piece of its body without
//! coming back for the next one. hyper asks for the next piece once the previous one was given to
//! h2 within the stream's and the connection's flow-control windows; a client that keeps reading
//! the socket but never opens its window leaves hyper holding a piece for ever (and the app's
//! `send()` waiting behind it). The stream's watchdog (`http::stream_executor`) resets a stream
//! stalled this way for `--timeout-response-write`.

use std::sync::Arc;

use tokio::time::Instant;

use crate::stamp::Stamp;

pub struct StreamProgress {
    /// When hyper took the piece it still holds; none while hyper waits for the body instead.
    handed: Stamp,
}

impl StreamProgress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            handed: Stamp::default(),
        })
    }

    /// hyper took a piece of the body.
    pub fn handed(&self) {
        self.handed.set_now();
    }

    /// hyper asks for the next piece: the previous one is on its way.
    pub fn pulled(&self) {
        self.handed.clear();
    }

    /// Since when hyper has held a piece without asking for the next, if it does.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.handed.get()
    }
}
