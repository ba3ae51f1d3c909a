//! The tokio runtime: one I/O thread, tuned so that one wake-up of Python carries a whole I/O
//! pass's events; the C allocator Python's large objects come from, tuned not to return memory
//! between requests; and both allocators' free memory handed back once the I/O goes quiet.

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
    keep_c_heap_between_requests();
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

/// The C heap's top is trimmed only when the server goes quiet ([`IdleMemory`]), not after
/// every request.
///
/// Python takes every object over 512 bytes from glibc's malloc: each request body chunk the
/// app receives as `bytes`, each response body it builds. glibc gives the top of its heap back
/// to the system as soon as more than `M_TRIM_THRESHOLD` (128 KiB) of it is free, which a few
/// 64 KiB bodies finishing together reach; the next requests then fault the same pages back in,
/// zeroed and charged to the cgroup again. On a POST echo of 64 KiB that churn took a third of
/// the server's CPU (89 -> 59 us per request once it stopped; `docs/performance.md`).
///
/// The thresholds are the ones glibc's own dynamic tuning reaches at most on 64-bit (mmap from
/// 32 MiB, trim beyond twice that); setting them fixes them there from the start. Glibc only.
fn keep_c_heap_between_requests() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes glibc's tuning parameters; any value is accepted.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD);
        }
    }
}

/// Purge the calling thread's free pages and every arena's (mimalloc's `mi_collect(true)`), and
/// the C heap's free memory (`malloc_trim`, see [`keep_c_heap_between_requests`]).
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc's own entry point; it only walks the allocator's arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
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
