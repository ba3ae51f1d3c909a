"""The request limits over HTTP/1.1, with raw sockets: ``--limit-request-body-size`` (a declared body over the limit
is answered 413 before the app runs; a chunked body that grows past it ends with 413 and ``http.disconnect`` for the
app), ``--limit-request-headers`` (too many header fields get 431), ``--limit-request-line`` (414) and
``--limit-request-field-size`` (431). The app (tests/apps/witness.py) logs what it is given."""

from __future__ import annotations

import pytest

from tests.http1.test_framing import INVALID, new_marker, request, sync_log
from tests.support.raw import chunked
from tests.support.server import ServerProcess

LIMIT = 1000
LINE_LIMIT = 100
FIELD_LIMIT = 60


@pytest.fixture(scope="module")
def limited():
    srv = ServerProcess.ferrocorn(
        "tests.apps.witness:app",
        *("--limit-request-body-size", str(LIMIT), "--limit-request-headers", "10"),
        *("--limit-request-line", str(LINE_LIMIT), "--limit-request-field-size", str(FIELD_LIMIT)),
    )
    srv.wait_ready()
    yield srv
    srv.close()


def post(marker: str, *fields: bytes, body: bytes = b"") -> bytes:
    return request(b"POST / HTTP/1.1", *fields, body=body, marker=marker)


def test_declared_body_over_the_limit_is_413_before_the_app(limited):
    marker = new_marker()
    mark = limited.mark()
    with limited.raw() as conn:
        conn.send(post(marker, b"Content-Length: %d" % (LIMIT + 1)))
        response = conn.read_response()
        assert response.status == 413
        assert conn.is_closed(timeout=5)
    lines = sync_log(limited, mark, marker)
    assert not [line for line in lines if line.startswith(f"SAW {marker} ")]
    assert any(INVALID in line for line in lines)


def test_body_at_the_limit_is_served(limited):
    marker = new_marker()
    with limited.raw() as conn:
        conn.send(post(marker, b"Content-Length: %d" % LIMIT, body=b"x" * LIMIT))
        response = conn.read_response()
    assert response.status == 200 and response.body == b"%d bytes" % LIMIT


def test_chunked_body_at_the_limit_is_served(limited):
    marker = new_marker()
    with limited.raw() as conn:
        conn.send(post(marker, b"Transfer-Encoding: chunked", body=chunked(b"x" * 600, b"y" * 400)))
        response = conn.read_response()
    assert response.status == 200 and response.body == b"%d bytes" % LIMIT


def test_chunked_body_growing_past_the_limit_is_413_and_a_disconnect(limited):
    marker = new_marker()
    mark = limited.mark()
    with limited.raw() as conn:
        conn.send(post(marker, b"Transfer-Encoding: chunked", body=chunked(b"x" * 600, b"y" * 600)))
        response = conn.read_response()
        assert response.status == 413
        assert conn.is_closed(timeout=5)
    lines = sync_log(limited, mark, marker)
    received = [line for line in lines if line.startswith(f"RECEIVED {marker} ")]
    assert received and received[-1] == f"RECEIVED {marker} http.disconnect 0", lines


def test_expect_100_continue_over_the_limit_gets_413_without_100(limited):
    marker = new_marker()
    with limited.raw() as conn:
        conn.send(post(marker, b"Content-Length: %d" % (LIMIT * 10), b"Expect: 100-continue"))
        response = conn.read_response(skip_interim=False)
        assert response.status == 413
        assert conn.is_closed(timeout=5)


@pytest.mark.parametrize(("extra", "status"), [(8, 200), (9, 431)])
def test_header_count_limit(limited, extra, status):
    """Host and X-Marker plus ``extra`` fields: 10 are allowed, 11 are not."""
    marker = new_marker()
    fields = [b"X-F%d: v" % i for i in range(extra)]
    mark = limited.mark()
    with limited.raw() as conn:
        conn.send(request(b"GET / HTTP/1.1", *fields, marker=marker))
        response = conn.read_response()
        assert response.status == status
    lines = sync_log(limited, mark, marker)
    assert bool([line for line in lines if line.startswith(f"SAW {marker} ")]) == (status == 200)


def test_no_body_limit_by_default_and_env_var(start_server):
    """No limit unless asked; FERROCORN_LIMIT_REQUEST_BODY_SIZE sets it like the option."""
    big = b"z" * (4 << 20)
    srv = start_server("tests.apps.witness:app")
    with srv.raw() as conn:
        conn.send(post("big", b"Content-Length: %d" % len(big), body=big))
        assert conn.read_response().body == b"%d bytes" % len(big)
    srv = start_server("tests.apps.witness:app", env={"FERROCORN_LIMIT_REQUEST_BODY_SIZE": "10"})
    with srv.raw() as conn:
        conn.send(post("env", b"Content-Length: 11", body=b"x" * 11))
        assert conn.read_response().status == 413


