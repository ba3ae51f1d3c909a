"""Slow-client timeouts over HTTP/2 (h2c, frame by frame): a request body that stalls gets 408 on its stream and the
app ``http.disconnect`` (``--timeout-request-body``); a client that stops reading the socket is dropped and the app's
``send()`` raises (``--timeout-response-write``). Limits are 1 s; each test allows the limit plus a margin."""

from __future__ import annotations

import time

import pytest
from hyperframe.frame import DataFrame, WindowUpdateFrame

from tests.http1.test_framing import new_marker
from tests.http1.test_slow_clients import SLACK
from tests.support.h2 import H2Conn
from tests.support.server import ServerProcess

INITIAL_WINDOW_SIZE = 0x4
MAX_WINDOW = 2**31 - 1


@pytest.fixture(scope="module")
def strict():
    srv = ServerProcess.ferrocorn(
        "tests.apps.witness:app", "--timeout-request-body", "1", "--timeout-response-write", "1"
    )
    srv.wait_ready()
    yield srv
    srv.close()


def test_stalled_body_gets_408_and_the_app_a_disconnect(strict):
    marker = new_marker()
    mark = strict.mark()
    with H2Conn(strict.port) as conn:
        conn.send(conn.request(1, "/", method=b"POST", end_stream=False, extra=[(b"x-marker", marker.encode())]))
        conn.send(DataFrame(1, b"0123456789"))
        started = time.monotonic()
        response = conn.response(1)
        elapsed = time.monotonic() - started
        assert response["status"] == 408
        # the connection itself goes on
        conn.send(conn.request(3, "/"))
        assert conn.response(3)["status"] == 200
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    strict.wait_for_line(f"RECEIVED {marker} http.disconnect", start=mark)


def test_client_that_stops_reading_is_dropped_and_send_raises(strict):
    """Flow-control windows wide open, then the client never reads the socket: the server's writes stall."""
    marker = new_marker()
    mark = strict.mark()
    with H2Conn(strict.port, settings={INITIAL_WINDOW_SIZE: MAX_WINDOW}, rcvbuf=4096) as conn:
        conn.send(WindowUpdateFrame(0, window_increment=MAX_WINDOW - 65535))
        conn.send(conn.request(1, "/stream?chunks=100000&size=65536", extra=[(b"x-marker", marker.encode())]))
        started = time.monotonic()
        line = strict.wait_for_line(f"SEND-RAISED {marker} ", start=mark, timeout=15)
        elapsed = time.monotonic() - started
    assert line == f"SEND-RAISED {marker} ClientDisconnected", line
    assert elapsed <= 1 + SLACK + 3, elapsed
