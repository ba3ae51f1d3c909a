"""RFC 9112 message framing (§6, §7) and request-target (§3.2) checks over raw sockets: every ambiguous or invalid
request is answered by the server with the status the RFC requires, never reaches the app, and closes the connection
where it must. The app (tests/apps/witness.py) logs ``SAW <marker>`` for each request it is given; each request here
carries its own ``X-Marker``. docs/hardening.md has the table of cases."""

from __future__ import annotations

import uuid

import pytest

from tests.support.raw import chunked
from tests.support.server import ServerProcess

INVALID = "Invalid HTTP request received."


@pytest.fixture(scope="module")
def witness():
    srv = ServerProcess.ferrocorn("tests.apps.witness:app")
    srv.wait_ready()
    yield srv
    srv.close()


def request(line: bytes, *fields: bytes, body: bytes = b"", marker: str = "-", host: bool = True) -> bytes:
    head = [line]
    if host:
        head.append(b"Host: x")
    head.append(b"X-Marker: " + marker.encode())
    head.extend(fields)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def new_marker() -> str:
    return "m" + uuid.uuid4().hex[:16]


def sync_log(server: ServerProcess, mark: int, marker: str) -> list:
    """The log lines since ``mark``, once a request sent after the one under test has reached the app."""
    barrier = marker + "-barrier"
    with server.raw() as conn:
        conn.send(request(b"GET / HTTP/1.1", marker=barrier))
        assert conn.read_response().status == 200
    server.wait_for_line(f"SAW {barrier} ", start=mark)
    return server.lines_since(mark)


def assert_refused(server: ServerProcess, payload: bytes, marker: str, status: int) -> None:
    mark = server.mark()
    with server.raw() as conn:
        conn.send(payload)
        response = conn.read_response()
        assert response.status == status, (response.status, response.body)
        assert conn.is_closed(timeout=5), "the connection stayed open after a refused request"
    lines = sync_log(server, mark, marker)
    assert not [line for line in lines if line.startswith(f"SAW {marker} ")], "the app saw a refused request"
    assert any(INVALID in line for line in lines), lines


def assert_served(server: ServerProcess, payload: bytes, marker: str, body: bytes = b"0 bytes") -> None:
    mark = server.mark()
    with server.raw() as conn:
        conn.send(payload)
        response = conn.read_response()
        assert response.status == 200, (response.status, response.body)
        assert response.body == body
    server.wait_for_line(f"SAW {marker} ", start=mark)


# ------------------------------------------------------------------------------------------ refused

POST = b"POST / HTTP/1.1"
TE = b"Transfer-Encoding: "
EMPTY_CHUNKED = b"0\r\n\r\n"

