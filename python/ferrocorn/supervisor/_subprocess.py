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
            "parent_pid": os.getpid(),
        },
    )


def subprocess_started(
    config: Config,
    target: Callable[..., None],
    sockets: list[socket],
    stdin_fileno: int | None,
    target_kwargs: dict[str, Any],
    parent_pid: int | None = None,
) -> None:
    """The child's entry point."""
    if parent_pid is not None:
        stop_with_parent(parent_pid)
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


def stop_with_parent(parent_pid: int) -> None:
    """A child outlives a supervisor killed with SIGKILL (nothing can forward a signal then) and
    would go on serving the shared sockets unsupervised: on Linux the kernel sends it SIGTERM (a
    graceful drain) when the parent dies, as gunicorn's workers leave when their arbiter does."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
