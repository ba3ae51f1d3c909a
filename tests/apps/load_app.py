"""The app of the load-and-fault tests: who answered (pid), a streamed answer, a slow one, and the
three ways an app fails (raises, hangs, returns without answering); a WebSocket echo."""

import asyncio
import os

PID = str(os.getpid()).encode()


async def respond(send, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
        await send({"type": "http.response.body", "body": b"x" * 1024})
    elif path == "/slow":
        await asyncio.sleep(0.2)
        await respond(send, b"pid=" + PID)
    elif path == "/raise":
        raise RuntimeError("the app failed on purpose")
    elif path == "/hang":
        await asyncio.sleep(3600)
    elif path == "/no-response":
        return
    else:
        await respond(send, b"pid=" + PID)
