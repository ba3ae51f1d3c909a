"""Apps for the lifespan tests. Each prints marker lines to stderr so the tests can follow the order."""

from __future__ import annotations

import asyncio
import json
import os
import sys

STARTUP_DELAY = float(os.environ.get("LS_STARTUP_DELAY", "0"))


def mark(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _respond_json(send, obj, status=200):
    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- state_app: a well-behaved app

LIFESPAN_SCOPE: dict = {}
STARTED = {"done": False}


async def state_app(scope, receive, send):
    if scope["type"] == "lifespan":
        LIFESPAN_SCOPE.update({k: v for k, v in scope.items() if k != "state"})
        LIFESPAN_SCOPE["state_type"] = type(scope.get("state")).__name__
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                mark("LS-STARTUP-BEGIN")
                if STARTUP_DELAY:
                    await asyncio.sleep(STARTUP_DELAY)
                scope["state"]["db"] = "connected"
                scope["state"]["items"] = ["a"]
                STARTED["done"] = True
                mark("LS-STARTUP-END")
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                mark("LS-SHUTDOWN")
                await send({"type": "lifespan.shutdown.complete"})
                return
        return
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        mark("REQUEST-BEGIN")
        await asyncio.sleep(1.0)
        mark("REQUEST-END")
    state = scope.get("state")
    await _respond_json(
        send,
        {
            "state": {k: v for k, v in state.items()} if isinstance(state, dict) else repr(state),
            "started_before_request": STARTED["done"],
            "lifespan_scope": LIFESPAN_SCOPE,
        },
    )


# --------------------------------------------------------------------------- startup failures


async def startup_failed_app(scope, receive, send):
    if scope["type"] == "lifespan":
        msg = await receive()
        assert msg["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "database unreachable (from the app)"})
        return
    await _respond_json(send, {"served": True})


async def startup_raises_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("startup-explodes")
    await _respond_json(send, {"served": True})


async def unsupported_app(scope, receive, send):
    """An HTTP-only app that raises on any other scope type, as apps should."""
    if scope["type"] != "http":
        mark(f"APP-CALLED-WITH {scope['type']}")
        raise ValueError(f"unsupported scope type {scope['type']}")
    await _respond_json(send, {"served": True, "state": repr(scope.get("state"))})


# --------------------------------------------------------------------------- shutdown failure


async def shutdown_failed_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.failed", "message": "could not flush (from the app)"})
                return
    await _respond_json(send, {"served": True})


# --------------------------------------------------------------------------- lifespan coroutine ends early


async def returns_after_startup_app(scope, receive, send):
    """Completes startup and returns at once, never waiting for lifespan.shutdown."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        return
    await _respond_json(send, {"served": True})
