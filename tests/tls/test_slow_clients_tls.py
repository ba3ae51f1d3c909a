"""Slow-client timeouts over TLS (HTTP/1.1 after the handshake): a trickling or stalled head gets 408 and is closed
after ``--timeout-request-head``, a stalled body gets 408 after ``--timeout-request-body``, a client that stops
reading is dropped after ``--timeout-response-write``."""

from __future__ import annotations

import ssl
import time

import pytest

from tests.http1.test_framing import new_marker, request
from tests.http1.test_slow_clients import SLACK, assert_408, closed_within
from tests.support.server import ServerProcess
from tests.tls.test_tls import ca, pki, tls_args  # noqa: F401 - the fixtures


@pytest.fixture(scope="module")
def strict(pki):  # noqa: F811
    srv = ServerProcess.ferrocorn(
        "tests.apps.witness:app",
        *tls_args(pki),
        "--timeout-request-head",
        "1",
        "--timeout-request-body",
        "1",
        "--timeout-response-write",
        "1",
    )
    srv.wait_ready()
    yield srv
    srv.close()


def tls_raw(srv, pki, **kw):  # noqa: F811
    return srv.raw(tls=ssl.create_default_context(cafile=pki["ca.pem"]), server_hostname="localhost", **kw)


def test_trickling_head_over_tls_is_closed(strict, pki):  # noqa: F811
    with tls_raw(strict, pki) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        elapsed = closed_within(conn, 1, trickle=b"X-Slow: abcdefghijklmnop\r\n")
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    assert_408(conn.buf)


def test_stalled_head_over_tls_gets_408_then_the_close(strict, pki):  # noqa: F811
    with tls_raw(strict, pki) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        elapsed = closed_within(conn, 1)
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    assert_408(conn.buf)


def test_stalled_body_over_tls_gets_408(strict, pki):  # noqa: F811
    marker = new_marker()
    mark = strict.mark()
    with tls_raw(strict, pki) as conn:
        conn.sendall(request(b"POST / HTTP/1.1", b"Content-Length: 100", body=b"0123456789", marker=marker))
        response = conn.read_response()
        assert response.status == 408
    strict.wait_for_line(f"RECEIVED {marker} http.disconnect", start=mark)


def test_client_that_stops_reading_over_tls_is_dropped(strict, pki):  # noqa: F811
    marker = new_marker()
    mark = strict.mark()
    with tls_raw(strict, pki, rcvbuf=4096) as conn:
        conn.sendall(request(b"GET /stream?chunks=100000&size=65536 HTTP/1.1", marker=marker))
        started = time.monotonic()
        line = strict.wait_for_line(f"SEND-RAISED {marker} ", start=mark, timeout=15)
        elapsed = time.monotonic() - started
    assert line == f"SEND-RAISED {marker} ClientDisconnected", line
    assert elapsed <= 1 + SLACK + 3, elapsed
