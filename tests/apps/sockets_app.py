"""Echoes the connection part of the scope, for the --uds / --fd tests."""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps(
        {"server": scope["server"], "client": scope["client"], "path": scope["path"], "scheme": scope["scheme"]}
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
