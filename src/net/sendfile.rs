//! File ranges sent with `sendfile(2)` from under hyper, on cleartext HTTP/1.1 connections.
//!
//! hyper writes every byte of a response itself, so a file body cannot hand it a descriptor.
//! Instead the body queues the range here and gives hyper *stand-in* bytes of the same length:
//! a slice of [`STAND_IN`], a static region no one ever reads. hyper counts them, frames them
//! and queues them without copying (its vectored write strategy keeps `Bytes` as they are), and
//! the [`Transport`](super::Transport) under hyper, on meeting a stand-in slice in a write,
//! sends the range's bytes from the page cache with `sendfile(2)` instead. The bytes never
//! enter user space.
//!
//! Each range's stand-in starts at its own offset into the region ([`Tag`]), and the transport
//! checks the slice it meets against the range at the head of the queue, so a stand-in can
//! never be sent as another range's bytes: a mismatch fails the connection instead.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The most one stand-in covers: what one `sendfile` may send, and one step of a file body (its
/// page-cache prefetch when the range is not cached yet). Large enough that a step spans a few
/// fillings of a socket's send buffer (at most 4 MiB by default), so the steps cost little next
/// to the `sendfile`s; for a client that stops reading, at most a step is read ahead, into the
/// page cache only (the stand-ins cost no memory: see [`STAND_IN`]).
pub const SENDFILE_CHUNK: usize = 8 * 1024 * 1024;
/// Distinct starting offsets for consecutive stand-ins ([`Tag`]).
const TAGS: usize = 4096;

/// Never read: only its addresses matter. Zero-initialised, so it costs no memory until a
/// page is touched, and nothing touches it.
static STAND_IN: [u8; SENDFILE_CHUNK + TAGS] = [0; SENDFILE_CHUNK + TAGS];

/// Where a range's stand-in starts in [`STAND_IN`]: consecutive ranges start at different
/// offsets, so a stand-in whose range was dropped without being written is not mistaken for
/// the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tag(usize);

struct Range {
    file: Arc<File>,
    offset: u64,
    /// Bytes of the range not sent yet.
    remaining: usize,
    /// Bytes sent so far: the stand-in slice hyper writes next starts this far into it.
    sent: usize,
    tag: Tag,
}

/// A connection's file ranges, in the order hyper will write their stand-ins.
#[derive(Default)]
pub struct SendfileQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    ranges: VecDeque<Range>,
    next_tag: usize,
}

/// What a write meets at the front of hyper's buffers.
pub enum Front {
    /// Ordinary bytes: the first `n` slices hold no stand-in.
    Bytes(usize),
    /// The first slice is a stand-in for `len` bytes of this file at this offset.
    File { fd: RawFd, offset: u64, len: usize },
}

impl SendfileQueue {
    /// Queue `len` bytes (at most [`SENDFILE_CHUNK`]) of `file` from `offset`, and return the
    /// stand-in hyper is to write in their place.
    pub fn stand_in(&self, file: Arc<File>, offset: u64, len: usize) -> Bytes {
        let len = len.min(SENDFILE_CHUNK);
        let mut state = self.lock();
        let tag = Tag(state.next_tag);
        state.next_tag = (state.next_tag + 1) % TAGS;
        state.ranges.push_back(Range {
            file,
            offset,
            remaining: len,
            sent: 0,
            tag,
        });
        Bytes::from_static(&STAND_IN[tag.0..tag.0 + len])
    }

