//! `--metrics-bind`: this worker's Prometheus counters, kept in its slot of a shared-memory
//! block that the process serving `/metrics` reads (see `docs/architecture.md`, "Metrics").
//!
//! Each worker owns one fixed-layout [`Slot`] and is its only writer; every update is one
//! relaxed atomic add, so nothing is locked and no Python object is made per request. Counters
//! are never zeroed (a replacement worker continues its slot's counts); the gauges are zeroed by
//! the supervisor before it hands a slot to a new worker. With metrics off, [`Metrics`] is
//! `None` and every method returns after one branch.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The block's first 8 bytes (`python/ferrocorn/metrics.py` writes them).
pub const MAGIC: u64 = u64::from_le_bytes(*b"FCMETR01");
/// Bytes before slot 0: the magic, the slot count, the supervisor's restart counters.
pub const HEADER_SIZE: usize = 512;
/// Bytes per slot (a [`Slot`] and room to grow).
pub const SLOT_SIZE: usize = 512;
/// The request duration histogram's upper bounds, in microseconds; a last bucket is `+Inf`.
pub const DURATION_BOUNDS_US: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];
const BUCKETS: usize = DURATION_BOUNDS_US.len() + 1;

/// The protocol label of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1 = 0,
    Http2 = 1,
}

/// One worker's counters, as laid out in shared memory (`repr(C)`, 8-byte fields: the Python
/// reader in `python/ferrocorn/metrics.py` indexes them as an array of u64). Gauges last, so
/// that the supervisor zeroes one contiguous range.
#[repr(C)]
#[derive(Default)]
pub struct Slot {
    /// The pid of the worker that last took the slot (written by the supervisor).
    pub pid: AtomicU64,
    /// Responses by protocol and status class (1xx .. 5xx).
    pub requests: [[AtomicU64; 5]; 2],
    /// Request body bytes read from clients.
    pub request_bytes: AtomicU64,
    /// Response body bytes handed to the connection.
    pub response_bytes: AtomicU64,
    /// Request durations, one count per bucket (not cumulative).
    pub duration_buckets: [AtomicU64; BUCKETS],
    pub duration_sum_us: AtomicU64,
    pub connections_total: AtomicU64,
    pub websockets_total: AtomicU64,
    // Gauges, kept as wrapping u64 (read as i64): zeroed when a new worker takes the slot.
    pub requests_in_flight: AtomicU64,
    pub connections_open: AtomicU64,
    pub websockets_open: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Slot>() <= SLOT_SIZE);

/// This worker's slot, or nothing when metrics are off. `Copy`: a reference into a mapping that
/// lives as long as the process.
#[derive(Clone, Copy, Default)]
pub struct Metrics(Option<&'static Slot>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() {
            "Metrics(on)"
        } else {
            "Metrics(off)"
        })
    }
}

