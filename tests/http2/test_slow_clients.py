"""Slow-client timeouts over HTTP/2 (h2c, frame by frame): a request header block left open (HEADERS without
END_HEADERS and no CONTINUATION, or a HEADERS frame that trickles) gets GOAWAY and the close
(``--timeout-request-head``); a request body that stalls gets 408 on its stream and the app ``http.disconnect``
(``--timeout-request-body``); a client that stops reading the socket is dropped and the app's ``send()`` raises
(``--timeout-response-write``), and so is a stream whose flow-control window the client never opens (the stream is
reset, the connection goes on). Limits are 1 s; each test allows the limit plus a margin."""

from __future__ import annotations

import time

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from tests.http1.test_framing import new_marker
from tests.http1.test_slow_clients import SLACK
from tests.support.h2 import H2Conn
from tests.support.server import ServerProcess

INITIAL_WINDOW_SIZE = 0x4
MAX_WINDOW = 2**31 - 1
CANCEL = 0x8


@pytest.fixture(scope="module")
def strict():
    srv = ServerProcess.ferrocorn(
        "tests.apps.witness:app",
        *("--timeout-request-head", "1", "--timeout-request-body", "1", "--timeout-response-write", "1"),
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


def closed_after_goaway(conn: H2Conn, limit: float) -> float:
    """Seconds until EOF; a GOAWAY must have come before it."""
    started = time.monotonic()
    frames = conn.until_eof(limit + SLACK + 3)
    elapsed = time.monotonic() - started
    assert any(isinstance(f, GoAwayFrame) for f in frames), frames
    return elapsed


def test_header_block_left_open_gets_goaway_and_the_close(strict):
    """HEADERS without END_HEADERS, then silence: h2 waits for the CONTINUATION; the head clock does not."""
    marker = new_marker()
    mark = strict.mark()
    with H2Conn(strict.port) as conn:
        conn.server_settings()
        block = conn.block([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")])
        block += conn.block([(b"x-marker", marker.encode())])
        conn.send(HeadersFrame(1, block, flags=["END_STREAM"]))
        elapsed = closed_after_goaway(conn, 1)
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    assert not [line for line in strict.lines_since(mark) if line.startswith(f"SAW {marker} ")]


def test_trickling_headers_frame_gets_goaway_and_the_close(strict):
    with H2Conn(strict.port) as conn:
        conn.server_settings()
        frame = conn.request(1, "/").serialize()
        conn.send_raw(frame[:12])
        started = time.monotonic()
        for byte in frame[12:-1]:
            time.sleep(0.2)
            try:
                conn.send_raw(bytes([byte]))
            except OSError:
                break
            if time.monotonic() - started > 1 + SLACK + 1:
                break
        elapsed = closed_after_goaway(conn, 1)
    assert elapsed <= 1 + SLACK, elapsed


def test_slow_but_complete_header_blocks_are_not_cut(strict):
    """Only an open header block is timed: a block split in CONTINUATIONs that arrive in time, a request whose body
    takes longer than the head limit, and a connection silent for longer than it between requests are all fine."""
    with H2Conn(strict.port) as conn:
        conn.server_settings()
        block = conn.block([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")])
        conn.send(HeadersFrame(1, block[:5]))
        time.sleep(0.5)
        conn.send(ContinuationFrame(1, block[5:], flags=["END_HEADERS"]))
        for _ in range(4):  # 2 s of body, a chunk every 0.5 s (the body limit is on silence)
            time.sleep(0.5)
            conn.send(DataFrame(1, b"x"))
        conn.send(DataFrame(1, b"", flags=["END_STREAM"]))
        response = conn.response(1)
        assert response["status"] == 200 and response["body"] == b"4 bytes"
        time.sleep(1.5)
        conn.send(conn.request(3, "/"))
        assert conn.response(3)["status"] == 200


def test_stream_whose_window_never_opens_is_reset_and_send_raises(strict):
    """The client reads the socket (and answers PINGs) but never sends WINDOW_UPDATE for stream 1: after the write
    limit the stream is reset with CANCEL and the app's ``send()`` raises; a second stream is then served."""
    marker = new_marker()
    mark = strict.mark()
    with H2Conn(strict.port, settings={INITIAL_WINDOW_SIZE: 100}) as conn:
        conn.send(conn.request(1, "/stream?chunks=1000&size=16384", extra=[(b"x-marker", marker.encode())]))
        started = time.monotonic()
        frames = conn.collect(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1, 1 + SLACK + 3)
        elapsed = time.monotonic() - started
        assert frames[-1] is not None, f"connection closed: {frames}"
        assert frames[-1].error_code == CANCEL, frames[-1]
        sent = sum(len(f.data) for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
        assert sent == 100, sent  # the window, no more
        line = strict.wait_for_line(f"SEND-RAISED {marker} ", start=mark, timeout=5)
        assert line == f"SEND-RAISED {marker} ClientDisconnected", line
        conn.send(conn.request(3, "/"))
        response = conn.response(3)
        assert response["status"] == 200 and response["body"] == b"0 bytes", response
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed


def test_stream_whose_window_opens_slowly_is_not_reset(strict):
    """A window opened 16 KiB at a time, every 0.4 s, for longer than the limit: the response completes."""
    with H2Conn(strict.port, settings={INITIAL_WINDOW_SIZE: 16384}) as conn:
        conn.send(conn.request(1, "/stream?chunks=8&size=16384"))
        started = time.monotonic()
        received = 0
        while True:
            frame = conn.next_frame(5)
            assert frame is not None, "connection closed"
            assert not isinstance(frame, RstStreamFrame), frame
            if isinstance(frame, DataFrame) and frame.stream_id == 1:
                received += len(frame.data)
                if "END_STREAM" in frame.flags:
                    break
                if frame.data:
                    time.sleep(0.4)
                    conn.send(
                        WindowUpdateFrame(1, window_increment=len(frame.data)),
                        WindowUpdateFrame(0, window_increment=len(frame.data)),
                    )
        elapsed = time.monotonic() - started
    assert received == 8 * 16384
    assert elapsed > 1, "the response went faster than the limit: the test proves nothing"
