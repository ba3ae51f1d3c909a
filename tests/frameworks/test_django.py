"""Django served for real: async views, a streamed response from an async iterator, FileResponse, a
POST body of megabytes, and Channels' AsyncWebsocketConsumer behind a ProtocolTypeRouter; over
HTTP/1.1, h2c and TLS."""

from __future__ import annotations

import hashlib
import os

import pytest

pytest.importorskip("django")
pytest.importorskip("channels")

from websockets.sync.client import connect  # noqa: E402

from tests.support.served import Served, serve  # noqa: E402


@pytest.fixture(scope="module")
def django_app(tmp_path_factory, file_to_serve):
    yield from serve("tests.apps.django_app:app", tmp_path_factory, file_to_serve)


def test_async_view(django_app: Served, transport):
    with django_app.client(transport) as client:
        response = client.get("/hello")
    assert response.status_code == 200
    assert response.http_version == django_app.expected_http_version(transport)
    assert response.json()["framework"] == "django"


def test_streaming_response_from_an_async_iterator(django_app: Served, transport):
    with django_app.client(transport) as client, client.stream("GET", "/stream") as response:
        body = b"".join(response.iter_bytes())
    assert response.status_code == 200
    assert body == b"".join(f"chunk {i}\n".encode() for i in range(5))


def test_file_response(django_app: Served, transport):
    with django_app.client(transport) as client:
        response = client.get("/file")
    assert response.status_code == 200
    assert response.content == django_app.file.read_bytes()
    assert int(response.headers["content-length"]) == django_app.file.stat().st_size


def test_post_body_of_megabytes(django_app: Served, transport):
    body = os.urandom(5 * 1024 * 1024)
    with django_app.client(transport) as client:
        response = client.post("/upload", content=body)
    assert response.status_code == 200
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("transport", ["http1", "tls"])
def test_channels_websocket_consumer(django_app: Served, transport):
    ssl_context = django_app.ssl_context() if transport == "tls" else None
    with connect(django_app.ws_url(transport, "/ws/echo"), ssl=ssl_context, open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "django: hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"
