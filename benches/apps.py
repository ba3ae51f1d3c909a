"""ASGI applications served identically by every server under benchmark.

Run a server against ``benches.apps:<name>`` from the repository root, e.g.
``python3 -m uvicorn benches.apps:plain``.

- ``plain``: any request -> 200 ``text/plain`` ``Hello, world!`` with a content-length.
- ``echo``: reads the whole request body and sends it back with a content-length.
- ``stream``: 1 MiB in 16 KiB chunks (``more_body=True``), no content-length (chunked).
- ``fastapi_app``: FastAPI with ``GET /json`` and ``GET /items/{item_id}?q=...``.
- ``ws_echo``: WebSocket echo (text back as text, bytes back as bytes); HTTP gets ``plain``.
- ``file_app``: Starlette ``FileResponse`` of ``/1m`` and ``/64m`` (files of 1 MiB and 64 MiB made
  once under ``benches/.files/``); a server that advertises ``http.response.pathsend`` gets a path,
  the others get 64 KiB body chunks read by Starlette.
- ``sse``: a server-sent-events stream of ``SSE_EVENTS`` small events (``text/event-stream``,
  chunked), each its own ``http.response.body`` message, as an SSE endpoint sends them.

The raw apps answer the lifespan protocol so that no server logs lifespan noise.
FastAPI is imported lazily (PEP 562 module ``__getattr__``) so that processes serving the
raw apps do not carry FastAPI, Starlette and Pydantic in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PLAIN_BODY = b"Hello, world!"
STREAM_CHUNK_SIZE = 16 * 1024
STREAM_TOTAL_SIZE = 1024 * 1024
_STREAM_CHUNK = b"x" * STREAM_CHUNK_SIZE
_STREAM_CHUNKS = STREAM_TOTAL_SIZE // STREAM_CHUNK_SIZE

_PLAIN_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(PLAIN_BODY)).encode()),
    ],
}
_PLAIN_BODY_MESSAGE: Message = {"type": "http.response.body", "body": PLAIN_BODY}


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge lifespan startup and shutdown; nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(_PLAIN_START)
    await send(_PLAIN_BODY_MESSAGE)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    chunks: list[bytes] = []
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    for _ in range(_STREAM_CHUNKS):
        await send({"type": "http.response.body", "body": _STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


SSE_EVENTS = 100
_SSE_EVENT = b"event: tick\ndata: " + b"x" * 48 + b"\n\n"


async def sse(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    for _ in range(SSE_EVENTS):
        await send({"type": "http.response.body", "body": _SSE_EVENT, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


FILE_SIZES = {"1m": 1024 * 1024, "64m": 64 * 1024 * 1024}
FILES_DIR = Path(__file__).resolve().parent / ".files"


def bench_file(name: str) -> Path:
    """The file served as ``/<name>``, written once (pseudo-random bytes, so that no layer can
    compress it) through a temporary name so that concurrent processes never see half a file."""
    path = FILES_DIR / f"{name}.bin"
    size = FILE_SIZES[name]
    if not path.exists() or path.stat().st_size != size:
        FILES_DIR.mkdir(exist_ok=True)
        block = hashlib.sha256(name.encode()).digest() * (64 * 1024 // 32)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            for _ in range(size // len(block)):
                f.write(block)
        tmp.replace(path)
    return path


def _make_file_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    paths = {name: bench_file(name) for name in FILE_SIZES}

    def route(name: str) -> Route:
        async def endpoint(request: Any) -> FileResponse:
            return FileResponse(paths[name], media_type="application/octet-stream")

        return Route(f"/{name}", endpoint)

    return Starlette(routes=[route(name) for name in FILE_SIZES])


def _make_fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/json", response_model=None)
    async def json_message() -> dict[str, str]:
        return {"message": "Hello, world!"}

    @app.get("/items/{item_id}", response_model=None)
    async def read_item(item_id: int, q: str | None = None) -> dict[str, int | str | None]:
        return {"item_id": item_id, "q": q}

    return app


_lazy: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    makers = {"fastapi_app": _make_fastapi_app, "file_app": _make_file_app}
    if name in makers:
        if name not in _lazy:
            _lazy[name] = makers[name]()
        return _lazy[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """WebSocket echo: accept, send every message back as it came (text as text, bytes as bytes).

    Plain HTTP requests get the ``plain`` answer, so the app can be probed without a WebSocket.
    """
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "websocket":
        await send(_PLAIN_START)
        await send(_PLAIN_BODY_MESSAGE)
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            # The spec allows both keys with one of them None: test for None, not presence.
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        elif message["type"] == "websocket.disconnect":
            return
