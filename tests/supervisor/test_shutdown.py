"""Graceful shutdown on SIGINT / SIGTERM."""

import select
import signal
import threading
import time
import uuid

import pytest

from tests.support.raw import build_request

ROUTER = "tests.apps.router:app"


def _wait_inflight(srv, n, timeout=10):
    deadline = time.monotonic() + timeout
    with srv.client() as c:
        while time.monotonic() < deadline:
            if c.get("/inflight").json()["slow"] >= n:
                return
            time.sleep(0.02)
    raise AssertionError(f"{n} slow requests never got in flight\n{srv.log_tail()}")


def _slow_requests(srv, n, delay):
    results = [None] * n
    tag = uuid.uuid4().hex[:6]

    def one(i):
        try:
            with srv.client(timeout=30) as c:
                results[i] = c.get("/slow", params={"delay": delay, "tag": f"{tag}{i}"})
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results, tag


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_inflight_requests_complete_then_exit_0(start_server, sig):
    srv = start_server(ROUTER)
    n = 5
    threads, results, tag = _slow_requests(srv, n, delay=1.5)
    _wait_inflight(srv, n)
    rc = srv.stop(sig, timeout=20)
    for t in threads:
        t.join(10)
    for i, r in enumerate(results):
        assert not isinstance(r, Exception), f"request {i} failed: {r!r}"
        assert r.status_code == 200 and r.text == f"slept {tag}{i}"
    assert rc == 0
    lines = srv.stderr_lines
    assert any("Shutting down" in line for line in lines)
    assert any("Finished server process" in line and f"[{srv.pid}]" in line for line in lines)


def test_idle_keepalive_connections_are_closed(start_server):
    # a long keep-alive timeout: only the shutdown can close these connections quickly
    srv = start_server(ROUTER, "--timeout-keep-alive", "60")
    conns = [srv.raw(timeout=15) for _ in range(3)]
    try:
        for conn in conns:
            assert conn.request("GET", "/fixed?size=1").status == 200
        t0 = time.monotonic()
        srv.send_signal(signal.SIGINT)
        for conn in conns:
            assert conn.is_closed(timeout=10), "idle keep-alive connection was not closed by the shutdown"
        rc = srv.wait(timeout=15)
        assert rc == 0
        assert time.monotonic() - t0 < 15
    finally:
        for conn in conns:
            conn.close()


def test_idle_connection_without_any_request_does_not_block_shutdown(start_server):
    srv = start_server(ROUTER, "--timeout-keep-alive", "60")
    with srv.raw(timeout=15) as s:
        rc = srv.stop(timeout=15)
        assert rc == 0
        s.settimeout(5)
        assert s.recv(1024) == b""  # EOF, or a reset


def test_new_connections_refused_after_shutdown_starts(start_server):
    srv = start_server(ROUTER)
    threads, results, tag = _slow_requests(srv, 1, delay=3)
    _wait_inflight(srv, 1)
    mark = srv.mark()
    srv.send_signal(signal.SIGINT)
    srv.wait_for_line("Shutting down", start=mark)
    refused = False
    served_after = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and srv.alive():
        try:
            s = srv.raw(timeout=2)
        except ConnectionRefusedError:
            refused = True
            break
        try:
            s.send(build_request("GET", "/fixed?size=1", headers=[("Connection", "close")]))
            s.settimeout(1)
            data = s.recv(100)
            if data.startswith(b"HTTP/1.1 200"):
                served_after.append(data)
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.05)
    assert refused, f"connections were still accepted during shutdown (served: {len(served_after)})"
    rc = srv.wait(timeout=20)
    threads[0].join(10)
    assert rc == 0
    assert not isinstance(results[0], Exception), results[0]
    assert results[0].status_code == 200


def test_request_on_kept_alive_connection_during_shutdown(start_server):
    """A keep-alive connection whose request is in flight gets its response, and then is closed instead
    of being kept for more requests."""
    srv = start_server(ROUTER, "--timeout-keep-alive", "60")
    with srv.raw(timeout=15) as conn:
        conn.send(build_request("GET", "/slow?delay=1&tag=ka"))
        _wait_inflight(srv, 1)
        srv.send_signal(signal.SIGINT)
        r = conn.read_response()
        assert r.status == 200 and r.body == b"slept ka"
        assert conn.is_closed(timeout=10)
    assert srv.wait(timeout=15) == 0


def test_graceful_shutdown_timeout_cancels_tasks(start_server):
    srv = start_server(ROUTER, "--timeout-graceful-shutdown", "1")
    threads, results, tag = _slow_requests(srv, 1, delay=30)
    _wait_inflight(srv, 1)
    t0 = time.monotonic()
    rc = srv.stop(timeout=15)
    elapsed = time.monotonic() - t0
    threads[0].join(10)
    assert rc == 0
    assert elapsed < 15
    # the app task was cancelled (it saw CancelledError) rather than abandoned
    assert srv.has_line(f"SLOW-CANCELLED {tag}0"), srv.log_tail()
    assert isinstance(results[0], Exception) or results[0].status_code >= 500


