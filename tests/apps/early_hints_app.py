"""An app that sends `http.response.early_hint` messages (103 Early Hints) before its responses.

Routes (``app``):
  /extensions                     the scope's extension names and HTTP version, as JSON
  /hint?tag=&n=&links=&size=&delay=  ``n`` hint messages (default 1) of ``links`` links each (default 1), each
                                  ``</{tag}-{i}-{j}.css>; rel=preload; as=style``; then, after ``delay`` seconds, a
                                  200 whose body is ``size`` bytes (default: the tag)
  /hint-stream?tag=               one hint, then a body in three messages
  /hint-echo?tag=                 one hint, then the request body (read only now: 100-continue) echoed
  /hint-after-start?id=           start, then a hint (the error is recorded), then the body
  /hint-bad?id=                   a hint whose link is not a valid header value (the error is recorded), then a 200
  /big?size=                      a 200 of ``size`` bytes, no hint
  /probe?id=                      what a route recorded
"""

from __future__ import annotations

import asyncio

from tests.apps.common import lifespan, query, read_body, respond, send_json

PROBES: dict = {}


def links_for(tag: str, i: int, count: int) -> list[bytes]:
    return [f"</{tag}-{i}-{j}.css>; rel=preload; as=style".encode() for j in range(count)]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    path = scope["path"]
    q = query(scope)
    if path == "/extensions":
        await send_json(send, {"extensions": sorted(scope.get("extensions") or {}), "http": scope["http_version"]})
    elif path == "/hint":
        tag = q.get("tag", "x")
        for i in range(int(q.get("n", "1"))):
            await send({"type": "http.response.early_hint", "links": links_for(tag, i, int(q.get("links", "1")))})
        if "delay" in q:
            await asyncio.sleep(float(q["delay"]))
        body = b"x" * int(q["size"]) if "size" in q else tag.encode()
        await respond(send, body)
    elif path == "/hint-stream":
        tag = q.get("tag", "x")
        await send({"type": "http.response.early_hint", "links": links_for(tag, 0, 1)})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": part != b"three"})
    elif path == "/hint-echo":
        await send({"type": "http.response.early_hint", "links": links_for(q.get("tag", "x"), 0, 1)})
        await respond(send, await read_body(receive))
    elif path == "/hint-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.early_hint", "links": [b"</late.css>; rel=preload"]})
        except Exception as exc:
            PROBES[q["id"]] = f"{type(exc).__name__}: {exc}"
        await send({"type": "http.response.body", "body": b"started"})
    elif path == "/hint-bad":
        try:
            await send({"type": "http.response.early_hint", "links": [b"</a.css>\r\nx-injected: 1"]})
        except Exception as exc:
            PROBES[q["id"]] = f"{type(exc).__name__}: {exc}"
        await respond(send, b"bad")
    elif path == "/big":
        await respond(send, b"b" * int(q["size"]))
    elif path == "/probe":
        await send_json(send, {"result": PROBES.get(q["id"])})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
