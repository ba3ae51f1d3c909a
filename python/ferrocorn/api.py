"""`run()` and `serve()`: start a server from Python, exactly as `uvicorn.run` does."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from ferrocorn.config import STARTUP_FAILURE, Config
from ferrocorn.server import Server

logger = logging.getLogger("ferrocorn.error")


def run(app: Any, **kwargs: Any) -> None:
    """Serve `app` (an ASGI callable or a "module:attribute" string) until stopped.

    Takes every keyword `uvicorn.run` takes. Exits with code 3 if the server never started.
    """
    config = Config(app, **kwargs)
    server = Server(config=config)

    if (config.reload or config.workers > 1) and not isinstance(app, str):
        logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
        sys.exit(STARTUP_FAILURE)

    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)

    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve `app` on `host:port` until SIGINT or SIGTERM; blocks. Options as for `run()`."""
    run(app, host=host, port=port, **options)
