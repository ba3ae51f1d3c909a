//! An instant kept in an `AtomicU64`: microseconds since an origin, 0 for none. One task sets it
//! (a transport that meets a full socket, a stream that takes a piece of body), another reads it
//! (a connection's slow-client clock, a stream's watchdog), without a lock or an allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Stamp {
    origin: Instant,
    /// Microseconds after `origin`; 0 while no instant is kept (a kept one is at least 1).
    us: AtomicU64,
}

impl Stamp {
    /// No instant kept yet; the instants kept later are counted from `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            us: AtomicU64::new(0),
        }
    }

    /// Keeps now.
    pub fn set_now(&self) {
        self.us.store(self.now_us(), Ordering::Release);
    }

    /// Keeps now unless an instant is kept already (since when something has been so).
    pub fn set_now_if_none(&self) {
        if self.us.load(Ordering::Relaxed) == 0 {
            self.set_now();
        }
    }

    /// Keeps no instant.
    pub fn clear(&self) {
        self.us.store(0, Ordering::Release);
    }

    /// The instant kept, if one is.
    pub fn get(&self) -> Option<Instant> {
        match self.us.load(Ordering::Acquire) {
            0 => None,
            us => Some(self.origin + Duration::from_micros(us)),
        }
    }

    /// The instant kept, or the origin while none is.
    pub fn get_or_origin(&self) -> Instant {
        self.get().unwrap_or(self.origin)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl Default for Stamp {
    /// Counted from now.
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::Stamp;
    use tokio::time::Instant;

    #[test]
    fn kept_cleared_and_kept_once() {
        let origin = Instant::now();
        let stamp = Stamp::new(origin);
        assert_eq!(stamp.get(), None);
        assert_eq!(stamp.get_or_origin(), origin);
        // A stamp is at least 1 us after the origin (0 means none): let that much pass first.
        std::thread::sleep(std::time::Duration::from_millis(1));
        stamp.set_now();
        let first = stamp.get().expect("kept"); // ok: test-only
        assert!(first > origin && first <= Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(2));
        stamp.set_now_if_none();
        assert_eq!(stamp.get(), Some(first), "an instant kept stays");
        stamp.clear();
        assert_eq!(stamp.get(), None);
        stamp.set_now_if_none();
        assert!(stamp.get().is_some_and(|again| again > first));
    }
}
