"""WebSockets over raw sockets: malformed upgrades, protocol errors, close codes, keepalive,
and backpressure in both directions."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import uuid
from typing import Any

import pytest

from tests.support.raw import RawWebSocket, ws_close_payload
from tests.support.server import ServerProcess

APP = "tests.apps.ws_apps:app"
KEY = base64.b64encode(b"0123456789abcdef").decode()
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture(scope="module")
def ws_server():
    srv = ServerProcess.ferrocorn(APP)
    yield srv
    srv.close()


def events(srv: ServerProcess, tag: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = srv.get("/events", params={"tag": tag}).json()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def upgrade_request(path: str = "/echo", headers: list[tuple[str, bytes]] | None = None, method: str = "GET") -> bytes:
    if headers is None:
        headers = [("Sec-WebSocket-Key", KEY.encode()), ("Sec-WebSocket-Version", b"13")]
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Upgrade: websocket", b"Connection: Upgrade"]
    lines += [name.encode() + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_raw_handshake_and_echo(ws_server):
    ws = RawWebSocket(ws_server, upgrade_request())
    assert ws.status == 101
    expected = base64.b64encode(hashlib.sha1((KEY + GUID).encode()).digest()).decode()
    assert ws.headers["sec-websocket-accept"] == expected
    assert ws.headers["upgrade"].lower() == "websocket"
    ws.send_frame(1, b"hi")
    assert ws.read_frame() == (1, b"hi")
    ws.send_frame(9, b"ping!")
    assert ws.read_frame() == (10, b"ping!")
    ws.send_frame(8, ws_close_payload(1000))
    assert ws.expect_close() == 1000
    assert ws.at_eof()
    ws.close()


MALFORMED = {
    "missing key": ([("Sec-WebSocket-Version", b"13")], 400),
    "key not base64": ([("Sec-WebSocket-Key", b"!!!not base64!!!"), ("Sec-WebSocket-Version", b"13")], 400),
    "key too short": (
        [("Sec-WebSocket-Key", base64.b64encode(b"short")), ("Sec-WebSocket-Version", b"13")],
        400,
    ),
    "two keys": (
        [("Sec-WebSocket-Key", KEY.encode()), ("Sec-WebSocket-Key", KEY.encode()), ("Sec-WebSocket-Version", b"13")],
        400,
    ),
    "missing version": ([("Sec-WebSocket-Key", KEY.encode())], 400),
    "version 8": ([("Sec-WebSocket-Key", KEY.encode()), ("Sec-WebSocket-Version", b"8")], 426),
    "non-ascii subprotocol": (
        [
            ("Sec-WebSocket-Key", KEY.encode()),
            ("Sec-WebSocket-Version", b"13"),
            ("Sec-WebSocket-Protocol", "chät, ü".encode()),
        ],
        400,
    ),
    "subprotocol with spaces": (
        [("Sec-WebSocket-Key", KEY.encode()), ("Sec-WebSocket-Version", b"13"), ("Sec-WebSocket-Protocol", b"a b")],
        400,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_upgrade_is_refused_cleanly(ws_server, case):
    headers, status = MALFORMED[case]
    ws = RawWebSocket(ws_server, upgrade_request(headers=headers))
    assert ws.status == status
    if status == 426:
        assert ws.headers["sec-websocket-version"] == "13"
    ws.close()
    # The server is unharmed: no panic, next upgrade works.
    assert ws_server.alive()
    assert not ws_server.has_line("panicked")
    ok = RawWebSocket(ws_server, upgrade_request())
    assert ok.status == 101
    ok.close()


def test_upgrade_with_post_is_refused(ws_server):
    ws = RawWebSocket(ws_server, upgrade_request(method="POST"))
    assert ws.status == 400
    ws.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"opcode": 1, "payload": b"unmasked", "mask": False}, 1002),
        ({"opcode": 1, "payload": b"\xce\xba\xff"}, 1007),
        ({"opcode": 3, "payload": b""}, 1002),
        ({"opcode": 1, "payload": b"x", "rsv": 0x20}, 1002),
        ({"opcode": 9, "payload": b"x" * 126}, 1002),
        ({"opcode": 0, "payload": b"orphan continuation"}, 1002),
        ({"opcode": 8, "payload": ws_close_payload(999)}, 1002),
        ({"opcode": 8, "payload": ws_close_payload(1000, b"\xff")}, 1007),
    ],
)
def test_protocol_errors_close_with_the_right_code(ws_server, frame, code):
    tag = uuid.uuid4().hex[:8]
    ws = RawWebSocket(ws_server, upgrade_request(f"/wait-close?tag={tag}"))
    assert ws.status == 101
    ws.send_frame(**frame)
    assert ws.expect_close() == code
    assert ws.at_eof()
    ws.close()
    assert events(ws_server, tag)[0]["code"] == code


def test_close_without_code_is_1005_and_tcp_drop_is_1006(ws_server):
    tag = uuid.uuid4().hex[:8]
    ws = RawWebSocket(ws_server, upgrade_request(f"/wait-close?tag={tag}"))
    ws.send_frame(8, b"")
    assert ws.expect_close() == 1005  # echoed empty
    ws.close()
    assert events(ws_server, tag)[0] == {"type": "websocket.disconnect", "code": 1005, "reason": ""}

    tag = uuid.uuid4().hex[:8]
    ws = RawWebSocket(ws_server, upgrade_request(f"/wait-close?tag={tag}"))
    ws.close()
    found = events(ws_server, tag, count=2)
    assert found[0] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert found[1] == {"send_error": "ClientDisconnected", "is_oserror": True}


def test_dead_peer_is_dropped_after_ping_timeout(start_server):
    srv = start_server(APP, "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3")
    tag = uuid.uuid4().hex[:8]
    ws = RawWebSocket(srv, upgrade_request(f"/wait-close?tag={tag}"))
    assert ws.status == 101
    started = time.monotonic()
    opcode, payload = ws.read_frame()
    assert opcode == 9 and len(payload) == 4  # a ping, never answered
    assert ws.expect_close() == 1011
    assert ws.at_eof()
    assert time.monotonic() - started < 3
    ws.close()
    assert events(srv, tag)[0]["code"] == 1011


def test_slow_reader_does_not_grow_server_buffers(start_server):
    """The app sends 64 KiB messages to a client that never reads: send() must block."""
    srv = start_server(APP)
    tag = uuid.uuid4().hex[:8]
    rss_before = srv.rss()
    ws = RawWebSocket(srv, upgrade_request(f"/flood?tag={tag}"))
    assert ws.status == 101
    time.sleep(1.5)
    first = events(srv, tag)[0]["sent"]
    time.sleep(1.0)
    second = events(srv, tag)[0]["sent"]
    # Kernel socket buffers hold a few MiB; the server itself holds at most ~1 MiB more.
    assert first == second, "send() kept returning while nobody read"
    assert second * 65536 < 64 * 1024 * 1024
    assert srv.rss() - rss_before < 48 * 1024 * 1024
    ws.close()
    found = events(srv, tag)
    deadline = time.monotonic() + 5
    while found[0].get("error") != "OSError" and time.monotonic() < deadline:
        time.sleep(0.05)
        found = events(srv, tag)
    assert found[0].get("error") == "OSError"


def test_app_that_never_receives_stops_socket_reads(start_server):
    """--ws-max-queue bounds what the server reads ahead of the app: the client's sends block."""
    srv = start_server(APP, "--ws-max-queue", "2")
    ws = RawWebSocket(srv, upgrade_request("/never-receive"))
    assert ws.status == 101
    rss_before = srv.rss()
    chunk = os.urandom(65536)
    ws.sock.settimeout(2.0)
    sent = 0
    with pytest.raises(TimeoutError):
        for _ in range(2000):  # 128 MiB: far more than socket buffers hold
            ws.send_frame(2, chunk)
            sent += 1
    assert sent < 1000
    assert srv.rss() - rss_before < 48 * 1024 * 1024
    ws.close()
    # The app sleeps for an hour and, never receiving, cannot learn the client left; a graceful
    # shutdown would wait for it (as uvicorn's does). Nothing more to check: do not wait.
    srv.kill()


def test_a_busy_connection_does_not_starve_others(start_server):
    srv = start_server(APP)
    stop = threading.Event()

    def hammer() -> None:
        busy = RawWebSocket(srv, upgrade_request("/echo"))
        payload = b"z" * 16384

        def drain() -> None:
            try:
                while not stop.is_set():
                    busy.read_frame()
            except (OSError, EOFError):
                pass

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            while not stop.is_set():
                busy.send_frame(2, payload)
        except OSError:
            pass
        busy.close()

    threading.Thread(target=hammer, daemon=True).start()
    time.sleep(0.5)
    other = RawWebSocket(srv, upgrade_request("/echo"))
    worst = 0.0
    for i in range(20):
        started = time.monotonic()
        other.send_frame(1, f"ping {i}".encode())
        assert other.read_frame() == (1, f"ping {i}".encode())
        worst = max(worst, time.monotonic() - started)
    stop.set()
    other.close()
    assert worst < 1.0, f"a round trip took {worst:.2f}s next to a busy connection"
