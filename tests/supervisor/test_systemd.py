"""systemd as the host: Type=notify readiness, STOPPING, RELOADING, the watchdog from the event loop, and socket
activation ($LISTEN_FDS), with a fake $NOTIFY_SOCKET (a datagram socket the test reads) and inherited descriptors."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import httpx
import pytest

from tests.support.server import REPO_ROOT

APP = "tests.apps.systemd_app:app"
WORKER_MODES = [[], ["--workers", "2"]]
WORKER_IDS = ["single", "workers-2"]


class NotifySocket:
    """A fake service manager: a datagram socket collecting every message with the time it arrived."""

    def __init__(self, abstract: bool = True) -> None:
        self._dir = None
        if abstract:
            self.address = f"@ferrocorn-test-{uuid.uuid4().hex}"
            bind_to = "\0" + self.address[1:]
        else:
            self._dir = tempfile.mkdtemp(prefix="fcn-", dir="/tmp")  # short: AF_UNIX paths are 107 bytes at most
            self.address = bind_to = os.path.join(self._dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append((time.monotonic(), data.decode()))
                self._cond.notify_all()

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address, "TEST_MARKER_SOCKET": self.address, **extra}

    def texts(self) -> list[str]:
        with self._cond:
            return [text for _, text in self.messages]

    def wait_for(self, field: str, timeout: float = 20.0, start: int = 0) -> int:
        """The index of the first message from `start` on with the line `field` (or starting with it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(start, len(self.messages)):
                    if any(line.startswith(field) for line in self.messages[index][1].split("\n")):
                        return index
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {field!r} within {timeout} s; got {[t for _, t in self.messages]}"
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def notify():
    sockets: list[NotifySocket] = []

    def make(abstract: bool = True) -> NotifySocket:
        sockets.append(NotifySocket(abstract))
        return sockets[-1]

    yield make
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("workers", WORKER_MODES, ids=WORKER_IDS)
def test_ready_comes_after_the_lifespan_startup_and_stopping_on_sigterm(start_server, notify, workers):
    fake = notify(abstract=not workers)  # both an abstract '@' address and a path
    srv = start_server(APP, *workers, env=fake.env(), wait=False)
    ready = fake.wait_for("READY=1")
    before = fake.texts()[:ready]
    expected_workers = 2 if workers else 1
    startups = [text for text in before if text.startswith("APP=startup-complete")]
    assert len(startups) == expected_workers, f"READY=1 before every lifespan startup finished: {fake.texts()}"
    message = fake.texts()[ready].split("\n")
    assert f"MAINPID={srv.pid}" in message
    assert "STATUS=2 workers serving" in message if workers else f"STATUS=Serving (pid {srv.pid})" in message
    # Every listener was bound before: the port accepts at once, and every worker answers.
    srv.wait_ready(timeout=5)
    with socket.create_connection((srv.host, srv.port), timeout=2):
        pass
    answered = {int(httpx.get(f"{srv.url}/pid", timeout=5).text) for _ in range(20)}
    assert len(answered) <= expected_workers
    # The app's processes never see the manager's socket (a worker's READY=1 would be a lie).
    assert "NOTIFY_SOCKET=None" in httpx.get(f"{srv.url}/env", timeout=5).text
    assert sum(text.startswith("READY=1") for text in fake.texts()) == 1

    mark = len(fake.texts())
    srv.send_signal(signal.SIGTERM)
    stopping = fake.wait_for("STOPPING=1", start=mark)
    assert srv.wait() == 0
    assert stopping >= mark


# One worker under the supervisor (a recycling option starts it even for one), so that blocking its loop blocks them
# all.
@pytest.mark.parametrize(
    "workers", [[], ["--workers", "1", "--limit-worker-lifetime", "3600"]], ids=["single", "supervised-1"]
)
def test_watchdog_pings_stop_while_the_event_loop_is_blocked(start_server, notify, workers):
    fake = notify()
    srv = start_server(APP, *workers, env=fake.env(WATCHDOG_USEC="1000000"), wait=False)
    ready = fake.wait_for("READY=1")
    srv.wait_ready(timeout=5)
    ping = ready
    for _ in range(3):  # every 0.5 s (half of WATCHDOG_USEC)
        ping = fake.wait_for("WATCHDOG=1", start=ping + 1, timeout=5)
    blocker = threading.Thread(target=lambda: httpx.get(f"{srv.url}/block", timeout=10))
    blocker.start()
    start = fake.wait_for("APP=block-start", timeout=5)
    end = fake.wait_for("APP=block-end", start=start, timeout=10)
    resumed = fake.wait_for("WATCHDOG=1", start=end, timeout=5)  # the loop turns again: so do the pings
    blocker.join()
    messages = fake.messages
    started_at, ended_at = messages[start][0], messages[end][0]
    during = [at for at, text in messages[start:end] if text == "WATCHDOG=1"]
    if not workers:
        # Sent from the blocked loop itself: not one while it is blocked.
        assert during == []
    else:
        # Sent by the supervisor while a worker's loop has notified within WATCHDOG_USEC (1 s): none in the last
        # 1.7 s of the 3 s block.
        assert [at for at in during if at > started_at + 1.3] == [], (during, started_at, ended_at)
    assert messages[resumed][0] >= ended_at
    assert srv.stop(signal.SIGTERM) == 0


def test_sighup_reports_reloading_then_ready_again(start_server, notify):
    fake = notify()
    srv = start_server(APP, "--workers", "2", env=fake.env(), wait=False)
    fake.wait_for("READY=1")
    srv.wait_ready(timeout=5)
    first = {int(httpx.get(f"{srv.url}/pid", timeout=5).text) for _ in range(10)}
    mark = len(fake.texts())
    srv.send_signal(signal.SIGHUP)
    reloading = fake.wait_for("RELOADING=1", start=mark)
    assert re.search(r"^MONOTONIC_USEC=\d+$", fake.texts()[reloading], re.MULTILINE)
    ready = fake.wait_for("READY=1", start=reloading + 1, timeout=20)
    # READY=1 again only once both new workers serve (after their 1 s lifespan startup)
    assert sum(text.startswith("APP=startup-complete") for text in fake.texts()[reloading:ready]) == 2
    assert int(httpx.get(f"{srv.url}/pid", timeout=5).text) not in first
    assert srv.stop(signal.SIGTERM) == 0


# --- socket activation ----------------------------------------------------------------------------

#: Runs `python -m ferrocorn ARGS...` as systemd would: the listening socket (passed as argv[1]) on descriptor 3
#: and $LISTEN_PID set to the pid that will run ferrocorn (exec keeps it).
ACTIVATE = (
    "import os, sys\n"
    "src = int(sys.argv[1])\n"
    "if src != 3:\n"
    "    os.dup2(src, 3)\n"
    "    os.close(src)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'ferrocorn', *sys.argv[2:]])\n"
)


@pytest.mark.parametrize("workers", WORKER_MODES, ids=WORKER_IDS)
def test_socket_activation_serves_the_inherited_socket_without_fd(workers):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
    cmd = [sys.executable, "-c", ACTIVATE, str(listener.fileno()), APP, *workers]
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, pass_fds=[listener.fileno()], stderr=subprocess.PIPE, text=True
    )
    listener.close()  # only the server holds the socket now
    expected = 2 if workers else 1
    try:
        answered: set[int] = set()
        deadline = time.monotonic() + 20
        while len(answered) < expected:
            assert proc.poll() is None and time.monotonic() < deadline, f"only {answered} answered"
            try:
                answered.add(int(httpx.get(f"http://127.0.0.1:{port}/pid", timeout=5).text))
            except httpx.TransportError:
                time.sleep(0.05)
        if workers:
            assert proc.pid not in answered, "the workers serve, not the supervisor"
        else:
            assert answered == {proc.pid}
        # The variables are gone: a worker, or a process the app starts, cannot take the sockets for its own.
        env_seen = httpx.get(f"http://127.0.0.1:{port}/env", timeout=5).text
        assert "LISTEN_PID=None" in env_seen and "LISTEN_FDS=None" in env_seen
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    running = [line for line in stderr.splitlines() if "running on" in line]
    assert running == [
        f"INFO:     Ferrocorn running on socket ('127.0.0.1', {port}) from systemd (web) (Press CTRL+C to quit)"
    ], stderr
