"""An app for the gunicorn worker tests: which worker answered, a slow answer, and a blocked loop."""

import asyncio
import os
import time
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(float(query.get("delay", ["1"])[0]))
    elif path == "/block":
        time.sleep(float(query.get("seconds", ["5"])[0]))  # blocks the event loop: no heartbeat
    body = f"pid={os.getpid()} path={path}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