    /// Classify the slices of one write: how many ordinary slices lead, or the range the
    /// leading stand-in slice stands for. A stand-in that does not match the range at the head
    /// of the queue is an error (never send the wrong bytes).
    pub fn front(&self, slices: &[io::IoSlice<'_>]) -> io::Result<Front> {
        let leading = slices.iter().take_while(|s| !is_stand_in(s)).count();
        if leading > 0 || slices.is_empty() {
            return Ok(Front::Bytes(leading));
        }
        let slice = &slices[0];
        let state = self.lock();
        let Some(range) = state.ranges.front() else {
            return Err(mismatch());
        };
        let start = slice.as_ptr() as usize - STAND_IN.as_ptr() as usize;
        if start != range.tag.0 + range.sent || slice.len() != range.remaining {
            return Err(mismatch());
        }
        Ok(Front::File {
            fd: range.file.as_raw_fd(),
            offset: range.offset + range.sent as u64,
            len: range.remaining,
        })
    }

    /// `n` bytes of the range at the head of the queue went out.
    pub fn sent(&self, n: usize) {
        let mut state = self.lock();
        if let Some(range) = state.ranges.front_mut() {
            range.sent += n;
            range.remaining = range.remaining.saturating_sub(n);
            if range.remaining == 0 {
                state.ranges.pop_front();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A panic while holding the lock cannot leave the queue half-updated in a way that
        // matters more than the connection it belongs to: keep going with its contents.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `slice` lies in the stand-in region.
pub fn is_stand_in(slice: &[u8]) -> bool {
    let base = STAND_IN.as_ptr() as usize;
    let at = slice.as_ptr() as usize;
    !slice.is_empty() && at >= base && at < base + STAND_IN.len()
}

fn mismatch() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a sendfile stand-in does not match its queued file range",
    )
}

/// One `sendfile(2)` of up to `len` bytes of `file` at `offset` to `socket` (non-blocking:
/// `WouldBlock` when the socket is full). 0 means the file ended early.
pub fn send_range(socket: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    loop {
        // SAFETY: sendfile reads `file` from `off` and writes to `socket`; both are descriptors
        // (a closed one is EBADF), and `off` is a local it updates.
        let n = unsafe { libc::sendfile(socket, file, &mut off, len) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether every page of `len` bytes of `file` at `offset` is in the page cache now
/// (`cachestat(2)`, Linux 6.5+: one walk of the file's page-cache index, no I/O, no copy), so that
/// a `sendfile` of them from the connection's thread will not wait on the disk. `false` when it
/// cannot tell (an older kernel or a filter refusing the call: then it never asks again), and for
/// bytes past the end of the file, which the page cache never holds.
pub fn cached(file: &File, offset: u64, len: usize) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
    if len == 0 || UNAVAILABLE.load(Ordering::Relaxed) {
        return false;
    }
    match cachestat(file.as_raw_fd(), offset, len as u64) {
        Ok(pages) => pages >= pages_spanned(offset, len as u64),
        Err(err) => {
            if matches!(
                err.raw_os_error(),
                Some(libc::ENOSYS | libc::EPERM | libc::EACCES)
            ) {
                UNAVAILABLE.store(true, Ordering::Relaxed);
            }
            false
        }
    }
}

/// Pages of the page cache that `len` bytes at `offset` touch.
fn pages_spanned(offset: u64, len: u64) -> u64 {
    let page = page_size();
    (offset + len - 1) / page - offset / page + 1
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// `cachestat(2)`: how many pages of the range are in the page cache.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn cachestat(fd: RawFd, offset: u64, len: u64) -> io::Result<u64> {
    /// The same number on every architecture since the syscall tables were unified (Linux 6.5).
    const SYS_CACHESTAT: libc::c_long = 451;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range { off: offset, len };
    let mut stat = Stat::default();
    // SAFETY: cachestat reads `range` and writes `stat`, both live locals of the layouts the
    // kernel defines (include/uapi/linux/mman.h); a bad descriptor is an EBADF error.
    let ret = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &raw const range,
            &raw mut stat,
            0 as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.nr_cache)
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn cachestat(_fd: RawFd, _offset: u64, _len: u64) -> io::Result<u64> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Bring `len` bytes of `file` at `offset` into the page cache and wait until they are there
/// (blocks on disk I/O: call it on the blocking pool), so that the `sendfile` from the
/// connection's thread finds them there. `readahead(2)` only starts the reads (all of them at
/// once); a `sendfile` of the range to /dev/null then waits for them, without copying a byte.
pub fn prefetch(file: &File, offset: u64, len: usize) {
    let Ok(off) = libc::off64_t::try_from(offset) else {
        return;
    };
    // SAFETY: readahead only reads the descriptor's file into the page cache. Its result does
    // not matter: a failure only means the reads below (or sendfile) go to the disk themselves.
    unsafe { libc::readahead(file.as_raw_fd(), off, len) };
    let Some(null) = dev_null() else {
        return;
    };
    let mut done = 0;
    while done < len {
        match send_range(
            null.as_raw_fd(),
            file.as_raw_fd(),
            offset + done as u64,
            len - done,
        ) {
            Ok(n) if n > 0 => done += n,
            // The end of the file, or an error the sendfile to the client will meet as well.
            _ => break,
        }
    }
}

/// /dev/null opened for writing, once per process (`None` if it cannot be opened: then the
/// prefetch only starts the reads).
fn dev_null() -> Option<&'static File> {
    static NULL: std::sync::OnceLock<Option<File>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .ok()
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;

    fn file() -> Arc<File> {
        Arc::new(File::open("/dev/null").unwrap()) // ok: test-only
    }

    #[test]
    fn stand_ins_are_recognised_and_matched_in_order() {
        let queue = SendfileQueue::default();
        let a = queue.stand_in(file(), 10, 100);
        let b = queue.stand_in(file(), 0, 50);
        assert!(is_stand_in(&a) && is_stand_in(&b));
        assert!(!is_stand_in(b"head"));
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        let front = queue
            .front(&[IoSlice::new(head), IoSlice::new(&a)])
            .unwrap(); // ok: test-only
        assert!(matches!(front, Front::Bytes(1)));
        let whole = queue.front(&[IoSlice::new(&a)]).unwrap(); // ok: test-only
        match whole {
            Front::File { offset, len, .. } => assert_eq!((offset, len), (10, 100)),
            Front::Bytes(_) => panic!("expected the file range"), // ok: test-only
        }
        queue.sent(40);
        // hyper advances its slice by what was written.
        let rest = queue.front(&[IoSlice::new(&a[40..])]).unwrap(); // ok: test-only
        match rest {
            Front::File { offset, len, .. } => assert_eq!((offset, len), (50, 60)),
            Front::Bytes(_) => panic!("expected the rest of the range"), // ok: test-only
        }
        // The second stand-in is not the head of the queue yet.
        assert!(queue.front(&[IoSlice::new(&b)]).is_err());
        queue.sent(60);
        assert!(matches!(
            queue.front(&[IoSlice::new(&b)]),
            Ok(Front::File { len: 50, .. })
        ));
    }

    #[test]
    fn cached_tells_pages_in_the_page_cache_from_the_rest() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("ferrocorn-cached-{}", std::process::id()));
        let mut out = File::create(&path).unwrap(); // ok: test-only
        out.write_all(&[7u8; 3 * 4096 + 10]).unwrap(); // ok: test-only
        drop(out);
        let file = File::open(&path).unwrap(); // ok: test-only
                                               // Just written: in the page cache (cachestat on kernels that have it).
        if cachestat(file.as_raw_fd(), 0, 1).is_ok() {
            assert!(cached(&file, 0, 3 * 4096 + 10));
            assert!(cached(&file, 4095, 2));
            // Past the end of the file: never cached.
            assert!(!cached(&file, 3 * 4096, 4096 + 10));
        }
        assert!(!cached(&file, 0, 0));
        std::fs::remove_file(&path).unwrap(); // ok: test-only
    }

    #[test]
    fn pages_spanned_counts_partial_pages() {
        let page = page_size();
        assert_eq!(pages_spanned(0, 1), 1);
        assert_eq!(pages_spanned(0, page), 1);
        assert_eq!(pages_spanned(page - 1, 2), 2);
        assert_eq!(pages_spanned(10, 3 * page), 4);
    }

    #[test]
    fn a_dropped_stand_in_is_not_taken_for_the_next_range() {
        let queue = SendfileQueue::default();
        let _dropped = queue.stand_in(file(), 0, 100);
        let next = queue.stand_in(file(), 0, 100);
        // Same length, but the tags differ: the write fails instead of sending the wrong range.
        assert!(queue.front(&[IoSlice::new(&next)]).is_err());
    }
}
