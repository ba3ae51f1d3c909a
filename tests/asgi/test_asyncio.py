"""The app runs on a real asyncio loop: tasks, timers, contextvars, cancellation, concurrency."""

import concurrent.futures
import sys
import uuid

import pytest

from tests.support.probes import probe_result


def test_current_task_is_a_real_task(router_server):
    info = router_server.get("/asyncio/task").json()
    assert info["is_task"] is True, info
    assert info["task_done"] is False
    assert info["in_all_tasks"] is True
    assert info["task_loop_is_running_loop"] is True
    assert info["same_task_after_sleep0"] is True
    assert info["same_task_after_sleep"] is True


def test_asyncio_sleep_works(router_server):
    info = router_server.get("/asyncio/sleep", params={"delay": 0.05}).json()
    # The sleep really waited on a loop timer (a no-op would measure ~0). uvloop rounds timers to
    # whole milliseconds and may fire up to 1 ms early.
    assert info["slept"] >= 0.05 - 0.002


def test_requests_run_concurrently(router_server):
    """Each request waits until all n are inside the app at once: impossible if requests were serialized."""
    n = 8
    key = uuid.uuid4().hex
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futs = [
            pool.submit(router_server.get, "/asyncio/barrier", params={"key": key, "n": n, "timeout": 10})
            for _ in range(n)
        ]
        results = [f.result() for f in futs]
    assert [r.status_code for r in results] == [200] * n, [r.text for r in results]


def test_contextvars_isolated_between_concurrent_requests(router_server):
    n = 10
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futs = [
            pool.submit(router_server.get, "/asyncio/contextvar", params={"value": f"v{i}", "delay": 0.1})
            for i in range(n)
        ]
        results = [f.result().json() for f in futs]
    for i, res in enumerate(results):
        assert res == {"initial": "unset", "after": f"v{i}"}


def test_contextvars_do_not_leak_across_keepalive_requests(router_server):
    with router_server.client() as c:
        for i in range(5):
            res = c.get("/asyncio/contextvar", params={"value": f"seq{i}"}).json()
            assert res == {"initial": "unset", "after": f"seq{i}"}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout and Task.cancelling() are new in 3.11")
def test_asyncio_timeout_cancels_the_request_task(router_server):
    res = router_server.get("/asyncio/timeout").json()
    assert res == {"result": "timed out", "cancelling": 0}


def test_anyio_cancel_scope_in_request(router_server):
    res = router_server.get("/asyncio/anyio-timeout").json()
    assert res == {"cancelled_caught": True}


def test_background_task_outlives_the_response(router_server):
    pid = f"bg-{uuid.uuid4().hex}"
    assert router_server.get("/asyncio/background", params={"id": pid}).text == "scheduled"
    assert probe_result(router_server, pid)["done"] is True


def test_run_in_executor(router_server):
    res = router_server.get("/asyncio/executor").json()
    assert res["executor_thread"] != res["loop_thread"]


def test_many_concurrent_short_requests(router_server):
    n = 50
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: router_server.get("/asyncio/sleep", params={"delay": 0.01}), range(n)))
    assert all(r.status_code == 200 for r in results)


def test_requests_start_eagerly_on_cpython_312_with_a_real_task(router_server):
    """On CPython 3.12+ each request's Task starts eagerly (its first step runs at once, not scheduled),
    and is still a real task with a context of its own; on 3.10/3.11 it is an ordinary task."""
    with router_server.client() as c:
        for i in range(3):
            info = c.get("/asyncio/eager", params={"value": f"v{i}"}).json()
            assert info == {
                "eager": sys.version_info >= (3, 12),
                "is_task": True,
                "context_value_before": "unset",
                "same_task_after_sleep0": True,
                "context_value_after": f"v{i}",
            }


def test_apps_finished_in_their_first_step_are_not_left_running(start_server):
    """An app that answers without suspending finishes inside an eager start: the server must not count
    it as still running (a graceful shutdown would then wait for it)."""
    srv = start_server("tests.apps.router:app")
    with srv.client() as c:
        for _ in range(20):
            assert c.get("/").status_code == 200
    assert srv.stop() == 0
    assert not any("Waiting for background tasks" in line for line in srv.stderr_lines + srv.stdout_lines)
    assert not any("running task(s)" in line for line in srv.stderr_lines + srv.stdout_lines)