def request_line(length: int, method: bytes = b"GET") -> bytes:
    """``METHOD /aaa… HTTP/1.1`` exactly ``length`` bytes long (without its CRLF)."""
    fixed = len(method) + len(b" / HTTP/1.1")
    return method + b" /" + b"a" * (length - fixed) + b" HTTP/1.1"


def assert_refused_with(server: ServerProcess, payload: bytes, marker: str, status: int) -> None:
    """``status``, the connection closed, the app never called, the refusal logged."""
    mark = server.mark()
    with server.raw() as conn:
        conn.send(payload)
        response = conn.read_response()
        assert response.status == status, (response.status, response.body)
        assert conn.is_closed(timeout=5)
    lines = sync_log(server, mark, marker)
    assert not [line for line in lines if line.startswith(f"SAW {marker} ")]
    assert any(INVALID in line for line in lines), lines


@pytest.mark.parametrize("method", [b"GET", b"OPTIONS"])
def test_request_line_at_the_limit_is_served_and_one_byte_more_is_414(limited, method):
    marker = new_marker()
    line = request_line(LINE_LIMIT, method)
    assert len(line) == LINE_LIMIT
    with limited.raw() as conn:
        conn.send(request(line, marker=marker))
        assert conn.read_response().status == 200
    marker = new_marker()
    assert_refused_with(limited, request(request_line(LINE_LIMIT + 1, method), marker=marker), marker, 414)


def test_absolute_form_target_counts_in_full(limited):
    target = b"http://x/" + b"b" * (LINE_LIMIT - len(b"GET http://x/ HTTP/1.1"))
    served = b"GET " + target + b" HTTP/1.1"
    assert len(served) == LINE_LIMIT
    with limited.raw() as conn:
        conn.send(request(served, marker=new_marker()))
        assert conn.read_response().status == 200
    marker = new_marker()
    assert_refused_with(limited, request(b"GET " + target + b"b HTTP/1.1", marker=marker), marker, 414)


def test_field_at_the_size_limit_is_served_and_one_byte_more_is_431(limited):
    """Name plus value: ``X-Long`` (6 bytes) and a value of FIELD_LIMIT - 6."""
    marker = new_marker()
    with limited.raw() as conn:
        conn.send(request(b"GET / HTTP/1.1", b"X-Long: " + b"v" * (FIELD_LIMIT - 6), marker=marker))
        assert conn.read_response().status == 200
    marker = new_marker()
    too_long = b"X-Long: " + b"v" * (FIELD_LIMIT - 5)
    assert_refused_with(limited, request(b"GET / HTTP/1.1", too_long, marker=marker), marker, 431)


def test_line_and_field_defaults_and_zero(start_server):
    """8190 bytes each by default; 0 lifts the limit (a longer line or field is served up to the head limit);
    a line longer than the whole head limit (--h11-max-incomplete-event-size) gets hyper's 431, never a silent
    close."""
    srv = start_server("tests.apps.witness:app")
    with srv.raw() as conn:
        conn.send(request(request_line(8190), b"X-Long: " + b"v" * (8190 - 6)))
        assert conn.read_response().status == 200
    with srv.raw() as conn:
        conn.send(request(request_line(8191)))
        assert conn.read_response().status == 414
        assert conn.is_closed(timeout=5)
    with srv.raw() as conn:
        conn.send(request(b"GET / HTTP/1.1", b"X-Long: " + b"v" * (8191 - 6)))
        assert conn.read_response().status == 431
        assert conn.is_closed(timeout=5)
    # beyond hyper's head buffer (64 KiB by default): the head is too large before the line ends
    with srv.raw() as conn:
        conn.send(request(request_line(70_000)))
        assert conn.read_response().status == 431
        assert conn.is_closed(timeout=5)
    unlimited = start_server(
        "tests.apps.witness:app",
        env={"FERROCORN_LIMIT_REQUEST_LINE": "0", "FERROCORN_LIMIT_REQUEST_FIELD_SIZE": "0"},
    )
    with unlimited.raw() as conn:
        conn.send(request(request_line(20_000), b"X-Long: " + b"v" * 20_000))
        assert conn.read_response().status == 200
    with unlimited.raw() as conn:
        conn.send(request(request_line(70_000)))
        assert conn.read_response().status == 431
        assert conn.is_closed(timeout=5)
