"""`--metrics-bind`: Prometheus metrics for the whole server, read from a shared-memory block.

The block is one file in /dev/shm, made by the process that serves `/metrics` (the workers
supervisor, or the single server process): a 512-byte header, then one 512-byte slot per worker.
Each worker's Rust core maps its slot (`src/metrics.rs`, which defines the slot's layout) and
counts into it with relaxed atomic adds: no lock, nothing per request in Python. This module
creates the block, hands slots to workers, counts the supervisor's worker restarts in the
header, and renders Prometheus' text format from all the slots when scraped.

A slot's counters are never zeroed: a worker replacing a dead one takes a free slot and continues
its counts, so totals never go backwards. Its gauges (in-flight requests, open connections and
WebSockets) are zeroed when the worker that held it is gone.
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypedDict

from ferrocorn.config import STARTUP_FAILURE

logger = logging.getLogger("ferrocorn.error")

# --- the layout (src/metrics.rs) ---------------------------------------------------------------

MAGIC = int.from_bytes(b"FCMETR01", "little")
HEADER_SIZE = 512
SLOT_SIZE = 512
#: Worker slots in a block: far more than workers ever run at once (a rolling restart holds two
#: per worker). The file is sparse: only slots in use take memory.
SLOT_COUNT = 1024

# Header, as u64 indices.
H_MAGIC, H_SLOTS, H_USED = 0, 1, 2
H_RESTARTS = 8
#: `ferrocorn_worker_restarts_total`'s `reason` label: why the supervisor replaced a worker.
RESTART_REASONS = (
    "crash",  # exited or died on its own
    "healthcheck",  # did not answer the supervisor's ping (--timeout-worker-healthcheck)
    "heartbeat",  # stopped notifying (--timeout-notify)
    "reload",  # SIGHUP
    "max-requests",  # recycled at --limit-max-requests
    "lifetime",  # recycled by age (--limit-worker-lifetime)
    "memory",  # recycled by memory (--limit-worker-memory)
)

# A slot, as u64 indices.
S_PID = 0
S_REQUESTS = 1  # [protocol][status class]: 2 x 5
S_REQUEST_BYTES = 11
S_RESPONSE_BYTES = 12
S_BUCKETS = 13  # 12 buckets, not cumulative
S_DURATION_SUM_US = 25
S_CONNECTIONS_TOTAL = 26
S_WEBSOCKETS_TOTAL = 27
S_IN_FLIGHT = 28
S_CONNECTIONS_OPEN = 29
S_WEBSOCKETS_OPEN = 30
GAUGES = range(S_IN_FLIGHT, S_WEBSOCKETS_OPEN + 1)

PROTOCOLS = ("http/1.1", "h2")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
#: The duration histogram's upper bounds in seconds (src/metrics.rs DURATION_BOUNDS_US), then +Inf.
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsSlot(TypedDict):
    """The `metrics` setting a worker's core gets: the block and its slot in it."""

    path: str
    slot: int


