"""A Litestar app: JSON, a file (named by FERROCORN_TEST_FILE) and a websocket listener."""

import os
from pathlib import Path

from litestar import Litestar, get, websocket_listener
from litestar.response import File


@get("/json")
async def json_route() -> dict[str, str]:
    return {"framework": "litestar"}


@get("/file")
async def file_route() -> File:
    return File(path=Path(os.environ["FERROCORN_TEST_FILE"]))


@websocket_listener("/ws")
async def echo(data: str) -> str:
    return f"litestar: {data}"


app = Litestar(route_handlers=[json_route, file_route, echo])
