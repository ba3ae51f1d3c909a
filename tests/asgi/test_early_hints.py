"""The `http.response.early_hint` extension: a 103 Early Hints response written by the interim writer
(src/net/interim.rs) between hyper's HTTP/2 frames, before the stream's final HEADERS; on HTTP/1.1 (with
--early-hints-http1) as an interim `103` message once hyper has written out everything it had.

Every HTTP/2 response here is decoded with one HPACK decoder per connection, in order: a 103 whose header block
touched either dynamic table would break the decoding of the responses after it."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trustme
from hyperframe.frame import DataFrame, HeadersFrame, WindowUpdateFrame

from tests.support.h2 import H2Conn
from tests.support.raw import RawConn
from tests.support.server import ServerProcess

APP = "tests.apps.early_hints_app:app"
HINT = "http.response.early_hint"


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess.ferrocorn(APP)
    srv.wait_ready()
    yield srv
    srv.close()


def links(tag: str, i: int = 0, count: int = 1) -> list[str]:
    return [f"</{tag}-{i}-{j}.css>; rel=preload; as=style" for j in range(count)]


def stream_frames(frames: list, sid: int) -> list:
    return [f for f in frames if f is not None and f.stream_id == sid]


def ended(frames: list, sid: int) -> bool:
    return any("END_STREAM" in getattr(f, "flags", ()) for f in stream_frames(frames, sid))


def read_streams(conn: H2Conn, sids: set[int], timeout: float = 20.0) -> list:
    """Frames until every stream in ``sids`` has ended; flow-control windows are replenished as DATA arrives."""
    out: list = []
    deadline = time.monotonic() + timeout
    open_sids = set(sids)
    while open_sids:
        frame = conn.next_frame(max(0.01, deadline - time.monotonic()))
        assert frame is not None, f"EOF with streams {open_sids} open"
        out.append(frame)
        if isinstance(frame, DataFrame) and frame.data:
            conn.send(WindowUpdateFrame(0, window_increment=len(frame.data)))
            if "END_STREAM" not in frame.flags:
                conn.send(WindowUpdateFrame(frame.stream_id, window_increment=len(frame.data)))
        if "END_STREAM" in getattr(frame, "flags", ()) or type(frame).__name__ == "RstStreamFrame":
            open_sids.discard(frame.stream_id)
    return out


def interim_and_final(frames: list, sid: int) -> tuple[list[list[str]], dict, bytes]:
    """The 103s' link values (in order), the final response's headers and its body, for stream ``sid``; asserts
    the 103s all precede the final HEADERS and carry no END_STREAM."""
    hints: list[list[str]] = []
    final: dict | None = None
    body = b""
    for frame in stream_frames(frames, sid):
        if isinstance(frame, HeadersFrame):
            headers = frame.decoded
            status = dict(headers)[":status"]
            if status == "103":
                assert final is None, f"a 103 after the final response on stream {sid}"
                assert "END_STREAM" not in frame.flags
                assert "END_HEADERS" in frame.flags
                hints.append([v for k, v in headers if k == "link"])
            else:
                assert final is None, f"two final responses on stream {sid}"
                final = dict(headers)
        elif isinstance(frame, DataFrame):
            assert final is not None, "DATA before HEADERS"
            body += frame.data
    assert final is not None, f"no final response on stream {sid}"
    return hints, final, body


def h2_get(srv, path: str, settings: dict | None = None) -> tuple[list[list[str]], dict, bytes]:
    with H2Conn(srv.port, settings=settings) as conn:
        conn.send(conn.request(1, path))
        frames = read_streams(conn, {1})
    return interim_and_final(frames, 1)


# ============================================================================ the scope


def test_offered_on_http2(server):
    _, final, body = h2_get(server, "/extensions")
    assert final[":status"] == "200"
    assert HINT in json.loads(body)["extensions"]


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_not_offered_on_http1_by_default(server, version):
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", "/extensions", version=version)
    assert HINT not in response.json()["extensions"]
    with RawConn("127.0.0.1", server.port) as conn:
        # An app that sends one anyway gets uvicorn's error (the route records nothing: it fails).
        conn.send(b"GET /hint?tag=off HTTP/1.1\r\nHost: t\r\n\r\n")
        response = conn.read_response(skip_interim=False)
    assert response.status == 500


def test_not_offered_when_the_client_shrinks_its_hpack_table(server):
    # A decoder whose table was lowered may require a size update at the start of the next block, which only h2's
    # encoder can give: the interim writer does not write there, so the scope does not offer it.
    hints, _, body = h2_get(server, "/extensions", settings={0x1: 0})
    assert HINT not in json.loads(body)["extensions"]
    # An app that sends one anyway is refused (as where it is not offered at all), and no 103 goes out.
    hints, final, body = h2_get(server, "/hint?tag=shrunk", settings={0x1: 0})
    assert hints == [] and final[":status"] == "500"


# ============================================================================ HTTP/2 frames


def test_103_precedes_the_final_headers(server):
    hints, final, body = h2_get(server, "/hint?tag=one")
    assert hints == [links("one")]
    assert final[":status"] == "200"
    assert body == b"one"


def test_several_hints_in_order(server):
    hints, final, body = h2_get(server, "/hint?tag=many&n=3&links=2")
    assert hints == [links("many", i, 2) for i in range(3)]
    assert (final[":status"], body) == ("200", b"many")


def test_hint_before_a_streamed_body_and_after_a_delay(server):
    hints, final, body = h2_get(server, "/hint-stream?tag=stream")
    assert hints == [links("stream")] and body == b"one two three"
    hints, final, body = h2_get(server, "/hint?tag=slow&delay=0.3")
    assert hints == [links("slow")] and body == b"slow"


def test_hint_after_start_is_an_error_and_the_connection_goes_on(server):
    with H2Conn(server.port) as conn:
        conn.send(conn.request(1, "/hint-after-start?id=late"))
        frames = read_streams(conn, {1})
        hints, final, body = interim_and_final(frames, 1)
        assert hints == [] and final[":status"] == "200" and body == b"started"
        conn.send(conn.request(3, "/probe?id=late"))
        conn.send(conn.request(5, "/hint?tag=after"))
        frames = read_streams(conn, {3, 5})
        _, _, probe = interim_and_final(frames, 3)
        assert json.loads(probe)["result"] == (
            "RuntimeError: Expected ASGI message 'http.response.body', but got 'http.response.early_hint'."
        )
        assert interim_and_final(frames, 5)[0] == [links("after")]


def test_invalid_link_value_is_an_error(server):
    with H2Conn(server.port) as conn:
        conn.send(conn.request(1, "/hint-bad?id=bad"))
        hints, final, body = interim_and_final(read_streams(conn, {1}), 1)
        assert hints == [] and body == b"bad"
        conn.send(conn.request(3, "/probe?id=bad"))
        _, _, probe = interim_and_final(read_streams(conn, {3}), 3)
    assert 'RuntimeError: Invalid HTTP header value for "link".' == json.loads(probe)["result"]


def test_many_streams_hints_interleaved_with_large_responses(server):
    # Hinted streams and large responses on others, all on one connection: each hint lands on its own stream (its
    # link names it), before its response, and every header block decodes (both HPACK tables stay in step).
    size = 300_000
    with H2Conn(server.port, settings={0x4: 1 << 20}) as conn:
        conn.send(WindowUpdateFrame(0, window_increment=(1 << 30)))
        requests = []
        sids = set()
        for k in range(40):
            sid = 1 + 2 * k
            sids.add(sid)
            if k % 2:
                requests.append(conn.request(sid, f"/big?size={size}"))
            else:
                requests.append(conn.request(sid, f"/hint?tag=s{sid}&n=2&links=3&delay=0.0{k % 5}"))
        conn.send(*requests)
        frames = read_streams(conn, sids, timeout=60)
    for k in range(40):
        sid = 1 + 2 * k
        hints, final, body = interim_and_final(frames, sid)
        assert final[":status"] == "200"
        if k % 2:
            assert hints == [] and len(body) == size
        else:
            assert hints == [links(f"s{sid}", i, 3) for i in range(2)]
            assert body == f"s{sid}".encode()


def test_hint_waits_behind_a_reader_that_stopped(server):
    # The socket is full of a large response the client does not read; a hinted request meanwhile must still get
    # its 103 between two whole frames, before its 200, once the client reads again.
    size = 4 << 20
    with H2Conn(server.port, settings={0x4: (1 << 31) - 1}, rcvbuf=16384) as conn:
        conn.send(WindowUpdateFrame(0, window_increment=(1 << 31) - 1 - 65535))
        conn.send(conn.request(1, f"/big?size={size}"))
        time.sleep(0.5)  # the server fills the socket buffers
        conn.send(conn.request(3, "/hint?tag=blocked"))
        time.sleep(0.5)
        frames = read_streams(conn, {1, 3}, timeout=60)
    assert interim_and_final(frames, 3)[:2][0] == [links("blocked")]
    _, final, body = interim_and_final(frames, 1)
    assert final[":status"] == "200" and len(body) == size


# ============================================================================ a real HTTP/2 stack: the h2 library


def h2_library_exchange(sock, path: str, authority: str, scheme: str) -> tuple[list, int, bytes]:
    """One request through the h2 library's state machine (which rejects a misplaced 1xx): its informational
    responses' headers, the final status and the body."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    conn.send_headers(1, [(":method", "GET"), (":scheme", scheme), (":path", path), (":authority", authority)])
    conn.end_stream(1)
    sock.sendall(conn.data_to_send())
    informational: list = []
    status = None
    body = b""
    done = False
    deadline = time.monotonic() + 10
    while not done and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.InformationalResponseReceived):
                assert status is None
                informational.append(event.headers)
            elif isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                done = True
            elif isinstance(event, h2.events.ConnectionTerminated | h2.events.StreamReset):
                raise AssertionError(f"unexpected {event}")
        sock.sendall(conn.data_to_send())
    assert done, "the response did not end"
    return informational, status, body


