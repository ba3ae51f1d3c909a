"""Starlette's file, streaming and server-sent-event responses (sse-starlette).

The file served is named by FERROCORN_TEST_FILE. The SSE generator prints `SSE-CLOSED <tag>` to
stdout when it ends, so a test can see how soon it learns that the client left."""

import asyncio
import os

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import FileResponse, StreamingResponse
from starlette.routing import Route


async def file(request):
    return FileResponse(os.environ["FERROCORN_TEST_FILE"])


async def stream(request):
    async def chunks():
        for i in range(100):
            yield f"{i:04d}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def events(request):
    tag = request.query_params["tag"]

    async def ticks():
        try:
            for i in range(1000):
                yield {"event": "tick", "data": str(i)}
                await asyncio.sleep(0.05)
        finally:
            print(f"SSE-CLOSED {tag}", flush=True)

    return EventSourceResponse(ticks(), ping=None)


app = Starlette(routes=[Route("/file", file), Route("/stream", stream), Route("/events", events)])
