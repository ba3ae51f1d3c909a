"""Application errors and ASGI protocol misuse by the app."""

import uuid

import pytest

from tests.support.probes import probe_result
from tests.support.raw import build_request


def _assert_alive(server):
    with server.raw() as conn:
        assert conn.request("GET", "/fixed?size=2").body == b"xx"


def test_exception_before_start_gives_500_and_is_logged(router_server):
    mark = router_server.mark()
    with router_server.client() as c:
        r = c.get("/error/before-start")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/plain")
    router_server.wait_for_line("Exception in ASGI application", start=mark)
    router_server.wait_for_line("Traceback (most recent call last)", start=mark)
    router_server.wait_for_line("RuntimeError: boom-before-start", start=mark)
    _assert_alive(router_server)


def test_exception_after_start_chunked_truncates(router_server):
    mark = router_server.mark()
    with router_server.raw() as conn:
        conn.send(build_request("GET", "/error/after-start-chunked"))
        r = conn.read_response(allow_incomplete=True)
        assert r.status == 200
        assert r.chunked
        assert not r.complete, "the response looked complete (terminating 0-chunk sent) after an app exception"
        assert r.body in (b"", b"partial")
        assert conn.is_closed(timeout=5)
    router_server.wait_for_line("Exception in ASGI application", start=mark)
    _assert_alive(router_server)


def test_exception_after_start_content_length_truncates(router_server):
    mark = router_server.mark()
    with router_server.raw() as conn:
        conn.send(build_request("GET", "/error/after-start-cl"))
        r = conn.read_response(allow_incomplete=True)
        assert r.status == 200
        assert r.header("content-length") == "100"
        assert not r.complete
        assert len(r.body) < 100
        assert conn.is_closed(timeout=5)
    router_server.wait_for_line("Exception in ASGI application", start=mark)
    _assert_alive(router_server)


def test_return_without_response_gives_500(router_server):
    mark = router_server.mark()
    with router_server.client() as c:
        r = c.get("/error/no-response")
    assert r.status_code == 500
    router_server.wait_for_line("ASGI callable returned without starting response.", start=mark)
    _assert_alive(router_server)


def test_return_without_completing_response_truncates(router_server):
    with router_server.raw() as conn:
        conn.send(build_request("GET", "/error/incomplete-return"))
        r = conn.read_response(allow_incomplete=True)
        assert r.status == 200
        assert not r.complete, "a response the app never completed looked complete"
        assert conn.is_closed(timeout=5)
    _assert_alive(router_server)


def test_server_keeps_serving_after_500(router_server):
    with router_server.client() as c:
        assert c.get("/error/before-start").status_code == 500
        assert c.get("/fixed?size=3").text == "xxx"


ACCEPTABLE = {"RuntimeError", "ValueError", "TypeError"}

# case -> what a correct server puts on the wire
BEFORE_START_CASES = [
    "body-before-start",
    "status-1000",
    "status-99",
    "status-str",
    "status-missing",
    "header-name-crlf",
    "header-name-lf",
    "header-name-nul",
    "header-value-crlf",
    "header-value-lf",
    "header-value-cr",
    "header-value-nul",
    "too-many-headers",
    "unknown-type",
    "content-length-not-a-number",
    "content-length-first-of-two-bad",
]


def _misuse(server, case):
    pid = f"misuse-{case}-{uuid.uuid4().hex}"
    with server.raw() as conn:
        conn.send(build_request("GET", f"/misuse?case={case}&id={pid}"))
        head = conn.read_head()  # None: closed without a response (acceptable); malformed: AssertionError
        resp = None
        if head is not None:
            conn.buf = head.raw_head + conn.buf
            resp = conn.read_response(allow_incomplete=True)
            trailing = b""
            if resp.complete:
                # nothing may follow the response: a well-formed next response must come for a next request
                conn.send(build_request("GET", "/fixed?size=1"))
                try:
                    nxt = conn.read_response()
                    assert nxt.status == 200 and nxt.body == b"x", nxt
                except AssertionError as e:
                    if "closed before a response" not in str(e):
                        raise
            else:
                trailing = conn.read_until_eof()
                assert trailing == b""
    result = probe_result(server, pid)
    return resp, result


def _assert_raised_properly(result):
    send = result["send"]
    assert send["raised"] is not None, f"send() accepted an invalid message: {result}"
    assert ACCEPTABLE & set(send["mro"]), f"send() raised {send['raised']} ({send['mro']})"


@pytest.mark.parametrize("case", BEFORE_START_CASES)
def test_misuse_before_start(router_server, case):
    resp, result = _misuse(router_server, case)
    _assert_raised_properly(result)
    if resp is not None:
        assert b"injected" not in resp.raw_head.lower(), resp.raw_head
        assert resp.header("x-bad") is None
        # the app recovered with a valid response, or the server answered 500 for it
        if resp.status == 200:
            assert resp.body == b"recovered"
        else:
            assert resp.status == 500, resp
    _assert_alive(router_server)


@pytest.mark.parametrize("case", ["double-start", "body-not-bytes"])
def test_misuse_after_start(router_server, case):
    resp, result = _misuse(router_server, case)
    _assert_raised_properly(result)
    if resp is not None:
        assert resp.header("x-second") is None
        assert resp.status == 200
        if resp.complete:
            assert resp.body == b"ok"
    _assert_alive(router_server)


@pytest.mark.parametrize("case", ["after-complete-body", "after-complete-start"])
def test_message_after_response_complete(router_server, case):
    resp, result = _misuse(router_server, case)
    _assert_raised_properly(result)
    assert resp is not None and resp.complete and resp.status == 200 and resp.body == b"ok"
    assert resp.header("x-second") is None
    _assert_alive(router_server)


def test_body_longer_than_content_length(router_server):
    """Content-Length is enforced: the extra bytes must never reach the wire (they would be read as the start
    of the next response on a kept-alive connection)."""
    resp, result = _misuse(router_server, "body-longer-than-content-length")
    _assert_raised_properly(result)
    if resp is not None:
        assert resp.status == 200
        assert resp.body in (b"", b"123")
    _assert_alive(router_server)


def test_body_shorter_than_content_length(router_server):
    """A response that ends before Content-Length bytes were sent must not look complete: send() raises and
    the connection is closed (the _misuse helper reads to EOF when the body is short)."""
    resp, result = _misuse(router_server, "body-shorter-than-content-length")
    _assert_raised_properly(result)
    if resp is not None:
        assert resp.status == 200
        assert not resp.complete
    _assert_alive(router_server)
