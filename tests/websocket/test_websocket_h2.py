"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT), black box: a client built on the ``h2`` library opens
WebSocket streams (``:method CONNECT``, ``:protocol websocket``) on h2c with prior knowledge and on h2 over TLS
(ALPN), exchanges RFC 6455 frames as DATA, and mixes them with plain HTTP/2 requests on the same connection."""

from __future__ import annotations

import json
import ssl
import struct
import time
import uuid
import zlib
from typing import Any

import pytest
import trustme
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from tests.support.h2 import H2WebSocketClient
from tests.support.server import ServerProcess

APP = "tests.apps.ws_apps:app"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def events(client: H2WebSocketClient, tag: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """What the app recorded under `tag` (asked over the same HTTP/2 connection)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = client.get(f"/events?tag={tag}")
        assert status == 200
        found = json.loads(body)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def h2c_server():
    srv = ServerProcess.ferrocorn(APP)
    yield srv
    srv.close()


# =========================================================================== h2c (prior knowledge)


def test_server_advertises_extended_connect(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        assert client.remote_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1


def test_echo_text_and_binary(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        sid, status, headers = client.websocket("/echo")
        assert status == 200
        assert b"sec-websocket-accept" not in headers  # RFC 8441 §5: no key, no accept
        for opcode, payload in [(TEXT, "κόσμε".encode()), (BINARY, b"\x00\xff" * 40000), (TEXT, b""), (BINARY, b"")]:
            client.send_frame(sid, opcode, payload)
            assert client.read_message(sid) == (opcode, payload)
        # A fragmented message is reassembled.
        client.send_frame(sid, TEXT, b"frag", fin=False)
        client.send_frame(sid, 0x0, b"mented")
        assert client.read_message(sid) == (TEXT, b"fragmented")
        # Ping/pong is the server's business.
        client.send_frame(sid, PING, b"are you there")
        assert client.read_message(sid) == (PONG, b"are you there")
        assert client.close_ws(sid, 1000) == (1000, "")


def test_scope(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        sid, status, _ = client.websocket("/scope?x=1", extra=[(b"sec-websocket-protocol", b"chat, superchat")])
        assert status == 200
        opcode, payload = client.read_message(sid)
        scope = json.loads(payload)
        assert scope["type"] == "websocket"
        assert scope["http_version"] == "2"
        assert scope["scheme"] == "ws"
        assert scope["path"] == "/scope"
        assert scope["query_string"] == "x=1"
        assert scope["subprotocols"] == ["chat", "superchat"]
        assert scope["has_method"] is False
        assert ["host", client.authority.decode()] in scope["headers"]
        assert "websocket.http.response" in scope["extensions"]
        assert "tls" not in scope["extensions"]
        assert client.expect_close(sid) == (1000, "")


def test_subprotocol_and_extra_headers_on_accept(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        sid, status, headers = client.websocket("/subprotocol", extra=[(b"sec-websocket-protocol", b"x, chat")])
        assert status == 200
        assert headers[b"sec-websocket-protocol"] == b"chat"
        assert headers[b"x-extra"] == b"yes"
        assert client.read_message(sid) == (TEXT, b'["x", "chat"]')


def test_permessage_deflate_is_negotiated(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        offer = [(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]
        sid, status, headers = client.websocket("/echo", extra=offer)
        assert status == 200
        assert headers[b"sec-websocket-extensions"].startswith(b"permessage-deflate")
        text = "compress me " * 500
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
        client.send_frame(sid, TEXT, payload[:-4], rsv1=True)
        opcode, compressed, data = client.read_frame(sid)
        assert opcode == TEXT and compressed  # large and repetitive: the server compresses its echo too
        assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == text.encode()


@pytest.mark.parametrize(("code", "reason"), [(1000, b""), (4001, b"bye now"), (None, b"")])
def test_client_close_code_reaches_app(h2c_server, code, reason):
    tag = new_tag()
    with H2WebSocketClient(h2c_server) as client:
        sid, status, _ = client.websocket(f"/echo?tag={tag}")
        assert status == 200
        echoed = client.close_ws(sid, code, reason)
        assert echoed == ((code, "") if code is not None else (1005, ""))
        expected = {"type": "websocket.disconnect", "code": code or 1005, "reason": reason.decode()}
        assert events(client, tag) == [expected]


def test_server_close_code_reaches_client_and_send_after_close_raises(h2c_server):
    tag = new_tag()
    with H2WebSocketClient(h2c_server) as client:
        sid, status, _ = client.websocket(f"/close?tag={tag}&code=4321&reason=done")
        assert status == 200
        assert client.expect_close(sid) == (4321, "done")
        client.send_frame(sid, CLOSE, struct.pack("!H", 4321))
        found = events(client, tag, count=2)
        assert found[0]["type"] == "websocket.disconnect"
        assert found[1] == {"send_error": "ClientDisconnected", "is_oserror": True}
        # The stream ends cleanly once the close handshake is over; the connection stays up.
        client.pump_until(lambda: client.streams[sid].ended or client.streams[sid].reset is not None)
        assert client.get("/plain")[0] == 200


def test_stream_reset_is_a_1006_disconnect(h2c_server):
    tag = new_tag()
    with H2WebSocketClient(h2c_server) as client:
        sid, status, _ = client.websocket(f"/wait-close?tag={tag}")
        assert status == 200
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        found = events(client, tag, count=2)
        assert found[0] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        assert found[1] == {"send_error": "ClientDisconnected", "is_oserror": True}


def test_close_before_accept_is_403(h2c_server):
    tag = new_tag()
    with H2WebSocketClient(h2c_server) as client:
        sid, status, _ = client.websocket(f"/deny?tag={tag}")
        assert status == 403
        client.body(sid)
        assert events(client, tag)[0]["type"] == "websocket.disconnect"


def test_denial_response_extension(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        sid, status, headers = client.websocket("/deny-http")
        assert status == 401
        assert headers[b"x-reason"] == b"members only"
        assert b"connection" not in headers  # a connection-specific header is not valid in HTTP/2
        assert client.body(sid) == b"no entry"
        assert client.get("/plain")[0] == 200


def test_invalid_utf8_and_protocol_errors(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        sid, _, _ = client.websocket("/echo")
        client.send_frame(sid, TEXT, b"\xff\xfe")
        assert client.expect_close(sid)[0] == 1007
        sid, _, _ = client.websocket("/echo")
        client.send_frame(sid, 0x3, b"reserved opcode")
        assert client.expect_close(sid)[0] == 1002


def test_malformed_extended_connect_is_refused(h2c_server):
    with H2WebSocketClient(h2c_server) as client:
        sid = client.open_stream(
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"http"),
                (b":path", b"/echo"),
                (b":authority", client.authority),
                # no sec-websocket-version
            ],
            end_stream=False,
        )
        client.pump_until(lambda: client.streams[sid].headers is not None)
        assert client.streams[sid].headers[b":status"] == b"400"
        _, status, headers = client.websocket("/echo", extra=[(b"sec-websocket-version", b"8")])
        assert status == 426
        assert headers[b"sec-websocket-version"] == b"13"
        _, status, _ = client.websocket("/echo", extra=[(b"sec-websocket-protocol", "ch\u00e4t".encode())])
        assert status == 400


def test_streams_are_independent(h2c_server):
    """Several WebSockets and plain requests share one connection; closing one leaves the others alone."""
    with H2WebSocketClient(h2c_server) as client:
        first, _, _ = client.websocket("/echo")
        second, _, _ = client.websocket("/echo")
        client.send_frame(first, TEXT, b"one")
        client.send_frame(second, TEXT, b"two")
        assert client.get("/plain")[0] == 200
        assert client.read_message(second) == (TEXT, b"two")
        assert client.read_message(first) == (TEXT, b"one")
        assert client.close_ws(first) == (1000, "")
        client.send_frame(second, TEXT, b"still open")
        assert client.read_message(second) == (TEXT, b"still open")
        status, body = client.get("/plain")
        assert (status, json.loads(body)) == (200, {"type": "http", "path": "/plain"})


def test_open_websocket_keeps_the_connection_from_idling_out(start_server):
    """The 200 ends the CONNECT's response, but the stream is open: the HTTP/2 idle timeout must not fire."""
    srv = start_server(APP, "--timeout-keep-alive", "1")
    with H2WebSocketClient(srv) as client:
        sid, status, _ = client.websocket("/echo")
        assert status == 200
        time.sleep(2.5)
        assert client.terminated is None
        client.send_frame(sid, TEXT, b"awake")
        assert client.read_message(sid) == (TEXT, b"awake")
        assert client.terminated is None
        assert client.close_ws(sid) == (1000, "")
        # With the WebSocket gone, the connection idles out as usual (GOAWAY).
        client.pump_until(lambda: client.terminated is not None or client.eof, timeout=5)


def test_slow_reader_does_not_grow_server_buffers(h2c_server):
    """The app floods 64 KiB messages at a client that reads nothing: HTTP/2 flow control stops the stream, and
    the app's send() must then wait instead of the server buffering without bound."""
    tag = new_tag()
    rss_before = h2c_server.rss()
    with H2WebSocketClient(h2c_server) as client:
        sid, status, _ = client.websocket(f"/flood?tag={tag}")
        assert status == 200
        # Handle frames (SETTINGS, PING) but hand no window back: nothing is "read".
        client.conn.acknowledge_received_data = lambda *args, **kwargs: None

        def sent() -> int:
            return h2c_server.get("/events", params={"tag": tag}).json()[0]["sent"]

        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            client.pump(0.1)
        first = sent()
        time.sleep(1.0)
        assert sent() == first, "send() kept returning while the stream's window was closed"
        assert first * 65536 < 16 * 1024 * 1024
        assert h2c_server.rss() - rss_before < 48 * 1024 * 1024
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
    found = h2c_server.get("/events", params={"tag": tag}).json()
    deadline = time.monotonic() + 5
    while found[0].get("error") != "OSError" and time.monotonic() < deadline:
        time.sleep(0.05)
        found = h2c_server.get("/events", params={"tag": tag}).json()
    assert found[0].get("error") == "OSError"


def test_max_size_closes_1009(start_server):
    srv = start_server(APP, "--ws-max-size", "1000")
    with H2WebSocketClient(srv) as client:
        sid, _, _ = client.websocket("/echo")
        client.send_frame(sid, BINARY, b"x" * 1000)
        assert client.read_message(sid) == (BINARY, b"x" * 1000)
        client.send_frame(sid, BINARY, b"x" * 1001)
        assert client.expect_close(sid)[0] == 1009


def test_graceful_shutdown_closes_1012(start_server):
    srv = start_server(APP)
    with H2WebSocketClient(srv) as client:
        sid, _, _ = client.websocket("/echo")
        client.send_frame(sid, TEXT, b"before")
        assert client.read_message(sid) == (TEXT, b"before")
        started = time.monotonic()
        srv.send_signal()
        assert client.expect_close(sid)[0] == 1012
    assert srv.wait(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_ws_none_does_not_offer_extended_connect(start_server):
    srv = start_server(APP, "--ws", "none")
    with H2WebSocketClient(srv) as client:
        assert client.remote_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 0
        assert client.get("/plain")[0] == 200


# =========================================================================== h2 over TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    root = tmp_path_factory.mktemp("ws-h2-pki")
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    key.write_bytes(server.private_key_pem.bytes())
    ca_file.write_bytes(ca.cert_pem.bytes())
    return {"cert": str(cert), "key": str(key), "ca": str(ca_file)}


@pytest.fixture(scope="module")
def tls_server(tls_files):
    srv = ServerProcess.ferrocorn(APP, "--ssl-certfile", tls_files["cert"], "--ssl-keyfile", tls_files["key"])
    yield srv
    srv.close()


def tls_context(tls_files) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls_files["ca"])
    context.set_alpn_protocols(["h2"])
    return context


def test_wss_over_h2(tls_server, tls_files):
    with H2WebSocketClient(tls_server, tls=tls_context(tls_files)) as client:
        assert client.remote_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        sid, status, _ = client.websocket("/scope")
        assert status == 200
        scope = json.loads(client.read_message(sid)[1])
        assert scope["scheme"] == "wss"
        assert scope["http_version"] == "2"
        assert "tls" in scope["extensions"]
        assert client.expect_close(sid) == (1000, "")

        sid, status, _ = client.websocket("/echo")
        assert status == 200
        client.send_frame(sid, BINARY, b"\x01" * 100_000)
        assert client.read_message(sid) == (BINARY, b"\x01" * 100_000)
        assert client.get("/plain")[0] == 200
        assert client.close_ws(sid, 4000, b"done") == (4000, "")

        sid, status, _ = client.websocket("/deny")
        assert status == 403
