"""--workers N: the supervisor, its workers sharing one socket, and its signals (as uvicorn's)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from tests.support.server import REPO_ROOT, ServerProcess

APP = "tests.apps.workers_app:app"


def worker_pids(srv: ServerProcess) -> set[int]:
    """The live worker processes of the supervisor (not multiprocessing's resource tracker)."""
    pids = set()
    for child in psutil.Process(srv.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def wait_for_workers(
    srv: ServerProcess, count: int, timeout: float = 15.0, exclude: set[int] = frozenset()
) -> set[int]:
    """Poll until exactly `count` workers run, none of them in `exclude`, and each has answered a request."""
    deadline = time.monotonic() + timeout
    answered: set[int] = set()
    while True:
        live = worker_pids(srv)
        if len(live) == count and not live & exclude:
            try:
                answered.add(int(httpx.get(f"{srv.url}/pid", timeout=2).text))
            except httpx.TransportError:
                pass
            answered &= live
            if answered == live:
                return live
        assert time.monotonic() < deadline, (
            f"wanted {count} serving workers, have {live} (answered {answered})\n{srv.log_tail()}"
        )
        time.sleep(0.02)


def pid_of(line: str) -> int:
    return int(re.search(r"\[(\d+)\]", line).group(1))


class Load:
    """Requests on fresh connections from a few threads until stopped; keeps every failure."""

    def __init__(self, srv: ServerProcess, threads: int = 2, total: int | None = None) -> None:
        self.url = f"{srv.url}/pid"
        self.total = total
        self.pids: set[int] = set()
        self.sent = 0
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self.total is not None and self.sent >= self.total:
                    return
                self.sent += 1
            try:
                response = httpx.get(self.url, timeout=10)
                with self._lock:
                    if response.status_code == 200:
                        self.ok += 1
                        self.pids.add(int(response.text))
                    else:
                        self.failures.append(f"status {response.status_code}")
            except httpx.HTTPError as exc:
                with self._lock:
                    self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(30)


def test_workers_share_the_socket_and_stop_on_sigterm(start_server):
    srv = start_server(APP, "--workers", "3")
    pids = wait_for_workers(srv, 3)
    assert srv.has_line(re.compile(rf"^INFO: +Started parent process \[{srv.pid}\]$"))
    # The parent announced the socket before any worker started; the workers do not repeat it.
    assert srv.stderr_lines[0].startswith("INFO:     Ferrocorn running on http://127.0.0.1:")
    assert sum("running on" in line for line in srv.stderr_lines) == 1
    for pid in pids:
        assert srv.has_line(f"Started server process [{pid}]")

    assert srv.stop(signal.SIGTERM) == 0
    assert srv.has_line(re.compile(r"^INFO: +Received SIGTERM, exiting\.$"))
    for pid in pids:
        assert srv.has_line(f"Terminated child process [{pid}]")
        assert srv.has_line(f"Finished server process [{pid}]")
        assert not psutil.pid_exists(pid)
    assert srv.stderr_lines[-1] == f"INFO:     Stopping parent process [{srv.pid}]"


def test_web_concurrency_sets_the_worker_count(start_server):
    srv = start_server(APP, env={"WEB_CONCURRENCY": "2"})
    wait_for_workers(srv, 2)
    assert srv.has_line(f"Started parent process [{srv.pid}]")


def test_workers_serve_a_unix_socket_bound_by_the_parent(tmp_path, start_server):
    path = str(tmp_path / "workers.sock")
    srv = start_server(APP, "--workers", "2", "--uds", path, wait=False)
    srv.wait_for_line(f"Ferrocorn running on unix socket {path} (Press CTRL+C to quit)")
    deadline = time.monotonic() + 15
    answered: set[int] = set()
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        while len(answered) < 2:
            answered.add(int(client.get("http://localhost/pid", headers={"Connection": "close"}).text))
            assert time.monotonic() < deadline, f"only {answered} answered over the socket\n{srv.log_tail()}"
    assert answered == worker_pids(srv)
    assert srv.stop(signal.SIGINT) == 0
    assert not os.path.exists(path), "the parent removes the socket file on exit"


def test_a_killed_worker_is_replaced_within_a_second(start_server):
    srv = start_server(APP, "--workers", "2")
    pids = wait_for_workers(srv, 2)
    victim = min(pids)
    mark = srv.mark()
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    srv.wait_for_line(re.compile(rf"^INFO: +Child process \[{victim}\] died$"), start=mark, timeout=5)
    assert time.monotonic() - killed_at < 1.0
    new_pids = wait_for_workers(srv, 2, exclude={victim})
    assert new_pids - pids and pids - {victim} <= new_pids


def test_a_worker_exiting_inside_the_app_is_replaced(start_server):
    srv = start_server(APP, "--workers", "2")
    pids = wait_for_workers(srv, 2)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{srv.url}/exit", timeout=5)
    died = srv.wait_for_line(re.compile(r"Child process \[\d+\] died"), timeout=5)
    assert pid_of(died) in pids
    wait_for_workers(srv, 2, exclude={pid_of(died)})


def test_limit_max_requests_recycles_workers_without_failed_requests(start_server):
    srv = start_server(APP, "--workers", "2", "--limit-max-requests", "5", "--limit-max-requests-jitter", "20")
    wait_for_workers(srv, 2)
    load = Load(srv, threads=2)
    try:
        # a worker serves on past its limit until its replacement does: run until three were replaced
        deadline = time.monotonic() + 40
        while sum("reached its request limit, replacing it." in line for line in srv.stderr_lines) < 3:
            assert time.monotonic() < deadline, f"workers were not recycled\n{srv.log_tail()}"
            time.sleep(0.1)
    finally:
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}\n{srv.log_tail()}"
    assert load.ok == load.sent
    limits = [
        int(m.group(1))
        for line in srv.stderr_lines
        if (m := re.search(r"Maximum request limit of (\d+) exceeded", line))
    ]
    assert len(limits) >= 3, f"workers were not recycled: {limits}"
    assert all(5 <= limit <= 25 for limit in limits)
    assert any(limit > 5 for limit in limits), "--limit-max-requests-jitter added nothing"
    assert len(load.pids) > 2
    # a rolling replacement: the worker serves on until its replacement does, then drains
    replaced = [pid_of(line) for line in srv.stderr_lines if "reached its request limit, replacing it." in line]
    assert len(replaced) >= 3
    for pid in replaced[:-1]:
        assert srv.has_line(f"Terminated child process [{pid}]")
    assert not srv.has_line("died")


def test_a_recycled_worker_serves_a_request_sent_after_its_drain_began(start_server):
    """--limit-max-requests: a connection a worker accepted before reaching its limit, whose request arrives once
    the worker drains, is served by that worker (with Connection: close), not dropped."""
    limit = 4
    srv = start_server(
        APP,
        "--workers",
        "2",
        "--limit-max-requests",
        str(limit),
        "--limit-max-requests-jitter",
        "0",
        "--timeout-keep-alive",
        "30",  # the connection waits, idle, while the owner's replacement starts
    )
    answered: dict[int, int] = {}

    def request() -> None:
        pid = int(httpx.get(f"{srv.url}/pid", timeout=5).text)
        answered[pid] = answered.get(pid, 0) + 1

    deadline = time.monotonic() + 15
    while len(worker_pids(srv)) < 2 or len(answered) < 2:
        assert time.monotonic() < deadline, f"workers never served\n{srv.log_tail()}"
        request()
    with srv.raw(timeout=10) as conn:
        port = conn.local_port
        owner = None
        while owner is None:
            assert time.monotonic() < deadline, f"no worker accepted the connection\n{srv.log_tail()}"
            for pid in worker_pids(srv):
                with contextlib.suppress(psutil.NoSuchProcess):
                    if any(c.raddr and c.raddr[1] == port for c in psutil.Process(pid).net_connections("tcp")):
                        owner = pid
        while answered.get(owner, 0) < limit:
            assert time.monotonic() < deadline, f"{owner} never reached its limit: {answered}\n{srv.log_tail()}"
            request()
        # the owner drains once its replacement serves (SIGTERM); its grace for a request not begun yet is 1 s
        srv.wait_for_line(f"Terminated child process [{owner}]", timeout=20)
        time.sleep(0.4)
        conn.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.read_until_eof()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    assert b"connection: close" in head.lower()
    assert body == str(owner).encode()
    srv.wait_for_line(f"Finished server process [{owner}]", timeout=10)


def test_a_hung_worker_fails_the_healthcheck_and_is_replaced(start_server):
    srv = start_server(APP, "--workers", "2", "--timeout-worker-healthcheck", "1")
    pids = wait_for_workers(srv, 2)
    with srv.raw(timeout=None) as hanging:
        hanging.send(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        warning = srv.wait_for_line(
            re.compile(
                r"^WARNING: +Child process \[\d+\] did not answer the healthcheck within 1 seconds, killing it\.$"
            ),
            timeout=10,
        )
        hung = pid_of(warning)
        assert hung in pids
        srv.wait_for_line(f"Child process [{hung}] died", timeout=5)
        assert hanging.recv(1024) == b"", "the hung worker's connection closes with it"
    wait_for_workers(srv, 2, exclude={hung})


def test_sighup_replaces_every_worker_without_failed_requests(start_server):
    srv = start_server(APP, "--workers", "2")
    old = wait_for_workers(srv, 2)
    load = Load(srv, threads=2)
    try:
        srv.send_signal(signal.SIGHUP)
        srv.wait_for_line(re.compile(r"^INFO: +Received SIGHUP, restarting processes\.$"))
        for pid in old:
            srv.wait_for_line(f"Waiting for child process [{pid}]", timeout=20)
        new = wait_for_workers(srv, 2, exclude=old)
    finally:
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}\n{srv.log_tail()}"
    assert load.ok > 0
    assert not new & old
    assert srv.alive()


def test_sigttin_adds_and_sigttou_removes_a_worker(start_server):
    srv = start_server(APP, "--workers", "2")
    wait_for_workers(srv, 2)
    srv.send_signal(signal.SIGTTIN)
    srv.wait_for_line(re.compile(r"^INFO: +Received SIGTTIN, increasing the number of processes\.$"))
    three = wait_for_workers(srv, 3)
    srv.send_signal(signal.SIGTTOU)
    srv.wait_for_line(re.compile(r"^INFO: +Received SIGTTOU, decreasing number of processes\.$"))
    two = wait_for_workers(srv, 2)
    assert two < three
    mark = srv.mark()
    srv.send_signal(signal.SIGTTOU)
    wait_for_workers(srv, 1)
    srv.send_signal(signal.SIGTTOU)
    srv.wait_for_line("Already reached one process, cannot decrease the number of processes anymore.", start=mark)
    assert len(worker_pids(srv)) == 1


@pytest.mark.parametrize(
    "app", ["tests.apps.no_such_module:app", "tests.apps.lifespan_apps:startup_failed_app"], ids=["import", "lifespan"]
)
def test_a_worker_failing_at_startup_stops_the_supervisor_with_exit_3(start_server, app):
    srv = start_server(app, "--workers", "2", wait=False)
    assert srv.wait(timeout=20) == 3
    assert srv.has_line(re.compile(r"^ERROR: +Child process \[\d+\] failed to start, stopping the parent process\.$"))
    assert srv.stderr_lines[-1] == f"INFO:     Stopping parent process [{srv.pid}]"
    assert len([line for line in srv.stderr_lines if "Started server process" in line]) <= 2, "it kept respawning"


def test_workers_serve_a_socket_passed_with_fd():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    cmd = [sys.executable, "-m", "ferrocorn", APP, "--workers", "2", "--fd", str(listener.fileno())]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, pass_fds=[listener.fileno()], stderr=subprocess.PIPE, text=True)
    listener.close()  # only the server holds the socket now
    try:
        answered: set[int] = set()
        deadline = time.monotonic() + 20
        while len(answered) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, f"only {answered} answered on the fd"
            try:
                answered.add(int(httpx.get(f"http://127.0.0.1:{port}/pid", timeout=5).text))
            except httpx.TransportError:
                time.sleep(0.05)
        assert answered <= {child.pid for child in psutil.Process(proc.pid).children()}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"Ferrocorn running on socket ('127.0.0.1', {port}) (Press CTRL+C to quit)" in stderr
    assert f"Stopping parent process [{proc.pid}]" in stderr


