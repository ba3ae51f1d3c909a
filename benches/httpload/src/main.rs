//! httpload: keep-alive HTTP/1.1 GETs over N connections on one thread, for large response
//! bodies. Each connection sends a request, reads the response head, then discards exactly
//! `Content-Length` bytes of body and sends the next request. By default the body never reaches
//! user space (`recv(MSG_TRUNC)`: the kernel frees the bytes without copying them), so the client
//! costs a few syscalls per response instead of a copy of every byte; `--discard copy` reads into
//! a large buffer like an ordinary client, `--discard splice` moves the bytes through a pipe into
//! /dev/null. Prints one JSON report.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream as StdStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "usage: httpload --url http://HOST:PORT/PATH [--connections 8] [--duration 10] \
[--discard trunc|copy|splice] [--buffer 1048576] [--connect-timeout 10]";

/// Bytes of a response head read at once (copied): the rest of the body is discarded.
const HEAD_READ: usize = 4096;
/// The longest response head accepted.
const HEAD_MAX: usize = 64 * 1024;
/// The most one discarding call asks for.
const DISCARD_MAX: usize = 64 * 1024 * 1024;
/// Distinct error messages kept for the report.
const ERROR_SAMPLES: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Discard {
    Trunc,
    Copy,
    Splice,
}

impl Discard {
    fn name(self) -> &'static str {
        match self {
            Discard::Trunc => "trunc",
            Discard::Copy => "copy",
            Discard::Splice => "splice",
        }
    }
}

struct Args {
    addr: SocketAddr,
    request: Vec<u8>,
    connections: usize,
    duration: Duration,
    discard: Discard,
    buffer: usize,
    connect_timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut connections = 8usize;
    let mut duration = 10.0f64;
    let mut discard = Discard::Trunc;
    let mut buffer = 1024 * 1024usize;
    let mut connect_timeout = 10.0f64;
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = argv
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--connections" => connections = value.parse().map_err(|e| bad(&e))?,
            "--duration" => duration = value.parse().map_err(|e| bad(&e))?,
            "--buffer" => buffer = value.parse().map_err(|e| bad(&e))?,
            "--connect-timeout" => connect_timeout = value.parse().map_err(|e| bad(&e))?,
            "--discard" => {
                discard = match value.as_str() {
                    "trunc" => Discard::Trunc,
                    "copy" => Discard::Copy,
                    "splice" => Discard::Splice,
                    _ => return Err(bad(&"expected trunc, copy or splice")),
                }
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    let url = url.ok_or_else(|| USAGE.to_string())?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    if connections == 0 || buffer == 0 || duration.is_nan() || duration <= 0.0 {
        return Err("--connections, --duration and --buffer must be positive".to_string());
    }
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes();
    Ok(Args {
        addr,
        request,
        connections,
        duration: Duration::from_secs_f64(duration),
        discard,
        buffer: buffer.min(DISCARD_MAX),
        connect_timeout: Duration::from_secs_f64(connect_timeout),
    })
}

enum Phase {
    /// Sending the request: this many bytes of it are out.
    Writing(usize),
    /// Reading the response head (into `Conn::head`).
    Head,
    /// Discarding the body: this many bytes are still to come.
    Body(u64),
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    head: Vec<u8>,
    started: Instant,
    /// The server said `Connection: close`: reconnect after this response.
    closing: bool,
    /// Responses completed on this socket (a keep-alive socket the server closed before the
    /// first byte of a response is reopened, not counted as an error).
    served: u64,
    /// Splice mode: the pipe the body passes through on its way to /dev/null.
    pipe: Option<Pipe>,
}

struct Pipe {
    read: RawFd,
    write: RawFd,
    capacity: usize,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors are this pipe's own.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

fn new_pipe() -> io::Result<Pipe> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // A larger pipe moves more per splice; the default (64 KiB) works too.
    // SAFETY: fcntl on our own pipe; failure leaves the default size.
    let size = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1024 * 1024) };
    let capacity = if size > 0 { size as usize } else { 64 * 1024 };
    Ok(Pipe {
        read: fds[0],
        write: fds[1],
        capacity,
    })
}

#[derive(Default)]
struct Stats {
    requests: u64,
    bytes: u64,
    non_2xx: u64,
    errors: u64,
    reconnects: u64,
    samples: Vec<String>,
    latencies_us: Vec<u32>,
}

impl Stats {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&message) {
            self.samples.push(message);
        }
    }
}

struct Client {
    args: Args,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    stats: Stats,
    buffer: Vec<u8>,
    devnull: RawFd,
}

/// What a step of a connection's state machine came to.
enum Step {
    /// Go on with the next phase.
    Again,
    /// The socket has nothing more now: wait for readiness.
    Wait,
}