# name -> (request line, extra field lines, body, status)
REFUSED = {
    # Transfer-Encoding (RFC 9112 §6.1, §6.3)
    "te-chunked-twice-in-one-line": (POST, [TE + b"chunked, chunked"], EMPTY_CHUNKED, 400),
    "te-chunked-on-two-lines": (POST, [TE + b"chunked", TE + b"chunked"], EMPTY_CHUNKED, 400),
    "te-second-line-empty": (POST, [TE + b"chunked", TE], EMPTY_CHUNKED, 400),
    "te-chunked-with-parameter-then-chunked": (POST, [TE + b"chunked;x=1, chunked"], EMPTY_CHUNKED, 400),
    "te-chunked-not-last": (POST, [TE + b"chunked, gzip"], EMPTY_CHUNKED, 400),
    "te-unknown-coding-alone": (POST, [TE + b"gzip"], b"", 400),
    "te-lookalike": (POST, [TE + b"xchunked"], b"", 400),
    "te-quoted": (POST, [TE + b'"chunked"'], EMPTY_CHUNKED, 400),
    "te-trailing-comma": (POST, [TE + b"chunked,"], EMPTY_CHUNKED, 400),
    "te-in-http10": (b"POST / HTTP/1.0", [TE + b"chunked"], EMPTY_CHUNKED, 400),
    "te-gzip-then-chunked": (POST, [TE + b"gzip, chunked"], EMPTY_CHUNKED, 501),
    "te-identity-then-chunked": (POST, [TE + b"identity, chunked"], EMPTY_CHUNKED, 501),
    "te-unknown-then-chunked-cl": (POST, [b"Content-Length: 5", TE + b"foo, chunked"], EMPTY_CHUNKED, 501),
    # Content-Length (RFC 9112 §6.3, RFC 9110 §8.6)
    "cl-differing": (POST, [b"Content-Length: 3", b"Content-Length: 4"], b"abcd", 400),
    "cl-non-numeric": (POST, [b"Content-Length: abc"], b"", 400),
    "cl-signed": (POST, [b"Content-Length: +3"], b"abc", 400),
    "cl-negative": (POST, [b"Content-Length: -3"], b"", 400),
    "cl-list": (POST, [b"Content-Length: 3, 3"], b"abc", 400),
    "cl-overflow": (POST, [b"Content-Length: 99999999999999999999999"], b"", 400),
    # request-target (RFC 9112 §3.2)
    "asterisk-form-with-get": (b"GET * HTTP/1.1", [], b"", 400),
    "authority-form-with-get": (b"GET example.com:443 HTTP/1.1", [], b"", 400),
    "connect-with-origin-form": (b"CONNECT /path HTTP/1.1", [], b"", 400),
    "connect-with-absolute-form": (b"CONNECT http://example.com/ HTTP/1.1", [], b"", 400),
    "target-raw-utf8": ("GET /caf\u00e9 HTTP/1.1".encode(), [], b"", 400),
    "target-raw-latin1": (b"GET /caf\xe9 HTTP/1.1", [], b"", 400),
    "target-control": (b"GET /a\x01b HTTP/1.1", [], b"", 400),
    "target-del": (b"GET /a\x7fb HTTP/1.1", [], b"", 400),
    "target-tab": (b"GET /a\tb HTTP/1.1", [], b"", 400),
    "target-space": (b"GET /a b HTTP/1.1", [], b"", 400),
    "target-nul": (b"GET /a\x00b HTTP/1.1", [], b"", 400),
    # request line (RFC 9112 §3)
    "two-spaces-in-request-line": (b"GET  / HTTP/1.1", [], b"", 400),
    "lowercase-version": (b"GET / http/1.1", [], b"", 400),
    "unknown-version": (b"GET / HTTP/1.2", [], b"", 400),
    "http2-version-over-http1": (b"GET / HTTP/2.0", [], b"", 400),
    "bare-cr-in-request-line": (b"GET / HTTP/1.1\rX: y", [], b"", 400),
    # field lines (RFC 9112 §5, RFC 9110 §5.5)
    "obs-fold": (b"GET / HTTP/1.1", [b"X-A: a", b" folded"], b"", 400),
    "whitespace-before-colon": (b"GET / HTTP/1.1", [b"X-A : a"], b"", 400),
    "tab-before-colon": (b"GET / HTTP/1.1", [b"X-A\t: a"], b"", 400),
    "whitespace-before-first-field": (b"GET / HTTP/1.1\r\n X-A: a", [], b"", 400),
    "field-without-colon": (b"GET / HTTP/1.1", [b"NoColon"], b"", 400),
    "empty-field-name": (b"GET / HTTP/1.1", [b": a"], b"", 400),
    "control-in-field-name": (b"GET / HTTP/1.1", [b"X\x01A: a"], b"", 400),
    "delimiter-in-field-name": (b"GET / HTTP/1.1", [b"X@A: a"], b"", 400),
    "nul-in-field-value": (b"GET / HTTP/1.1", [b"X-A: a\x00b"], b"", 400),
    "control-in-field-value": (b"GET / HTTP/1.1", [b"X-A: a\x01b"], b"", 400),
    "del-in-field-value": (b"GET / HTTP/1.1", [b"X-A: a\x7fb"], b"", 400),
    "bare-cr-in-field-value": (b"GET / HTTP/1.1", [b"X-A: a\rb"], b"", 400),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_before_the_app(witness, name):
    line, fields, body, status = REFUSED[name]
    marker = new_marker()
    assert_refused(witness, request(line, *fields, body=body, marker=marker), marker, status)


def test_host_errors_are_logged_and_never_reach_the_app(witness):
    marker = new_marker()
    assert_refused(witness, request(b"GET / HTTP/1.1", b"Host: y", marker=marker), marker, 400)


@pytest.mark.parametrize("te", [b"chunked, chunked", b"gzip, chunked"])
def test_refusal_is_not_followed_by_the_smuggled_request(witness, te):
    """What follows a refused chunked request on the connection is never served as a request of its own."""
    marker, smuggled = new_marker(), new_marker()
    payload = request(POST, TE + te, body=EMPTY_CHUNKED, marker=marker) + request(b"GET / HTTP/1.1", marker=smuggled)
    mark = witness.mark()
    with witness.raw() as conn:
        conn.send(payload)
        assert conn.read_response().status in (400, 501)
        assert conn.is_closed(timeout=5)
    lines = sync_log(witness, mark, marker)
    assert not [line for line in lines if line.startswith((f"SAW {marker} ", f"SAW {smuggled} "))]


# ------------------------------------------------------------------------------------------ body errors


BODY_ERRORS = {
    "chunk-size-overflow": b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk-size-not-hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk-size-leading-space": b" 3\r\nabc\r\n0\r\n\r\n",
    "chunk-without-crlf": b"3\r\nabcXX0\r\n\r\n",
    "chunk-extension-with-bare-lf": b"3;a\nabc\r\n0\r\n\r\n",
    "chunk-extension-with-bare-cr": b"3;a\rb\r\nabc\r\n0\r\n\r\n",
    "chunk-extensions-over-16k": b"3;" + b"a" * 17000 + b"\r\nabc\r\n0\r\n\r\n",
    "invalid-trailer-field": b"3\r\nabc\r\n0\r\nX T: 1\r\n\r\n",
    "trailer-obs-fold": b"3\r\nabc\r\n0\r\nX-T: 1\r\n folded\r\n\r\n",
}


@pytest.mark.parametrize("name", list(BODY_ERRORS))
def test_invalid_chunked_body_is_400_and_the_app_gets_a_disconnect(witness, name):
    """The head was valid, so the app has the request; the body breaks off: receive() gives http.disconnect, never a
    complete body, and the client gets 400 and a closed connection."""
    marker = new_marker()
    mark = witness.mark()
    with witness.raw() as conn:
        conn.send(request(POST, TE + b"chunked", body=BODY_ERRORS[name], marker=marker))
        response = conn.read_response()
        assert response.status == 400, (response.status, response.body)
        assert conn.is_closed(timeout=5)
    lines = sync_log(witness, mark, marker)
    received = [line for line in lines if line.startswith(f"RECEIVED {marker} ")]
    assert received and received[-1].startswith(f"RECEIVED {marker} http.disconnect"), lines
    assert not [line for line in lines if line == f"DONE {marker}"]


# ------------------------------------------------------------------------------------------ accepted


def test_content_length_with_transfer_encoding_is_served_then_closed(witness):
    """RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and the connection closes after the response, so
    the bytes after the chunked body are never read as a request."""
    marker, smuggled = new_marker(), new_marker()
    payload = request(POST, b"Content-Length: 4", TE + b"chunked", body=chunked(b"abc"), marker=marker) + request(
        b"GET / HTTP/1.1", marker=smuggled
    )
    mark = witness.mark()
    with witness.raw() as conn:
        conn.send(payload)
        response = conn.read_response()
        assert response.status == 200 and response.body == b"3 bytes"
        assert conn.is_closed(timeout=5)
    lines = sync_log(witness, mark, marker)
    assert [line for line in lines if line.startswith(f"SAW {marker} ")]
    assert not [line for line in lines if line.startswith(f"SAW {smuggled} ")]


ACCEPTED = {
    # RFC 9110 §5.6.1: empty list elements are ignored.
    "te-empty-list-element": (POST, [TE + b" , chunked"], chunked(b"abc"), b"3 bytes"),
    "te-mixed-case": (POST, [TE + b"Chunked"], chunked(b"abc"), b"3 bytes"),
    # RFC 9110 §8.6: identical Content-Length field lines may be accepted as one.
    "cl-identical-lines": (POST, [b"Content-Length: 3", b"Content-Length: 3"], b"abc", b"3 bytes"),
    "options-asterisk-form": (b"OPTIONS * HTTP/1.1", [], b"", b"0 bytes"),
    "absolute-form": (b"GET http://x/path?q=1 HTTP/1.1", [], b"", b"0 bytes"),
    # RFC 9112 §7.1.1: unknown chunk extensions are ignored; §7.1.2: trailer fields are not part of the body.
    "chunk-extensions": (POST, [TE + b"chunked"], b'3;a=b;c="d e"\r\nabc\r\n0;z\r\n\r\n', b"3 bytes"),
    "trailer-fields": (POST, [TE + b"chunked"], b"3\r\nabc\r\n0\r\nX-T: 1\r\nContent-Length: 9\r\n\r\n", b"3 bytes"),
    # RFC 9110 §5.5: obs-text is allowed in field values.
    "obs-text-in-field-value": (b"GET / HTTP/1.1", [b"X-A: caf\xe9"], b"", b"0 bytes"),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted(witness, name):
    line, fields, body, answer = ACCEPTED[name]
    marker = new_marker()
    assert_served(witness, request(line, *fields, body=body, marker=marker), marker, answer)


def test_bare_lf_line_endings_are_accepted(witness):
    """RFC 9112 §2.2: a recipient MAY recognise a single LF as a line terminator (and hyper does)."""
    marker = new_marker()
    assert_served(witness, f"GET / HTTP/1.1\nHost: x\nX-Marker: {marker}\n\n".encode(), marker)


def test_leading_empty_line_is_ignored(witness):
    """RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line."""
    marker = new_marker()
    assert_served(witness, b"\r\n" + request(b"GET / HTTP/1.1", marker=marker), marker)


def test_connect_with_authority_form_reaches_the_app(witness):
    marker = new_marker()
    mark = witness.mark()
    with witness.raw() as conn:
        conn.send(request(b"CONNECT example.com:443 HTTP/1.1", marker=marker))
        witness.wait_for_line(f"SAW {marker} CONNECT", start=mark)
