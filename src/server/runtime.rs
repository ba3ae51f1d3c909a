//! The tokio runtime: one I/O thread, tuned so that one wake-up of Python carries a whole I/O
//! pass's events.

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