def test_exit_code_0_with_nothing_in_flight(start_server):
    srv = start_server(ROUTER)
    assert srv.get("/").status_code == 200
    assert srv.stop(signal.SIGINT) == 0
    assert "ROUTER-LIFESPAN-SHUTDOWN" in srv.stderr
    assert "Application shutdown complete." in srv.stderr


def _hold_shutdown(srv, delay):
    """A slow request in flight: the server stays in its drain while the test goes on."""
    threads, results, _ = _slow_requests(srv, 1, delay=delay)
    _wait_inflight(srv, 1)
    return threads, results


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_request_sent_just_after_the_drain_began_is_served(start_server, http):
    """The drain race: a connection accepted before the shutdown whose request arrives just after it
    began (a fresh connection, and a kept-alive one whose next request head is half sent) gets its
    response, with Connection: close, instead of a closed connection."""
    srv = start_server(ROUTER, "--http", http, "--timeout-keep-alive", "60")
    with srv.raw(timeout=10) as fresh, srv.raw(timeout=10) as kept:
        # accept() takes connections in order: once `kept` is answered, `fresh` was accepted too
        assert kept.request("GET", "/fixed?size=1").status == 200
        kept.send(b"GET /fixed?size=2 HTTP/1.1\r\nHo")
        threads, results = _hold_shutdown(srv, delay=3)
        mark = srv.mark()
        srv.send_signal(signal.SIGTERM)
        srv.wait_for_line("Shutting down", start=mark)
        time.sleep(0.3)  # well inside the drain, well inside its 1 s grace
        fresh.send(build_request("GET", "/fixed?size=3"))
        kept.send(b"st: x\r\n\r\n")
        for conn, size in ((fresh, 3), (kept, 2)):
            r = conn.read_response()
            assert r.status == 200 and len(r.body) == size
            assert r.header("connection") == "close"
            assert conn.is_closed(timeout=5)
    threads[0].join(10)
    assert results[0].status_code == 200
    assert srv.wait(timeout=15) == 0


def test_head_trickled_during_the_drain_gets_408_at_the_head_timeout(start_server):
    """The drain waits for a request that is arriving, but not for ever: a head that trickles in during it still
    gets its 408 and the close at --timeout-request-head, counted from its first byte, whether that byte came
    before the drain began (kept) or after it (fresh)."""
    srv = start_server(ROUTER, "--timeout-keep-alive", "60", "--timeout-request-head", "1")
    with srv.raw(timeout=10) as fresh, srv.raw(timeout=10) as kept:
        assert kept.request("GET", "/fixed?size=1").status == 200
        kept.send(b"GET /fixed?size=2 HTTP/1.1\r\nHo")
        kept_began = time.monotonic()
        threads, results = _hold_shutdown(srv, delay=6)
        mark = srv.mark()
        srv.send_signal(signal.SIGTERM)
        srv.wait_for_line("Shutting down", start=mark)
        fresh.send(b"GET /fixed?size=3 HTTP/1.1\r\nHo")
        fresh_began = time.monotonic()
        closed_after = {}
        trickle = b"st: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz"
        for i in range(40):  # 8 s of one byte every 0.2 s on each: longer than the held request
            for name, conn in (("fresh", fresh), ("kept", kept)):
                if name in closed_after:
                    continue
                try:
                    conn.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
                    readable = select.select([conn.sock], [], [], 0)[0]
                    data = conn.sock.recv(65536) if readable else b"-"
                except OSError:
                    data = b""
                if not data:
                    closed_after[name] = time.monotonic() - (fresh_began if name == "fresh" else kept_began)
                elif data != b"-":
                    conn.buf += data
            if len(closed_after) == 2:
                break
            time.sleep(0.2)
        for name, conn in (("fresh", fresh), ("kept", kept)):
            assert conn.buf.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), (name, conn.buf)
            assert 0.8 <= closed_after[name] <= 1 + 2.5, (name, closed_after)
    threads[0].join(10)
    assert results[0].status_code == 200
    assert srv.wait(timeout=15) == 0


def test_silent_connections_do_not_hold_the_drain(start_server):
    """A fresh connection that never sends is closed after the short drain grace, and an idle kept-alive one at
    once, with a long keep-alive timeout."""
    srv = start_server(ROUTER, "--timeout-keep-alive", "60")
    with srv.raw(timeout=10) as fresh, srv.raw(timeout=10) as kept:
        assert kept.request("GET", "/fixed?size=1").status == 200
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        assert kept.is_closed(timeout=5)
        assert fresh.is_closed(timeout=5)
        assert time.monotonic() - t0 < 3
    assert srv.wait(timeout=15) == 0
