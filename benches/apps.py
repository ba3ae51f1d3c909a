"""ASGI applications served identically by every server under benchmark.

Run a server against ``benches.apps:<name>`` from the repository root, e.g.
``python3 -m uvicorn benches.apps:plain``.

- ``plain``: any request -> 200 ``text/plain`` ``Hello, world!`` with a content-length.
- ``echo``: reads the whole request body and sends it back with a content-length.
- ``stream``: 1 MiB in 16 KiB chunks (``more_body=True``), no content-length (chunked).
- ``fastapi_app``: FastAPI with ``GET /json`` and ``GET /items/{item_id}?q=...``.
- ``ws_echo``: WebSocket echo (text back as text, bytes back as bytes); HTTP gets ``plain``.

The raw apps answer the lifespan protocol so that no server logs lifespan noise.
FastAPI is imported lazily (PEP 562 module ``__getattr__``) so that processes serving the
raw apps do not carry FastAPI, Starlette and Pydantic in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
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
    if name == "fastapi_app":
        if name not in _lazy:
            _lazy[name] = _make_fastapi_app()
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
