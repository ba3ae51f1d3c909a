"""Load-and-fault tests that count what is lost: memory over a million requests, a worker killed
under load, SIGTERM under load, and failing apps under load. Bounded in time; no timing decides a
result beyond generous limits on the behaviour under test."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from websockets.sync.client import connect

from tests.support.load import Hammer, Outcome, pipelined_requests

APP = "tests.apps.load_app:app"
MIB = 1024 * 1024


def rss_mib(srv) -> float:
    return srv.rss() / MIB


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("path", "warmup", "total"),
    [("/", 100_000, 1_000_000), ("/stream", 20_000, 200_000)],
    ids=["plain-1M", "streamed-200k"],
)
def test_memory_stays_flat_under_sustained_load(start_server, path, warmup, total):
    srv = start_server(APP, "--no-access-log")
    assert pipelined_requests(srv.port, path, warmup) == warmup
    after_warmup = rss_mib(srv)
    assert pipelined_requests(srv.port, path, total - warmup) == total - warmup
    at_end = rss_mib(srv)
    print(f"{path}: RSS {after_warmup:.1f} MiB after {warmup:,} requests, {at_end:.1f} MiB after {total:,}")
    assert at_end <= after_warmup * 1.05, f"RSS grew from {after_warmup:.1f} to {at_end:.1f} MiB"


@pytest.mark.timeout(300)
def test_memory_stays_flat_over_websocket_sessions(start_server):
    srv = start_server(APP, "--no-access-log")

    def sessions(count: int) -> None:
        for i in range(count):
            with connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=10) as ws:
                ws.send(f"hello {i}")
                assert ws.recv(timeout=5) == f"hello {i}"

    sessions(500)
    after_warmup = rss_mib(srv)
    sessions(4500)
    at_end = rss_mib(srv)
    print(f"websocket: RSS {after_warmup:.1f} MiB after 500 sessions, {at_end:.1f} MiB after 5000")
    assert at_end <= after_warmup * 1.05, f"RSS grew from {after_warmup:.1f} to {at_end:.1f} MiB"


@pytest.mark.timeout(120)
def test_memory_returns_after_a_burst_of_connections(start_server):
    """512 connections at once, each with a request answered, then all closed: the memory they
    used goes back to the system once the server is quiet (it stayed resident before)."""
    import socket

    srv = start_server(APP, "--no-access-log")
    srv.get("/")
    time.sleep(2.5)  # the server's own first-request allocations settle
    idle = rss_mib(srv)
    grown = []
    for _ in range(2):
        conns = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(512)]
        for conn in conns:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for conn in conns:
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        grown.append(rss_mib(srv))
        for conn in conns:
            conn.close()
    deadline = time.monotonic() + 10
    after = rss_mib(srv)
    while after - idle > 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        after = rss_mib(srv)
    print(f"RSS idle {idle:.1f} MiB, with 512 connections {max(grown):.1f} MiB, after they closed {after:.1f} MiB")
    assert max(grown) - idle > 4, "the burst should have used memory worth returning"
    assert after - idle <= 2, f"RSS stayed at {after:.1f} MiB after the burst (idle {idle:.1f})"


def workers(srv) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    return {
        child.pid
        for child in psutil.Process(srv.pid).children()
        if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline())
    }


def answered_by(outcome: Outcome) -> int | None:
    return int(outcome.body.removeprefix("pid=")) if outcome.complete and outcome.body.startswith("pid=") else None


@pytest.mark.timeout(120)
def test_a_worker_killed_under_load_loses_only_its_own_requests(start_server):
    srv = start_server(APP, "--workers", "2", "--no-access-log")
    deadline = time.monotonic() + 15
    while len(workers(srv)) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = workers(srv)
    assert len(before) == 2
    hammer = Hammer(srv.port, "/", threads=8).start()
    time.sleep(1.0)
    victim = min(before)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    time.sleep(3.0)
    outcomes = hammer.stop()
    failed = [o for o in outcomes if not o.complete]
    replacement_answers = [o.ended for o in outcomes if answered_by(o) not in before and answered_by(o) is not None]
    assert replacement_answers, "no replacement worker answered within 3 s"
    replaced_after = min(replacement_answers) - killed_at
    print(f"{len(outcomes)} requests, {len(failed)} failed; replacement answered {replaced_after:.2f} s after kill -9")
    assert replaced_after < 1.0 + 0.5  # a second, plus the client's scheduling on a busy machine
    # Only what was on the killed worker's connections: each client thread has one request at a time.
    assert len(failed) <= hammer.threads, failed
    assert all(o.started <= killed_at + 0.1 for o in failed), [o for o in failed if o.started > killed_at + 0.1]
    assert all(o.status in (None, 200) for o in outcomes)


@pytest.mark.timeout(120)
def test_sigterm_under_load_answers_every_request_in_flight(start_server):
    srv = start_server(APP, "--timeout-graceful-shutdown", "5", "--no-access-log")
    hammer = Hammer(srv.port, "/slow", threads=8, keep_alive=True).start()
    time.sleep(1.0)
    signalled_at = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(timeout=15)
    exited_after = time.monotonic() - signalled_at
    outcomes = hammer.stop()
    in_flight = [o for o in outcomes if o.started < signalled_at < o.ended]
    lost = [o for o in in_flight if not o.complete]
    broken = [o for o in outcomes if o.status is not None and not o.complete]
    print(f"{len(outcomes)} requests, {len(in_flight)} in flight at SIGTERM, exit after {exited_after:.2f} s")
    assert in_flight, "no request was in flight when the signal came"
    assert not lost, lost
    assert not broken, broken  # a response that started always ends complete
    assert rc == 0
    assert exited_after < 5 + 2


@pytest.mark.timeout(120)
def test_failing_apps_under_load_do_not_hurt_the_other_clients(start_server):
    # The hung requests would hold the shutdown at teardown until the harness kills the server:
    # a short grace cancels them instead.
    srv = start_server(APP, "--no-access-log", "--timeout-graceful-shutdown", "1")
    healthy = Hammer(srv.port, "/", threads=4).start()
    raising = Hammer(srv.port, "/raise", threads=2).start()
    silent = Hammer(srv.port, "/no-response", threads=2).start()
    hanging = []
    for _ in range(20):  # requests that never get an answer, each holding a task
        hang = Hammer(srv.port, "/hang", threads=1)
        hang.start()
        hanging.append(hang)
    time.sleep(4.0)
    healthy_outcomes = healthy.stop()
    raised = raising.stop()
    returned = silent.stop()
    for hang in hanging:
        hang.stop(wait=False)
    assert srv.alive()
    assert healthy_outcomes and all(o.status == 200 for o in healthy_outcomes), [
        o for o in healthy_outcomes if o.status != 200
    ]
    assert raised and all(o.status == 500 for o in raised)
    assert returned and all(o.status == 500 for o in returned)
    assert srv.get("/").status_code == 200
