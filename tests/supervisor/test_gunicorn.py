"""Real gunicorn with `-k ferrocorn.workers.FerrocornWorker`: serving, the arbiter's signals, worker
replacement, `--max-requests` recycling and the heartbeat sent from the event loop."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import sys
import threading
import time

import psutil
import pytest

from tests.support.server import ServerProcess, free_port

pytest.importorskip("gunicorn")

APP = "tests.apps.gunicorn_app:app"
WORKER = "ferrocorn.workers.FerrocornWorker"


def start_gunicorn(run_process, *args: str, app: str = APP, wait: bool = True) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", app, "-k", WORKER, "-b", f"127.0.0.1:{port}", *args]
    srv = run_process(cmd, port=port, name="gunicorn")
    if wait:
        srv.wait_ready(timeout=30)
    return srv


def get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, str]:
    """One request on a fresh connection (so no request rides a connection a worker is closing)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def worker_pids(srv: ServerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(srv.pid).children() if child.status() != psutil.STATUS_ZOMBIE}


def workers_when(srv: ServerProcess, condition) -> set[int] | None:
    """The worker pids if they satisfy `condition`, else None (for wait_until)."""
    pids = worker_pids(srv)
    return pids if condition(pids) else None


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def answering_pid(port: int) -> int:
    status, body = get(port)
    assert status == 200, body
    return int(body.split()[0].removeprefix("pid="))


def test_two_workers_serve_the_inherited_socket(run_process):
    srv = start_gunicorn(run_process, "-w", "2")
    wait_until(lambda: len(worker_pids(srv)) == 2, 15, "two workers")
    seen = wait_until(
        lambda: {answering_pid(srv.port) for _ in range(20)} if len(worker_pids(srv)) == 2 else None,
        20,
        "answers",
    )
    assert seen <= worker_pids(srv)
    log = "\n".join(srv.stderr_lines)
    assert f"Using worker: {WORKER}" in log
    assert "Started server process" in log  # ferrocorn's lines go through gunicorn's error log


def test_sigterm_drains_a_request_in_flight(run_process):
    srv = start_gunicorn(run_process, "-w", "1", "--graceful-timeout", "10")
    wait_until(lambda: worker_pids(srv), 15, "a worker")
    result: dict[str, object] = {}

    def slow() -> None:
        try:
            result["response"] = get(srv.port, "/slow?delay=1.5")
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)  # the request is in the worker
    srv.send_signal(signal.SIGTERM)
    thread.join(15)
    rc = srv.wait(timeout=15)
    assert "error" not in result, result
    assert result["response"][0] == 200  # type: ignore[index]
    assert rc == 0


def test_sighup_replaces_every_worker(run_process):
    srv = start_gunicorn(run_process, "-w", "2")
    before = wait_until(lambda: workers_when(srv, lambda p: len(p) == 2), 15, "two workers")
    srv.send_signal(signal.SIGHUP)
    after = wait_until(lambda: workers_when(srv, lambda p: len(p) == 2 and not p & before), 20, "new workers")
    assert answering_pid(srv.port) in after


def test_ttin_and_ttou_change_the_worker_count(run_process):
    srv = start_gunicorn(run_process, "-w", "1")
    wait_until(lambda: len(worker_pids(srv)) == 1, 15, "one worker")
    srv.send_signal(signal.SIGTTIN)
    wait_until(lambda: len(worker_pids(srv)) == 2, 15, "a second worker after TTIN")
    srv.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(worker_pids(srv)) == 1, 15, "one worker after TTOU")
    assert get(srv.port)[0] == 200


def test_a_killed_worker_is_replaced(run_process):
    srv = start_gunicorn(run_process, "-w", "1")
    (victim,) = wait_until(lambda: workers_when(srv, lambda p: len(p) == 1), 15, "one worker")
    os.kill(victim, signal.SIGKILL)
    (replacement,) = wait_until(
        lambda: workers_when(srv, lambda p: len(p) == 1 and victim not in p), 15, "a replacement"
    )
    assert answering_pid(srv.port) == replacement


