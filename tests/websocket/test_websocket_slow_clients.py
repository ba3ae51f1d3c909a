"""``--timeout-response-write`` on WebSockets: a client that stops reading while the app keeps sending is dropped
after the limit, over HTTP/1.1 (the upgraded socket refuses writes) and HTTP/2 (the stream's flow-control window stays
shut), and the app's ``send()`` raises. Keepalive pings are off, so that only the write clock can end the session."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.http1.test_slow_clients import SLACK
from tests.support.h2 import H2WebSocketClient
from tests.support.raw import RawWebSocket
from tests.websocket.test_websocket_raw import events, upgrade_request


@pytest.fixture(scope="module")
def strict():
    from tests.support.server import ServerProcess

    srv = ServerProcess.ferrocorn("tests.apps.ws_apps:app", "--timeout-response-write", "1", "--ws-ping-interval", "0")
    srv.wait_ready()
    yield srv
    srv.close()


def send_failed_within(srv, tag: str, limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        found = events(srv, tag)
        if found and found[0].get("error"):
            assert found[0]["error"] == "OSError"
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"send() still waiting after {limit}s: {events(srv, tag)}")


def test_http1_websocket_client_that_stops_reading_is_dropped(strict):
    tag = uuid.uuid4().hex
    ws = RawWebSocket(strict, upgrade_request(f"/flood?tag={tag}"), rcvbuf=4096)
    try:
        assert ws.status == 101
        send_failed_within(strict, tag, 1 + SLACK + 3)
    finally:
        ws.close()


def test_http2_websocket_client_that_stops_reading_is_dropped(strict):
    tag = uuid.uuid4().hex
    with H2WebSocketClient(strict) as client:
        sid, status, _ = client.websocket(f"/flood?tag={tag}")
        assert status == 200 and sid
        # never pump again: the stream window (64 KiB) is never reopened
        send_failed_within(strict, tag, 1 + SLACK + 3)
