"""For the systemd tests: a slow lifespan startup, an endpoint that blocks the event loop, and markers.

The app sends its own datagrams to $TEST_MARKER_SOCKET (the test's fake NOTIFY_SOCKET), so the test sees, in the
order they happened, when the lifespan startup finished and when the loop was blocked, among the server's
sd_notify messages.
"""

import asyncio
import os
import socket
import time

MARKER_SOCKET = os.environ.get("TEST_MARKER_SOCKET", "")


def mark(text: str) -> None:
    if not MARKER_SOCKET:
        return
    address = "\0" + MARKER_SOCKET[1:] if MARKER_SOCKET.startswith("@") else MARKER_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"APP={text} {os.getpid()}".encode(), address)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(1)
                mark("startup-complete")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = str(os.getpid())
    if scope["path"] == "/block":
        mark("block-start")
        time.sleep(3)  # blocks the event loop
        mark("block-end")
    elif scope["path"] == "/env":
        body = ",".join(f"{name}={os.environ.get(name)}" for name in ("LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET"))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})
