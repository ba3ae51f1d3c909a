"""Apps for the CLI option tests: a plain ASGI 3 app, a factory, an ASGI 2 app."""

import contextvars
import gc
import json
import os

marker = contextvars.ContextVar("marker", default="unset")
marker.set("set-at-import")  # in the main context, which request tasks copy unless reset


class Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


#: Made at import, so part of what --gc-freeze freezes.
IMPORTED = [Cycle()]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps(
        {
            "env": os.environ.get("FERROCORN_TEST_ENV_VALUE"),
            "marker": marker.get(),
            "gc_freeze_count": gc.get_freeze_count(),
            "imported_cycle_tracked": any(isinstance(o, Cycle) for o in gc.get_objects()),
        }
    ).encode()
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
