"""Starting a server in a fresh child process, for the reloader and the worker supervisor.

Children are *spawned* (a new interpreter), never forked: the parent may hold threads (the file
watcher) and the Rust core's runtime must not be copied into a child half-initialised. The
listening sockets, bound once by the parent, travel to the child as inherited descriptors.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from socket import socket
from typing import Any

from ferrocorn.config import Config

spawn = multiprocessing.get_context("spawn")


def get_subprocess(
    config: Config,
    target: Callable[..., None],
    sockets: list[socket],
    **target_kwargs: Any,
) -> BaseProcess:
    """A child process (not started yet) that runs `target(sockets=sockets, **target_kwargs)`.

    `target` and `config` are pickled, so `target` must be a module-level function or a method
    of a picklable object (`Server.run` is).
    """
    try:
        stdin_fileno: int | None = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        stdin_fileno = None  # no usable stdin (a daemon, or stdin closed)
    return spawn.Process(
        target=subprocess_started,
        kwargs={
            "config": config,
            "target": target,
            "sockets": sockets,
            "stdin_fileno": stdin_fileno,
            "target_kwargs": target_kwargs,
        },
    )


def subprocess_started(
    config: Config,
    target: Callable[..., None],
    sockets: list[socket],
    stdin_fileno: int | None,
    target_kwargs: dict[str, Any],
) -> None:
    """The child's entry point."""
    if stdin_fileno is not None:
        # Give the child the terminal's stdin back, so `breakpoint()` in the app works under --reload.
        try:
            sys.stdin = os.fdopen(stdin_fileno)
        except OSError:
            pass
    # A spawned child starts with Python's default logging: apply the server's configuration again.
    config.configure_logging()
    try:
        target(sockets=sockets, **target_kwargs)
    except KeyboardInterrupt:
        pass  # Ctrl+C reached the whole process group: the parent is stopping us anyway
