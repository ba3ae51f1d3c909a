#!/usr/bin/env python3
"""Benchmark ferrocorn against uvicorn, granian and hypercorn with wrk, h2load, wsload and httpload.

Method (see benches/README.md): one fresh server process (one worker, access log off) per
measurement, pinned to CPU 0 with ``taskset``; the load generator (wrk; h2load for HTTP/2;
benches/wsload for WebSockets; benches/httpload for the large files; one thread) pinned to CPU 1;
a 1 s warm-up then a timed run; the median of N runs, interleaved across servers. Every server
is checked to answer correctly before and after each run, and the load generator's error
counters are checked.

Usage (from anywhere; servers are started with the repository root as cwd; the servers are
launched with the Python that runs this script):

    python3 benches/run.py                                  # default group, its servers
    python3 benches/run.py --quick --servers uvicorn,granian
    python3 benches/run.py --workloads plain-c64,echo-64k --runs 5 --markdown out.md
    python3 benches/run.py --workloads tls-h2               # https-c64, h2c, h2-tls
    python3 benches/run.py --workloads ws                   # ws-small, ws-64k
    python3 benches/run.py --workloads files                # file-1m, file-64m, sse
    python3 benches/run.py --workloads all                  # every workload
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PYTHON = sys.executable

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
WARMUP_S = 1
# wrk errors (socket errors + non-2xx/3xx responses) tolerated before a run is flagged.
ERROR_TOLERANCE_ABS = 10
ERROR_TOLERANCE_FRAC = 1e-4
# h2load failed/errored/timed-out requests tolerated (fraction of requests) before a run is flagged.
H2LOAD_ERROR_TOLERANCE_FRAC = 1e-3
# Utilisation thresholds used to call out runs that were not server-bound.
SERVER_BUSY_MIN = 0.90
CLIENT_BUSY_MAX = 0.90
# CPU (cores) used by anything but the server and wrk above which a result is called disturbed.
OTHER_LOAD_MAX = 0.15
# Median spread ((max - min) / median of req/s or msg/s) above which a result is called noisy.
NOISY_SPREAD = 0.10

ECHO_BODY_SIZE = 64 * 1024
STREAM_SIZE = 1024 * 1024
PLAIN_BODY = b"Hello, world!"

ALL_SERVERS = ("ferrocorn", "h2corn", "uvicorn", "granian", "hypercorn")
PEERS = ("h2corn", "uvicorn", "granian", "hypercorn")
# Servers a workload runs when --servers is not given (hypercorn: only where it is the HTTP/2 peer).
CORE_SERVERS = ("ferrocorn", "h2corn", "uvicorn", "granian")

# The WebSocket load generator (benches/wsload, built by benches/setup.sh).
WSLOAD = REPO_ROOT / "benches" / "wsload" / "target" / "release" / "wsload"
WSLOAD_BUILD = "cargo build --release --manifest-path benches/wsload/Cargo.toml"
# The HTTP/1.1 load generator for large bodies (benches/httpload, built by benches/setup.sh).
HTTPLOAD = REPO_ROOT / "benches" / "httpload" / "target" / "release" / "httpload"
HTTPLOAD_BUILD = "cargo build --release --manifest-path benches/httpload/Cargo.toml"


class BenchError(RuntimeError):
    """A failure that makes the benchmark meaningless (server does not start or answers wrongly)."""


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    protocol: str = "HTTP/1.1"
    messages: tuple[str | bytes, ...] = ()  # WebSocket: the echoes received, in order


def _check_plain(resp: Response) -> str | None:
    if resp.body != PLAIN_BODY:
        return f"expected body {PLAIN_BODY!r}, got {resp.body[:80]!r}"
    if not resp.headers.get("content-type", "").startswith("text/plain"):
        return f"expected text/plain, got content-type {resp.headers.get('content-type')!r}"
    if resp.headers.get("content-length") != str(len(PLAIN_BODY)):
        return f"expected content-length {len(PLAIN_BODY)}, got {resp.headers.get('content-length')!r}"
    return None


def _echo_payload() -> bytes:
    return bytes(range(256)) * (ECHO_BODY_SIZE // 256)


def _check_echo(resp: Response) -> str | None:
    if resp.body != _echo_payload():
        return f"echoed body differs from the {ECHO_BODY_SIZE}-byte request body (got {len(resp.body)} bytes)"
    return None


def _check_stream(resp: Response) -> str | None:
    if len(resp.body) != STREAM_SIZE:
        return f"expected {STREAM_SIZE} bytes, got {len(resp.body)}"
    if "content-length" in resp.headers:
        return "streamed response unexpectedly carries a content-length"
    if resp.headers.get("transfer-encoding", "").lower() != "chunked":
        return f"expected transfer-encoding chunked, got {resp.headers.get('transfer-encoding')!r}"
    return None


def _json_checker(expected: object) -> Callable[[Response], str | None]:
    def check(resp: Response) -> str | None:
        try:
            got = json.loads(resp.body)
        except ValueError:
            return f"body is not JSON: {resp.body[:80]!r}"
        if got != expected:
            return f"expected JSON {expected!r}, got {got!r}"
        return None

    return check


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    app: str  # attribute of benches.apps
    path: str
    connections: int
    check: Callable[[Response], str | None]
    method: str = "GET"
    body: bytes | None = None
    report_throughput: bool = False  # report MB/s (wrk's Transfer/sec; WebSocket payload echoed)
    tls: bool = False  # https:// with the run's trustme certificate (clients do not verify)
    http2: bool = False  # HTTP/2 (h2c with prior knowledge, or h2 by ALPN with tls): h2load
    streams: int = 1  # h2load -m: concurrent streams per connection
    skip: tuple[tuple[str, str], ...] = ()  # (server, reason) pairs: servers that cannot serve it
    default_servers: tuple[str, ...] = CORE_SERVERS  # when --servers is not given
    websocket: bool = False  # WebSocket echo through benches/wsload; rates are messages/s
    ws_size: int = 0  # bytes per WebSocket message
    ws_binary: bool = False  # binary messages (else text)
    ws_pipeline: int = 1  # messages in flight per connection
    large_bodies: bool = False  # benches/httpload instead of wrk (unless --file-client wrk)

    @property
    def target(self) -> str:
        return f"benches.apps:{self.app}"

    @property
    def unit(self) -> str:
        return "msg/s" if self.websocket else "req/s"

    def url(self, port: int) -> str:
        if self.websocket:
            return f"{'wss' if self.tls else 'ws'}://{HOST}:{port}{self.path}"
        return f"{'https' if self.tls else 'http'}://{HOST}:{port}{self.path}"

    def servers(self, selected: list[str] | None) -> list[str]:
        """The servers that run this workload: the selection (or the workload's default set)
        less those that cannot serve it, in ALL_SERVERS order."""
        wanted = selected if selected is not None else self.default_servers
        skipped = dict(self.skip)
        return [s for s in ALL_SERVERS if s in wanted and s not in skipped]

    def skipped(self, selected: list[str] | None) -> list[tuple[str, str]]:
        """(server, reason) for the servers this workload leaves out of the selection."""
        wanted = selected if selected is not None else self.default_servers
        return [(s, reason) for s, reason in self.skip if s in wanted]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("plain-c64", "plain GET, -c64", "plain", "/", 64, _check_plain),
        Workload("plain-c256", "plain GET, -c256", "plain", "/", 256, _check_plain),
        Workload(
            "echo-64k",
            "POST echo 64 KiB, -c64",
            "echo",
            "/",
            64,
            _check_echo,
            method="POST",
            body=_echo_payload(),
        ),
        Workload(
            "stream-1m",
            "1 MiB streamed (16 KiB chunks), -c64",
            "stream",
            "/",
            64,
            _check_stream,
            report_throughput=True,
        ),
        Workload(
            "fastapi-json",
            "FastAPI GET /json, -c64",
            "fastapi_app",
            "/json",
            64,
            _json_checker({"message": "Hello, world!"}),
        ),
        Workload(
            "fastapi-items",
            "FastAPI GET /items/42?q=x, -c64",
            "fastapi_app",
            "/items/42?q=x",
            64,
            _json_checker({"item_id": 42, "q": "x"}),
        ),
    )
}
DEFAULT_WORKLOADS = ("plain-c64", "plain-c256", "echo-64k", "stream-1m", "fastapi-json")

# --- TLS and HTTP/2 workloads (issue 4): `--workloads tls-h2` ----------------------------------
# HTTPS with HTTP/1.1 goes through wrk (no ALPN: every server answers HTTP/1.1); HTTP/2 goes through
# h2load, in cleartext (h2c with prior knowledge) and over TLS (h2 negotiated by ALPN).
NO_HTTP2 = (("uvicorn", "no HTTP/2"),)
TLS_H2_WORKLOADS = ("https-c64", "h2c", "h2-tls")
WORKLOADS.update(
    (w.name, w)
    for w in (
        Workload(
            "https-c64",
            "HTTPS (HTTP/1.1) plain GET, -c64",
            "plain",
            "/",
            64,
            _check_plain,
            tls=True,
            default_servers=ALL_SERVERS,
        ),
        Workload(
            "h2c",
            "h2c plain GET, -c32 -m10",
            "plain",
            "/",
            32,
            _check_plain,
            http2=True,
            streams=10,
            skip=NO_HTTP2,
            default_servers=ALL_SERVERS,
        ),
        Workload(
            "h2-tls",
            "h2 (TLS, ALPN) plain GET, -c32 -m10",
            "plain",
            "/",
            32,
            _check_plain,
            tls=True,
            http2=True,
            streams=10,
            skip=NO_HTTP2,
            default_servers=ALL_SERVERS,
        ),
    )
)

# --- WebSocket echo workloads (issue 5): `--workloads ws` ---------------------------------------
# benches/wsload (Rust, one thread) keeps one message in flight on each of 64 connections and checks
# every echo byte for byte. uvicorn runs the websockets library's sans-I/O implementation, which its
# --ws auto picks (--uvicorn-ws to change it); no client offers permessage-deflate, so no server
# compresses.
WS_WORKLOADS = ("ws-small", "ws-64k")


def _checked_as_websocket(_resp: Response) -> str | None:
    """No HTTP check: verify() checks WebSocket workloads with check_websocket_echo."""
    return None


WS_SMALL_SIZE = 16
WS_LARGE_SIZE = 64 * 1024
WORKLOADS.update(
    (w.name, w)
    for w in (
        Workload(
            "ws-small",
            "WebSocket echo, 16 B text, 64 conns",
            "ws_echo",
            "/",
            64,
            _checked_as_websocket,
            websocket=True,
            ws_size=WS_SMALL_SIZE,
        ),
        Workload(
            "ws-64k",
            "WebSocket echo, 64 KiB binary, 64 conns",
            "ws_echo",
            "/",
            64,
            _checked_as_websocket,
            websocket=True,
            ws_size=WS_LARGE_SIZE,
            ws_binary=True,
            report_throughput=True,
        ),
    )
)

# --- Files and server-sent events (issue 14): `--workloads files` ----------------------------------
# Starlette's FileResponse sends `http.response.pathsend` to a server that advertises it (ferrocorn,
# h2corn, granian) and reads the file into 64 KiB body messages otherwise (uvicorn). The SSE stream is
# SSE_EVENTS small events per response, one body message each.
FILE_WORKLOADS = ("file-1m", "file-64m", "sse")


def _file_checker(name: str) -> Callable[[Response], str | None]:
    def check(resp: Response) -> str | None:
        from apps import bench_file

        expected = bench_file(name).read_bytes()
        if resp.headers.get("content-length") != str(len(expected)):
            return f"expected content-length {len(expected)}, got {resp.headers.get('content-length')!r}"
        if resp.body != expected:
            return f"file body differs ({len(resp.body)} bytes, expected {len(expected)})"
        return None

    return check


def _check_sse(resp: Response) -> str | None:
    from apps import _SSE_EVENT, SSE_EVENTS

    if not resp.headers.get("content-type", "").startswith("text/event-stream"):
        return f"expected text/event-stream, got {resp.headers.get('content-type')!r}"
    if resp.body != _SSE_EVENT * SSE_EVENTS:
        return f"expected {SSE_EVENTS} events, got {resp.body.count(b'event: ')}"
    return None


WORKLOADS.update(
    (w.name, w)
    for w in (
        Workload(
            "file-1m",
            "Starlette FileResponse 1 MiB, -c64",
            "file_app",
            "/1m",
            64,
            _file_checker("1m"),
            report_throughput=True,
            large_bodies=True,
        ),
        Workload(
            "file-64m",
            "Starlette FileResponse 64 MiB, -c8",
            "file_app",
            "/64m",
            8,
            _file_checker("64m"),
            report_throughput=True,
            large_bodies=True,
        ),
        Workload(
            "sse",
            "SSE, 100 events of 64 B per response, -c64",
            "sse",
            "/",
            64,
            _check_sse,
        ),
    )
)

# Names --workloads accepts besides single workloads.
WORKLOAD_GROUPS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT_WORKLOADS,
    "tls-h2": TLS_H2_WORKLOADS,
    "ws": WS_WORKLOADS,
    "files": FILE_WORKLOADS,
    "all": tuple(WORKLOADS),
}


def wrk_lua_script(workload: Workload, directory: Path) -> Path | None:
    """Write the wrk Lua script a non-GET workload needs; wrk sends exactly these bytes."""
    if workload.method == "GET":
        return None
    assert workload.body is not None
    # The echo payload is bytes 0..255 repeated; rebuild it in Lua rather than embedding 64 KiB.
    repeats = len(workload.body) // 256
    assert workload.body == bytes(range(256)) * repeats
    script = directory / f"{workload.name}.lua"
    script.write_text(
        "local bytes = {}\n"
        "for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end\n"
        f'wrk.method = "{workload.method}"\n'
        f"wrk.body = string.rep(table.concat(bytes), {repeats})\n"
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return script


# --------------------------------------------------------------------------------------------
# HTTP checks
# --------------------------------------------------------------------------------------------


def http_request(port: int, workload: Workload, timeout: float = 10.0) -> Response:
    if workload.websocket:
        return websocket_exchange(port, workload, timeout)
    if workload.http2:
        return http2_request(port, workload, timeout)
    if workload.tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            HOST, port, timeout=timeout, context=insecure_ssl_context()
        )
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if workload.body is not None else {}
        conn.request(workload.method, workload.path, body=workload.body, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def verify(port: int, workload: Workload) -> str | None:
    """Return a description of what is wrong with the server's answer, or None if it is right."""
    try:
        resp = http_request(port, workload)
    except (OSError, http.client.HTTPException) as exc:
        return f"request failed: {exc!r}"
    if workload.websocket:
        return check_websocket_echo(resp, workload)
    if resp.status != 200:
        return f"expected status 200, got {resp.status} (body {resp.body[:120]!r})"
    expected_protocol = "HTTP/2" if workload.http2 else "HTTP/1.1"
    if resp.protocol != expected_protocol:
        return f"expected {expected_protocol}, the server answered in {resp.protocol}"
    return workload.check(resp)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- TLS and HTTP/2 checks (issue 4) ----------------------------------------------------------


def insecure_ssl_context() -> ssl.SSLContext:
    """A client context that accepts the run's self-signed certificate, like wrk and h2load."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http2_request(port: int, workload: Workload, timeout: float) -> Response:
    """One HTTP/2 request with httpx: prior knowledge in cleartext, ALPN h2 only over TLS."""
    import httpx  # only the HTTP/2 workloads need it (and h2: httpx[http2])

    headers = {"Content-Type": "application/octet-stream"} if workload.body is not None else {}
    try:
        with httpx.Client(http1=False, http2=True, verify=False, timeout=timeout) as client:
            resp = client.request(workload.method, workload.url(port), content=workload.body, headers=headers)
    except httpx.HTTPError as exc:  # the callers treat OSError as "not (yet) answering"
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
    return Response(
        resp.status_code,
        {k.lower(): v for k, v in resp.headers.items()},
        resp.content,
        protocol=resp.http_version,
    )


# --- WebSocket checks (issue 5) ---------------------------------------------------------------

WS_CHECK_MESSAGES = 3


def ws_payload(workload: Workload) -> str | bytes:
    """The message wsload sends: a-z repeated as text, or byte values 0..255 repeated."""
    if workload.ws_binary:
        return bytes(i % 256 for i in range(workload.ws_size))
    return "".join(chr(ord("a") + i % 26) for i in range(workload.ws_size))


def websocket_exchange(port: int, workload: Workload, timeout: float) -> Response:
    """Open a WebSocket (the websockets library, without compression, as wsload), send the
    workload's message a few times and collect the echoes."""
    from websockets.exceptions import WebSocketException  # installed with uvicorn[standard]
    from websockets.sync.client import connect

    payload = ws_payload(workload)
    try:
        with connect(
            workload.url(port),
            compression=None,
            open_timeout=timeout,
            close_timeout=timeout,
            max_size=4 * max(workload.ws_size, 1024),
        ) as ws:
            echoes = []
            for _ in range(WS_CHECK_MESSAGES):
                ws.send(payload)
                echoes.append(ws.recv(timeout=timeout))
            assert ws.response is not None
            status = ws.response.status_code
            headers = {k.lower(): v for k, v in ws.response.headers.raw_items()}
    except WebSocketException as exc:  # the callers treat OSError as "not (yet) answering"
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
    return Response(status, headers, b"", protocol="WebSocket", messages=tuple(echoes))


def check_websocket_echo(resp: Response, workload: Workload) -> str | None:
    if resp.status != 101:
        return f"expected status 101 to the upgrade, got {resp.status}"
    if "permessage-deflate" in resp.headers.get("sec-websocket-extensions", ""):
        return "the server negotiated permessage-deflate, which the client did not offer"
    payload = ws_payload(workload)
    kind = "binary" if workload.ws_binary else "text"
    for i, echo in enumerate(resp.messages, 1):
        if type(echo) is not type(payload):
            return f"echo {i}: sent a {kind} message, got a {type(echo).__name__} message back"
        if echo != payload:
            return f"echo {i} differs from the {len(payload)}-byte {kind} message sent"
    if len(resp.messages) != WS_CHECK_MESSAGES:
        return f"expected {WS_CHECK_MESSAGES} echoes, got {len(resp.messages)}"
    return None


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


def server_command(server: str, target: str, port: int, extra: list[str] | None = None) -> list[str]:
    """The command serving target on port, with extra (see server_args) added."""
    common = ["--host", HOST, "--port", str(port)]
    extra = extra or []
    if server == "ferrocorn":
        return [
            PYTHON,
            "-m",
            "ferrocorn",
            target,
            *common,
            "--no-access-log",
            "--log-level",
            "warning",
            *extra,
        ]
    if server == "uvicorn":
        return [
            PYTHON,
            "-W",
            UVICORN_WS_DEPRECATION,
            "-m",
            "uvicorn",
            target,
            *common,
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            *extra,
        ]
    if server == "granian":
        return [
            PYTHON,
            "-m",
            "granian",
            "--interface",
            "asgi",
            *common,
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            *extra,
            target,
        ]
    if server == "h2corn":
        # One worker with one runtime thread (as granian), uvloop (what ferrocorn's and uvicorn's
        # auto loop picks here), no access log. It serves HTTP/1.1, h2c and h2 without options.
        return [
            PYTHON,
            "-m",
            "h2corn",
            *common,
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--loop",
            "uvloop",
            "--no-access-log",
            *extra,
            target,
        ]
    if server == "hypercorn":
        # Access log is off by default; uvloop like uvicorn. HTTP/1.1 and h2c need no option.
        return [
            PYTHON,
            "-m",
            "hypercorn",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            "1",
            "--worker-class",
            "uvloop",
            "--log-level",
            "warning",
            *extra,
            target,
        ]
    raise ValueError(f"unknown server {server!r}")


# --- TLS certificate and per-server options (issue 4) -----------------------------------------

TLS_CERT_NAME = "bench-cert.pem"
TLS_KEY_NAME = "bench-key.pem"  # PKCS#8: granian accepts nothing else
HYPERCORN_CONFIG_NAME = "hypercorn.toml"


def tls_files(directory: Path) -> tuple[Path, Path]:
    """Create (once per run, in the run's directory) a certificate for 127.0.0.1 and localhost
    issued by a throwaway trustme CA, and its key in PKCS#8 form."""
    cert, key = directory / TLS_CERT_NAME, directory / TLS_KEY_NAME
    if cert.exists() and key.exists():
        return cert, key
    import trustme  # checked by check_prerequisites; brings cryptography
    from cryptography.hazmat.primitives import serialization

    leaf = trustme.CA().issue_cert(HOST, "localhost")
    private_key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    return cert, key


def hypercorn_config(directory: Path) -> Path:
    """Hypercorn closes a connection after 1,000 requests by default (keep_alive_max_requests):
    h2load does not reconnect and wrk pays a reconnect; lift it, the other servers have no limit."""
    config = directory / HYPERCORN_CONFIG_NAME
    if not config.exists():
        config.write_text("keep_alive_max_requests = 2147483647\n")
    return config


# Exact log lines a server writes at log level warning for something that is not a fault, which
# would otherwise flag every run. hypercorn: uvloop's SSL transport (asyncio's has the same line)
# logs "SSL connection is closed" when the app keeps writing to a TLS connection the peer has
# closed. h2load closes its connections with streams still in flight when a -D run ends, so a few
# such lines appear then, none while the load runs; every request of the run succeeded.
BENIGN_TLS_LOG_LINES: dict[str, frozenset[str]] = {
    "hypercorn": frozenset({"SSL connection is closed"}),
}


# h2corn has no log level option: its banner and its worker start and stop lines always print.
H2CORN_LIFECYCLE_LINE = re.compile(
    r"h2corn v[\d.]+ .*|Listening on .*|HTTP/1 compatibility is enabled.*|Started worker \[\d+\]"
    r"|Shutting down supervisor|Stopped worker \[\d+\]|"
)


def significant_log(server: str, workload: Workload, log: str) -> str:
    """The server's output without the lines listed in BENIGN_TLS_LOG_LINES (TLS workloads) and
    h2corn's lifecycle lines."""
    benign = BENIGN_TLS_LOG_LINES.get(server, frozenset()) if workload.tls else frozenset()
    lines = [line for line in log.splitlines() if line.strip() not in benign]
    if server == "h2corn":
        lines = [line for line in lines if not H2CORN_LIFECYCLE_LINE.fullmatch(line.strip())]
    return "\n".join(lines)


# uvicorn warns at start-up that `--ws websockets` (the websockets library's legacy asyncio
# implementation) is deprecated in favour of websockets-sansio: not a fault, so not in the log.
UVICORN_WS_DEPRECATION = "ignore:The `websockets` implementation is deprecated"
UVICORN_WS_CHOICES = ("websockets-sansio", "websockets", "wsproto")
# What uvicorn's own --ws auto picks when websockets is installed (uvicorn 0.54), and its fastest.
UVICORN_WS_DEFAULT = "websockets-sansio"


def server_args(server: str, workload: Workload, directory: Path, uvicorn_ws: str = UVICORN_WS_DEFAULT) -> list[str]:
    """Options a server needs for this workload besides the common ones: TLS, HTTP/2, config,
    uvicorn's WebSocket implementation."""
    args: list[str] = []
    if server == "hypercorn":
        args += ["--config", str(hypercorn_config(directory))]
    if workload.tls:
        cert, key = tls_files(directory)
        option = {
            "ferrocorn": ("--ssl-certfile", "--ssl-keyfile"),
            "uvicorn": ("--ssl-certfile", "--ssl-keyfile"),
            "granian": ("--ssl-certificate", "--ssl-keyfile"),
            "h2corn": ("--certfile", "--keyfile"),
            "hypercorn": ("--certfile", "--keyfile"),
        }[server]
        args += [option[0], str(cert), option[1], str(key)]
    # HTTP/2: ferrocorn (--http auto), granian (--http auto) and hypercorn serve h2c with prior
    # knowledge and offer h2 by ALPN without any option.
    if workload.websocket and server == "uvicorn":
        # Named, so that the report says which one ran (--ws auto would pick websockets-sansio).
        args += ["--ws", uvicorn_ws]
    # WebSockets: on by default in ferrocorn (--ws auto), granian and hypercorn.
    return args


def _proc_stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name: state is field 3 of proc(5), so index i here
    # is field i + 3.
    return raw[raw.rindex(")") + 2 :].split()


def process_group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat_fields(int(entry))
            if fields is not None and int(fields[2]) == pgid:  # field 5: pgrp
                members.append(int(entry))
    return members


def process_group_cpu_seconds(pgid: int) -> float:
    ticks = 0
    for pid in process_group_members(pgid):
        fields = _proc_stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SystemCpu:
    """Machine-wide CPU seconds from /proc/stat (all CPUs)."""

    task: float  # user + nice + system + irq + softirq
    steal: float  # time the hypervisor gave to someone else

    @classmethod
    def read(cls) -> SystemCpu:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        # cpu: user nice system idle iowait irq softirq steal guest guest_nice
        tick = os.sysconf("SC_CLK_TCK")
        steal = values[7] if len(values) > 7 else 0
        # Process CPU times include softirq work done in their context: count it as busy too.
        task = sum(values[0:3]) + sum(values[5:7])
        return cls(task=task / tick, steal=steal / tick)


class ServerProcess:
    """A server started in its own session (process group) so the whole tree can be stopped."""

    live: ClassVar[set[ServerProcess]] = set()

    def __init__(
        self,
        server: str,
        workload: Workload,
        cpu: str,
        log_dir: Path,
        uvicorn_ws: str = UVICORN_WS_DEFAULT,
    ) -> None:
        self.server = server
        self.port = free_port()
        extra = server_args(server, workload, log_dir, uvicorn_ws)
        self.command = ["taskset", "-c", cpu, *server_command(server, workload.target, self.port, extra)]
        self.log_path = log_dir / f"{server}-{workload.name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self.killed = False  # True when SIGTERM was not enough

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ServerProcess.live.add(self)

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # start_new_session: the leader's pid is the group id

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, workload: Workload) -> None:
        """Poll until the port accepts a connection and answers an HTTP request."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error = "no attempt"
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise BenchError(
                    f"{self.server} exited with code {code} before becoming ready\n"
                    f"command: {' '.join(self.command)}\n{self.log_text()}"
                )
            try:
                http_request(self.port, workload, timeout=2.0)
                return
            except (OSError, http.client.HTTPException) as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        raise BenchError(
            f"{self.server} not ready on port {self.port} after {READY_TIMEOUT_S:.0f} s "
            f"(last error: {last_error})\ncommand: {' '.join(self.command)}\n{self.log_text()}"
        )

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after a grace period, reap the leader."""
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        ServerProcess.live.discard(self)
        pgid = self.pgid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not process_group_members(pgid):
                break
            time.sleep(0.05)
        # Past the grace period, or stragglers that outlived the leader: SIGKILL the whole group.
        if process_group_members(pgid):
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()

    @classmethod
    def stop_all(cls) -> None:
        for server in list(cls.live):
            server.stop()


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    rps: float
    p99_ms: float
    transfer_mb_s: float  # wrk's Transfer/sec in MB (2**20 bytes) per second
    socket_errors: int
    non_2xx: int
    raw: str
    problems: list[str] = field(default_factory=list)  # flagged whatever the error counts

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE_UNITS_MB = {"": 1 / 2**20, "K": 1 / 2**10, "M": 1.0, "G": 2**10, "T": 2**20}


