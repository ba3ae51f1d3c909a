"""The router app, whose lifespan startup adds a filter to the `ferrocorn.access` logger when ACCESS_FILTER=1,
as apps that tune their logging do: the server must then leave the access log to Python's logging (the core
writes it only for the built-in configuration)."""

from __future__ import annotations

import logging
import os

from tests.apps import router


async def app(scope, receive, send):
    if scope["type"] == "lifespan" and os.environ.get("ACCESS_FILTER") == "1":
        logging.getLogger("ferrocorn.access").addFilter(lambda record: True)
    await router.app(scope, receive, send)