def test_timeout_notify_replaces_a_silent_worker(start_server):
    """--timeout-notify: a worker whose event loop stops notifying is replaced, even when the healthcheck would
    wait much longer."""
    srv = start_server(APP, "--workers", "2", "--timeout-notify", "1", "--timeout-worker-healthcheck", "60")
    pids = wait_for_workers(srv, 2)
    # A worker notifies once its server serves, every 0.25 s here: let each notify once before one hangs (a loop
    # blocked before its first notification is left to the healthcheck).
    time.sleep(1)
    with srv.raw(timeout=None) as hanging:
        hanging.send(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        warning = srv.wait_for_line(
            re.compile(
                r"^WARNING: +Child process \[\d+\] has not notified the supervisor within 1 seconds, killing it\.$"
            ),
            timeout=10,
        )
        silent = pid_of(warning)
        assert silent in pids
        srv.wait_for_line(f"Child process [{silent}] died", timeout=5)
        assert hanging.recv(1024) == b"", "the silent worker's connection closes with it"
    wait_for_workers(srv, 2, exclude={silent})


def test_timeout_notify_spares_busy_but_responsive_workers(start_server):
    """A worker whose loop keeps turning (here: slow requests awaiting) keeps notifying."""
    srv = start_server(APP, "--workers", "2", "--timeout-notify", "1")
    pids = wait_for_workers(srv, 2)
    time.sleep(3)
    assert not srv.has_line("has not notified")
    assert wait_for_workers(srv, 2) == pids


def test_workers_leave_when_the_supervisor_is_killed(start_server):
    """kill -9 of the supervisor cannot be forwarded: the workers must not go on serving unsupervised."""
    srv = start_server(APP, "--workers", "2")
    workers = [psutil.Process(pid) for pid in wait_for_workers(srv, 2)]
    os.kill(srv.pid, signal.SIGKILL)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers still running 10 s after their supervisor was killed: {[p.pid for p in alive]}"