def parse_wrk(output: str) -> WrkResult:
    def search(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"could not find {pattern!r} in wrk output:\n{output}")
        return match

    requests = int(search(r"^\s*(\d+) requests in ").group(1))
    rps = float(search(r"^Requests/sec:\s*([\d.]+)").group(1))
    p99 = search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\b")
    transfer = search(r"^Transfer/sec:\s*([\d.]+)([KMGT]?)B")
    socket_match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = sum(int(g) for g in socket_match.groups()) if socket_match else 0
    non_2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=requests,
        rps=rps,
        p99_ms=float(p99.group(1)) * _TIME_UNITS_MS[p99.group(2)],
        transfer_mb_s=float(transfer.group(1)) * _SIZE_UNITS_MB[transfer.group(2)],
        socket_errors=socket_errors,
        non_2xx=int(non_2xx_match.group(1)) if non_2xx_match else 0,
        raw=output,
    )


def run_wrk(port: int, workload: Workload, duration: int, cpu: str, script: Path | None) -> tuple[WrkResult, float]:
    """Run wrk; return its parsed result and the CPU seconds wrk itself used."""
    cmd = [
        "taskset",
        "-c",
        cpu,
        "wrk",
        "-t1",
        f"-c{workload.connections}",
        f"-d{duration}s",
        "--latency",
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(workload.url(port))  # https:// for the TLS workloads
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_wrk(proc.stdout), cpu_s


# --- h2load (HTTP/2 workloads, issue 4) -------------------------------------------------------


def parse_h2load(output: str, expected_protocol: str, latencies_us: list[int]) -> WrkResult:
    """Parse h2load's summary; p99 comes from its per-request log (h2load prints no percentiles).

    ``failed`` counts every request that did not succeed (non-2xx/3xx status, or a stream or
    connection error, which h2load also counts as ``errored``); requests still in flight when a
    ``-D`` run ends are counted in none of them.
    """

    def search(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"could not find {pattern!r} in h2load output:\n{output}")
        return match

    protocol = re.search(r"^Application protocol: (\S+)", output, re.MULTILINE)
    if protocol is None or protocol.group(1) != expected_protocol:
        got = protocol.group(1) if protocol else "none (no connection or no ALPN agreement)"
        raise BenchError(f"h2load expected application protocol {expected_protocol}, got {got}:\n{output}")
    finished = search(r"^finished in [\d.]+m?s, ([\d.]+) req/s, ([\d.]+)([KMG]?)B/s")
    counts = search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout"
    )
    succeeded, failed, errored, timeout = (int(counts.group(i)) for i in (4, 5, 6, 7))
    p99_ms = 0.0
    if latencies_us:
        latencies_us.sort()
        p99_ms = latencies_us[min(len(latencies_us) - 1, int(0.99 * len(latencies_us)))] / 1e3
    return WrkResult(
        requests=succeeded,
        rps=float(finished.group(1)),
        p99_ms=p99_ms,
        transfer_mb_s=float(finished.group(2)) * _SIZE_UNITS_MB[finished.group(3)],
        socket_errors=errored + timeout,
        non_2xx=failed - errored,
        raw=output,
    )