def test_max_requests_recycles_workers_without_losing_a_request(run_process):
    srv = start_gunicorn(run_process, "-w", "2", "--max-requests", "20", "--max-requests-jitter", "5")
    wait_until(lambda: len(worker_pids(srv)) == 2, 15, "two workers")
    failures = []
    pids = set()
    deadline = time.monotonic() + 30
    sent = 0
    # The limit is checked on the server's 0.1 s tick, so a fast client may get past it before the
    # worker drains: send until two generations of workers have been replaced.
    while len(pids) < 6 and time.monotonic() < deadline:
        status, body = get(srv.port)
        sent += 1
        if status != 200:
            failures.append((status, body))
        pids.add(body.split()[0])
    assert not failures, failures
    assert len(pids) >= 6, f"{sent} requests, workers seen: {pids}"


def test_the_heartbeat_comes_from_the_event_loop(run_process):
    """An idle worker outlives --timeout (it notifies from its loop); one whose loop the app
    blocks stops notifying and is replaced."""
    srv = start_gunicorn(run_process, "-w", "1", "--timeout", "2")
    (first,) = wait_until(lambda: workers_when(srv, lambda p: len(p) == 1), 15, "one worker")
    time.sleep(4)
    assert worker_pids(srv) == {first}, "an idle worker was replaced: its heartbeat did not arrive"
    try:
        status, _ = get(srv.port, "/block?seconds=30", timeout=8)
    except (TimeoutError, OSError, http.client.HTTPException):
        status = None  # the aborted worker took the connection with it
    assert status != 200, "the blocked request completed: the worker was not aborted"
    wait_until(lambda: workers_when(srv, lambda p: len(p) == 1 and first not in p), 20, "the hung worker replaced")
    assert get(srv.port)[0] == 200
    assert any("WORKER TIMEOUT" in line for line in srv.stderr_lines)


def test_an_app_that_cannot_load_stops_gunicorn_with_its_boot_error(run_process):
    srv = start_gunicorn(run_process, "-w", "1", app="tests.apps.broken_import:app", wait=False)
    rc = srv.wait(timeout=30)
    assert rc in (3, 4), rc  # gunicorn's WORKER_BOOT_ERROR / APP_LOAD_ERROR
    assert any("ferrocorn_tests_nonexistent_dependency" in line for line in srv.stderr_lines)


def test_gunicorns_tls_settings_terminate_tls_in_the_worker(run_process, tmp_path):
    trustme = pytest.importorskip("trustme")
    httpx = pytest.importorskip("httpx")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    srv = start_gunicorn(run_process, "-w", "1", "--certfile", str(cert), "--keyfile", str(key))
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)), http2=False) as client:
        response = client.get(f"https://127.0.0.1:{srv.port}/tls")
    assert response.status_code == 200 and "path=/tls" in response.text


def _status(srv: ServerProcess, line: bytes, *fields: bytes) -> int:
    with srv.raw() as conn:
        conn.send(b"\r\n".join([line, b"Host: x", *fields]) + b"\r\n\r\n")
        return conn.read_response().status


def _line(length: int) -> bytes:
    """``GET /aaa… HTTP/1.1``, ``length`` bytes without its CRLF (as gunicorn measures it)."""
    return b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"


def test_gunicorns_request_limits_apply(run_process):
    """--limit-request-line (414), --limit-request-fields and --limit-request-field_size (431) as gunicorn reads
    them; and gunicorn's default line limit, 4094."""
    srv = start_gunicorn(
        run_process,
        *("--limit-request-line", "100", "--limit-request-fields", "5", "--limit-request-field_size", "50"),
    )
    assert _status(srv, _line(100)) == 200
    assert _status(srv, _line(101)) == 414
    assert _status(srv, _line(20), *(b"X-%d: v" % i for i in range(4))) == 200  # Host and 4 more: 5 fields
    assert _status(srv, _line(20), *(b"X-%d: v" % i for i in range(5))) == 431
    assert _status(srv, _line(20), b"X-Long: " + b"v" * (50 - 6)) == 200
    assert _status(srv, _line(20), b"X-Long: " + b"v" * (51 - 6)) == 431
    default = start_gunicorn(run_process)
    assert _status(default, _line(4094)) == 200
    assert _status(default, _line(4095)) == 414
