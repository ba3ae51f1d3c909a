"""For the --metrics-bind tests: answers with known statuses and body sizes, echoes one WebSocket message."""

import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message.get("text") or ""})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    received = 0
    more = True
    while more:
        message = await receive()
        received += len(message.get("body", b""))
        more = message.get("more_body", False)
    if path == "/missing":
        status, body = 404, b"nope"  # 4 bytes
    elif path == "/echo":
        status, body = 200, str(received).encode()
    elif path == "/pid":
        status, body = 200, str(os.getpid()).encode()
    elif path == "/slow":
        await asyncio.sleep(0.3)
        status, body = 200, b"slow"
    else:
        status, body = 200, b"hello"  # 5 bytes
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
