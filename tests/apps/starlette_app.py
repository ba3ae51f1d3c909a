"""A Starlette app served for real by Ferrocorn in test_frameworks.py."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

BACKGROUND_LOG: list = []


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hi from starlette lifespan"}


async def homepage(request: Request):
    return PlainTextResponse("hello starlette")


async def user(request: Request):
    user_id = request.path_params["user_id"]
    return JSONResponse({"user_id": user_id, "type": type(user_id).__name__, "query": dict(request.query_params)})


async def echo_json(request: Request):
    data = await request.json()
    return JSONResponse({"received": data})


async def stream(request: Request):
    n = int(request.query_params.get("n", "3"))

    async def gen():
        for i in range(n):
            yield f"chunk{i};"
            await asyncio.sleep(0)

    return StreamingResponse(gen(), media_type="text/plain")


async def upload_count(request: Request):
    n = 0
    chunks = 0
    async for chunk in request.stream():
        n += len(chunk)
        chunks += 1
    return JSONResponse({"len": n, "chunks": chunks})


async def with_background(request: Request):
    tag = request.query_params["tag"]

    async def job():
        BACKGROUND_LOG.append(tag)

    return PlainTextResponse("ok", background=BackgroundTask(job))


async def background_log(request: Request):
    return JSONResponse({"log": BACKGROUND_LOG})


async def state(request: Request):
    return JSONResponse({"greeting": request.state.greeting})


async def sub_index(request: Request):
    return JSONResponse({"mounted": True, "path": request.url.path, "url_for": str(request.url_for("sub_index"))})


async def cookies(request: Request):
    resp = Response("c")
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2")
    return resp


class HeaderMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        response = await call_next(request)
        response.headers["x-middleware"] = "yes"
        return response


routes = [
    Route("/", homepage),
    Route("/users/{user_id:int}", user),
    Route("/json", echo_json, methods=["POST"]),
    Route("/stream", stream),
    Route("/upload", upload_count, methods=["POST"]),
    Route("/background", with_background),
    Route("/background/log", background_log),
    Route("/state", state),
    Route("/cookies", cookies),
    Mount("/sub", routes=[Route("/", sub_index, name="sub_index")]),
]

app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(HeaderMiddleware)])
