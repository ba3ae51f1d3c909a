"""Recycling workers by age and memory (--limit-worker-lifetime, --limit-worker-memory): rolling replacements, one
at a time, the new worker serving before the old one drains, so no request fails even with a single worker."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.supervisor.test_workers import APP, Load, pid_of, wait_for_workers, worker_pids
from tests.support.server import REPO_ROOT

LIFETIME_LINE = re.compile(r"^INFO: +Child process \[(\d+)\] reached its lifetime of ([\d.]+) seconds, replacing it\.$")
MEMORY_LINE = re.compile(
    r"^INFO: +Child process \[(\d+)\] uses (\d+) MiB, over its memory limit of (\d+) MiB, replacing it\.$"
)


def lines_matching(srv, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [match for line in srv.stderr_lines if (match := pattern.search(line))]


@pytest.mark.parametrize("workers", [["--workers", "1"], []], ids=["workers-1", "no-workers"])
def test_lifetime_replaces_a_single_worker_under_load_without_a_failed_request(start_server, workers):
    """Without --workers too: the recycling options start the supervisor with one worker."""
    srv = start_server(APP, *workers, "--limit-worker-lifetime", "2")
    srv.wait_for_line(f"Started parent process [{srv.pid}]")
    first = wait_for_workers(srv, 1)
    load = Load(srv, threads=2)
    try:
        deadline = time.monotonic() + 30
        while len(load.pids) < 3:  # two replacements (about 7 s here: 2 s of life, then the new one's startup)
            assert time.monotonic() < deadline, f"served by {load.pids} only\n{srv.log_tail()}"
            time.sleep(0.1)
    finally:
        load.stop()
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}\n{srv.log_tail()}"
    assert first < load.pids
    lifetimes = [float(match.group(2)) for match in lines_matching(srv, LIFETIME_LINE)]
    assert len(lifetimes) >= 2, srv.log_tail()
    # jitter: each worker's lifetime is drawn from [90 %, 100 %] of the limit
    assert all(1.8 <= lifetime <= 2.0 for lifetime in lifetimes), lifetimes
    assert any(lifetime < 2.0 for lifetime in lifetimes), lifetimes
    replaced = {int(match.group(1)) for match in lines_matching(srv, LIFETIME_LINE)}
    for pid in replaced:
        # the old worker was drained (SIGTERM, a graceful shutdown) once its replacement served
        srv.wait_for_line(f"Terminated child process [{pid}]", timeout=15)
        srv.wait_for_line(f"Finished server process [{pid}]", timeout=15)
    assert not srv.has_line("died")
    assert srv.stop(signal.SIGTERM) == 0


def test_lifetimes_are_jittered_per_worker_and_replaced_one_at_a_time(start_server):
    srv = start_server(APP, "--workers", "3", "--limit-worker-lifetime", "3")
    deadline = time.monotonic() + 30
    while len(lines_matching(srv, LIFETIME_LINE)) < 3:
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.1)
    lifetimes = [float(match.group(2)) for match in lines_matching(srv, LIFETIME_LINE)]
    assert all(2.7 <= lifetime <= 3.0 for lifetime in lifetimes), lifetimes
    assert len(set(lifetimes)) > 1, f"every worker drew the same lifetime: {lifetimes}"
    # one at a time: replacement N+1 starts only after the old worker of replacement N was told to drain
    events = [line for line in srv.stderr_lines if LIFETIME_LINE.search(line) or "Terminated child process" in line]
    kinds = ["replace" if LIFETIME_LINE.search(line) else "drain" for line in events]
    assert "replace replace" not in " ".join(kinds), events


def test_memory_limit_replaces_a_growing_worker_without_a_failed_request(start_server):
    limit = 150  # MiB, well above a fresh worker's RSS (checked below)
    srv = start_server(APP, "--workers", "1", "--limit-worker-memory", str(limit))
    (first,) = wait_for_workers(srv, 1)
    assert psutil.Process(first).memory_info().rss < 0.8 * limit * 2**20, "a fresh worker is already near the limit"
    load = Load(srv, threads=2)
    try:
        for _ in range(4):  # up to 200 MiB more: over any jittered limit
            if httpx.get(f"{srv.url}/alloc", timeout=10).text != str(first):
                break  # replaced already: its successor answered
        line = srv.wait_for_line(MEMORY_LINE, timeout=10)
        match = MEMORY_LINE.search(line)
        assert int(match.group(1)) == first
        used, drawn = int(match.group(2)), int(match.group(3))
        assert int(limit * 0.9) <= drawn <= limit and used > drawn
        (second,) = wait_for_workers(srv, 1, exclude={first}, timeout=20)
        deadline = time.monotonic() + 10
        while second not in load.pids:  # the load goes on, now served by the new worker
            assert time.monotonic() < deadline, srv.log_tail()
            time.sleep(0.05)
    finally:
        load.stop()
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}\n{srv.log_tail()}"
    assert srv.has_line(f"Terminated child process [{first}]")
    assert srv.has_line(f"Finished server process [{first}]")
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
    # the fresh worker is below the limit: it is left alone
    time.sleep(2)
    assert worker_pids(srv) == {second}


def test_max_requests_with_one_recycled_worker_is_a_rolling_replacement(start_server):
    """--limit-max-requests under the supervisor: the worker serves on until its replacement does."""
    srv = start_server(
        APP,
        "--workers",
        "1",
        "--limit-worker-lifetime",
        "3600",
        "--limit-max-requests",
        "10",
        "--timeout-keep-alive",
        "30",
    )
    wait_for_workers(srv, 1)
    load = Load(srv, threads=2)
    try:
        deadline = time.monotonic() + 40
        while sum("reached its request limit, replacing it." in line for line in srv.stderr_lines) < 2:
            assert time.monotonic() < deadline, srv.log_tail()
            time.sleep(0.1)
        while len(load.pids) < 3:
            assert time.monotonic() < deadline, f"served by {load.pids} only\n{srv.log_tail()}"
            time.sleep(0.05)
    finally:
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}\n{srv.log_tail()}"
    assert load.ok == load.sent
    replaced = [pid_of(line) for line in srv.stderr_lines if "reached its request limit, replacing it." in line]
    assert len(replaced) >= 2, srv.log_tail()
    assert len(load.pids) >= 3
    assert not srv.has_line("died")


def test_recycling_needs_an_import_string():
    script = (
        "import ferrocorn\n"
        "async def app(scope, receive, send): pass\n"
        "ferrocorn.run(app, port=0, limit_worker_lifetime=60)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "You must pass the application as an import string to enable 'limit_worker_lifetime'" in proc.stderr


def test_recycling_is_ignored_with_reload(start_server, tmp_path):
    srv = start_server(APP, "--reload", "--reload-dir", str(tmp_path), "--limit-worker-lifetime", "1")
    srv.wait_for_line("--limit-worker-lifetime and --limit-worker-memory are ignored when reloading is enabled.")
    time.sleep(2.5)
    assert not srv.has_line(LIFETIME_LINE)
    assert srv.get("/pid").status_code == 200


def test_a_memory_limit_below_a_fresh_worker_is_reported_not_looped_on(start_server):
    """The first worker over the limit is replaced; a replacement over it from the start is not, or it would go on
    forever."""
    srv = start_server(APP, "--workers", "1", "--limit-worker-memory", "1")
    line = srv.wait_for_line(MEMORY_LINE, timeout=10)
    first = int(MEMORY_LINE.search(line).group(1))
    (second,) = wait_for_workers(srv, 1, exclude={first}, timeout=20)
    srv.wait_for_line(
        re.compile(
            rf"^ERROR: +Child process \[{second}\] uses \d+ MiB as soon as it serves, over its memory limit of 1 MiB: "
            r"--limit-worker-memory is too low, not replacing it for its memory\.$"
        ),
        timeout=10,
    )
    time.sleep(2)
    assert len(lines_matching(srv, MEMORY_LINE)) == 1
    assert wait_for_workers(srv, 1) == {second}
