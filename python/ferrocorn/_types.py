"""The shapes of ASGI apps and of their callables, for type checkers (after `uvicorn._types`, more
loosely: scopes and messages are plain mappings here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
ASGIReceiveCallable: TypeAlias = Callable[[], Awaitable[Message]]
ASGISendCallable: TypeAlias = Callable[[Message], Awaitable[None]]
ASGI3Application: TypeAlias = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]
#: An ASGI 2 app: called with the scope, it returns the coroutine function taking receive and send.
ASGI2Application: TypeAlias = Callable[[Scope], Callable[[ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]]
