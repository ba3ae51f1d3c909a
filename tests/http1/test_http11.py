"""HTTP/1.1 and HTTP/1.0 behaviour on the wire: keep-alive, pipelining, framing, HEAD, Connection: close,
100-continue, default headers, malformed requests."""

import email.utils
import re
import time
import uuid

import pytest

from tests.support.probes import decode_json, probe_result
from tests.support.raw import build_request, chunked

# ------------------------------------------------------------------------------------------ keep-alive


def test_keep_alive_reuses_connection(router_server):
    with router_server.raw() as conn:
        r1 = conn.request("GET", "/scope/one")
        r2 = conn.request("GET", "/scope/two")
        r3 = conn.request("POST", "/echo", body=b"third")
    assert r1.status == r2.status == r3.status == 200
    s1, s2 = r1.json()["scope"], r2.json()["scope"]
    assert s1["path"] == "/scope/one" and s2["path"] == "/scope/two"
    # the same TCP connection served both
    assert s1["client"] == s2["client"]
    assert r3.body == b"third"


def test_httpx_keep_alive_same_client_port(router_server):
    with router_server.client() as c:
        ports = {decode_json(c.get("/scope").json())["scope"]["client"][1] for _ in range(5)}
    assert len(ports) == 1


def test_pipelining_three_requests_in_one_write(router_server):
    with router_server.raw() as conn:
        conn.send(
            build_request("GET", "/scope/first")
            + build_request("POST", "/echo", body=b"second-body")
            + build_request("GET", "/chunked?parts=th,ir,d")
        )
        r1 = conn.read_response()
        r2 = conn.read_response()
        r3 = conn.read_response()
        # nothing more and the connection stays usable
        r4 = conn.request("GET", "/fixed?size=4")
    assert r1.status == 200 and r1.json()["scope"]["path"] == "/scope/first"
    assert r2.status == 200 and r2.body == b"second-body"
    assert r3.status == 200 and r3.body == b"third"
    assert r4.body == b"xxxx"


def test_pipelining_slow_first_request_keeps_order(router_server):
    with router_server.raw() as conn:
        conn.send(build_request("GET", "/slow?delay=0.3&tag=p1") + build_request("GET", "/fixed?size=2"))
        r1 = conn.read_response()
        r2 = conn.read_response()
    assert r1.body == b"slept p1"
    assert r2.body == b"xx"


# ------------------------------------------------------------------------------------------ request bodies


def test_content_length_request_body(router_server):
    body = bytes(range(256)) * 1000
    with router_server.client() as c:
        r = c.post("/echo", content=body)
    assert r.status_code == 200
    assert r.content == body


def test_chunked_request_body_raw(router_server):
    with router_server.raw() as conn:
        req = build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False)
        conn.send(req + chunked(b"hello ", b"chunked ", b"world"))
        r = conn.read_response()
    assert r.status == 200
    assert r.body == b"hello chunked world"


