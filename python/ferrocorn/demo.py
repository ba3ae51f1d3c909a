"""A small ASGI app so that `ferrocorn ferrocorn.demo:app` runs with no file of your own.

Routes: `/` (hello), `/json`, `/echo` (POST: returns the body), `/stream` (a chunked response),
`/sleep?seconds=0.5` (an await on the event loop), and `/state` (what lifespan stored).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        raise RuntimeError(f"the demo app does not serve {scope['type']!r}")

    path = scope["path"]
    if path == "/":
        await _reply(send, 200, b"Hello from ferrocorn!\n", b"text/plain; charset=utf-8")
    elif path == "/json":
        payload = {"message": "Hello from ferrocorn!", "http_version": scope["http_version"]}
        await _reply(send, 200, json.dumps(payload).encode(), b"application/json")
    elif path == "/echo":
        body = await _read_body(receive)
        await _reply(send, 200, body, b"application/octet-stream")
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for number in range(10):
            await send({"type": "http.response.body", "body": f"chunk {number}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/sleep":
        query = parse_qs(scope["query_string"].decode())
        seconds = min(float(query.get("seconds", ["0.5"])[0]), 10.0)
        await asyncio.sleep(seconds)
        await _reply(send, 200, f"slept {seconds}s\n".encode(), b"text/plain")
    elif path == "/state":
        await _reply(send, 200, json.dumps(scope.get("state", {})).encode(), b"application/json")
    else:
        await _reply(send, 404, b"Not Found\n", b"text/plain")


async def _lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started_by"] = "ferrocorn.demo"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _reply(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
