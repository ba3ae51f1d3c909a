"""``--limit-request-body-size`` and ``--limit-request-headers`` over HTTP/1.1, with raw sockets: a declared body over
the limit is answered 413 before the app runs; a chunked body that grows past it ends with 413 and ``http.disconnect``
for the app; too many header fields get 431. The app (tests/apps/witness.py) logs what it is given."""

from __future__ import annotations

import pytest

from tests.http1.test_framing import INVALID, new_marker, request, sync_log
from tests.support.raw import chunked
from tests.support.server import ServerProcess

LIMIT = 1000


@pytest.fixture(scope="module")
def limited():
    srv = ServerProcess.ferrocorn(
        "tests.apps.witness:app", "--limit-request-body-size", str(LIMIT), "--limit-request-headers", "10"
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
