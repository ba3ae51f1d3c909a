"""Starlette's FileResponse (whole and with Range requests), StreamingResponse, and server-sent events
through sse-starlette, whose generator must see the client leave within a second; over HTTP/1.1, h2c
and TLS."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.served import Served, serve


@pytest.fixture(scope="module")
def starlette_app(tmp_path_factory, file_to_serve):
    pytest.importorskip("sse_starlette")
    yield from serve("tests.apps.starlette_files_app:app", tmp_path_factory, file_to_serve)


def test_file_response(starlette_app: Served, transport):
    with starlette_app.client(transport) as client:
        response = client.get("/file")
    assert response.status_code == 200
    assert response.content == starlette_app.file.read_bytes()


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=10-19", 10, 19), ("bytes=1048570-1048590", 1048570, 1048590), ("bytes=-100", None, None)],
)
def test_file_response_range_requests(starlette_app: Served, transport, range_header, start, end):
    data = starlette_app.file.read_bytes()
    if start is None:
        start, end = len(data) - 100, len(data) - 1
    with starlette_app.client(transport) as client:
        response = client.get("/file", headers={"Range": range_header})
    assert response.status_code == 206
    assert response.content == data[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"


def test_streaming_response(starlette_app: Served, transport):
    with starlette_app.client(transport) as client, client.stream("GET", "/stream") as response:
        body = b"".join(response.iter_bytes())
    assert body == b"".join(f"{i:04d}\n".encode() for i in range(100))


def test_server_sent_events_see_the_client_leave(starlette_app: Served, transport):
    tag = uuid.uuid4().hex[:10]
    server = starlette_app.tls if transport == "tls" else starlette_app.plain
    start = len(server.stdout_lines)
    events = []
    with starlette_app.client(transport) as client:
        with client.stream("GET", "/events", params={"tag": tag}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(line)
                if len(events) == 3:
                    break
        left = time.monotonic()
    server.wait_for_line(f"SSE-CLOSED {tag}", timeout=5, stream="stdout", start=start)
    noticed = time.monotonic() - left
    assert events == ["data: 0", "data: 1", "data: 2"]
    assert noticed < 1.0, f"the event generator learnt that the client left after {noticed:.2f} s"
