"""A Quart app: a route and a websocket."""

from quart import Quart, request, websocket

app = Quart(__name__)


@app.route("/")
async def index():
    return {"framework": "quart", "http": request.http_version}


@app.websocket("/ws")
async def ws():
    while True:
        message = await websocket.receive()
        await websocket.send(f"quart: {message}")
