"""The `http.response.trailers` extension: advertised where trailers reach the client, sent as a final HEADERS
frame (END_STREAM) on HTTP/2 and as a chunked trailer section on HTTP/1.1 when the request said `TE: trailers`."""

from __future__ import annotations

import json
import socket
import struct

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from tests.support.h2 import H2Conn
from tests.support.raw import RawConn
from tests.support.server import ServerProcess

APP = "tests.apps.extensions_app:app"
TRAILERS = "http.response.trailers"


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess.ferrocorn(APP)
    srv.wait_ready()
    yield srv
    srv.close()


def h2_exchange(srv, path: str, extra=()) -> list:
    """The frames of one stream's response, up to END_STREAM."""
    with H2Conn(srv.port) as conn:
        conn.send(conn.request(1, path, extra=extra))
        frames = conn.collect(lambda f: f is None or (f.stream_id == 1 and "END_STREAM" in f.flags), timeout=10)
    return [f for f in frames if f is not None and f.stream_id == 1]


# ============================================================================ the scope


def test_advertised_on_http2(server):
    frames = h2_exchange(server, "/extensions")
    body = b"".join(f.data for f in frames if isinstance(f, DataFrame))
    assert TRAILERS in json.loads(body)["extensions"]


@pytest.mark.parametrize(
    ("version", "te", "expected"),
    [
        ("1.1", "trailers", True),
        ("1.1", "gzip, Trailers", True),
        ("1.1", None, False),
        ("1.1", "gzip", False),
        ("1.0", "trailers", False),  # no chunked framing in HTTP/1.0
    ],
)
def test_advertised_on_http11_only_when_the_request_accepts_trailers(server, version, te, expected):
    headers = [("TE", te)] if te else []
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", "/extensions", headers=headers, version=version)
    assert (TRAILERS in response.json()["extensions"]) is expected


# ============================================================================ HTTP/2


def test_http2_trailers_are_a_final_headers_frame_with_end_stream(server):
    frames = h2_exchange(server, "/trailers")
    kinds = [type(f).__name__ for f in frames]
    assert isinstance(frames[0], HeadersFrame) and "END_STREAM" not in frames[0].flags, kinds
    assert dict(frames[0].decoded)[":status"] == "200"
    data = [f for f in frames if isinstance(f, DataFrame)]
    assert b"".join(f.data for f in data) == b"hello world"
    assert not any("END_STREAM" in f.flags for f in data), "the body must not end the stream before the trailers"
    last = frames[-1]
    assert isinstance(last, HeadersFrame) and "END_STREAM" in last.flags, kinds
    assert last.decoded == [("x-checksum", "abc123"), ("x-count", "2")]


def test_http2_trailers_need_no_trailer_header(server):
    # HTTP/2 frames trailers itself; the `Trailer` header is only advisory there.
    last = h2_exchange(server, "/trailers-undeclared")[-1]
    assert isinstance(last, HeadersFrame) and "END_STREAM" in last.flags
    assert last.decoded == [("x-checksum", "abc123"), ("x-count", "2")]


def test_grpc_style_unary_call_gets_grpc_status_as_a_trailer(server):
    """A unary gRPC exchange driven by the `h2` library, as a gRPC client sends it."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    request = struct.pack(">BI", 0, 5) + b"hello"
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc"),
            (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    conn.send_data(1, request, end_stream=True)
    sock.sendall(conn.data_to_send())
    headers, body, trailers, ended = None, b"", None, False
    try:
        while not ended:
            data = sock.recv(65536)
            assert data, "connection closed before the stream ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers = dict(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    assert headers is not None and headers[":status"] == "200"
    assert headers["content-type"] == "application/grpc"
    assert "grpc-status" not in headers, "grpc-status belongs in the trailers"
    assert body == struct.pack(">BI", 0, 5) + b"olleh"
    assert trailers == {"grpc-status": "0", "grpc-message": "OK"}


# ============================================================================ HTTP/1.1


def test_http11_trailers_are_a_chunked_trailer_section_when_asked_for(server):
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", "/trailers", headers=[("TE", "trailers")])
        assert response.status == 200 and response.chunked
        assert response.header("trailer") == "x-checksum, x-count"
        assert response.body == b"hello world"
        assert response.trailers == [b"x-checksum: abc123", b"x-count: 2"]
        # the connection stays usable after the trailer section
        again = conn.request("GET", "/extensions", headers=[("TE", "trailers")])
    assert again.status == 200


def test_http11_trailers_are_dropped_when_the_request_did_not_ask(server):
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", "/trailers")
        assert response.status == 200 and response.complete
        assert response.body == b"hello world"
        assert response.trailers == []
        assert conn.request("GET", "/extensions").status == 200


def test_http11_trailers_not_declared_in_trailer_are_dropped(server):
    # hyper writes only the fields the `Trailer` header named (RFC 9110 §6.6.2); the spec has the app send it.
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", "/trailers-undeclared", headers=[("TE", "trailers")])
        assert response.body == b"hello world" and response.complete
        assert response.trailers == []
        assert conn.request("GET", "/extensions").status == 200


# ============================================================================ the app's mistakes


def test_trailers_promised_but_never_sent_break_the_response_off(server):
    frames = h2_exchange(server, "/trailers-missing")
    assert b"".join(f.data for f in frames if isinstance(f, DataFrame)) == b"partial"
    assert isinstance(frames[-1], RstStreamFrame), [type(f).__name__ for f in frames]
    assert not any("END_STREAM" in f.flags for f in frames if not isinstance(f, RstStreamFrame))
    with RawConn("127.0.0.1", server.port) as conn:
        conn.send(b"GET /trailers-missing HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        partial = conn.read_response(allow_incomplete=True)
    assert partial.chunked and not partial.complete and partial.body == b"partial"
    server.wait_for_line("ASGI callable returned without completing response.")


def test_trailers_before_the_body_ends_are_an_error_from_send(server):
    frames = h2_exchange(server, "/trailers-out-of-order?id=order")
    last = frames[-1]
    assert isinstance(last, HeadersFrame) and last.decoded == [("x-a", "1")]
    with RawConn("127.0.0.1", server.port) as conn:
        result = conn.request("GET", "/probe?id=order").json()["result"]
    assert result == "RuntimeError: Expected ASGI message 'http.response.body', but got 'http.response.trailers'."
