"""For the --workers tests: says which process answered, and can kill, hang or grow that process."""

import os
import time

#: What /alloc keeps alive: 50 MiB more resident memory per call (--limit-worker-memory).
_hoard = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/exit":
        os._exit(1)  # the worker dies mid-request, as a crashing C extension would take it down
    if scope["path"] == "/alloc":
        _hoard.append(b"\x01" * (50 * 1024 * 1024))  # written, so resident
    if scope["path"] == "/hang":
        time.sleep(3600)  # blocks the event loop: the worker is alive but serves nothing
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
