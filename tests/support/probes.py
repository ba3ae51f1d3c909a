"""What the router app (``tests/apps/router.py``) records and how it encodes it.

What cannot travel in a response (what ``receive()`` returned after a disconnect, what ``send()`` raised) is
stored under an id and read back with ``GET /probe/result?id=``; bytes travel in JSON as ``{"__bytes__": ...}``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.server import ServerProcess


def probe_result(server: ServerProcess, probe_id: str, timeout: float = 10.0, key: str = "done") -> dict:
    """Poll the router app's /probe/result until the probe ``probe_id`` has ``key`` set."""
    deadline = time.monotonic() + timeout
    last = None
    with server.client() as c:
        while True:
            r = c.get("/probe/result", params={"id": probe_id})
            if r.status_code == 200:
                last = r.json()
                if last.get(key):
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(f"probe {probe_id!r} has no {key!r} after {timeout}s: {last}\n{server.log_tail()}")
            time.sleep(0.02)


def decode_json(obj):
    """Undo the router app's JSON encoding of bytes ({"__bytes__": latin-1 str})."""
    if isinstance(obj, dict):
        if set(obj) == {"__bytes__"}:
            return obj["__bytes__"].encode("latin-1")
        return {k: decode_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_json(v) for v in obj]
    return obj
