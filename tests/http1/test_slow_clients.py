"""Slow-client timeouts over HTTP/1.1, with raw sockets that hold a connection open the slow way: a head that trickles
in or stalls (``--timeout-request-head``: 408, then the close), a silent keep-alive connection
(``--timeout-keep-alive``, a separate clock, closed without a 408), a request body that stalls
(``--timeout-request-body``: 408 and ``http.disconnect``), a client that stops reading the response
(``--timeout-response-write``: dropped, the app's ``send()`` raises). Each limit is 1 s here; each test allows the
limit plus a generous margin. The app (tests/apps/witness.py) logs what it is given."""

from __future__ import annotations

import time

import pytest

from tests.http1.test_framing import new_marker, request
from tests.support.server import ServerProcess

WITNESS = "tests.apps.witness:app"
# a bound on a timeout's own behaviour, not a performance figure: the limit plus scheduling slack
SLACK = 1.5


def closed_within(conn, limit: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``conn``; sends ``trickle`` one byte at a time every 0.2 s meanwhile."""
    started = time.monotonic()
    conn.settimeout(0.2)
    for i in range(int((limit + SLACK + 3) / 0.2)):
        if trickle:
            try:
                conn.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
            except OSError:
                return time.monotonic() - started
        try:
            data = conn.sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
        if not data:
            return time.monotonic() - started
        conn.buf += data
    raise AssertionError(f"still open after {time.monotonic() - started:.1f}s")


@pytest.fixture(scope="module")
def strict():
    srv = ServerProcess.ferrocorn(
        WITNESS,
        "--timeout-request-head",
        "1",
        "--timeout-keep-alive",
        "3",
        "--timeout-request-body",
        "1",
        "--timeout-response-write",
        "1",
    )
    srv.wait_ready()
    yield srv
    srv.close()


def test_trickling_head_is_closed_after_the_head_timeout(strict):
    marker = new_marker()
    mark = strict.mark()
    with strict.raw() as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Marker: " + marker.encode() + b"\r\n")
        elapsed = closed_within(conn, 1, trickle=b"X-Slow: abcdefghijklmnop\r\n")
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    assert_408(conn.buf)
    assert not [line for line in strict.lines_since(mark) if line.startswith(f"SAW {marker} ")]


def assert_408(received: bytes) -> None:
    """Exactly one complete ``408 Request Timeout`` that closes the connection, and nothing else."""
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 408 Request Timeout", received
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    assert fields[b"connection"] == b"close", received
    assert body == b"Request Timeout" and int(fields[b"content-length"]) == len(body), received


def test_stalled_head_gets_408_then_the_close(strict):
    """RFC 9110 §15.5.9: part of a head, then nothing: 408 with Connection: close, then EOF, within the limit plus a
    second."""
    with strict.raw() as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        elapsed = closed_within(conn, 1)
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    assert_408(conn.buf)


def test_408_follows_the_previous_response_whole(strict):
    """On a kept-alive connection: the answer to the first request, then the 408 for the stalled second head."""
    with strict.raw() as conn:
        conn.sendall(request(b"GET / HTTP/1.1"))
        assert conn.read_response().status == 200
        assert conn.buf == b""
        conn.sendall(b"GET / HTTP/1.1\r\nHo")
        elapsed = closed_within(conn, 1)
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    assert_408(conn.buf)


def test_head_timeout_is_counted_from_the_first_byte_not_from_idle(strict):
    """A keep-alive connection silent for longer than the head limit (but less than the keep-alive one) still gets
    the whole head limit for its next request."""
    with strict.raw() as conn:
        conn.sendall(request(b"GET / HTTP/1.1"))
        assert conn.read_response().status == 200
        time.sleep(1.8)
        line = b"GET / HTTP/1.1\r\n"
        conn.sendall(line[:5])
        time.sleep(0.5)
        conn.sendall(line[5:] + b"Host: x\r\n\r\n")
        assert conn.read_response().status == 200


def test_silent_connection_lasts_the_keep_alive_timeout_not_the_head_timeout(strict):
    with strict.raw() as conn:
        elapsed = closed_within(conn, 3)
    assert 2.8 <= elapsed <= 3 + SLACK, elapsed
    assert conn.buf == b"", "a connection that never sent a byte gets no 408"


def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(strict):
    with strict.raw() as conn:
        conn.sendall(request(b"GET / HTTP/1.1"))
        assert conn.read_response().status == 200
        elapsed = closed_within(conn, 3)
    assert 2.8 <= elapsed <= 3 + SLACK, elapsed
    assert conn.buf == b"", "an idle keep-alive connection is closed without a 408"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stalled_body_gets_408_and_the_app_a_disconnect(strict, framing):
    marker = new_marker()
    mark = strict.mark()
    if framing == "chunked":
        payload = request(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked", body=b"a\r\n0123456789\r\n", marker=marker)
    else:
        payload = request(b"POST / HTTP/1.1", b"Content-Length: 100", body=b"0123456789", marker=marker)
    with strict.raw() as conn:
        conn.sendall(payload)
        started = time.monotonic()
        response = conn.read_response()
        elapsed = time.monotonic() - started
        assert response.status == 408
        assert conn.is_closed(timeout=5)
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    strict.wait_for_line(f"RECEIVED {marker} http.disconnect", start=mark)


def test_slow_but_steady_body_is_not_cut(strict):
    """The body limit is on silence, not on the whole body: a byte every 0.5 s for 3 s is fine."""
    with strict.raw() as conn:
        conn.sendall(request(b"POST / HTTP/1.1", b"Content-Length: 6"))
        for _ in range(6):
            time.sleep(0.5)
            conn.sendall(b"x")
        response = conn.read_response()
    assert response.status == 200 and response.body == b"6 bytes"


def test_client_that_stops_reading_is_dropped_and_send_raises(strict):
    marker = new_marker()
    mark = strict.mark()
    with strict.raw(rcvbuf=4096) as conn:
        conn.sendall(request(b"GET /stream?chunks=100000&size=65536 HTTP/1.1", marker=marker))
        started = time.monotonic()
        # never read: the socket buffers fill, then the server's writes stall
        line = strict.wait_for_line(f"SEND-RAISED {marker} ", start=mark, timeout=15)
        elapsed = time.monotonic() - started
    assert line == f"SEND-RAISED {marker} ClientDisconnected", line
    assert elapsed <= 1 + SLACK + 3, elapsed  # the buffers take a moment to fill


def test_slow_reader_is_not_dropped(strict):
    """A client that reads slowly but steadily is never dropped, though the whole response takes several times the
    limit: the limit is on a socket that refuses every write for that long."""
    with strict.raw() as conn:
        conn.sendall(request(b"GET /stream?chunks=512&size=65536 HTTP/1.1"))
        started = time.monotonic()
        received = bytearray()
        while not received.endswith(b"0\r\n\r\n"):
            time.sleep(0.03)
            data = conn.recv(262144)
            assert data, f"closed after {len(received)} bytes"
            received += data
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200 ")
    assert len(received) > 512 * 65536
    assert elapsed > 1, "the response went faster than the limit: the test proves nothing"
