//! wsload: a WebSocket echo load generator for benches/run.py.
//!
//! Opens N connections to an echo endpoint, then for a fixed duration each connection keeps
//! `pipeline` messages in flight: it sends a message, waits for its echo (checked byte for byte
//! against what was sent), sends the next one. Prints one JSON object on stdout: messages echoed
//! within the duration, messages/s, errors, and round-trip latency percentiles.
//!
//! One tokio thread by default (`--threads`), so that like `wrk -t1` it can be pinned to one core.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// After the duration, how long outstanding echoes may take before the connection is closed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Distinct error messages kept for the report.
const MAX_ERROR_SAMPLES: usize = 8;

const USAGE: &str = "\
usage: wsload --url ws://HOST:PORT/PATH [options]

options:
  --connections N     concurrent WebSocket connections (default 64)
  --duration S        seconds of load after every connection is open (default 10)
  --size BYTES        message size (default 16)
  --binary            send binary messages (default: text)
  --pipeline N        messages in flight per connection (default 1)
  --threads N         tokio worker threads (default 1)
  --connect-timeout S seconds allowed for each connection's handshake (default 10)

Prints one JSON object: messages, messages_per_s, errors, error_samples, latency_us
{p50, p90, p99, max}. Exit status 0 when the run completed (check \"errors\"), 2 on bad usage.";

#[derive(Debug, Clone)]
struct Options {
    url: String,
    connections: usize,
    duration: Duration,
    size: usize,
    binary: bool,
    pipeline: usize,
    threads: usize,
    connect_timeout: Duration,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options {
        url: String::new(),
        connections: 64,
        duration: Duration::from_secs(10),
        size: 16,
        binary: false,
        pipeline: 1,
        threads: 1,
        connect_timeout: Duration::from_secs(10),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        if name == "--binary" {
            opts.binary = true;
            continue;
        }
        if name == "-h" || name == "--help" {
            return Err(String::new());
        }
        const VALUED: [&str; 10] = [
            "--url",
            "--connections",
            "-c",
            "--duration",
            "-d",
            "--size",
            "--pipeline",
            "--threads",
            "-t",
            "--connect-timeout",
        ];
        if !VALUED.contains(&name.as_str()) {
            return Err(format!("unknown option {name}"));
        }
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        let number = |v: &str| -> Result<usize, String> {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: not a whole number: {v:?}"))
        };
        let seconds = |v: &str| -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{name}: not a positive number of seconds: {v:?}"))
        };
        match name.as_str() {
            "--url" => opts.url = value,
            "--connections" | "-c" => opts.connections = number(&value)?,
            "--duration" | "-d" => opts.duration = seconds(&value)?,
            "--size" => opts.size = number(&value)?,
            "--pipeline" => opts.pipeline = number(&value)?,
            "--threads" | "-t" => opts.threads = number(&value)?,
            "--connect-timeout" => opts.connect_timeout = seconds(&value)?,
            _ => return Err(format!("unknown option {name}")),
        }
    }
    if opts.url.is_empty() {
        return Err("--url is required".into());
    }
    if opts.connections == 0 || opts.pipeline == 0 || opts.threads == 0 {
        return Err("--connections, --pipeline and --threads must be at least 1".into());
    }
    Ok(opts)
}

/// The message every connection sends: printable ASCII for text, every byte value for binary.
fn payload(size: usize, binary: bool) -> Message {
    if binary {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 256) as u8).collect();
        Message::Binary(Bytes::from(bytes))
    } else {
        let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        Message::Text(Utf8Bytes::from(text))
    }
}

fn is_echo(sent: &Message, got: &Message) -> bool {
    match (sent, got) {
        (Message::Text(a), Message::Text(b)) => a == b,
        (Message::Binary(a), Message::Binary(b)) => a == b,
        _ => false,
    }
}

