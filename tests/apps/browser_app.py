"""A Starlette site for a real browser (tests/frameworks/test_browser.py).

/            the page: first a 103 Early Hints naming /hinted.css (when the scope offers it), then up to 15 s of
             waiting for the browser to request /hinted.css, then the HTML; records whether the CSS request came
             before the final response was sent (Chromium asks within milliseconds here; the bound is for a CI
             machine whose cores are stolen, where 2 s once did not suffice)
/hinted.css  the stylesheet (sets the body's background colour); records when it was requested
/ws          a WebSocket: answers each text message with ``pong:<message>``
/state       what was recorded, as JSON
"""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

STATE: dict = {}
CSS_SEEN = asyncio.Event()
# How long the page waits for the hinted stylesheet to be requested before it answers.
CSS_WAIT = 15.0
HINT_LINK = b"</hinted.css>; rel=preload; as=style"

PAGE = b"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>ferrocorn</title><link rel="stylesheet" href="/hinted.css"></head>
<body>
<p id="ws">pending</p>
<p id="proto"></p>
<script>
  document.getElementById("proto").textContent = performance.getEntriesByType("navigation")[0].nextHopProtocol;
  const ws = new WebSocket("wss://" + location.host + "/ws");
  ws.onopen = () => ws.send("hello");
  ws.onmessage = (event) => { document.getElementById("ws").textContent = event.data; ws.close(); };
  ws.onerror = () => { document.getElementById("ws").textContent = "error"; };
</script>
</body>
</html>
"""


class Page:
    """The page as a plain ASGI endpoint: Starlette's responses have no way to send an early hint."""

    async def __call__(self, scope, receive, send):
        STATE["page_http_version"] = scope["http_version"]
        offered = "http.response.early_hint" in (scope.get("extensions") or {})
        STATE["hint_offered"] = offered
        if offered:
            CSS_SEEN.clear()
            await send({"type": "http.response.early_hint", "links": [HINT_LINK]})
            try:
                await asyncio.wait_for(CSS_SEEN.wait(), CSS_WAIT)
            except TimeoutError:
                pass
        STATE["css_before_final"] = CSS_SEEN.is_set()
        STATE["final_sent_at"] = time.monotonic()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html; charset=utf-8")]}
        )
        await send({"type": "http.response.body", "body": PAGE})


async def hinted_css(request):
    STATE.setdefault("css_requested_at", time.monotonic())
    STATE["css_http_version"] = request.scope["http_version"]
    CSS_SEEN.set()
    return Response("body { background-color: rgb(1, 2, 3); }", media_type="text/css")


async def ws_endpoint(websocket: WebSocket):
    STATE["ws_http_version"] = websocket.scope["http_version"]
    await websocket.accept()
    message = await websocket.receive_text()
    await websocket.send_text(f"pong:{message}")
    try:
        await websocket.receive_text()
    except Exception:
        pass


async def state(request):
    return JSONResponse(STATE)


app = Starlette(
    routes=[
        Route("/", Page()),
        Route("/hinted.css", hinted_css),
        WebSocketRoute("/ws", ws_endpoint),
        Route("/state", state),
    ]
)
