"""A FastAPI app served for real by Ferrocorn in test_frameworks.py."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

BACKGROUND_LOG: list = []


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield {"started_by": "fastapi-lifespan", "counter": [0]}


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def add_header(request: Request, call_next):
    # an "http" middleware is a BaseHTTPMiddleware: the most common FastAPI middleware shape
    response = await call_next(request)
    response.headers["x-middleware"] = "fastapi"
    return response


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


async def common(q: str | None = None, limit: int = 10):
    return {"q": q, "limit": limit}


@app.get("/")
async def root():
    return {"hello": "fastapi"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    if item_id == 404:
        raise HTTPException(status_code=404, detail="Item not found")
    return {"item_id": item_id, "q": q}


@app.post("/items", status_code=201)
async def create_item(item: Item):
    return {"created": item.model_dump(), "total": item.price * 2}


@app.get("/deps")
async def with_deps(commons: dict = Depends(common)):  # noqa: B008 (FastAPI's idiom)
    return commons


@app.get("/sync")
def sync_endpoint():
    # runs in the threadpool
    return {"sync": True}


@app.get("/stream")
async def stream(n: int = 5):
    async def gen():
        for i in range(n):
            await asyncio.sleep(0)
            yield f"line {i}\n".encode()

    return StreamingResponse(gen(), media_type="text/plain")


@app.post("/background")
async def background(tasks: BackgroundTasks, tag: str):
    async def job():
        await asyncio.sleep(0.01)
        BACKGROUND_LOG.append(tag)

    tasks.add_task(job)
    return {"scheduled": tag}


@app.get("/background/log")
async def background_log():
    return {"log": BACKGROUND_LOG}


@app.post("/raw")
async def raw_body(request: Request):
    body = await request.body()
    return {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@app.post("/stream-upload")
async def stream_upload(request: Request):
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return {"len": n}


@app.get("/state")
async def state(request: Request):
    request.state.counter[0] += 1
    return {"started_by": request.state.started_by, "counter": request.state.counter[0]}


@app.get("/request-info")
async def request_info(request: Request):
    return {
        "url": str(request.url),
        "path": request.url.path,
        "root_path": request.scope.get("root_path"),
        "client_host": request.client.host if request.client else None,
        "headers_host": request.headers.get("host"),
    }


@app.get("/plain", response_class=PlainTextResponse)
async def plain():
    return "plain text"
