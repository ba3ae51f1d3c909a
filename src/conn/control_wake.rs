//! The waker a connection's task gives its own timers and the server's phase watch: it notes
//! that one of them fired before it wakes the task, so the task polls them only then (and once
//! after each change to them), not on every wake-up of the connection (each read and write).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use futures_util::task::AtomicWaker;

pub struct ControlWake {
    /// One of the task's timers or watches fired (or one was replaced and has not been polled
    /// since): poll them all at the next wake-up.
    fired: AtomicBool,
    task: AtomicWaker,
}

impl ControlWake {
    /// Fired from the start: the timers and watches have not been polled yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            fired: AtomicBool::new(true),
            task: AtomicWaker::new(),
        })
    }

    /// The task's waker, to wake when one of them fires (kept once per task in practice: a
    /// waker that would wake the same task is not stored again).
    pub fn register(&self, task: &Waker) {
        self.task.register(task);
    }

    /// Poll them all at the next wake-up: one was replaced (a new deadline, a new watch
    /// future), or one was found ready, so the others were not polled this time.
    pub fn poll_all_next(&self) {
        self.fired.store(true, Ordering::Release);
    }

    /// Whether one fired since the last call (and it is to be polled now).
    pub fn take_fired(&self) -> bool {
        self.fired.swap(false, Ordering::AcqRel)
    }
}

impl Wake for ControlWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::ControlWake;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_fire_wakes_the_task_and_is_taken_once() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(count.clone());
        let control = ControlWake::new();
        assert!(control.take_fired(), "fired from the start");
        assert!(!control.take_fired());
        control.register(&task);
        Waker::from(control.clone()).wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(control.take_fired());
        assert!(!control.take_fired());
        control.poll_all_next();
        assert!(control.take_fired());
    }
}