impl Client {
    fn open(&mut self, index: usize) -> io::Result<()> {
        let std = StdStream::connect_timeout(&self.args.addr, self.args.connect_timeout)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        self.poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let pipe = match self.args.discard {
            Discard::Splice => Some(new_pipe()?),
            _ => None,
        };
        self.conns[index] = Some(Conn {
            stream,
            phase: Phase::Writing(0),
            head: Vec::with_capacity(HEAD_READ),
            started: Instant::now(),
            closing: false,
            served: 0,
            pipe,
        });
        Ok(())
    }

    /// Close connection `index` and open a new one in its place; a connection that cannot be
    /// opened stays closed.
    fn reopen(&mut self, index: usize) {
        if let Some(mut conn) = self.conns[index].take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.stats.reconnects += 1;
        if let Err(err) = self.open(index) {
            self.stats.error(format!("connect: {err}"));
        }
    }

    /// Drive connection `index` as far as its socket allows.
    fn drive(&mut self, index: usize, deadline: Instant) {
        loop {
            match self.step(index) {
                Ok(Step::Again) => {
                    if Instant::now() >= deadline {
                        return;
                    }
                }
                Ok(Step::Wait) => return,
                Err(message) => {
                    self.stats.error(message);
                    self.reopen(index);
                    return;
                }
            }
        }
    }

    fn step(&mut self, index: usize) -> Result<Step, String> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(Step::Wait);
        };
        match conn.phase {
            Phase::Writing(sent) => match conn.stream.write(&self.args.request[sent..]) {
                Ok(n) => {
                    let sent = sent + n;
                    conn.phase = if sent == self.args.request.len() {
                        conn.head.clear();
                        Phase::Head
                    } else {
                        Phase::Writing(sent)
                    };
                    Ok(Step::Again)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Wait),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Again),
                Err(e) => Err(format!("write: {e}")),
            },
            Phase::Head => {
                let filled = conn.head.len();
                if filled >= HEAD_MAX {
                    return Err(format!("response head longer than {HEAD_MAX} bytes"));
                }
                conn.head.reserve(HEAD_READ);
                let spare = conn.head.spare_capacity_mut();
                let want = spare.len().min(HEAD_READ);
                // SAFETY: recv writes at most `want` bytes into the vector's spare capacity.
                let n = unsafe {
                    libc::recv(conn.stream.as_raw_fd(), spare.as_mut_ptr().cast(), want, 0)
                };
                if n < 0 {
                    return would_block_or(io::Error::last_os_error(), "read");
                }
                if n == 0 {
                    if filled == 0 && conn.served > 0 {
                        // The server closed an idle keep-alive connection: open another.
                        self.reopen(index);
                        return Ok(Step::Wait);
                    }
                    return Err("connection closed before a complete response".to_string());
                }
                let n = n as usize;
                // SAFETY: recv initialised `n` more bytes.
                unsafe { conn.head.set_len(filled + n) };
                self.stats.bytes += n as u64;
                let Some(end) = find_head_end(&conn.head) else {
                    return Ok(Step::Again);
                };
                let head = parse_head(&conn.head[..end])?;
                if !(200..400).contains(&head.status) {
                    self.stats.non_2xx += 1;
                }
                conn.closing = head.close;
                let early = (conn.head.len() - end) as u64;
                if early > head.length {
                    return Err("more bytes than Content-Length (pipelined?)".to_string());
                }
                conn.phase = Phase::Body(head.length - early);
                Ok(Step::Again)
            }
            Phase::Body(0) => {
                let micros = conn.started.elapsed().as_micros();
                self.stats
                    .latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                self.stats.requests += 1;
                conn.served += 1;
                if conn.closing {
                    self.reopen(index);
                    return Ok(Step::Wait);
                }
                conn.started = Instant::now();
                conn.phase = Phase::Writing(0);
                Ok(Step::Again)
            }
            Phase::Body(remaining) => {
                let want = usize::try_from(remaining).map_or(DISCARD_MAX, |r| r.min(DISCARD_MAX));
                let fd = conn.stream.as_raw_fd();
                let n = match self.args.discard {
                    Discard::Trunc => {
                        // SAFETY: with MSG_TRUNC, TCP discards up to `want` bytes and writes
                        // nothing to the (null) buffer.
                        unsafe { libc::recv(fd, std::ptr::null_mut(), want, libc::MSG_TRUNC) }
                    }
                    Discard::Copy => {
                        let want = want.min(self.buffer.len());
                        // SAFETY: recv writes at most `want` bytes into `buffer`.
                        unsafe { libc::recv(fd, self.buffer.as_mut_ptr().cast(), want, 0) }
                    }
                    Discard::Splice => {
                        let Some(pipe) = &conn.pipe else {
                            return Err("no pipe".to_string());
                        };
                        splice_to_null(fd, pipe, self.devnull, want)
                    }
                };
                if n < 0 {
                    return would_block_or(io::Error::last_os_error(), "read body");
                }
                if n == 0 {
                    return Err(format!(
                        "connection closed with {remaining} body bytes to come"
                    ));
                }
                self.stats.bytes += n as u64;
                conn.phase = Phase::Body(remaining - n as u64);
                Ok(Step::Again)
            }
        }
    }
}

