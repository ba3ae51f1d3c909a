"""Apps that use the ASGI `send` extensions (asgiref docs/extensions.rst): trailers, pathsend, zerocopysend.

Routes (``app``):
  /extensions                 the scope's extension names, as JSON
  /trailers                   a chunked body and two ``http.response.trailers`` messages (``Trailer`` declared)
  /trailers-undeclared        trailers without a ``Trailer`` header
  /trailers-missing           ``trailers: true``, then the app returns after the body without sending them
  /trailers-out-of-order?id=  trailers before the body (the error is recorded), then body and trailers
  /grpc                       a gRPC-style unary call: one length-prefixed message echoed, ``grpc-status`` as a trailer
  /pathsend?path=&length=     ``http.response.pathsend`` of ``path`` (Content-Length ``length`` if given)
  /pathsend-twice?path=       pathsend, then a second send (an error the app records)
  /zerocopy?path=&offset=&count=&parts=  ``http.response.zerocopysend`` of the open file, then a body message
  /zerocopy?path=&seek=       one zerocopysend without offset or count, after seeking the file
  /zerocopy-wait?path=&id=    one zerocopysend of the whole file, then b"done"; records when that send() returned
  /probe?id=                  what a route recorded (exceptions from send())
"""

from __future__ import annotations

import os
import struct

from tests.apps.common import lifespan, query, read_body, send_json

PROBES: dict = {}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    path = scope["path"]
    q = query(scope)
    if path == "/extensions":
        await read_body(receive)
        await send_json(send, {"extensions": sorted(scope.get("extensions") or {}), "http": scope["http_version"]})
    elif path in ("/trailers", "/trailers-undeclared"):
        await read_body(receive)
        headers = [(b"content-type", b"text/plain")]
        if path == "/trailers":
            headers.append((b"trailer", b"x-checksum, x-count"))
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        await send({"type": "http.response.body", "body": b"world", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-count", b"2")], "more_trailers": False})
    elif path == "/trailers-missing":
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-a")], "trailers": True})
        await send({"type": "http.response.body", "body": b"partial", "more_body": False})
        # returns without the trailers: the response is incomplete
    elif path == "/trailers-out-of-order":
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        try:
            await send({"type": "http.response.trailers", "headers": [(b"x-a", b"1")]})
        except Exception as exc:
            PROBES[q.get("id", "")] = f"{type(exc).__name__}: {exc}"
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-a", b"1")]})
    elif path == "/grpc":
        request = await read_body(receive)
        compressed, length = struct.unpack(">BI", request[:5])
        message = request[5 : 5 + length]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/grpc"), (b"trailer", b"grpc-status, grpc-message")],
                "trailers": True,
            }
        )
        reply = message[::-1]
        await send({"type": "http.response.body", "body": struct.pack(">BI", 0, len(reply)) + reply})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"grpc-status", b"0"), (b"grpc-message", b"OK")],
                "more_trailers": False,
            }
        )
    elif path in ("/pathsend", "/pathsend-twice"):
        await read_body(receive)
        headers = [(b"content-type", b"application/octet-stream")]
        if "length" in q:
            headers.append((b"content-length", q["length"].encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            await send({"type": "http.response.pathsend", "path": q["path"]})
        except Exception as exc:
            PROBES[q.get("id", "")] = f"{type(exc).__name__}: {exc}"
            raise
        if path == "/pathsend-twice":
            try:
                await send({"type": "http.response.body", "body": b"more"})
            except Exception as exc:
                PROBES[q.get("id", "")] = f"{type(exc).__name__}: {exc}"
    elif path == "/zerocopy":
        await read_body(receive)
        parts = int(q.get("parts", "1"))
        with open(q["path"], "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if "seek" in q:  # no offset, no count: from the file's position to its end
                file.seek(int(q["seek"]))
                length = size - int(q["seek"]) + len(b"<tail>")
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % length)]}
                )
                await send({"type": "http.response.zerocopysend", "file": file, "more_body": True})
                await send({"type": "http.response.body", "body": b"<tail>"})
                return
            offset = int(q.get("offset", "0"))
            count = int(q.get("count", str(size - offset)))
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(count + len(b"<tail>")).encode())],
                }
            )
            step = -(-count // parts)
            for start in range(offset, offset + count, step):
                length = min(step, offset + count - start)
                message = {"type": "http.response.zerocopysend", "file": file, "offset": start, "count": length}
                await send({**message, "more_body": True})
        await send({"type": "http.response.body", "body": b"<tail>"})
    elif path == "/zerocopy-wait":
        await read_body(receive)
        with open(q["path"], "rb") as file:
            size = os.fstat(file.fileno()).st_size
            headers = [(b"content-length", b"%d" % (size + 4))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.zerocopysend", "file": file, "more_body": True})
            PROBES[q["id"]] = "returned"
        await send({"type": "http.response.body", "body": b"done"})
    elif path == "/probe":
        await send_json(send, {"result": PROBES.get(q["id"])})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})


# ----------------------------------------------------------------------------- Starlette's FileResponse

SENT_TYPES: list = []


def _starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route

    async def file(request):
        return FileResponse(request.query_params["path"], media_type="application/octet-stream")

    async def sent(request):
        return JSONResponse({"types": SENT_TYPES})

    return Starlette(routes=[Route("/file", file, methods=["GET", "HEAD"]), Route("/sent", sent)])


_STARLETTE = _starlette_app()


async def starlette_app(scope, receive, send):
    """Starlette, with the message types its FileResponse sends recorded (GET /sent reads them)."""
    if scope["type"] != "http" or scope["path"] != "/file":
        return await _STARLETTE(scope, receive, send)
    types: list = []
    SENT_TYPES.append(types)

    async def recording_send(message):
        types.append(message["type"])
        await send(message)

    await _STARLETTE(scope, receive, recording_send)
