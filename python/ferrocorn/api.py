"""`run()` and `serve()`: start a server from Python, exactly as `uvicorn.run` does."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from ferrocorn.config import STARTUP_FAILURE, Config
from ferrocorn.server import Server, log_started_message
from ferrocorn.sockets import bind_sockets, unix_socket_paths
from ferrocorn.systemd import Notifier

logger = logging.getLogger("ferrocorn.error")


def run(app: Any, **kwargs: Any) -> None:
    """Serve `app` (an ASGI callable or a "module:attribute" string) until stopped.

    Takes every keyword `uvicorn.run` takes. Exits with code 3 if the server never started.

    Several workers, or one recycled by --limit-worker-lifetime/--limit-worker-memory, run under the
    supervisor; otherwise this process serves. Under systemd, whichever of the two is the service's main
    process tells it about readiness, the watchdog and the drain ($NOTIFY_SOCKET).
    """
    config = Config(app, **kwargs)
    server = Server(config=config)
    supervised = not config.should_reload and (config.workers > 1 or config.recycles_workers)

    if (config.reload or config.workers > 1) and not isinstance(app, str):
        logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
        sys.exit(STARTUP_FAILURE)
    if supervised and not isinstance(app, str):
        logger.warning(
            "You must pass the application as an import string to enable 'limit_worker_lifetime' or "
            "'limit_worker_memory': workers are replaced by new processes that import it."
        )
        sys.exit(STARTUP_FAILURE)

    supervisor_exit_code = 0
    try:
        if config.should_reload:
            # The supervisors are imported only when used: the reloader's watchfiles (and anyio) and
            # multiprocessing are ~1.5 MiB of a single worker's memory.
            from ferrocorn.supervisor import ChangeReload

            ChangeReload(config, target=server.run, sockets=bind_announced_sockets(config)).run()
        elif supervised:
            from ferrocorn.supervisor import Multiprocess

            sockets = bind_announced_sockets(config)
            supervisor = Multiprocess(config, sockets=sockets, systemd=Notifier.from_environment())
            supervisor.run()
            supervisor_exit_code = supervisor.exit_code
        else:
            server.systemd = Notifier.from_environment()
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        for path in unix_socket_paths(config):
            if os.path.exists(path):
                os.remove(path)

    if supervisor_exit_code:
        sys.exit(supervisor_exit_code)
    if not server.started and not config.should_reload and not supervised:
        sys.exit(STARTUP_FAILURE)


def bind_announced_sockets(config: Config) -> list[socket.socket]:
    """Bind in the parent, so every child (and every reloaded child) serves the same sockets, and
    say where: the children will not."""
    try:
        sockets = bind_sockets(config)
    except OSError as exc:
        logger.error(exc)
        sys.exit(STARTUP_FAILURE)
    log_started_message(config, sockets)
    return sockets


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve `app` on `host:port` until SIGINT or SIGTERM; blocks. Options as for `run()`."""
    run(app, host=host, port=port, **options)
