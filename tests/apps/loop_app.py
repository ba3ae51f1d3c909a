"""Reports which event loop runs the app and whether it runs inside a real asyncio Task."""

import asyncio
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    body = json.dumps(
        {"loop": f"{type(loop).__module__}.{type(loop).__name__}", "in_task": isinstance(task, asyncio.Task)}
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
