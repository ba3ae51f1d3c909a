"""Litestar (JSON, File, a websocket listener) and Quart (a route, a websocket) served for real, over
HTTP/1.1, h2c and TLS."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from tests.support.served import Served, serve


@pytest.fixture(scope="module")
def litestar_app(tmp_path_factory, file_to_serve):
    pytest.importorskip("litestar")
    yield from serve("tests.apps.litestar_app:app", tmp_path_factory, file_to_serve)


@pytest.fixture(scope="module")
def quart_app(tmp_path_factory, file_to_serve):
    pytest.importorskip("quart")
    yield from serve("tests.apps.quart_app:app", tmp_path_factory, file_to_serve)


def test_litestar_json(litestar_app: Served, transport):
    with litestar_app.client(transport) as client:
        response = client.get("/json")
    assert response.status_code == 200
    assert response.http_version == litestar_app.expected_http_version(transport)
    assert response.json() == {"framework": "litestar"}


def test_litestar_file(litestar_app: Served, transport):
    with litestar_app.client(transport) as client:
        response = client.get("/file")
    assert response.status_code == 200
    assert response.content == litestar_app.file.read_bytes()


@pytest.mark.parametrize("transport", ["http1", "tls"])
def test_litestar_websocket_listener(litestar_app: Served, transport):
    ssl_context = litestar_app.ssl_context() if transport == "tls" else None
    with connect(litestar_app.ws_url(transport, "/ws"), ssl=ssl_context, open_timeout=10) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "litestar: ping"


def test_quart_route(quart_app: Served, transport):
    with quart_app.client(transport) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.json()["framework"] == "quart"
    assert response.json()["http"] == {"http1": "1.1", "h2c": "2", "tls": "2"}[transport]


@pytest.mark.parametrize("transport", ["http1", "tls"])
def test_quart_websocket(quart_app: Served, transport):
    ssl_context = quart_app.ssl_context() if transport == "tls" else None
    with connect(quart_app.ws_url(transport, "/ws"), ssl=ssl_context, open_timeout=10) as ws:
        for word in ("one", "two"):
            ws.send(word)
            assert ws.recv(timeout=5) == f"quart: {word}"