def read_h2load_log(path: Path) -> list[int]:
    """Microseconds per request from h2load --log-file (start us, status, duration us)."""
    latencies = []
    with path.open() as log:
        for line in log:
            fields = line.split("\t")
            if len(fields) >= 3:
                latencies.append(int(fields[2]))
    return latencies


def run_h2load(
    port: int, workload: Workload, duration: int, cpu: str, log_path: Path | None
) -> tuple[WrkResult, float]:
    """Run h2load for duration seconds; return its parsed result and its CPU seconds."""
    cmd = [
        "taskset",
        "-c",
        cpu,
        "h2load",
        "-t1",
        f"-c{workload.connections}",
        f"-m{workload.streams}",
        f"-D{duration}",
    ]
    if log_path is not None:
        cmd.append(f"--log-file={log_path}")
    cmd.append(workload.url(port))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"h2load failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    latencies: list[int] = []
    if log_path is not None:
        latencies = read_h2load_log(log_path)
        log_path.unlink()
    return parse_h2load(proc.stdout, "h2" if workload.tls else "h2c", latencies), cpu_s


# --- wsload (WebSocket workloads, issue 5) ----------------------------------------------------


def parse_wsload(output: str, workload: Workload) -> WrkResult:
    """Read wsload's JSON report: messages echoed within the duration, errors, latency."""
    try:
        report = json.loads(output)
        messages = int(report["messages"])
        rate = float(report["messages_per_s"])
        p99_us = int(report["latency_us"]["p99"])
        errors = int(report["errors"])
        connected = int(report["connected"])
        unanswered = int(report["unanswered"])
        samples = [str(e) for e in report["error_samples"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"could not read wsload's report ({exc!r}):\n{output}") from exc
    problems = []
    if connected < workload.connections:
        problems.append(f"only {connected} of {workload.connections} connections opened")
    if unanswered:
        problems.append(f"{unanswered} message(s) still unanswered 2 s after the run")
    if samples:
        problems.append("wsload errors: " + " | ".join(samples))
    return WrkResult(
        requests=messages,
        rps=rate,
        p99_ms=p99_us / 1e3,
        transfer_mb_s=rate * workload.ws_size / 2**20,  # echoed payload, one direction
        socket_errors=errors,
        non_2xx=0,
        raw=output,
        problems=problems,
    )


def run_wsload(port: int, workload: Workload, duration: int, cpu: str) -> tuple[WrkResult, float]:
    """Run benches/wsload for duration seconds; return its parsed result and its CPU seconds."""
    cmd = [
        "taskset",
        "-c",
        cpu,
        str(WSLOAD),
        "--url",
        workload.url(port),
        "--connections",
        str(workload.connections),
        "--duration",
        str(duration),
        "--size",
        str(workload.ws_size),
        "--pipeline",
        str(workload.ws_pipeline),
        "--threads",
        "1",
    ]
    if workload.ws_binary:
        cmd.append("--binary")
    output, cpu_s = run_client("wsload", cmd, duration)
    return parse_wsload(output, workload), cpu_s


def run_client(name: str, cmd: list[str], duration: int) -> tuple[str, float]:
    """Run one of our own load generators to completion: its standard output and its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"{name} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return proc.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# --- httpload (large response bodies, the file workloads) --------------------------------------


def parse_httpload(output: str) -> WrkResult:
    """Read httpload's JSON report: responses completed within the duration, bytes, errors."""
    try:
        report = json.loads(output)
        requests = int(report["requests"])
        rate = float(report["requests_per_s"])
        mb_s = float(report["mb_per_s"])
        p99_us = int(report["latency_us"]["p99"])
        errors = int(report["errors"])
        non_2xx = int(report["non_2xx"])
        connected, connections = int(report["connected"]), int(report["connections"])
        samples = [str(e) for e in report["error_samples"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"could not read httpload's report ({exc!r}):\n{output}") from exc
    problems = []
    if connected < connections:
        problems.append(f"only {connected} of {connections} connections opened")
    if samples:
        problems.append("httpload errors: " + " | ".join(samples))
    return WrkResult(
        requests=requests,
        rps=rate,
        p99_ms=p99_us / 1e3,
        transfer_mb_s=mb_s,  # every byte received (heads too), MB = 2**20 bytes, as wrk's
        socket_errors=errors,
        non_2xx=non_2xx,
        raw=output,
        problems=problems,
    )


def run_httpload(port: int, workload: Workload, duration: int, cpu: str, discard: str) -> tuple[WrkResult, float]:
    """Run benches/httpload for duration seconds; return its parsed result and its CPU seconds."""
    cmd = [
        "taskset",
        "-c",
        cpu,
        str(HTTPLOAD),
        "--url",
        workload.url(port),
        "--connections",
        str(workload.connections),
        "--duration",
        str(duration),
        "--discard",
        discard,
    ]
    output, cpu_s = run_client("httpload", cmd, duration)
    return parse_httpload(output), cpu_s


def uses_httpload(workload: Workload, file_client: str) -> bool:
    return workload.large_bodies and file_client == "httpload"


def run_load(
    port: int,
    workload: Workload,
    duration: int,
    cpu: str,
    work_dir: Path,
    script: Path | None,
    timed: bool = True,
    file_client: str = "httpload",
    discard: str = "trunc",
) -> tuple[WrkResult, float]:
    """Run the workload's load generator: wrk for HTTP/1.1, h2load for HTTP/2, wsload for
    WebSockets, httpload for large bodies."""
    if workload.websocket:
        return run_wsload(port, workload, duration, cpu)
    if uses_httpload(workload, file_client):
        return run_httpload(port, workload, duration, cpu, discard)
    if workload.http2:
        log_path = work_dir / f"h2load-{workload.name}-{port}.tsv" if timed else None
        return run_h2load(port, workload, duration, cpu, log_path)
    return run_wrk(port, workload, duration, cpu, script)


@dataclass(frozen=True)
class FerrocornBuild:
    """Identifies the ferrocorn build under test, which may be rebuilt while a benchmark runs."""

    extension: Path  # the compiled _ferrocorn module every fresh server process loads
    sha256: str
    git: str  # repository HEAD, "-dirty" if src/ or python/ have uncommitted changes

    @classmethod
    def detect(cls) -> FerrocornBuild:
        probe = subprocess.run(
            [PYTHON, "-c", "import ferrocorn._ferrocorn as m; print(m.__file__)"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=False,
        )
        if probe.returncode != 0:
            raise BenchError(f"cannot locate ferrocorn._ferrocorn:\n{probe.stderr.strip()}")
        extension = Path(probe.stdout.strip())
        return cls(extension=extension, sha256=_sha256(extension), git=_git_describe())

    def changed(self) -> bool:
        return _sha256(self.extension) != self.sha256

    def describe(self) -> str:
        return f"git {self.git}, {self.extension.name} sha256 {self.sha256}"


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"


def _git_describe() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--", "src", "python") else "")


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    workload: str
    server: str
    run: int
    rps: float
    p99_ms: float
    transfer_mb_s: float
    requests: int
    socket_errors: int
    non_2xx: int
    server_cpu: float  # fraction of one core used by the server's process tree during the run
    client_cpu: float  # fraction of one core used by wrk
    other_cpu: float  # cores used by every other process on the machine
    steal: float  # cores taken by the hypervisor
    warnings: list[str] = field(default_factory=list)


def measure(
    server: str,
    workload: Workload,
    run: int,
    args: argparse.Namespace,
    work_dir: Path,
    build: FerrocornBuild | None,
) -> Measurement:
    script = wrk_lua_script(workload, work_dir)
    proc = ServerProcess(server, workload, args.server_cpu, work_dir, args.uvicorn_ws)
    try:
        proc.start()
        proc.wait_ready(workload)
        problem = verify(proc.port, workload)
        if problem is not None:
            raise BenchError(
                f"{server} answers {workload.name} ({workload.method} {workload.path}) wrongly: "
                f"{problem}\ncommand: {' '.join(proc.command)}\n{proc.log_text()}"
            )
        client = {"file_client": args.file_client, "discard": args.httpload_discard}
        run_load(proc.port, workload, WARMUP_S, args.client_cpu, work_dir, script, timed=False, **client)

        cpu_before = process_group_cpu_seconds(proc.pgid)
        system_before = SystemCpu.read()
        started = time.monotonic()
        result, client_cpu_s = run_load(proc.port, workload, args.duration, args.client_cpu, work_dir, script, **client)
        elapsed = time.monotonic() - started
        system_after = SystemCpu.read()
        server_cpu_s = process_group_cpu_seconds(proc.pgid) - cpu_before
        # Whatever else ran on the machine during the run (builds, other benchmarks) skews it.
        # Per-process and machine-wide accounting differ by a few %: clamp the difference at 0.
        other_cpu = max(0.0, (system_after.task - system_before.task - server_cpu_s - client_cpu_s) / elapsed)
        steal = (system_after.steal - system_before.steal) / elapsed

        warnings = list(result.problems)
        fraction = H2LOAD_ERROR_TOLERANCE_FRAC if workload.http2 else ERROR_TOLERANCE_FRAC
        tolerance = max(ERROR_TOLERANCE_ABS, fraction * result.requests)
        if workload.websocket:
            # Each wsload error ends a connection (wrong echo, close, reset): none is tolerated.
            if result.errors:
                warnings.append(f"{result.errors} WebSocket connection(s) failed during the run")
        elif result.errors > tolerance:
            kind = "errored/timed-out requests" if workload.http2 else "socket errors"
            warnings.append(
                f"{result.non_2xx} non-2xx/3xx responses and {result.socket_errors} {kind} "
                f"in {result.requests} requests"
            )
        if result.requests == 0:
            warnings.append("no message echoed" if workload.websocket else "no request completed")
        code = proc.exit_code()
        if code is not None:
            warnings.append(f"server exited with code {code} during the run")
        else:
            problem = verify(proc.port, workload)
            if problem is not None:
                warnings.append(f"wrong answer after the run: {problem}")
        proc.stop()
        if server == "ferrocorn" and build is not None and build.changed():
            warnings.append(f"{build.extension.name} changed since the benchmark started (rebuilt mid-run?)")
        if proc.killed:
            warnings.append(f"did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM: killed")
        log = significant_log(server, workload, proc.log_text()).strip()
        if log:
            # Everything runs at log level warning, so any output deserves a look.
            warnings.append(f"server wrote {len(log.splitlines())} line(s) of output")
            print(f"    {server} output ({proc.log_path}):\n" + _indent(log[-3000:], 6), file=sys.stderr)
        return Measurement(
            workload=workload.name,
            server=server,
            run=run,
            rps=result.rps,
            p99_ms=result.p99_ms,
            transfer_mb_s=result.transfer_mb_s,
            requests=result.requests,
            socket_errors=result.socket_errors,
            non_2xx=result.non_2xx,
            server_cpu=server_cpu_s / elapsed,
            client_cpu=client_cpu_s / elapsed,
            other_cpu=other_cpu,
            steal=steal,
            warnings=warnings,
        )
    finally:
        proc.stop()  # no-op when already stopped above


def wait_for_idle(timeout: float) -> bool:
    """Wait until the machine is idle (nothing of ours runs now) for one second; False on timeout."""
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        before = SystemCpu.read()
        time.sleep(1.0)
        after = SystemCpu.read()
        load = (after.task - before.task) + (after.steal - before.steal)
        if load <= OTHER_LOAD_MAX:
            return True
        if time.monotonic() >= deadline:
            print(f"    machine still busy ({load:.0%} of a core); measuring anyway", file=sys.stderr)
            return False
        if not announced:
            print(f"    machine busy ({load:.0%} of a core used by others): waiting", file=sys.stderr)
            announced = True


def measure_undisturbed(
    server: str,
    workload: Workload,
    run: int,
    args: argparse.Namespace,
    work_dir: Path,
    build: FerrocornBuild | None,
    label: str,
) -> Measurement:
    """Measure once, waiting for an idle machine first and re-measuring runs disturbed by others."""
    for attempt in range(args.retries + 1):
        if args.idle_timeout > 0:
            wait_for_idle(args.idle_timeout)
        m = measure(server, workload, run, args, work_dir, build)
        disturbed = m.other_cpu + m.steal > OTHER_LOAD_MAX
        flag = f"  ⚠ {'; '.join(m.warnings)}" if m.warnings else ""
        if disturbed:
            flag += "  (disturbed by other load" + (", retrying)" if attempt < args.retries else ")")
        print(
            f"{label}: {m.rps:>10,.0f} {workload.unit}  p99 {_fmt_ms(m.p99_ms):>9}  "
            f"{m.transfer_mb_s:>8,.1f} MB/s  cpu {m.server_cpu:.0%}/{m.client_cpu:.0%}"
            f" other {m.other_cpu + m.steal:.0%}{flag}",
            file=sys.stderr,
        )
        if not disturbed:
            break
    return m


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


# --------------------------------------------------------------------------------------------
# Summary and reporting
# --------------------------------------------------------------------------------------------


@dataclass
class Summary:
    workload: str
    server: str
    rps: float
    p99_ms: float
    transfer_mb_s: float
    server_cpu: float
    client_cpu: float
    other_cpu: float
    rps_spread: float  # (max - min) / median of req/s (msg/s) across runs
    warnings: list[str]
    # Medians of each run's CPU per MiB received (0 without throughput).
    server_us_per_mib: float = 0.0
    client_us_per_mib: float = 0.0


def summarise(measurements: list[Measurement], workload: str, server: str) -> Summary | None:
    runs = [m for m in measurements if m.workload == workload and m.server == server]
    if not runs:
        return None
    rps = [m.rps for m in runs]
    median_rps = statistics.median(rps)
    spread = (max(rps) - min(rps)) / median_rps if median_rps else 0.0
    warnings = [f"run {m.run}: {w}" for m in runs for w in m.warnings]
    server_cpu = statistics.median(m.server_cpu for m in runs)
    client_cpu = statistics.median(m.client_cpu for m in runs)
    if server_cpu < SERVER_BUSY_MIN:
        note = f"server core only {server_cpu:.0%} busy"
        if client_cpu > CLIENT_BUSY_MAX:
            note += f" while the load generator used {client_cpu:.0%}: it is probably the bottleneck"
        warnings.append(note)
    other_cpu = max(m.other_cpu + m.steal for m in runs)
    if other_cpu > OTHER_LOAD_MAX:
        warnings.append(
            f"other load on the machine: up to {other_cpu:.0%} of a core used by other processes "
            "or stolen by the hypervisor during a run"
        )
    if len(runs) > 1 and spread > NOISY_SPREAD:
        warnings.append(f"noisy: rate spread {spread:.0%} across {len(runs)} runs")
    return Summary(
        workload=workload,
        server=server,
        rps=median_rps,
        p99_ms=statistics.median(m.p99_ms for m in runs),
        transfer_mb_s=statistics.median(m.transfer_mb_s for m in runs),
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        other_cpu=other_cpu,
        rps_spread=spread,
        warnings=warnings,
        server_us_per_mib=statistics.median(_per_mib(m.server_cpu, m) for m in runs),
        client_us_per_mib=statistics.median(_per_mib(m.client_cpu, m) for m in runs),
    )


def _per_mib(cpu: float, m: Measurement) -> float:
    """CPU µs per MiB received in one run (cpu: share of a core during it)."""
    return cpu / m.transfer_mb_s * 1e6 if m.transfer_mb_s else 0.0


def _fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_us(value: float) -> str:
    return f"{value:.1f} µs"


def cpu_us_per_request(summary: Summary) -> float:
    """Server CPU time (user + system, all its threads) per request or message, in µs."""
    return summary.server_cpu / summary.rps * 1e6 if summary.rps else 0.0


def server_cpu_us_per_mib(summary: Summary) -> float:
    """Server CPU time per MiB received by the client (large bodies: robust where req/s is not),
    the median over the runs."""
    return summary.server_us_per_mib


def client_cpu_us_per_mib(summary: Summary) -> float:
    """The load generator's CPU time per MiB it received, the median over the runs."""
    return summary.client_us_per_mib


def _fmt_ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def _fmt_mb(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0:
        return "n/a"
    return f"{num / den:.2f}×"


def markdown_table(
    summaries: dict[tuple[str, str], Summary], workloads: list[Workload], servers: list[str]
) -> tuple[str, list[str]]:
    """Return the Markdown table and the list of footnotes for flagged cells."""
    ratio_peers = [p for p in PEERS if "ferrocorn" in servers and p in servers]
    header = ["workload", "metric", *servers, *(f"ferrocorn/{p}" for p in ratio_peers)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes: list[str] = []

    metrics: list[tuple[str, Callable[[Summary], float], Callable[[float], str], bool]] = [
        ("req/s", lambda s: s.rps, _fmt_rps, True),
        # The headline figure: it survives the machine's noise far better than req/s. Lower is better.
        ("server CPU µs / req", cpu_us_per_request, _fmt_us, True),
        ("p99 latency", lambda s: s.p99_ms, _fmt_ms, True),
        ("MB/s", lambda s: s.transfer_mb_s, _fmt_mb, True),
        # Large bodies: CPU per byte is the figure that survives a busy machine (or a slow client).
        ("server CPU µs / MiB", server_cpu_us_per_mib, _fmt_us, True),
        ("client CPU µs / MiB", client_cpu_us_per_mib, _fmt_us, False),
        ("CPU server / client", lambda s: s.server_cpu, str, False),
    ]
    for workload in workloads:
        first = True
        for name, getter, fmt, ratio in metrics:
            if name == "MB/s" and not workload.report_throughput:
                continue
            if name.endswith("/ MiB") and not workload.large_bodies:
                continue
            cells = [workload.title if first else "", workload.unit if name == "req/s" else name]
            first = False
            for server in servers:
                summary = summaries.get((workload.name, server))
                if summary is None:
                    reason = dict(workload.skip).get(server)
                    cells.append(reason if reason and name == "req/s" else "–")
                elif name == "CPU server / client":
                    cells.append(f"{summary.server_cpu:.0%} / {summary.client_cpu:.0%}")
                else:
                    cell = fmt(getter(summary))
                    if name == "req/s" and summary.warnings:
                        first_note = len(notes) + 1
                        notes.extend(f"{workload.name} / {server}: {w}" for w in summary.warnings)
                        cell += " ⚠" + ",".join(str(i) for i in range(first_note, len(notes) + 1))
                    cells.append(cell)
            for peer in ratio_peers:
                if not ratio:
                    cells.append("")
                    continue
                mine = summaries.get((workload.name, "ferrocorn"))
                theirs = summaries.get((workload.name, peer))
                cells.append(_fmt_ratio(getter(mine) if mine else None, getter(theirs) if theirs else None))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), notes


def environment_info(
    args: argparse.Namespace,
    servers: list[str],
    build: FerrocornBuild | None,
    workloads: list[Workload] | None = None,
) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for package in ("ferrocorn", "h2corn", "uvicorn", "granian", "hypercorn", "uvloop", "httptools", "fastapi"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    if build is not None and "ferrocorn" in versions:
        versions["ferrocorn"] += f" ({build.describe()})"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout + wrk.stderr).splitlines()[0].split("[")[0].strip()
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "wrk": wrk_version,
        "versions": {k: v for k, v in versions.items() if k in servers or k not in ALL_SERVERS},
        "duration_s": args.duration,
        "warmup_s": WARMUP_S,
        "runs": args.runs,
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
    }
    if "uvicorn" in servers and any(w.websocket for w in workloads or []):
        info["uvicorn_ws"] = args.uvicorn_ws
    if any(w.http2 for w in workloads or []):
        h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
        info["h2load"] = (h2load.stdout.strip().splitlines() or ["h2load (unknown version)"])[0]
    if any(w.websocket for w in workloads or []):
        info["wsload"] = "wsload (benches/wsload, tokio-tungstenite)"
    info["wrk_used"] = any(not (w.websocket or w.http2 or uses_httpload(w, args.file_client)) for w in workloads or [])
    if any(uses_httpload(w, args.file_client) for w in workloads or []):
        info["httpload"] = f"httpload (benches/httpload, --discard {args.httpload_discard})"
        with contextlib.suppress(metadata.PackageNotFoundError):
            info["versions"]["websockets"] = metadata.version("websockets")  # uvicorn --ws websockets
    return info


def render_markdown(table: str, notes: list[str], info: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        (
            f"Measured {info['date']} on {info['cpus']} CPUs (kernel {info['kernel']}), "
            f"CPython {info['python']}, {info['wrk']}"
            + (f", {info['h2load']}" if "h2load" in info else "")
            + (f", {info['wsload']}" if "wsload" in info else "")
            + (f", {info['httpload']}" if "httpload" in info else "")
            + f"; {versions}."
        ),
        "",
        (
            f"Median of {info['runs']} interleaved run(s) of {info['duration_s']} s after a "
            f"{info['warmup_s']} s warm-up; fresh server process per run pinned to CPU "
            f"{info['server_cpu']}, "
            + ", ".join(
                tool
                for tool, used in (
                    (
                        "`wrk -t1`" + (" (HTTP/1.1)" if {"h2load", "wsload", "httpload"} & set(info) else ""),
                        info.get("wrk_used", True),
                    ),
                    ("`h2load -t1` (HTTP/2)", "h2load" in info),
                    ("`wsload --threads 1` (WebSocket)", "wsload" in info),
                    ("`httpload` (one thread; files)", "httpload" in info),
                )
                if used
            )
            + f" pinned to CPU {info['client_cpu']}. "
            + (f"uvicorn's WebSockets: `--ws {info['uvicorn_ws']}`. " if "uvicorn_ws" in info else "")
            + "Ratios > 1 mean ferrocorn is faster for req/s, msg/s and MB/s, slower for p99 "
            "latency, costlier for server CPU per request or MiB. "
            '"CPU server / client": share of one core used by the server process tree and by the '
            "load generator."
        ),
        "",
        table,
    ]
    if notes:
        lines += ["", "Flags:", *(f"{i}. {note}" for i, note in enumerate(notes, 1))]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="workloads: "
        + ", ".join(f"{w.name}{' (default)' if w.name in DEFAULT_WORKLOADS else ''}" for w in WORKLOADS.values())
        + "; groups: "
        + ", ".join(
            f"{name} ({','.join(members)})" if name != "all" else name for name, members in WORKLOAD_GROUPS.items()
        ),
    )
    parser.add_argument("--duration", type=int, help="seconds per timed run (default 10; 3 with --quick)")
    parser.add_argument("--runs", type=int, help="runs per server and workload (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 run of 3 s")
    parser.add_argument(
        "--workloads",
        default="default",
        help="comma list of workloads and groups (default, tls-h2, ws, files, all); default: default",
    )
    parser.add_argument(
        "--servers",
        help=f"comma list of {', '.join(ALL_SERVERS)} (default: each workload's own set: "
        f"{', '.join(CORE_SERVERS)}, and hypercorn too for tls-h2); a workload leaves out the "
        "servers that cannot serve it",
    )
    parser.add_argument(
        "--uvicorn-ws",
        choices=UVICORN_WS_CHOICES,
        default=UVICORN_WS_DEFAULT,
        help=f"uvicorn's --ws for the WebSocket workloads (default {UVICORN_WS_DEFAULT}, what "
        "uvicorn's --ws auto picks; websockets is the older, deprecated implementation)",
    )
    parser.add_argument(
        "--file-client",
        choices=("httpload", "wrk"),
        default="httpload",
        help="load generator of the file workloads (file-1m, file-64m): benches/httpload (default), or "
        "wrk, which spends more CPU per byte than the servers and so measures itself",
    )
    parser.add_argument(
        "--httpload-discard",
        choices=("trunc", "copy", "splice"),
        default="trunc",
        help="how httpload discards bodies (default trunc: recv(MSG_TRUNC), no copy; copy: recv into a "
        "1 MiB buffer; splice: through a pipe into /dev/null)",
    )
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list for servers (default 0)")
    parser.add_argument(
        "--client-cpu",
        default="1",
        help="taskset CPU list for the load generators: wrk, h2load, wsload (default 1)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=120.0,
        help="before each run, wait up to this many seconds for other load to stop (0: don't wait)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-measure a run disturbed by other load up to this many times (default 2)",
    )
    parser.add_argument("--json", type=Path, help="write all runs and medians to this JSON file")
    parser.add_argument("--markdown", type=Path, help="write the Markdown report to this file")
    args = parser.parse_args(argv)

    args.duration = args.duration or (3 if args.quick else 10)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.duration < 1 or args.runs < 1:
        parser.error("--duration and --runs must be at least 1")
    if args.retries < 0:
        parser.error("--retries must be at least 0")
    # None: every workload runs its default set of servers.
    args.server_list = None if args.servers is None else [s.strip() for s in args.servers.split(",") if s.strip()]
    args.workload_list = []
    for name in (w.strip() for w in args.workloads.split(",") if w.strip()):
        for member in WORKLOAD_GROUPS.get(name, (name,)):
            if member not in args.workload_list:
                args.workload_list.append(member)
    for server in args.server_list or []:
        if server not in ALL_SERVERS:
            parser.error(f"unknown server {server!r}; choose from {', '.join(ALL_SERVERS)}")
    for name in args.workload_list:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join([*WORKLOADS, *WORKLOAD_GROUPS])}")
    if args.server_list == [] or not args.workload_list:
        parser.error("need at least one server and one workload")
    if not any(WORKLOADS[name].servers(args.server_list) for name in args.workload_list):
        parser.error("none of the servers listed can serve any of the workloads listed")
    return args


def check_prerequisites(
    servers: list[str], workloads: list[Workload] | None = None, file_client: str = "httpload"
) -> None:
    tools = ["wrk", "taskset"]
    http2 = any(w.http2 for w in workloads or [])
    if http2:
        tools.append("h2load")
    for tool in tools:
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found: run `bash benches/setup.sh`")
    if http2:
        try:
            import h2  # noqa: F401  (httpx's HTTP/2 support, used to check HTTP/2 answers)
            import httpx  # noqa: F401
        except ImportError as exc:
            raise BenchError(f"HTTP/2 checks need httpx[http2]: run `bash benches/setup.sh` ({exc})") from exc
    if any(w.tls for w in workloads or []):
        try:
            import trustme  # noqa: F401  (makes the run's certificate)
        except ImportError as exc:
            raise BenchError(f"TLS workloads need trustme: run `bash benches/setup.sh` ({exc})") from exc
    if any(uses_httpload(w, file_client) for w in workloads or []) and not os.access(HTTPLOAD, os.X_OK):
        raise BenchError(
            f"{HTTPLOAD.relative_to(REPO_ROOT)} not built: run `bash benches/setup.sh` "
            f"(or `{HTTPLOAD_BUILD}` from the repository root)"
        )
    if any(w.websocket for w in workloads or []):
        if not os.access(WSLOAD, os.X_OK):
            raise BenchError(
                f"{WSLOAD.relative_to(REPO_ROOT)} not built: run `bash benches/setup.sh` "
                f"(or `{WSLOAD_BUILD}` from the repository root)"
            )
        try:
            import websockets.sync.client  # noqa: F401  (checks the echoes before and after a run)
        except ImportError as exc:
            raise BenchError(f"WebSocket checks need websockets: run `bash benches/setup.sh` ({exc})") from exc
    modules = {
        "ferrocorn": "ferrocorn._ferrocorn",
        "h2corn": "h2corn",
        "uvicorn": "uvicorn",
        "granian": "granian",
        "hypercorn": "hypercorn",
    }
    for server in servers:
        probe = subprocess.run(
            [PYTHON, "-c", f"import {modules[server]}"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=False,
        )
        if probe.returncode != 0:
            hint = (
                "build and install it with `pip install .` from the repository root, "
                "or leave it out with --servers uvicorn,granian,hypercorn"
                if server == "ferrocorn"
                else "run `bash benches/setup.sh`"
            )
            raise BenchError(f"cannot import {modules[server]}: {hint}\n{probe.stderr.strip()}")


def run(args: argparse.Namespace) -> int:
    selected: list[str] | None = args.server_list
    workloads = [WORKLOADS[name] for name in args.workload_list]
    # Every server some workload runs, in ALL_SERVERS order: the report's columns.
    servers = [s for s in ALL_SERVERS if any(s in w.servers(selected) for w in workloads)]
    check_prerequisites(servers, workloads, args.file_client)
    build = FerrocornBuild.detect() if "ferrocorn" in servers else None
    for workload in workloads:
        for server, reason in workload.skipped(selected):
            print(f"{workload.name}: skipping {server} ({reason})", file=sys.stderr)

    total = sum(len(w.servers(selected)) for w in workloads) * args.runs
    # Per measurement: the idle check (1 s), server start-up and checks (~1 s), warm-up, timed run.
    estimate = total * (args.duration + WARMUP_S + 2.0)
    print(
        f"{len(workloads)} workload(s), {len(servers)} server(s): {total} run(s) of "
        f"{args.duration} s (+{WARMUP_S} s warm-up): about {estimate / 60:.1f} min",
        file=sys.stderr,
    )
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="ferrocorn-bench-") as tmp:
        work_dir = Path(tmp)
        done = 0
        for workload in workloads:
            workload_servers = workload.servers(selected)
            for run_index in range(1, args.runs + 1):
                if not workload_servers:
                    break
                # Rotate the start position so no server always runs first (or last).
                shift = (run_index - 1) % len(workload_servers)
                for server in workload_servers[shift:] + workload_servers[:shift]:
                    done += 1
                    label = f"[{done}/{total}] {workload.name:<13} {server:<9} run {run_index}"
                    measurements.append(measure_undisturbed(server, workload, run_index, args, work_dir, build, label))

    summaries = {
        (w.name, s): summary
        for w in workloads
        for s in servers
        if (summary := summarise(measurements, w.name, s)) is not None
    }
    info = environment_info(args, servers, build, workloads)
    table, notes = markdown_table(summaries, workloads, servers)
    report = render_markdown(table, notes, info)
    print(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "environment": info,
                    "medians": [asdict(s) for s in summaries.values()],
                    "runs": [asdict(m) for m in measurements],
                },
                indent=2,
            )
            + "\n"
        )
    # Errors, crashes and wrong answers fail the invocation; utilisation and noise notes do not.
    return 1 if any(m.warnings for m in measurements) else 0


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so that cleanup runs."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with terminate_on_sigterm():
        try:
            return run(args)
        except BenchError as exc:
            print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            ServerProcess.stop_all()


if __name__ == "__main__":
    sys.exit(main())