def test_h2_library_sees_the_103_over_h2c(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        informational, status, body = h2_library_exchange(sock, "/hint?tag=lib&links=2", "127.0.0.1", "http")
    assert [dict(h)[":status"] for h in informational] == ["103"]
    assert [v for k, v in informational[0] if k == "link"] == links("lib", 0, 2)
    assert (status, body) == (200, b"lib")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    root = tmp_path_factory.mktemp("hints-pki")
    (root / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    (root / "key.pem").write_bytes(cert.private_key_pem.bytes())
    (root / "ca.pem").write_bytes(ca.cert_pem.bytes())
    srv = ServerProcess.ferrocorn(
        APP, "--ssl-certfile", str(root / "cert.pem"), "--ssl-keyfile", str(root / "key.pem"), "--early-hints-http1"
    )
    srv.wait_ready()
    srv.ca_path = str(root / "ca.pem")
    yield srv
    srv.close()


def test_tls_h2_carries_the_103(tls_server):
    context = ssl.create_default_context(cafile=tls_server.ca_path)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "h2"
            informational, status, body = h2_library_exchange(sock, "/hint?tag=tls&n=2", "localhost", "https")
    assert [[v for k, v in h if k == "link"] for h in informational] == [links("tls", 0), links("tls", 1)]
    assert (status, body) == (200, b"tls")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize(("flag", "interim"), [("--http2", "HTTP/2 103"), ("--http1.1", "HTTP/1.1 103 Early Hints")])
def test_curl_over_tls_shows_the_103_first(tls_server, flag, interim):
    url = f"https://localhost:{tls_server.port}/hint?tag=curl&links=2"
    out = subprocess.run(
        ["curl", "-s", "-i", flag, "--cacert", tls_server.ca_path, url], capture_output=True, timeout=30, check=True
    ).stdout.decode()
    blocks = out.replace("\r\n", "\n").split("\n\n")
    assert blocks[0].splitlines()[0].strip() == interim, out
    assert [line.split(":", 1)[1].strip() for line in blocks[0].splitlines()[1:]] == links("curl", 0, 2)
    assert blocks[1].splitlines()[0].split()[1] == "200" and blocks[2] == "curl"


# ============================================================================ HTTP/1.1 (--early-hints-http1)


@pytest.fixture(scope="module")
def h1_server():
    srv = ServerProcess.ferrocorn(APP, "--early-hints-http1")
    srv.wait_ready()
    yield srv
    srv.close()


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def read_hints_and_response(conn: RawConn) -> tuple[list[list[str]], object]:
    """The 103s' Link values before the next final response, and that response."""
    hints = []
    while True:
        response = conn.read_response(skip_interim=False)
        if response.status != 103:
            return hints, response
        assert response.raw_head.startswith(b"HTTP/1.1 103 Early Hints\r\n")
        hints.append(response.header_all("link"))


@pytest.mark.parametrize(("version", "offered"), [("1.1", True), ("1.0", False)])
def test_http1_offered_with_the_option_but_never_to_http10(h1_server, version, offered):
    with RawConn("127.0.0.1", h1_server.port) as conn:
        response = conn.request("GET", "/extensions", version=version)
    assert (HINT in response.json()["extensions"]) is offered


def test_http1_103_then_the_response(h1_server):
    with RawConn("127.0.0.1", h1_server.port) as conn:
        conn.send(get("/hint?tag=h1&n=2&links=2"))
        hints, response = read_hints_and_response(conn)
        assert hints == [links("h1", 0, 2), links("h1", 1, 2)]
        assert (response.status, response.body) == (200, b"h1")
        # The connection is kept alive and serves the next request the same way.
        conn.send(get("/hint-stream?tag=next"))
        hints, response = read_hints_and_response(conn)
    assert hints == [links("next")] and response.body == b"one two three"


def test_http1_pipelined_requests_keep_their_order(h1_server):
    with RawConn("127.0.0.1", h1_server.port) as conn:
        conn.send(get("/hint?tag=p1") + get("/big?size=200000") + get("/hint?tag=p3&delay=0.1") + get("/hint?tag=p4"))
        for tag in ("p1", None, "p3", "p4"):
            hints, response = read_hints_and_response(conn)
            if tag is None:
                assert hints == [] and response.body == b"b" * 200000
            else:
                assert hints == [links(tag)] and response.body == tag.encode()


def test_http1_hint_waits_behind_a_reader_that_stopped(h1_server):
    size = 4 << 20
    with RawConn("127.0.0.1", h1_server.port, rcvbuf=16384) as conn:
        conn.send(get(f"/big?size={size}") + get("/hint?tag=blocked"))
        time.sleep(1.0)  # the server fills the socket with the first response, then the second's hint waits
        hints, response = read_hints_and_response(conn)
        assert hints == [] and len(response.body) == size and set(response.body) == {ord("b")}
        hints, response = read_hints_and_response(conn)
    assert hints == [links("blocked")] and response.body == b"blocked"


def test_http1_hint_and_100_continue(h1_server):
    body = b"payload" * 100
    with RawConn("127.0.0.1", h1_server.port) as conn:
        conn.send(
            b"POST /hint-echo?tag=cont HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        # Both interim responses come before the body is sent, whole, in either order: the 103 goes out at hyper's
        # next flush, the 100 when the app's receive() makes hyper read the body.
        interim = {r.status: r for r in (conn.read_response(skip_interim=False) for _ in range(2))}
        assert sorted(interim) == [100, 103]
        assert interim[103].header_all("link") == links("cont")
        conn.send(body)
        response = conn.read_response()
    assert (response.status, response.body) == (200, body)


def test_http1_hint_after_start_is_an_error(h1_server):
    with RawConn("127.0.0.1", h1_server.port) as conn:
        conn.send(get("/hint-after-start?id=h1late"))
        hints, response = read_hints_and_response(conn)
        assert hints == [] and response.body == b"started"
        conn.send(get("/probe?id=h1late"))
        _, probe = read_hints_and_response(conn)
    assert "Expected ASGI message 'http.response.body'" in probe.json()["result"]
