"""WebSockets through a real client (the `websockets` library): messages, compression, scope,
subprotocols, close codes both ways, the denial extension, --ws options, FastAPI."""

from __future__ import annotations

import json
import re
import ssl
import time
import uuid
from typing import Any

import pytest
import trustme
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.support.server import ServerProcess

APP = "tests.apps.ws_apps:app"


@pytest.fixture(scope="module")
def ws_server():
    srv = ServerProcess.ferrocorn(APP)
    yield srv
    srv.close()


def ws_url(srv: ServerProcess, path: str) -> str:
    return f"ws://{srv.host}:{srv.port}{path}"


def events(srv: ServerProcess, tag: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """What the app recorded under `tag`, once it has recorded `count` events."""
    deadline = time.monotonic() + timeout
    while True:
        found = srv.get("/events", params={"tag": tag}).json()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


def open_ws(srv: ServerProcess, path: str, **kw: Any) -> ClientConnection:
    kw.setdefault("open_timeout", 10)
    return connect(ws_url(srv, path), **kw)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_and_binary(ws_server, compression):
    with open_ws(ws_server, "/echo", compression=compression) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        if compression:
            assert extensions == "permessage-deflate"
        else:
            assert extensions is None
        for message in ["hello", "κόσμε " * 1000, "", b"\x00\xff" * 40000, b""]:
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_fragmented_message_is_reassembled(ws_server):
    with open_ws(ws_server, "/echo", compression=None) as ws:
        ws.send(["frag", "mented ", "text"])
        assert ws.recv(timeout=5) == "fragmented text"
        ws.send([b"\x01", b"\x02\x03"])
        assert ws.recv(timeout=5) == b"\x01\x02\x03"


def test_many_messages_in_flight(ws_server):
    with open_ws(ws_server, "/echo") as ws:
        for i in range(500):
            ws.send(f"message {i}")
        for i in range(500):
            assert ws.recv(timeout=5) == f"message {i}"


def test_scope(ws_server):
    with open_ws(ws_server, "/scope?a=1%202", subprotocols=["chat", "v2.proto"]) as ws:
        info = json.loads(ws.recv(timeout=5))
    assert info["type"] == "websocket"
    assert info["scheme"] == "ws"
    assert info["http_version"] == "1.1"
    assert info["path"] == "/scope"
    assert info["raw_path"] == "/scope"
    assert info["query_string"] == "a=1%202"
    assert info["subprotocols"] == ["chat", "v2.proto"]
    assert info["has_method"] is False
    assert info["asgi"]["version"] == "3.0"
    assert info["extensions"] == ["websocket.http.response"]
    assert info["client"][0] == "127.0.0.1" and isinstance(info["client"][1], int)
    assert info["server"] == ["127.0.0.1", ws_server.port]
    header_names = [name for name, _ in info["headers"]]
    assert "sec-websocket-key" in header_names and "host" in header_names


def test_subprotocol_negotiation_and_accept_headers(ws_server):
    with open_ws(ws_server, "/subprotocol", subprotocols=["other", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response.headers["x-extra"] == "yes"
        assert ws.response.headers["server"] == "ferrocorn"
        assert json.loads(ws.recv(timeout=5)) == ["other", "chat"]
    with open_ws(ws_server, "/subprotocol") as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers


def test_close_before_accept_is_403(ws_server):
    tag = new_tag()
    with pytest.raises(InvalidStatus) as info:
        open_ws(ws_server, f"/deny?tag={tag}")
    assert info.value.response.status_code == 403
    assert events(ws_server, tag) == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


def test_denial_response_extension(ws_server):
    with pytest.raises(InvalidStatus) as info:
        open_ws(ws_server, "/deny-http")
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["x-reason"] == "members only"
    assert response.body == b"no entry"


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4000, "bye"), (1001, "going away " * 5)])
def test_client_close_code_reaches_app(ws_server, code, reason):
    tag = new_tag()
    with open_ws(ws_server, f"/wait-close?tag={tag}") as ws:
        ws.close(code, reason)
    found = events(ws_server, tag, count=2)
    assert found[0] == {"type": "websocket.disconnect", "code": code, "reason": reason}
    # ASGI 2.4: send() after the connection closed raises an OSError subclass.
    assert found[1] == {"send_error": "ClientDisconnected", "is_oserror": True}


def test_server_close_code_reaches_client(ws_server):
    tag = new_tag()
    with open_ws(ws_server, f"/close?code=4001&reason=see+you&tag={tag}") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "see you")
    found = events(ws_server, tag, count=2)
    assert found[0]["code"] == 4001
    assert found[1]["send_error"] == "ClientDisconnected"


def test_app_returning_closes_1000(ws_server):
    with open_ws(ws_server, "/return-after") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000


