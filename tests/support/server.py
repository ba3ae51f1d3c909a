"""The server under test as a subprocess.

``ServerProcess`` runs ``python3 -m ferrocorn APP ...`` (or any command) from the repository root, keeps every
stderr/stdout line, finds the port, stops it with a signal and collects the exit code.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from tests.support.raw import RawConn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/support/ -> root
# FERROCORN_TEST_SERVER=uvicorn runs the same suite against uvicorn (a reference, to check the tests themselves);
# anything else (the default) runs ``python3 -m ferrocorn``.
SERVER_MODULE = "uvicorn" if os.environ.get("FERROCORN_TEST_SERVER") == "uvicorn" else "ferrocorn"
SERVER_NAME = "Uvicorn" if SERVER_MODULE == "uvicorn" else "Ferrocorn"
RUNNING_RE = re.compile(SERVER_NAME + r" running on (https?)://([^\s:]+|\[[^\]]+\]):(\d+) \(Press CTRL\+C to quit\)")

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
    def ferrocorn(
        cls,
        app: str,
        *args: str,
        port: int | None = None,
        env: dict | None = None,
        wait: bool = True,
        timeout: float = 20.0,
    ) -> ServerProcess:
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
            + "[stderr]\n"
            + "\n".join(self.stderr_lines[-n:])
            + "\n[stdout]\n"
            + "\n".join(self.stdout_lines[-n:])
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
                            f"{stream} of {self.name} closed before a line matched {pattern!r}\n{self.log_tail()}"
                        )
                    if pattern.search(line) if hasattr(pattern, "search") else pattern in line:
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
                            raise ServerStartError(
                                f"server exited before it was ready (rc={self.proc.poll()})\n" + self.log_tail()
                            )
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

    def raw(self, timeout: float | None = 10.0, **kw) -> RawConn:
        """A raw connection to the server (``tls=`` an ``ssl.SSLContext`` for a TLS server)."""
        return RawConn(self.host, self.port, timeout=timeout, **kw)

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