def test_chunked_request_body_with_extensions_and_trailers(router_server):
    with router_server.raw() as conn:
        req = build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False)
        conn.send(req + b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = conn.read_response()
        r2 = conn.request("GET", "/fixed?size=1")  # connection still in sync
    assert r.body == b"hello"
    assert r2.body == b"x"


def test_chunked_request_body_httpx_generator(router_server):
    def gen():
        for i in range(50):
            yield bytes([i]) * 1000

    with router_server.client() as c:
        r = c.post("/echo", content=gen())
    assert r.content == b"".join(bytes([i]) * 1000 for i in range(50))


def test_empty_body_post(router_server):
    with router_server.raw() as conn:
        r = conn.request("POST", "/echo", body=b"")
    assert r.status == 200 and r.body == b""


def _second_response_or_close(conn, expected_body):
    """After a request whose body the app never read, the server must either skip that body and serve the
    next request, or close the connection; it must never parse the unread body as a request."""
    head = conn.read_head()
    if head is None:
        return "closed"
    conn.buf = head.raw_head + conn.buf
    r = conn.read_response()
    assert r.status == 200 and r.body == expected_body, r
    return "served"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_unread_request_body_then_pipelined_request(router_server, framing):
    body = b"GET /scope/smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 3  # looks like requests if misparsed
    if framing == "chunked":
        first = build_request(
            "POST", "/fixed?size=2", headers=[("Transfer-Encoding", "chunked")], content_length=False
        ) + chunked(body)
    else:
        first = build_request("POST", "/fixed?size=2", body=body)
    with router_server.raw() as conn:
        conn.send(first + build_request("GET", "/fixed?size=3"))
        r1 = conn.read_response()
        assert r1.status == 200 and r1.body == b"xx"
        _second_response_or_close(conn, b"xxx")


def test_large_unread_request_body_on_keep_alive(router_server):
    body = b"z" * (1024 * 1024)
    with router_server.raw() as conn:
        conn.send(build_request("POST", "/fixed?size=2", body=body))
        r1 = conn.read_response()
        assert r1.status == 200 and r1.body == b"xx"
        try:
            conn.send(build_request("GET", "/fixed?size=3"))
        except (BrokenPipeError, ConnectionResetError):
            return  # the server chose to close instead of draining: allowed
        _second_response_or_close(conn, b"xxx")


def test_large_request_header_accepted(router_server):
    cookie = "c=" + "v" * 8000
    with router_server.raw() as conn:
        r = conn.request("GET", "/scope", headers=[("Cookie", cookie)])
    assert r.status == 200
    assert (b"cookie", cookie.encode()) in [tuple(h) for h in r.json()["scope"]["headers"]]


def test_absolute_form_request_target(router_server):
    # RFC 9112 3.2.2: a server MUST accept the absolute form
    with router_server.raw() as conn:
        r = conn.request("GET", "http://testserver/scope/abs?x=1")
    assert r.status == 200
    scope = r.json()["scope"]
    assert scope["path"] == "/scope/abs"
    assert scope["raw_path"] == b"/scope/abs"
    assert scope["query_string"] == b"x=1"


def test_many_simultaneous_connections(router_server):
    conns = [router_server.raw(timeout=20) for _ in range(100)]
    try:
        for i, conn in enumerate(conns):
            conn.send(build_request("GET", f"/scope/c{i}"))
        for i, conn in enumerate(conns):
            r = conn.read_response()
            assert r.status == 200 and r.json()["scope"]["path"] == f"/scope/c{i}"
    finally:
        for conn in conns:
            conn.close()


def test_keep_alive_timeout_closes_idle_connection(start_server):
    srv = start_server("tests.apps.router:app", "--timeout-keep-alive", "1")
    with srv.raw(timeout=15) as conn:
        assert conn.request("GET", "/fixed?size=1").status == 200
        assert conn.is_closed(timeout=10), "idle connection not closed by --timeout-keep-alive 1"
    # a connection that keeps making requests is not cut
    with srv.raw(timeout=15) as conn:
        for _ in range(3):
            assert conn.request("GET", "/fixed?size=1").status == 200


# ------------------------------------------------------------------------------------------ responses


def test_chunked_response(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/chunked?parts=alpha,beta,gamma")
    assert r.status == 200
    assert r.chunked
    assert r.header("content-length") is None
    assert r.body == b"alphabetagamma"


def test_fixed_length_response(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/fixed?size=1234")
    assert r.header("content-length") == "1234"
    assert not r.chunked
    assert r.body == b"x" * 1234


def test_duplicate_response_headers_kept(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/headers")
    assert r.header_all("set-cookie") == ["a=1", "b=2"]
    assert r.header("x-custom") == "custom-value"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(router_server, code):
    with router_server.raw() as conn:
        r = conn.request("GET", f"/status?code={code}")
        assert r.status == code
        assert r.header("transfer-encoding") is None
        r2 = conn.request("GET", "/fixed?size=3")  # no stray body bytes were sent
    assert r2.body == b"xxx"


@pytest.mark.parametrize("code", [201, 404, 418, 503, 599])
def test_status_codes(router_server, code):
    with router_server.raw() as conn:
        r = conn.request("GET", f"/status?code={code}")
    assert r.status == code


@pytest.mark.parametrize("target", ["/fixed?size=10", "/chunked?parts=a,b"])
def test_head_has_no_body(router_server, target):
    with router_server.raw() as conn:
        r = conn.request("HEAD", target)
        assert r.status == 200
        if "fixed" in target:
            assert r.header("content-length") == "10"
        # the next response on the same connection must start right away (no stray body bytes)
        r2 = conn.request("GET", "/fixed?size=2")
    assert r2.status == 200 and r2.body == b"xx"


def test_connection_close_is_honoured(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/fixed?size=3", headers=[("Connection", "close")])
        assert r.body == b"xxx"
        assert conn.is_closed(timeout=5)


def test_connection_close_on_chunked_response(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/chunked?parts=x,y", headers=[("Connection", "close")])
        assert r.body == b"xy"
        assert conn.is_closed(timeout=5)


def test_connection_close_with_a_pipelined_request_behind_it(router_server):
    """RFC 9112 9.6: the server sends the response to the request carrying "close", then closes, and does not
    process the request pipelined behind it."""
    with router_server.raw() as conn:
        conn.send(
            build_request("GET", "/fixed?size=3", headers=[("Connection", "close")])
            + build_request("GET", "/scope/after-close")
        )
        r = conn.read_response()
        assert r.status == 200 and r.body == b"xxx"
        rest = conn.read_until_eof()
    assert rest == b""


def test_each_body_chunk_is_flushed_while_the_app_waits(router_server):
    pid = f"stream-{uuid.uuid4().hex}"
    with router_server.raw() as conn:
        conn.send(build_request("GET", f"/stream/wait?id={pid}"))
        probe_result(router_server, pid, key="first_sent")
        head = conn.read_head()
        assert head.status == 200
        # the first chunk must arrive while the app is still waiting (nothing buffered until the end)
        got = conn.buf
        conn.buf = b""
        deadline = time.monotonic() + 5
        while b"first-chunk" not in got and time.monotonic() < deadline:
            got += conn.recv_some(timeout=0.2)
        assert b"first-chunk" in got, f"first chunk not delivered while the app waits: {got!r}"
        router_server.get("/release", params={"id": pid})
        conn.buf = got
        rest = b""
        if head.header("transfer-encoding"):
            conn.buf = head.raw_head + got
            r = conn.read_response()
            assert r.body == b"first-chunksecond-chunk"
        else:
            rest = conn.read_until_eof()
            assert (got + rest).endswith(b"second-chunk")


def test_app_connection_close_header_closes_connection(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/app-connection-close")
        assert r.status == 200 and r.body == b"bye"
        assert conn.is_closed(timeout=5)


def test_app_transfer_encoding_header_is_not_applied_twice(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/app-transfer-encoding")
        assert r.status == 200
        assert r.body == b"abcdef"
        assert len(r.header_all("transfer-encoding")) == 1
        assert conn.request("GET", "/fixed?size=1").body == b"x"


def test_latin1_response_header_value(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/headers")
    assert b"\r\nx-latin1: caf\xe9\r\n" in r.raw_head


# ------------------------------------------------------------------------------------------ HTTP/1.0


def test_http10_without_keep_alive_closes(router_server):
    with router_server.raw() as conn:
        conn.send(build_request("GET", "/fixed?size=5", version="1.0"))
        r = conn.read_response()
        assert r.status == 200 and r.body == b"xxxxx"
        assert conn.is_closed(timeout=5)


def test_http10_no_host_header_is_fine(router_server):
    with router_server.raw() as conn:
        conn.send(b"GET /fixed?size=2 HTTP/1.0\r\n\r\n")
        r = conn.read_response()
    assert r.status == 200 and r.body == b"xx"


def test_http10_streaming_response_is_not_chunked(router_server):
    # RFC 9112 6.1: no Transfer-Encoding in a response to an HTTP/1.0 request; the body ends at close
    with router_server.raw() as conn:
        conn.send(build_request("GET", "/chunked?parts=one,two,three", version="1.0"))
        r = conn.read_response()
        assert r.status == 200
        assert r.header("transfer-encoding") is None
        assert r.body == b"onetwothree"
        assert conn.is_closed(timeout=5)


def test_http10_keep_alive(router_server):
    with router_server.raw() as conn:
        conn.send(build_request("GET", "/fixed?size=3", headers=[("Connection", "keep-alive")], version="1.0"))
        r = conn.read_response()
        assert r.status == 200 and r.body == b"xxx"
        if (r.header("connection") or "").lower() == "keep-alive":
            # advertised keep-alive: the connection must serve another HTTP/1.0 request
            conn.send(build_request("GET", "/scope", headers=[("Connection", "keep-alive")], version="1.0"))
            r2 = conn.read_response()
            assert r2.status == 200
            assert r2.json()["scope"]["http_version"] == "1.0"
        else:
            # not advertised: an HTTP/1.0 client assumes close, so the server must close
            assert conn.is_closed(timeout=5)


# ------------------------------------------------------------------------------------------ 100-continue


def test_100_continue_sent_only_when_app_receives(router_server):
    pid = f"continue-{uuid.uuid4().hex}"
    with router_server.raw() as conn:
        conn.send(
            build_request(
                "POST", f"/continue/wait?id={pid}", headers=[("Expect", "100-continue"), ("Content-Length", "11")]
            )
        )
        probe_result(router_server, pid, key="started")
        # the app is running but has not called receive(): no 100 Continue may have been sent
        early = conn.recv_some(timeout=0.3)
        assert early == b"", f"server sent {early!r} before the app called receive()"
        router_server.get("/release", params={"id": pid})
        interim = conn.read_head()
        assert interim is not None and interim.status == 100, interim
        conn.send(b"hello world")
        r = conn.read_response()
    assert r.status == 200
    assert r.body == b"hello world"


def test_no_100_continue_when_app_does_not_read_body(router_server):
    with router_server.raw() as conn:
        conn.send(build_request("POST", "/fixed?size=2", headers=[("Expect", "100-continue"), ("Content-Length", "5")]))
        r = conn.read_response(skip_interim=False)
    assert r.status == 200, "the final response must come without a 100 Continue"
    assert r.body == b"xx"


# ------------------------------------------------------------------------------------------ default headers


def _assert_http_date(value):
    dt = email.utils.parsedate_to_datetime(value)
    assert value.endswith(" GMT")
    assert abs(dt.timestamp() - time.time()) < 120


def test_default_server_and_date_headers(router_server):
    with router_server.raw() as conn:
        r = conn.request("GET", "/fixed?size=1")
        r2 = conn.request("GET", "/chunked?parts=a")
    for resp in (r, r2):
        assert resp.header_all("server") == ["ferrocorn"]
        assert len(resp.header_all("date")) == 1
        _assert_http_date(resp.header("date"))


def test_no_server_header_flag(start_server):
    srv = start_server("tests.apps.router:app", "--no-server-header")
    with srv.raw() as conn:
        r = conn.request("GET", "/fixed?size=1")
    assert r.header("server") is None
    _assert_http_date(r.header("date"))


def test_no_date_header_flag(start_server):
    srv = start_server("tests.apps.router:app", "--no-date-header")
    with srv.raw() as conn:
        r = conn.request("GET", "/fixed?size=1")
    assert r.header("date") is None
    assert r.header("server") == "ferrocorn"


def test_both_default_headers_off(start_server):
    srv = start_server("tests.apps.router:app", "--no-server-header", "--no-date-header")
    with srv.raw() as conn:
        r = conn.request("GET", "/fixed?size=1")
    assert r.header("date") is None and r.header("server") is None


# ------------------------------------------------------------------------------------------ malformed input

MALFORMED = {
    "garbage-request-line": b"GARBAGE\r\n\r\n",
    "bad-version": b"GET / HTTP/9.Z\r\nHost: x\r\n\r\n",
    "header-without-colon": b"GET / HTTP/1.1\r\nHost: x\r\nBadHeaderLine\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "nul-in-header-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad-content-length": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "negative-content-length": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "conflicting-content-lengths": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ),
    "space-in-method": b"G ET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-char-in-target": b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
    "missing-host-http11": b"GET /fixed HTTP/1.1\r\n\r\n",
    "unknown-transfer-encoding": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
}


def _assert_alive(server):
    with server.raw() as conn:
        assert conn.request("GET", "/fixed?size=2").body == b"xx"


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_400_and_close(router_server, name):
    with router_server.raw() as conn:
        conn.send(MALFORMED[name])
        r = conn.read_response()
        assert r.status == 400, f"{name}: {r.status} {r.body[:200]!r}"
        assert conn.is_closed(timeout=5)
    _assert_alive(router_server)


def test_malformed_after_valid_request_on_same_connection(router_server):
    with router_server.raw() as conn:
        assert conn.request("GET", "/fixed?size=1").status == 200
        conn.send(b"NOT HTTP AT ALL\r\n\r\n")
        r = conn.read_response()
        assert r.status == 400
        assert conn.is_closed(timeout=5)
    _assert_alive(router_server)


def test_invalid_chunk_size_is_not_a_success(router_server):
    with router_server.raw() as conn:
        conn.send(
            build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False)
            + b"zz\r\nhello\r\n0\r\n\r\n"
        )
        head = conn.read_head()
        # either a 400 before the app responded, or the connection is simply closed; never a success
        if head is not None:
            assert head.status == 400, head
        conn.read_until_eof()
    _assert_alive(router_server)


def test_content_length_and_transfer_encoding_close_after_response(router_server):
    # RFC 9112 6.1: reject, or process by Transfer-Encoding and close the connection afterwards.
    # The bytes after the chunked body must never be served as a second (smuggled) request.
    smuggled = build_request("GET", "/scope/smuggled")
    payload = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"abc")
        + smuggled
    )
    with router_server.raw() as conn:
        conn.send(payload)
        r = conn.read_response()
        assert r.status in (200, 400)
        if r.status == 200:
            assert r.body == b"abc"
        rest = conn.read_until_eof()
    assert b"smuggled" not in rest, "bytes after a CL+TE request were served as another request"
    assert rest == b""
    _assert_alive(router_server)


def test_oversized_headers_get_431(router_server):
    big = (
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 8000) for i in range(128))
        + b"\r\n"
    )
    with router_server.raw(timeout=10) as s:
        # send 1 MiB of headers in pieces; stop as soon as the server answers (it stops reading)
        for off in range(0, len(big), 16384):
            try:
                s.send(big[off : off + 16384])
            except (BrokenPipeError, ConnectionResetError):
                break
            if s.readable():
                break
        data = s.read_until_eof()  # a reset ends it too
    assert re.match(rb"HTTP/1\.[01] 431 ", data), data[:200]
    _assert_alive(router_server)


def test_many_bad_connections_then_good(router_server):
    for _ in range(20):
        with router_server.raw() as conn:
            conn.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)  # a TLS ClientHello
            conn.read_until_eof()
        with router_server.raw() as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # incomplete, then close
    _assert_alive(router_server)
