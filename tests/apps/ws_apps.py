"""WebSocket apps for the black-box tests: one raw ASGI app routed by path.

HTTP ``GET /events?tag=T`` returns what the WebSocket endpoints recorded under ``?tag=T``
(disconnect messages, errors from ``send()``), so tests can see the app's side of a connection.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Any
Send = Any

EVENTS: dict[str, list[dict[str, Any]]] = defaultdict(list)


def _query(scope: Scope) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(scope["query_string"].decode()).items()}


def _record(scope: Scope, event: dict[str, Any]) -> None:
    EVENTS[_query(scope).get("tag", "")].append(event)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await http(scope, receive, send)
        return
    handler = ROUTES.get(scope["path"], echo)
    await handler(scope, receive, send)


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/events":
        body = json.dumps(EVENTS.get(_query(scope).get("tag", ""), [])).encode()
    else:
        body = json.dumps({"type": scope["type"], "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Echo every message as it came; record the disconnect."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _record(scope, message)
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def scope_info(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    info = {
        key: value
        for key, value in scope.items()
        if key not in ("headers", "raw_path", "query_string", "state", "asgi", "extensions")
    }
    info["has_method"] = "method" in scope
    info["headers"] = [[name.decode(), value.decode("latin-1")] for name, value in scope["headers"]]
    info["raw_path"] = scope["raw_path"].decode()
    info["query_string"] = scope["query_string"].decode()
    info["asgi"] = scope["asgi"]
    info["extensions"] = sorted(scope["extensions"])
    await send({"type": "websocket.send", "text": json.dumps(info)})
    await send({"type": "websocket.close"})


async def subprotocol(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    chosen = "chat" if "chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen, "headers": [(b"x-extra", b"yes")]})
    await send({"type": "websocket.send", "text": json.dumps(scope["subprotocols"])})
    await receive()


async def deny(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.close"})
    _record(scope, await receive())


async def deny_http(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-reason", b"members only")]})
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def close_with(scope: Scope, receive: Receive, send: Send) -> None:
    query = _query(scope)
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": int(query.get("code", "1000")), "reason": query.get("reason", "")})
    _record(scope, await receive())
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except OSError as exc:
        _record(scope, {"send_error": type(exc).__name__, "is_oserror": True})


async def wait_close(scope: Scope, receive: Receive, send: Send) -> None:
    """Wait for the client to go, then try to send: that must raise an OSError subclass."""
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            break
    _record(scope, message)
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except OSError as exc:
        _record(scope, {"send_error": type(exc).__name__, "is_oserror": True})
    except Exception as exc:  # noqa: BLE001
        _record(scope, {"send_error": type(exc).__name__, "is_oserror": False})
    else:
        _record(scope, {"send_error": None})


async def raise_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    raise RuntimeError("broken before accept")


async def raise_after_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    raise RuntimeError("broken after accept")


async def return_after_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})


async def never_receive(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, then never read: the server must stop reading the socket (--ws-max-queue)."""
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.sleep(3600)


async def flood(scope: Scope, receive: Receive, send: Send) -> None:
    """Send 64 KiB messages as fast as send() lets us; count them under the tag."""
    await receive()
    await send({"type": "websocket.accept"})
    chunk = b"x" * 65536
    counter = {"sent": 0}
    _record(scope, counter)
    try:
        while True:
            await send({"type": "websocket.send", "bytes": chunk})
            counter["sent"] += 1
    except OSError:
        counter["error"] = "OSError"


ROUTES = {
    "/echo": echo,
    "/scope": scope_info,
    "/subprotocol": subprotocol,
    "/deny": deny,
    "/deny-http": deny_http,
    "/close": close_with,
    "/wait-close": wait_close,
    "/raise-before": raise_before_accept,
    "/raise-after": raise_after_accept,
    "/return-after": return_after_accept,
    "/never-receive": never_receive,
    "/flood": flood,
}
