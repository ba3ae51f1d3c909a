"""A FastAPI app with WebSocket endpoints, as FastAPI users write them."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
disconnects: list[int] = []


@app.websocket("/ws/{room}")
async def room(websocket: WebSocket, room: str, token: str | None = None) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"room": room, "token": token, "echo": data})
    except WebSocketDisconnect as exc:
        disconnects.append(exc.code)


@app.websocket("/private")
async def private(websocket: WebSocket) -> None:
    await websocket.close(code=1008)


@app.get("/disconnects")
async def get_disconnects() -> list[int]:
    return disconnects
