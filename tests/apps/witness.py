"""An app that logs everything it is given, for the hardening tests (framing, limits, slow clients): each
request it sees, each ``receive()`` result and what ``send()`` raised, as one stderr line each, tagged with the
request's ``X-Marker`` header, so that a test can prove a refused request never reached the app.

* ``SAW <marker> <method> <path>``: the app was called.
* ``RECEIVED <marker> <type> <n>``: one ``receive()`` message (``n`` body bytes).
* ``SEND-RAISED <marker> <exception class>``: ``send()`` raised.
* ``DONE <marker>``: the app returned normally.

Paths: ``/stream?chunks=N&size=S`` streams N chunks of S bytes (default 1000 x 64 KiB); anything else reads the
whole body, then answers 200 with ``<n> bytes``; ``/no-read`` answers without reading the body.
"""

from __future__ import annotations

import sys
import urllib.parse

from tests.apps.common import lifespan


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    headers = dict(scope["headers"])
    marker = headers.get(b"x-marker", b"-").decode("latin-1")
    log(f"SAW {marker} {scope['method']} {scope['path']}")
    query = dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1")))
    try:
        if scope["path"] == "/stream":
            chunks, size = int(query.get("chunks", "1000")), int(query.get("size", "65536"))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(chunks):
                await send({"type": "http.response.body", "body": b"x" * size, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            total = 0
            while scope["path"] != "/no-read":
                message = await receive()
                body = message.get("body", b"")
                total += len(body)
                log(f"RECEIVED {marker} {message['type']} {len(body)}")
                if message["type"] == "http.disconnect":
                    return
                if not message.get("more_body", False):
                    break
            answer = f"{total} bytes".encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": answer})
    except Exception as exc:
        log(f"SEND-RAISED {marker} {type(exc).__name__}")
        return
    log(f"DONE {marker}")
