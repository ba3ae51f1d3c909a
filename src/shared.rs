//! State shared by every task of the runtime: the bridge, the settings the connections read,
//! the counters behind `--limit-concurrency`, and the server's phase. Holds no Python object.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::bridge::WakeSink;
use crate::jobs::Bridge;
use crate::metrics::Gauge;
use crate::phase::Phase;
use crate::settings::ServerSettings;

/// The most [`Shared::drain_grace`] gives a connection to start its request.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

pub struct Shared {
    pub bridge: Arc<Bridge>,
    /// Built once (by `http::h1::builder`) and shared by every HTTP/1.1 connection.
    pub http1: hyper::server::conn::http1::Builder,
    /// Everything the connections read, as `settings.rs` checked it (`http2: None` serves
    /// HTTP/1.1 only; each HTTP/2 connection builds its own hyper builder, its executor being per
    /// connection, see `http::stream_executor`).
    pub settings: ServerSettings,
    next_request_id: AtomicU64,
    connections: AtomicUsize,
    /// Requests handed to Python whose exchange is still alive (app running or response in flight).
    in_flight: Arc<AtomicUsize>,
    phase: watch::Sender<Phase>,
    /// When the phase became [`Phase::Draining`].
    drain_began: OnceLock<Instant>,
}

impl Shared {
    pub fn new(
        bridge: Arc<Bridge>,
        settings: ServerSettings,
        http1: hyper::server::conn::http1::Builder,
    ) -> Self {
        let (phase, _) = watch::channel(Phase::Running);
        Self {
            bridge,
            http1,
            settings,
            next_request_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            phase,
            drain_began: OnceLock::new(),
        }
    }

    pub fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Where exchanges and WebSocket channels send their wake-ups.
    pub fn wakes(&self) -> Arc<dyn WakeSink> {
        self.bridge.clone()
    }

    /// The live-exchange count an exchange adds itself to.
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    /// Changes whenever a request starts or a connection opens or closes.
    pub fn activity(&self) -> (u64, usize) {
        (
            self.next_request_id.load(Ordering::Relaxed),
            self.connection_count(),
        )
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Whether a new request would exceed `--limit-concurrency` (this connection included).
    pub fn over_concurrency_limit(&self) -> bool {
        self.settings.limit_concurrency.is_some_and(|limit| {
            self.connection_count() > limit || self.in_flight.load(Ordering::Acquire) >= limit
        })
    }

    pub fn set_phase(&self, phase: Phase) {
        if phase == Phase::Draining {
            let _ = self.drain_began.set(Instant::now());
        }
        self.phase.send_replace(phase);
    }

    pub fn drain_began(&self) -> Option<Instant> {
        self.drain_began.get().copied()
    }

    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// How long, once the server drains, a connection that has not started its request yet is
    /// given to start it: the client may have sent it already.
    pub fn drain_grace(&self) -> Duration {
        self.settings.keep_alive_timeout.min(DRAIN_GRACE)
    }

    /// Count a connection (an accepted socket, or an upgraded WebSocket that outlives its HTTP
    /// task) until the guard is dropped.
    pub fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard {
            shared: self.clone(),
            _open: self.settings.metrics.connection_open(),
        }
    }
}

/// Keeps the live-connection count exact, whichever way a connection task ends.
pub struct ConnectionGuard {
    shared: Arc<Shared>,
    /// `--metrics-bind`'s open-connection gauge.
    _open: Gauge,
}

impl ConnectionGuard {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