def test_app_raising_after_accept_closes_1011(ws_server):
    with open_ws(ws_server, "/raise-after") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    ws_server.wait_for_line("Exception in ASGI application", timeout=5)


def test_app_raising_before_accept_is_500(ws_server):
    with pytest.raises(InvalidStatus) as info:
        open_ws(ws_server, "/raise-before")
    assert info.value.response.status_code == 500


def test_accept_is_logged(ws_server):
    with open_ws(ws_server, "/echo?x=1"):
        pass
    ws_server.wait_for_line(re.compile(r'127\.0\.0\.1:\d+ - "WebSocket /echo\?x=1" \[accepted\]'), timeout=5)


def test_max_size_closes_1009(start_server):
    srv = start_server(APP, "--ws-max-size", "1024")
    with open_ws(srv, "/echo", compression=None) as ws:
        ws.send("a" * 1024)
        assert ws.recv(timeout=5) == "a" * 1024
        ws.send("a" * 1025)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_max_size_applies_after_decompression(start_server):
    srv = start_server(APP, "--ws-max-size", "10000")
    with open_ws(srv, "/echo") as ws:
        ws.send("a" * 20000)  # compresses to a few dozen bytes
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_per_message_deflate_can_be_disabled(start_server):
    srv = start_server(APP, "--ws-per-message-deflate", "false")
    with open_ws(srv, "/echo") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("x" * 5000)
        assert ws.recv(timeout=5) == "x" * 5000


def test_ping_keeps_a_live_client_connected(start_server):
    srv = start_server(APP, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.5")
    with open_ws(srv, "/echo") as ws:  # the client answers pings by itself
        time.sleep(1.5)
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


@pytest.mark.parametrize("name", ["auto", "websockets", "websockets-sansio", "wsproto"])
def test_ws_implementation_names_map_to_the_rust_core(start_server, name):
    srv = start_server(APP, "--ws", name)
    if name != "auto":
        srv.wait_for_line(f"--ws {name}: served by ferrocorn's Rust WebSocket implementation", timeout=5)
    with open_ws(srv, "/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"


def test_ws_none_serves_upgrades_as_http(start_server):
    srv = start_server(APP, "--ws", "none")
    with pytest.raises(InvalidStatus) as info:
        open_ws(srv, "/echo")
    response = info.value.response
    assert response.status_code == 200
    assert json.loads(response.body) == {"type": "http", "path": "/echo"}
    srv.wait_for_line("Unsupported upgrade request.", timeout=5)


def test_graceful_shutdown_closes_1012(start_server):
    srv = start_server(APP)
    with open_ws(srv, "/echo") as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        started = time.monotonic()
        srv.send_signal()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    assert srv.wait(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_fastapi_websocket_endpoint(start_server):
    srv = start_server("tests.apps.ws_fastapi:app")
    with open_ws(srv, "/ws/lobby?token=abc") as ws:
        ws.send(json.dumps({"n": 1}))
        assert json.loads(ws.recv(timeout=5)) == {"room": "lobby", "token": "abc", "echo": {"n": 1}}
        ws.close(4002)
    deadline = time.monotonic() + 5
    while srv.get("/disconnects").json() != [4002] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.get("/disconnects").json() == [4002]
    with pytest.raises(InvalidStatus) as info:
        open_ws(srv, "/private")
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as info:
        open_ws(srv, "/no-such-route")
    assert info.value.response.status_code == 403


def test_wss_over_http11_scope(start_server, tmp_path):
    """TLS without ALPN h2: the upgrade runs over HTTP/1.1 and the scope says wss, with the tls extension."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    srv = start_server(APP, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with connect(f"wss://localhost:{srv.port}/scope", ssl=context, open_timeout=10) as ws:
        info = json.loads(ws.recv(timeout=5))
    assert info["scheme"] == "wss"
    assert info["http_version"] == "1.1"
    assert info["extensions"] == ["tls", "websocket.http.response"]
    with connect(f"wss://localhost:{srv.port}/echo", ssl=context, open_timeout=10) as ws:
        ws.send("secure " * 10000)
        assert ws.recv(timeout=5) == "secure " * 10000


def test_limit_concurrency_refuses_handshakes_past_the_limit(start_server):
    srv = start_server(APP, "--limit-concurrency", "1")
    # The readiness check's own connection may still be counted for a moment: wait it out.
    deadline = time.monotonic() + 5
    while True:
        try:
            first = open_ws(srv, "/echo")
            break
        except InvalidStatus as refused:
            if refused.response.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with first as ws:
        with pytest.raises(InvalidStatus) as info:
            open_ws(srv, "/echo")
        assert info.value.response.status_code == 503
        ws.send("the first one is fine")
        assert ws.recv(timeout=5) == "the first one is fine"
    srv.wait_for_line("Exceeded concurrency limit.", timeout=5)