impl Metrics {
    /// Maps slot `index` of the block at `path` (created by the supervisor, or by the single
    /// server process).
    pub fn map(path: &Path, index: usize) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        let end = index
            .checked_mul(SLOT_SIZE)
            .and_then(|offset| offset.checked_add(HEADER_SIZE + SLOT_SIZE));
        if !end.is_some_and(|end| end <= len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("slot {index} is outside the metrics block ({len} bytes)"),
            ));
        }
        // SAFETY: a fresh shared read/write mapping of an open file of `len` bytes; the
        // descriptor may be closed afterwards (the mapping keeps the file).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping is page-aligned and at least HEADER_SIZE bytes long (checked).
        let magic = unsafe { &*base.cast::<AtomicU64>() }.load(Ordering::Relaxed);
        if magic != MAGIC {
            // SAFETY: unmapping what was mapped just above; nothing refers to it.
            unsafe { libc::munmap(base, len) };
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a ferrocorn metrics block",
            ));
        }
        // SAFETY: the slot lies inside the mapping (checked above) at an offset that is a
        // multiple of 512 from a page-aligned base, so it is aligned for AtomicU64. `Slot` is
        // only AtomicU64s, valid for any bytes. Other processes touch this memory only through
        // aligned 8-byte atomic loads and stores. The mapping is never unmapped (it is leaked
        // on purpose, one per `Core`), so the reference may be `'static`.
        let slot = unsafe {
            &*base
                .cast::<u8>()
                .add(HEADER_SIZE + index * SLOT_SIZE)
                .cast::<Slot>()
        };
        Ok(Self(Some(slot)))
    }

    pub fn is_on(self) -> bool {
        self.0.is_some()
    }

    /// A request starts: counted in flight until the returned meter is dropped.
    pub fn request(self, protocol: Protocol) -> RequestMeter {
        let start = self.0.map(|slot| {
            slot.requests_in_flight.fetch_add(1, Ordering::Relaxed);
            Instant::now()
        });
        RequestMeter {
            slot: self.0,
            start,
            protocol,
            status_class: None,
            response_bytes: 0,
        }
    }

    /// `bytes` of a request body were read.
    pub fn request_bytes(self, bytes: usize) {
        if let Some(slot) = self.0 {
            slot.request_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// A connection was accepted.
    pub fn connection_accepted(self) {
        if let Some(slot) = self.0 {
            slot.connections_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection (or the WebSocket that took it over) is open until the guard is dropped.
    pub fn connection_open(self) -> Gauge {
        Gauge::up(self.0.map(|slot| &slot.connections_open))
    }

    /// A WebSocket session runs until the guard is dropped.
    pub fn websocket_open(self) -> Gauge {
        if let Some(slot) = self.0 {
            slot.websockets_total.fetch_add(1, Ordering::Relaxed);
        }
        Gauge::up(self.0.map(|slot| &slot.websockets_open))
    }
}

/// One unit of a gauge, taken back when dropped.
pub struct Gauge(Option<&'static AtomicU64>);

impl Gauge {
    fn up(gauge: Option<&'static AtomicU64>) -> Self {
        if let Some(gauge) = gauge {
            gauge.fetch_add(1, Ordering::Relaxed);
        }
        Self(gauge)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        if let Some(gauge) = self.0 {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One request, from its head to the end of its response body. Dropped without a status (the
/// client left before any response head), it only leaves the in-flight gauge.
pub struct RequestMeter {
    slot: Option<&'static Slot>,
    start: Option<Instant>,
    protocol: Protocol,
    status_class: Option<usize>,
    response_bytes: u64,
}

impl RequestMeter {
    /// The response head carries `status`.
    pub fn responded(&mut self, status: u16) {
        if self.slot.is_some() {
            self.status_class = Some(usize::from(status / 100).clamp(1, 5) - 1);
        }
    }

    /// `bytes` of the response body went to the connection.
    pub fn sent(&mut self, bytes: usize) {
        self.response_bytes += bytes as u64;
    }
}

impl Drop for RequestMeter {
    fn drop(&mut self) {
        let Some(slot) = self.slot else {
            return;
        };
        slot.requests_in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(class) = self.status_class else {
            return;
        };
        slot.requests[self.protocol as usize][class].fetch_add(1, Ordering::Relaxed);
        slot.response_bytes
            .fetch_add(self.response_bytes, Ordering::Relaxed);
        let micros = self.start.map_or(0, |start| {
            u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
        });
        let bucket = DURATION_BOUNDS_US.partition_point(|&bound| bound < micros);
        slot.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        slot.duration_sum_us.fetch_add(micros, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_python_reader() {
        // python/ferrocorn/metrics.py indexes the slot as u64s at these positions.
        assert_eq!(std::mem::offset_of!(Slot, requests), 8);
        assert_eq!(std::mem::offset_of!(Slot, request_bytes), 11 * 8);
        assert_eq!(std::mem::offset_of!(Slot, response_bytes), 12 * 8);
        assert_eq!(std::mem::offset_of!(Slot, duration_buckets), 13 * 8);
        assert_eq!(std::mem::offset_of!(Slot, duration_sum_us), 25 * 8);
        assert_eq!(std::mem::offset_of!(Slot, connections_total), 26 * 8);
        assert_eq!(std::mem::offset_of!(Slot, websockets_total), 27 * 8);
        assert_eq!(std::mem::offset_of!(Slot, requests_in_flight), 28 * 8);
        assert_eq!(std::mem::offset_of!(Slot, websockets_open), 30 * 8);
    }

    #[test]
    fn off_costs_nothing_and_counts_nothing() {
        let metrics = Metrics::default();
        let mut meter = metrics.request(Protocol::Http1);
        meter.responded(200);
        assert!(meter.start.is_none() && meter.status_class.is_none());
    }

    /// What one request costs the meter, on: `cargo test --release metrics::tests::cost -- --ignored
    /// --nocapture` (docs/performance.md).
    #[test]
    #[ignore = "a measurement, not a check"]
    #[allow(clippy::print_stdout)] // the measurement is the figure it prints
    fn cost() {
        let on = Metrics(Some(Box::leak(Box::default())));
        for (name, metrics) in [("off", Metrics::default()), ("on", on)] {
            let rounds = 10_000_000u32;
            let started = Instant::now();
            for _ in 0..rounds {
                let mut meter = std::hint::black_box(metrics).request(Protocol::Http1);
                meter.responded(200);
                meter.sent(13);
            }
            let ns = started.elapsed().as_nanos() / u128::from(rounds);
            println!("metrics {name}: {ns} ns per request");
        }
    }

    #[test]
    fn a_bound_is_its_own_bucket() {
        // Prometheus buckets are `le` (less than or equal).
        assert_eq!(DURATION_BOUNDS_US.partition_point(|&b| b < 5_000), 0);
        assert_eq!(DURATION_BOUNDS_US.partition_point(|&b| b < 5_001), 1);
        assert_eq!(DURATION_BOUNDS_US.partition_point(|&b| b < u64::MAX), 11);
    }
}
