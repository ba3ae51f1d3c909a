"""The request limits over HTTP/2 (h2c, frame by frame): a declared content-length over
``--limit-request-body-size`` is answered 413 before the app runs, a body that grows past it ends with 413 and
``http.disconnect`` for the app; more header fields than ``--limit-request-headers`` get 431, a ``:path`` longer than
``--limit-request-line`` 414, a field longer than ``--limit-request-field-size`` 431. Each refusal ends its stream
only: the connection serves the next one."""

from __future__ import annotations

import pytest
from hyperframe.frame import DataFrame

from tests.http1.test_framing import new_marker
from tests.support.h2 import H2Conn
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


def saw(server: ServerProcess, mark: int, marker: str) -> bool:
    return any(line.startswith(f"SAW {marker} ") for line in server.lines_since(mark))


def test_declared_content_length_over_the_limit_is_413_before_the_app(limited):
    marker = new_marker()
    mark = limited.mark()
    with H2Conn(limited.port) as conn:
        extra = [(b"content-length", str(LIMIT + 1).encode()), (b"x-marker", marker.encode())]
        conn.send(conn.request(1, "/", method=b"POST", end_stream=False, extra=extra))
        response = conn.response(1)
        assert response["status"] == 413
        # the connection still serves other streams
        conn.send(conn.request(3, "/", extra=[(b"x-marker", (marker + "-next").encode())]))
        assert conn.response(3)["status"] == 200
    assert not saw(limited, mark, marker)


def test_body_growing_past_the_limit_is_413_and_a_disconnect(limited):
    marker = new_marker()
    mark = limited.mark()
    with H2Conn(limited.port) as conn:
        conn.send(conn.request(1, "/", method=b"POST", end_stream=False, extra=[(b"x-marker", marker.encode())]))
        conn.send(DataFrame(1, b"x" * 600), DataFrame(1, b"y" * 600))
        response = conn.response(1)
        assert response["status"] == 413
    limited.wait_for_line(f"RECEIVED {marker} http.disconnect", start=mark)


def test_body_at_the_limit_is_served(limited):
    with H2Conn(limited.port) as conn:
        conn.send(conn.request(1, "/", method=b"POST", end_stream=False))
        conn.send(DataFrame(1, b"x" * 600), DataFrame(1, b"y" * 400, flags=["END_STREAM"]))
        response = conn.response(1)
    assert response["status"] == 200 and response["body"] == b"%d bytes" % LIMIT


@pytest.mark.parametrize(("extra", "status"), [(9, 200), (10, 431)])
def test_header_count_limit(limited, extra, status):
    """Regular fields only (pseudo-headers do not count): x-marker plus ``extra``; 10 are allowed."""
    marker = new_marker()
    mark = limited.mark()
    with H2Conn(limited.port) as conn:
        fields = [(b"x-marker", marker.encode())] + [(b"x-f%d" % i, b"v") for i in range(extra)]
        conn.send(conn.request(1, "/", extra=fields))
        assert conn.response(1)["status"] == status
        conn.send(conn.request(3, "/", extra=[(b"x-marker", (marker + "-barrier").encode())]))
        assert conn.response(3)["status"] == 200
    limited.wait_for_line(f"SAW {marker}-barrier", start=mark)
    assert saw(limited, mark, marker) == (status == 200)


def refused_then_next_served(server: ServerProcess, path: str, fields: list, status: int | None) -> None:
    """Stream 1 (``path``, ``fields``) gets ``status`` (None: 200 and the app saw it); stream 3 is served."""
    marker = new_marker()
    mark = server.mark()
    with H2Conn(server.port) as conn:
        conn.send(conn.request(1, path, extra=[(b"x-marker", marker.encode()), *fields]))
        assert conn.response(1)["status"] == (status or 200)
        conn.send(conn.request(3, "/", extra=[(b"x-marker", (marker + "-barrier").encode())]))
        assert conn.response(3)["status"] == 200
    server.wait_for_line(f"SAW {marker}-barrier", start=mark)
    assert saw(server, mark, marker) == (status is None)


@pytest.mark.parametrize(("length", "status"), [(LINE_LIMIT, None), (LINE_LIMIT + 1, 414)])
def test_path_longer_than_the_line_limit_is_414(limited, length, status):
    refused_then_next_served(limited, "/" + "p" * (length - 1), [], status)


@pytest.mark.parametrize(("length", "status"), [(FIELD_LIMIT, None), (FIELD_LIMIT + 1, 431)])
def test_field_longer_than_the_field_size_limit_is_431(limited, length, status):
    """Name plus value: ``x-long`` (6 bytes) and the rest."""
    refused_then_next_served(limited, "/", [(b"x-long", b"v" * (length - 6))], status)
