"""Helpers shared by the Ferrocorn black-box tests.

* ``ServerProcess``: runs ``python3 -m ferrocorn APP ...`` (or any command) as a subprocess, keeps every
  stderr/stdout line, finds the port, stops it with a signal and collects the exit code.
* ``RawConn``: a raw-socket HTTP/1.x client with a small but strict response parser, for the cases httpx
  cannot express (pipelining, HTTP/1.0, 100-continue, malformed input, truncated responses).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# FERROCORN_TEST_SERVER=uvicorn runs the same suite against uvicorn (a reference, to check the tests themselves);
# anything else (the default) runs ``python3 -m ferrocorn``.
SERVER_MODULE = "uvicorn" if os.environ.get("FERROCORN_TEST_SERVER") == "uvicorn" else "ferrocorn"
SERVER_NAME = "Uvicorn" if SERVER_MODULE == "uvicorn" else "Ferrocorn"
RUNNING_RE = re.compile(
    SERVER_NAME + r" running on (https?)://([^\s:]+|\[[^\]]+\]):(\d+) \(Press CTRL\+C to quit\)"
)

# Every ServerProcess that is alive; conftest prints their logs when a test fails.
LIVE_SERVERS: list[ServerProcess] = []
_LIVE_LOCK = threading.Lock()


class ServerStartError(AssertionError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Runs in the child before exec: SIGKILL it if the test process dies without its teardown (e.g. pytest
    killed by an outer timeout), so no orphan server is left behind. Linux only; best effort."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class _LineCollector(threading.Thread):
    def __init__(self, stream, lines: list, cond: threading.Condition, name: str):
        super().__init__(daemon=True, name=name)
        self.stream = stream
        self.lines = lines
        self.cond = cond

    def run(self):
        try:
            for raw in iter(self.stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.lines.append(None)  # EOF marker
                self.cond.notify_all()


class ServerProcess:
    """A server (or any Python program) running in a subprocess, cwd = repo root."""

    def __init__(self, cmd: list, port: int | None = None, env: dict | None = None, name: str = "server"):
        self.cmd = cmd
        self.name = name
        self._fixed_port = port
        self.port: int | None = None
        self.host = "127.0.0.1"
        self.scheme = "http"
        self.returncode: int | None = None
        self._cond = threading.Condition()
        self._stderr: list = []
        self._stdout: list = []
        full_env = dict(os.environ)
        # keep the app importable as tests.apps.xxx
        full_env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.proc.pid
        self._threads = [
            _LineCollector(self.proc.stderr, self._stderr, self._cond, f"{name}-stderr"),
            _LineCollector(self.proc.stdout, self._stdout, self._cond, f"{name}-stdout"),
        ]
        for t in self._threads:
            t.start()
        with _LIVE_LOCK:
            LIVE_SERVERS.append(self)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def ferrocorn(cls, app: str, *args: str, port: int | None = None, env: dict | None = None,
                  wait: bool = True, timeout: float = 20.0) -> ServerProcess:
        port_arg = str(port) if port is not None else "0"
        cmd = [sys.executable, "-m", SERVER_MODULE, app, "--host", "127.0.0.1", "--port", port_arg, *args]
        srv = cls(cmd, port=port, env=env, name=f"ferrocorn[{app}]")
        if wait:
            srv.wait_ready(timeout=timeout)
        return srv

    # ------------------------------------------------------------------ logs
    @property
    def stderr_lines(self) -> list:
        with self._cond:
            return [line for line in self._stderr if line is not None]

    @property
    def stdout_lines(self) -> list:
        with self._cond:
            return [line for line in self._stdout if line is not None]

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    def log_tail(self, n: int = 80) -> str:
        return (
            f"--- {self.name} pid={self.pid} port={self.port} rc={self.proc.poll()} ---\n"
            + "[stderr]\n" + "\n".join(self.stderr_lines[-n:])
            + "\n[stdout]\n" + "\n".join(self.stdout_lines[-n:])
        )

    def wait_for_line(self, pattern, timeout: float = 10.0, stream: str = "stderr", start: int = 0):
        """Wait until a line (index >= start) matches ``pattern`` (a substring or compiled regex).
        Returns the matching line; raises AssertionError on timeout or EOF."""
        lines = self._stderr if stream == "stderr" else self._stdout
        deadline = time.monotonic() + timeout
        idx = start
        with self._cond:
            while True:
                while idx < len(lines):
                    line = lines[idx]
                    idx += 1
                    if line is None:
                        raise AssertionError(
                            f"{stream} of {self.name} closed before a line matched {pattern!r}\n{self.log_tail()}")
                    if (pattern.search(line) if hasattr(pattern, "search") else pattern in line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {stream} line matched {pattern!r} within {timeout}s\n{self.log_tail()}")
                self._cond.wait(remaining)

    def has_line(self, pattern, stream: str = "stderr") -> bool:
        lines = self.stderr_lines if stream == "stderr" else self.stdout_lines
        return any((pattern.search(line) if hasattr(pattern, "search") else pattern in line) for line in lines)

    def mark(self, stream: str = "stderr") -> int:
        """Index to pass as ``start`` to wait_for_line / lines_since."""
        with self._cond:
            lines = self._stderr if stream == "stderr" else self._stdout
            return len([line for line in lines if line is not None])

    def lines_since(self, mark: int, stream: str = "stderr") -> list:
        lines = self.stderr_lines if stream == "stderr" else self.stdout_lines
        return lines[mark:]

    # ------------------------------------------------------------------ lifecycle
    def wait_ready(self, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        if self._fixed_port is None:
            with self._cond:
                idx = 0
                while self.port is None:
                    while idx < len(self._stderr):
                        line = self._stderr[idx]
                        idx += 1
                        if line is None:
                            self._wait_exit(5)
                            raise ServerStartError(f"server exited before it was ready (rc={self.proc.poll()})\n"
                                                   + self.log_tail())
                        m = RUNNING_RE.search(line)
                        if m:
                            self.scheme = m.group(1)
                            self.port = int(m.group(3))
                            break
                    if self.port is not None:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        message = f"no '{SERVER_NAME} running on' line within {timeout}s\n"
                        raise ServerStartError(message + self.log_tail())
                    self._cond.wait(min(remaining, 0.2))
        else:
            self.port = self._fixed_port
        # the port is announced; it must accept connections now (poll briefly for --port N without a log line)
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise ServerStartError(f"server exited (rc={self.proc.returncode})\n" + self.log_tail()) from None
                if time.monotonic() > deadline:
                    message = f"port {self.port} never accepted a connection\n"
                    raise ServerStartError(message + self.log_tail()) from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def client(self, **kw) -> httpx.Client:
        kw.setdefault("timeout", 15.0)
        return httpx.Client(base_url=self.url, trust_env=False, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kw)

    def raw(self, timeout: float = 10.0) -> RawConn:
        return RawConn(self.host, self.port, timeout=timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def _wait_exit(self, timeout: float) -> int | None:
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(5)
        return self.returncode

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for exit; kill -9 and fail on timeout."""
        rc = self._wait_exit(timeout)
        if rc is None:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout}s; killed\n{self.log_tail()}")
        self._unregister()
        return rc

    def stop(self, sig=signal.SIGINT, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit code (kill -9 and fail on timeout)."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        return self.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._wait_exit(10)
        self._unregister()

    def _unregister(self):
        with _LIVE_LOCK:
            if self in LIVE_SERVERS:
                LIVE_SERVERS.remove(self)

    def close(self, timeout: float = 15.0) -> int | None:
        """Teardown: SIGINT, wait, kill -9 on timeout. Never raises."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            if self._wait_exit(timeout) is None:
                self.kill()
        else:
            self._wait_exit(5)
        self._unregister()
        return self.proc.returncode

    # ------------------------------------------------------------------ introspection
    def rss(self) -> int:
        """Resident set size (bytes) of the server process and all its descendants."""
        import psutil

        p = psutil.Process(self.pid)
        total = 0
        for proc in [p, *p.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total


# ============================================================================ app probes

def probe_result(server: ServerProcess, probe_id: str, timeout: float = 10.0, key: str = "done") -> dict:
    """Poll the router app's /probe/result until the probe ``probe_id`` has ``key`` set."""
    deadline = time.monotonic() + timeout
    last = None
    with server.client() as c:
        while True:
            r = c.get("/probe/result", params={"id": probe_id})
            if r.status_code == 200:
                last = r.json()
                if last.get(key):
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(f"probe {probe_id!r} has no {key!r} after {timeout}s: {last}\n{server.log_tail()}")
            time.sleep(0.02)


def decode_json(obj):
    """Undo the router app's JSON encoding of bytes ({"__bytes__": latin-1 str})."""
    if isinstance(obj, dict):
        if set(obj) == {"__bytes__"}:
            return obj["__bytes__"].encode("latin-1")
        return {k: decode_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_json(v) for v in obj]
    return obj


# ============================================================================ raw HTTP

class IncompleteResponse(Exception):
    def __init__(self, msg, partial: RawResponse):
        super().__init__(msg)
        self.partial = partial


@dataclass
class RawResponse:
    http_version: str
    status: int
    reason: str
    headers: list = field(default_factory=list)  # list of (lowercase name str, value str)
    body: bytes = b""
    complete: bool = True
    chunked: bool = False
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        vals = self.header_all(name)
        return vals[0] if vals else None

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        return decode_json(json.loads(self.body))


_STATUS_RE = re.compile(rb"^HTTP/(1\.[01]) (\d{3})(?: (.*))?$")
_TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class RawConn:
    """One TCP connection with a buffered, strict HTTP/1.x response reader."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes):
        self.sock.sendall(data)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv_some(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` (b'' if nothing). Raises nothing on timeout."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            if not self.buf:
                try:
                    self._fill()
                except TimeoutError:
                    pass
            data, self.buf = self.buf, b""
            return data
        finally:
            self.sock.settimeout(old)

    def _read_line(self, limit: int = 1 << 20) -> bytes | None:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("line too long in response")
            if not self._fill():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                data, self.buf = self.buf, b""
                return data
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_until_eof(self) -> bytes:
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the peer closes the connection (EOF/RST) within ``timeout`` without sending more bytes.
        Raises AssertionError if unexpected bytes arrive."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            if self.buf:
                raise AssertionError(f"unexpected extra bytes: {self.buf[:200]!r}")
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if data:
                raise AssertionError(f"unexpected extra bytes: {data[:200]!r}")
            return True
        finally:
            self.sock.settimeout(old)

    def read_head(self) -> RawResponse | None:
        """Read a status line and headers. None if the connection closed before any byte."""
        line = self._read_line()
        if line is None:
            if self.buf:
                raise AssertionError(f"connection closed mid status line: {self.buf!r}")
            return None
        m = _STATUS_RE.match(line)
        if not m:
            raise AssertionError(f"malformed status line: {line!r}")
        resp = RawResponse(http_version=m.group(1).decode(), status=int(m.group(2)),
                           reason=(m.group(3) or b"").decode("latin-1"))
        raw = [line]
        while True:
            h = self._read_line()
            if h is None:
                raise AssertionError(f"connection closed inside response headers: {b''.join(raw)!r}")
            raw.append(h)
            if h == b"":
                break
            if b":" not in h:
                raise AssertionError(f"malformed header line: {h!r}")
            name, value = h.split(b":", 1)
            if not _TOKEN_RE.match(name):
                raise AssertionError(f"malformed header name: {name!r}")
            if any(c in value for c in (b"\r", b"\n", b"\x00")):
                raise AssertionError(f"malformed header value: {value!r}")
            resp.headers.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
        resp.raw_head = b"\r\n".join(raw) + b"\r\n"
        return resp

    def read_response(self, method: str = "GET", allow_incomplete: bool = False,
                      skip_interim: bool = True) -> RawResponse:
        """Read one complete response. 1xx interim responses are skipped unless ``skip_interim`` is False.
        A response whose body is cut short raises IncompleteResponse (or is returned with complete=False
        when ``allow_incomplete``)."""
        while True:
            resp = self.read_head()
            if resp is None:
                raise AssertionError("connection closed before a response was received")
            if 100 <= resp.status < 200 and resp.status != 101:
                if skip_interim:
                    continue
                return resp
            break
        te = ",".join(resp.header_all("transfer-encoding")).lower()
        cls = resp.header_all("content-length")
        if method == "HEAD" or resp.status in (204, 304):
            return resp
        if te:
            if te.replace(" ", "").split(",")[-1] != "chunked":
                raise AssertionError(f"unexpected transfer-encoding {te!r}")
            resp.chunked = True
            body = []
            while True:
                size_line = self._read_line()
                if size_line is None:
                    resp.body, resp.complete = b"".join(body), False
                    break
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise AssertionError(f"malformed chunk size line {size_line!r}") from None
                if size == 0:
                    # trailers
                    while True:
                        t = self._read_line()
                        if t is None:
                            resp.body, resp.complete = b"".join(body), False
                            break
                        if t == b"":
                            resp.body = b"".join(body)
                            break
                    break
                chunk = self._read_exact(size)
                body.append(chunk)
                if len(chunk) < size:
                    resp.body, resp.complete = b"".join(body), False
                    break
                crlf = self._read_exact(2)
                if crlf != b"\r\n":
                    if len(crlf) < 2:
                        resp.body, resp.complete = b"".join(body), False
                        break
                    raise AssertionError(f"chunk not followed by CRLF: {crlf!r}")
        elif cls:
            if len(set(cls)) != 1:
                raise AssertionError(f"conflicting content-length headers {cls}")
            n = int(cls[0])
            resp.body = self._read_exact(n)
            resp.complete = len(resp.body) == n
        else:
            resp.body = self.read_until_eof()
        if not resp.complete and not allow_incomplete:
            raise IncompleteResponse(f"incomplete response body ({len(resp.body)} bytes)", resp)
        return resp

    def request(self, method: str, target: str, headers: Iterable = (), body: bytes = b"",
                version: str = "1.1", host: str | None = "testserver") -> RawResponse:
        self.send(build_request(method, target, headers, body, version, host))
        return self.read_response(method)


def build_request(method: str, target: str, headers: Iterable = (), body: bytes = b"", version: str = "1.1",
                  host: str | None = "testserver", content_length: bool | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/{version}".encode()]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    names = set()
    for k, v in headers:
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        names.add(k.lower())
        lines.append(k + b": " + v)
    if content_length is None:
        content_length = bool(body) or method in ("POST", "PUT", "PATCH")
    if content_length and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(*parts: bytes) -> bytes:
    out = b""
    for p in parts:
        if p:
            out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n\r\n"
