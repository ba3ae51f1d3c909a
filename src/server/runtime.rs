//! The tokio runtime: one I/O thread, tuned so that one wake-up of Python carries a whole I/O
//! pass's events; and the allocator's memory handed back to the system once the I/O goes quiet.

use std::sync::Arc;

use crate::access::AccessLog;
use crate::bridge::mark_io_thread;
use crate::jobs::Bridge;

/// One worker thread. The multi-thread scheduler (with a single worker) is used for its
/// parker: a wake from the Python thread writes to the driver's eventfd only when the worker is
/// parked, so a batch of responses costs one syscall. The current-thread scheduler unparks on
/// every remote wake: one syscall per response (measured).
/// `access_log`: the core's access lines, written out whenever the thread is about to sleep.
pub fn build_runtime(
    bridge: Arc<Bridge>,
    access_log: Option<Arc<AccessLog>>,
) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("ferrocorn-io")
        .on_thread_start(io_thread_setup)
        // Everything the I/O pass produced goes to Python in one wake-up, and its access lines
        // to the log in one write.
        .on_thread_park(move || {
            bridge.flush();
            if let Some(log) = &access_log {
                log.flush();
            }
        })
        .build()
}

/// Runs on the I/O thread when it starts.
fn io_thread_setup() {
    mark_io_thread();
    // SCHED_BATCH: the I/O thread's wake-ups (a request arriving) do not preempt the Python
    // thread in the middle of an app's work; it runs when Python yields, which is when the
    // batch it is about to hand over can be taken. Best effort: ignored where not permitted.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// Watches the server's activity (requests started, connections open) once a period, and hands
/// the allocator's free memory back to the system once it has stopped changing: mimalloc
/// purges freed pages only from inside its own calls, so after a burst of connections the
/// memory they used stayed resident for as long as the server then stayed idle.
pub struct IdleMemory {
    last: (u64, usize),
    returned: bool,
}

impl IdleMemory {
    /// How often the activity is looked at.
    pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

    pub fn new(activity: (u64, usize)) -> Self {
        Self {
            last: activity,
            returned: true,
        }
    }

    /// Called on the I/O thread once a [`IdleMemory::PERIOD`] with the current activity.
    pub fn check(&mut self, activity: (u64, usize)) {
        if activity != self.last {
            self.last = activity;
            self.returned = false;
        } else if !self.returned {
            self.returned = true;
            return_free_memory();
        }
    }
}

/// Purge the calling thread's free pages and every arena's (mimalloc's `mi_collect(true)`).
fn return_free_memory() {
    #[cfg(not(feature = "fuzzing"))]
    {
        extern "C" {
            fn mi_collect(force: bool);
        }
        // SAFETY: mimalloc's own entry point (linked through the `mimalloc` crate, our global
        // allocator); it only touches the allocator's state, from the calling thread.
        unsafe { mi_collect(true) }
    }
}
