"""ASGI 2 apps served as ASGI 3 (`--interface asgi2`), as `uvicorn.middleware.asgi2` does."""

from __future__ import annotations

from ferrocorn._types import ASGI2Application, ASGIReceiveCallable, ASGISendCallable, Scope


class ASGI2Middleware:
    """Runs an ASGI 2 app (`app(scope)` returning `coroutine(receive, send)`) as ASGI 3."""

    def __init__(self, app: ASGI2Application) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        instance = self.app(scope)
        await instance(receive, send)
