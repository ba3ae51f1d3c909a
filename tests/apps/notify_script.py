"""The programmatic API's callback_notify: python3 tests/apps/notify_script.py PORT prints NOTIFIED each time the
server calls it (every timeout_notify seconds, as uvicorn does for process managers)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import ferrocorn  # noqa: E402

from tests.apps.router import app  # noqa: E402


async def notify() -> None:
    print("NOTIFIED", file=sys.stderr, flush=True)


if __name__ == "__main__":
    ferrocorn.run(app, port=int(sys.argv[1]), timeout_notify=1, callback_notify=notify)