/// Move up to `want` bytes from the socket into the pipe and on into /dev/null; the bytes
/// moved, or -1 with errno set.
fn splice_to_null(socket: RawFd, pipe: &Pipe, devnull: RawFd, want: usize) -> isize {
    let want = want.min(pipe.capacity);
    // SAFETY: splice between descriptors this client owns; no user memory is involved.
    let n = unsafe {
        libc::splice(
            socket,
            std::ptr::null_mut(),
            pipe.write,
            std::ptr::null_mut(),
            want,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n <= 0 {
        return n;
    }
    let mut left = n as usize;
    while left > 0 {
        // SAFETY: as above; /dev/null takes whatever the pipe holds.
        let m = unsafe {
            libc::splice(
                pipe.read,
                std::ptr::null_mut(),
                devnull,
                std::ptr::null_mut(),
                left,
                libc::SPLICE_F_MOVE,
            )
        };
        if m <= 0 {
            return -1;
        }
        left -= m as usize;
    }
    n
}

fn would_block_or(err: io::Error, what: &str) -> Result<Step, String> {
    match err.kind() {
        io::ErrorKind::WouldBlock => Ok(Step::Wait),
        io::ErrorKind::Interrupted => Ok(Step::Again),
        _ => Err(format!("{what}: {err}")),
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

struct Head {
    status: u16,
    length: u64,
    close: bool,
}

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "Transfer-Encoding {value:?} is not supported (Content-Length only)"
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length = length.ok_or_else(|| "response without Content-Length".to_string())?;
    Ok(Head {
        status,
        length,
        close,
    })
}

fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i]
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run(args: Args) -> io::Result<String> {
    // SAFETY: open with a NUL-terminated path literal.
    let devnull = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if devnull < 0 {
        return Err(io::Error::last_os_error());
    }
    let connections = args.connections;
    let buffer = match args.discard {
        Discard::Copy => vec![0u8; args.buffer],
        _ => Vec::new(),
    };
    let mut client = Client {
        args,
        poll: Poll::new()?,
        conns: (0..connections).map(|_| None).collect(),
        stats: Stats::default(),
        buffer,
        devnull,
    };
    let mut connected = 0;
    for index in 0..connections {
        match client.open(index) {
            Ok(()) => connected += 1,
            Err(err) => client.stats.error(format!("connect: {err}")),
        }
    }
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let deadline = started + client.args.duration;
    let mut events = Events::with_capacity(1024);
    for index in 0..connections {
        client.drive(index, deadline);
    }
    loop {
        let now = Instant::now();
        if now >= deadline || client.conns.iter().all(Option::is_none) {
            break;
        }
        if let Err(err) = client.poll.poll(&mut events, Some(deadline - now)) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in events.iter() {
            client.drive(event.token().0, deadline);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    let stats = &mut client.stats;
    stats.latencies_us.sort_unstable();
    let lat = &stats.latencies_us;
    let samples: Vec<String> = stats.samples.iter().map(|s| json_string(s)).collect();
    let (user, system) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    Ok(format!(
        concat!(
            "{{\"requests\": {}, \"requests_per_s\": {:.2}, \"bytes\": {}, \"mb_per_s\": {:.2}, ",
            "\"non_2xx\": {}, \"errors\": {}, \"error_samples\": [{}], \"reconnects\": {}, ",
            "\"connected\": {}, \"connections\": {}, \"duration_s\": {:.3}, \"discard\": \"{}\", ",
            "\"cpu_s\": {{\"user\": {:.3}, \"system\": {:.3}}}, ",
            "\"latency_us\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"max\": {}}}}}"
        ),
        stats.requests,
        stats.requests as f64 / elapsed,
        stats.bytes,
        stats.bytes as f64 / elapsed / (1024.0 * 1024.0),
        stats.non_2xx,
        stats.errors,
        samples.join(", "),
        stats.reconnects,
        connected,
        connections,
        elapsed,
        client.args.discard.name(),
        user,
        system,
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        lat.last().copied().unwrap_or(0),
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("httpload: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\nConnection: keep-alive\r\n\r\n";
        let end = find_head_end(head).unwrap();
        let parsed = parse_head(&head[..end]).unwrap();
        assert_eq!(
            (parsed.status, parsed.length, parsed.close),
            (200, 42, false)
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        let close =
            parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nconnection: close\r\n\r\n");
        assert!(close.unwrap().close);
    }
}
