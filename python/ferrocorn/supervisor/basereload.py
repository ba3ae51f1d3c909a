"""The reloader: runs the server in a child process and replaces the child when files change."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from socket import socket
from types import FrameType

import click

from ferrocorn.config import Config
from ferrocorn.supervisor._subprocess import get_subprocess

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

logger = logging.getLogger("ferrocorn.error")


class BaseReload:
    """Subclasses say how changes are found (`should_restart`) and name themselves (`reloader_name`)."""

    reloader_name = "BaseReload"

    def __init__(self, config: Config, target: Callable[..., None], sockets: list[socket]) -> None:
        self.config = config
        self.target = target
        self.sockets = sockets
        self.should_exit = threading.Event()
        self.pid = os.getpid()

    def signal_handler(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit.set()

    def run(self) -> None:
        self.startup()
        while not self.should_exit.is_set():
            changes = self.should_restart()
            if changes:
                logger.warning(
                    "%s detected changes in %s. Reloading...",
                    self.reloader_name,
                    ", ".join(map(_display_path, changes)),
                )
                self.restart()
        self.shutdown()

    def pause(self) -> bool:
        """Wait --reload-delay seconds between two looks at the files; False if told to stop meanwhile."""
        return not self.should_exit.wait(self.config.reload_delay)

    def startup(self) -> None:
        message = f"Started reloader process [{self.pid}] using {self.reloader_name}"
        color_message = "Started reloader process [{}] using {}".format(
            click.style(str(self.pid), fg="cyan", bold=True),
            click.style(self.reloader_name, fg="cyan", bold=True),
        )
        logger.info(message, extra={"color_message": color_message})
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self.signal_handler)
        self.start_child()

    def start_child(self) -> None:
        self.process = get_subprocess(self.config, target=self.target, sockets=self.sockets)
        self.process.start()

    def stop_child(self) -> None:
        # SIGTERM: the child shuts down gracefully. If its import failed it has already exited,
        # and terminate() does nothing.
        self.process.terminate()
        self.process.join()

    def restart(self) -> None:
        self.stop_child()
        self.start_child()

    def shutdown(self) -> None:
        self.stop_child()
        for sock in self.sockets:
            sock.close()
        message = f"Stopping reloader process [{self.pid}]"
        color_message = "Stopping reloader process [{}]".format(click.style(str(self.pid), fg="cyan", bold=True))
        logger.info(message, extra={"color_message": color_message})

    def should_restart(self) -> list[Path] | None:
        """The changed files that call for a restart (after waiting --reload-delay), if any."""
        raise NotImplementedError("Reload strategies should override should_restart()")


def _display_path(path: Path) -> str:
    try:
        return f"'{path.relative_to(Path.cwd())}'"
    except ValueError:
        return f"'{path}'"
