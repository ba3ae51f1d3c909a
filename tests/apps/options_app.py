"""Apps for the CLI option tests: a plain ASGI 3 app, a factory, an ASGI 2 app."""

import contextvars
import json
import os

marker = contextvars.ContextVar("marker", default="unset")
marker.set("set-at-import")  # in the main context, which request tasks copy unless reset


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"env": os.environ.get("FERROCORN_TEST_ENV_VALUE"), "marker": marker.get()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def create_app():
    return app


class Asgi2App:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2:" + self.scope["type"].encode()})