def parse_bind(bind: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port); ValueError if malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--metrics-bind must be HOST:PORT, not {bind!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class MetricsBlock:
    """The shared-memory block: created by the process that serves `/metrics`."""

    def __init__(self, slots: int = SLOT_COUNT) -> None:
        directory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        self.path = os.path.join(directory, f"ferrocorn-metrics-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = HEADER_SIZE + slots * SLOT_SIZE
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        # Aligned 8-byte loads and stores, as the workers' atomics expect.
        self.words = memoryview(self._map).cast("Q")
        self.words[H_SLOTS] = slots
        self.words[H_MAGIC] = MAGIC
        self._free: list[int] = []
        self._lock = threading.Lock()  # the supervisor's threads; never taken by a worker

    # -- slots

    def acquire(self) -> MetricsSlot | None:
        """A slot for a new worker, its gauges zeroed; None if every slot is taken."""
        with self._lock:
            if self._free:
                slot = min(self._free)
                self._free.remove(slot)
            elif self.words[H_USED] < self.words[H_SLOTS]:
                slot = self.words[H_USED]
                self.words[H_USED] = slot + 1
            else:
                logger.warning("No metrics slot left: a worker runs without metrics.")
                return None
            self._zero_gauges(slot)
        return {"path": self.path, "slot": slot}

    def release(self, slot: MetricsSlot | None) -> None:
        """The worker holding `slot` has exited: its gauges drop to 0, its counters stay."""
        if slot is None:
            return
        with self._lock:
            self._zero_gauges(slot["slot"])
            self._free.append(slot["slot"])

    def _zero_gauges(self, slot: int) -> None:
        base = (HEADER_SIZE + slot * SLOT_SIZE) // 8
        for index in GAUGES:
            self.words[base + index] = 0

    def worker_restarted(self, reason: str) -> None:
        index = H_RESTARTS + RESTART_REASONS.index(reason)
        with self._lock:
            self.words[index] += 1

    # -- reading

    def slots(self) -> Iterator[tuple[int, memoryview]]:
        """(index, u64 view) of every slot ever used."""
        for slot in range(self.words[H_USED]):
            base = (HEADER_SIZE + slot * SLOT_SIZE) // 8
            yield slot, self.words[base : base + SLOT_SIZE // 8]

    def render(self) -> bytes:
        """The Prometheus text exposition of every slot (label `worker`: the slot index)."""
        slots = [(str(index), list(words)) for index, words in self.slots()]
        lines: list[str] = []

        def family(name: str, kind: str, help: str) -> None:
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} {kind}")

        family("ferrocorn_requests_total", "counter", "HTTP requests answered, by protocol and status class.")
        for worker, words in slots:
            for p, protocol in enumerate(PROTOCOLS):
                for c, status_class in enumerate(STATUS_CLASSES):
                    value = words[S_REQUESTS + p * 5 + c]
                    labels = f'worker="{worker}",protocol="{protocol}",status_class="{status_class}"'
                    lines.append(f"ferrocorn_requests_total{{{labels}}} {value}")
        family("ferrocorn_request_duration_seconds", "histogram", "From request head to the end of the response body.")
        for worker, words in slots:
            cumulative = 0
            for b, bound in enumerate((*DURATION_BOUNDS, float("inf"))):
                cumulative += words[S_BUCKETS + b]
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'ferrocorn_request_duration_seconds_bucket{{worker="{worker}",le="{le}"}} {cumulative}')
            seconds = words[S_DURATION_SUM_US] / 1e6
            lines.append(f'ferrocorn_request_duration_seconds_sum{{worker="{worker}"}} {seconds}')
            lines.append(f'ferrocorn_request_duration_seconds_count{{worker="{worker}"}} {cumulative}')
        simple = (
            ("ferrocorn_request_body_bytes", "counter", S_REQUEST_BYTES, "Request body bytes received."),
            ("ferrocorn_response_body_bytes", "counter", S_RESPONSE_BYTES, "Response body bytes sent."),
            ("ferrocorn_connections", "counter", S_CONNECTIONS_TOTAL, "Connections accepted."),
            ("ferrocorn_websockets", "counter", S_WEBSOCKETS_TOTAL, "WebSocket sessions started."),
            ("ferrocorn_requests_in_flight", "gauge", S_IN_FLIGHT, "Requests between head and response end."),
            ("ferrocorn_connections_open", "gauge", S_CONNECTIONS_OPEN, "Open client connections."),
            ("ferrocorn_websockets_open", "gauge", S_WEBSOCKETS_OPEN, "Open WebSocket sessions."),
        )
        for name, kind, index, help in simple:
            # In the text format 0.0.4, a counter's HELP and TYPE name its sample (`..._total`).
            sample = f"{name}_total" if kind == "counter" else name
            family(sample, kind, help)
            for worker, words in slots:
                value = words[index]
                if kind == "gauge" and value >= 1 << 63:
                    value -= 1 << 64  # a wrapping u64 read as i64
                lines.append(f'{sample}{{worker="{worker}"}} {value}')
        family("ferrocorn_worker_restarts_total", "counter", "Workers the supervisor replaced, by reason.")
        for r, reason in enumerate(RESTART_REASONS):
            lines.append(f'ferrocorn_worker_restarts_total{{reason="{reason}"}} {self.words[H_RESTARTS + r]}')
        lines.append("")
        return "\n".join(lines).encode()

    def close(self) -> None:
        self.words.release()
        self._map.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class MetricsServer:
    """`--metrics-bind`: the block and the HTTP endpoint serving it, in a daemon thread (off the
    request path: the workers' cores never wait for it)."""

    def __init__(self, bind: str, slots: int = SLOT_COUNT) -> None:
        """Binds `bind` (raises OSError or ValueError), then creates the block."""
        host, port = parse_bind(bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        block: MetricsBlock | None = None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics" or block is None:
                    self.send_error(404)
                    return
                body = block.render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes are not access-logged

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.http = Server((host, port), Handler)
        block = self.block = MetricsBlock(slots)
        self.thread = threading.Thread(target=self.http.serve_forever, name="ferrocorn-metrics", daemon=True)
        self.thread.start()
        bound_host, bound_port = self.http.server_address[:2]
        address = f"[{bound_host!s}]:{bound_port}" if family == socket.AF_INET6 else f"{bound_host!s}:{bound_port}"
        logger.info("Metrics served on http://%s/metrics", address)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.block.close()


class SupervisorMetrics:
    """What the workers supervisor does for `--metrics-bind`: nothing when it is off."""

    def __init__(self, server: MetricsServer | None) -> None:
        self.server = server

    def acquire(self) -> MetricsSlot | None:
        return self.server.block.acquire() if self.server else None

    def release(self, slot: MetricsSlot | None) -> None:
        if self.server:
            self.server.block.release(slot)

    def worker_restarted(self, reason: str) -> None:
        if self.server:
            self.server.block.worker_restarted(reason)

    def close(self) -> None:
        if self.server:
            self.server.close()


def start_metrics_server(bind: str | None, slots: int = SLOT_COUNT) -> MetricsServer | None:
    """The metrics endpoint if `bind` is set; on failure one error line and `SystemExit(3)`, as for
    the server's own sockets."""
    if bind is None:
        return None
    try:
        return MetricsServer(bind, slots)
    except (OSError, ValueError) as exc:
        logger.error("Cannot serve metrics on %s: %s", bind, exc)
        raise SystemExit(STARTUP_FAILURE) from None