fn describe(msg: &Message) -> String {
    match msg {
        Message::Text(t) => format!("text message of {} bytes", t.len()),
        Message::Binary(b) => format!("binary message of {} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

#[derive(Default)]
struct ConnStats {
    messages: u64,
    latencies_us: Vec<u32>,
    errors: Vec<String>,
    unanswered: u64,
}

async fn connect(opts: &Options) -> Result<Ws, String> {
    // tungstenite zeroes its whole read buffer before every read: size it to the message (a
    // 128 KiB default costs a 128 KiB memset per 16-byte echo, most of the client's CPU).
    let config = WebSocketConfig::default()
        .read_buffer_size((opts.size + 64).clamp(4096, 128 * 1024))
        .max_message_size(Some(opts.size.max(1 << 20) * 2));
    match timeout(
        opts.connect_timeout,
        connect_async_with_config(opts.url.as_str(), Some(config), true),
    )
    .await
    {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(e)) => Err(format!("handshake failed: {e}")),
        Err(_) => Err(format!(
            "handshake timed out after {:?}",
            opts.connect_timeout
        )),
    }
}

/// Keep `pipeline` messages in flight until `deadline`, then collect the outstanding echoes.
async fn drive(mut ws: Ws, payload: Message, pipeline: usize, deadline: Instant) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    let grace_end = tokio::time::Instant::from_std(deadline + DRAIN_GRACE);

    let result: Result<(), String> = async {
        for _ in 0..pipeline {
            in_flight.push_back(Instant::now());
            ws.feed(payload.clone())
                .await
                .map_err(|e| format!("send failed: {e}"))?;
        }
        ws.flush().await.map_err(|e| format!("send failed: {e}"))?;
        loop {
            let next = match timeout_at(grace_end, ws.next()).await {
                Ok(next) => next,
                Err(_) => {
                    stats.unanswered += in_flight.len() as u64;
                    return Ok(());
                }
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(format!("receive failed: {e}")),
                None => return Err("connection closed by the server without a close frame".into()),
            };
            match msg {
                Message::Text(_) | Message::Binary(_) => {}
                // tungstenite answers pings itself; pongs and raw frames carry nothing for us.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Close(frame) => {
                    return Err(format!("server closed the connection: {frame:?}"));
                }
            }
            let now = Instant::now();
            let Some(sent) = in_flight.pop_front() else {
                return Err(format!(
                    "unexpected {} with nothing in flight",
                    describe(&msg)
                ));
            };
            if !is_echo(&payload, &msg) {
                return Err(format!(
                    "echo differs from the message sent ({} sent, {} received)",
                    describe(&payload),
                    describe(&msg)
                ));
            }
            if now <= deadline {
                stats.messages += 1;
                let us = now.duration_since(sent).as_micros();
                stats
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
                in_flight.push_back(Instant::now());
                ws.send(payload.clone())
                    .await
                    .map_err(|e| format!("send failed: {e}"))?;
            } else if in_flight.is_empty() {
                return Ok(());
            }
        }
    }
    .await;
    match result {
        Ok(()) => {
            // Closing handshake: send a close frame, read until the server's close frame.
            let _ = timeout(CLOSE_TIMEOUT, async {
                if ws.close(None).await.is_ok() {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
            .await;
        }
        Err(e) => stats.errors.push(e),
    }
    stats
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(opts: Options) -> serde_json::Value {
    let message = payload(opts.size, opts.binary);
    let connect_started = Instant::now();
    let attempts = join_all((0..opts.connections).map(|_| connect(&opts))).await;
    let connect_s = connect_started.elapsed().as_secs_f64();

    let mut errors: Vec<String> = Vec::new();
    let mut sockets = Vec::with_capacity(opts.connections);
    for attempt in attempts {
        match attempt {
            Ok(ws) => sockets.push(ws),
            Err(e) => errors.push(e),
        }
    }
    let connected = sockets.len();

    let started = Instant::now();
    let deadline = started + opts.duration;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(drive(ws, message.clone(), opts.pipeline, deadline)))
        .collect();
    let mut messages = 0u64;
    let mut unanswered = 0u64;
    let mut latencies: Vec<u32> = Vec::new();
    for task in tasks {
        match task.await {
            Ok(stats) => {
                messages += stats.messages;
                unanswered += stats.unanswered;
                latencies.extend(stats.latencies_us);
                errors.extend(stats.errors);
            }
            Err(e) => errors.push(format!("connection task failed: {e}")),
        }
    }
    // Messages are counted up to the deadline, so the rate is over the nominal duration.
    let duration_s = opts.duration.as_secs_f64();
    latencies.sort_unstable();
    let mut samples: Vec<String> = Vec::new();
    for e in &errors {
        if samples.len() < MAX_ERROR_SAMPLES && !samples.contains(e) {
            samples.push(e.clone());
        }
    }
    json!({
        "url": opts.url,
        "connections": opts.connections,
        "connected": connected,
        "connect_s": connect_s,
        "kind": if opts.binary { "binary" } else { "text" },
        "size": opts.size,
        "pipeline": opts.pipeline,
        "threads": opts.threads,
        "duration_s": duration_s,
        "messages": messages,
        "messages_per_s": messages as f64 / duration_s,
        "mb_per_s": messages as f64 * opts.size as f64 / duration_s / (1u64 << 20) as f64,
        "unanswered": unanswered,
        "errors": errors.len(),
        "error_samples": samples,
        "latency_us": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(0),
        },
    })
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("wsload: {e}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = if opts.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(opts.threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsload: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = runtime.block_on(run(opts));
    println!("{report}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_options() {
        let o = parse_args(args(&[
            "--url",
            "ws://127.0.0.1:1/",
            "--connections=8",
            "--size",
            "65536",
            "--binary",
            "--pipeline",
            "4",
            "--duration",
            "0.5",
        ]))
        .unwrap();
        assert_eq!(o.connections, 8);
        assert_eq!(o.size, 65536);
        assert!(o.binary);
        assert_eq!(o.pipeline, 4);
        assert_eq!(o.duration, Duration::from_millis(500));
        assert!(parse_args(args(&["--connections", "8"])).is_err());
        assert!(parse_args(args(&["--url", "ws://x/", "--bogus", "1"])).is_err());
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[], 0.99), 0);
        assert_eq!(percentile(&[7], 0.99), 7);
    }

    #[test]
    fn payloads_and_echo_check() {
        let text = payload(16, false);
        assert!(matches!(&text, Message::Text(t) if t.as_str() == "abcdefghijklmnop"));
        let bin = payload(300, true);
        assert!(matches!(&bin, Message::Binary(b) if b.len() == 300 && b[256] == 0));
        assert!(is_echo(&text, &text.clone()));
        assert!(!is_echo(
            &text,
            &Message::Binary(Bytes::from_static(b"abcdefghijklmnop"))
        ));
    }
}
