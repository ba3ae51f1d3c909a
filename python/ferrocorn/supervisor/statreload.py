"""Reload by polling the modification times of `*.py` files: the fallback without watchfiles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from socket import socket

from ferrocorn.config import Config
from ferrocorn.supervisor.basereload import BaseReload

logger = logging.getLogger("ferrocorn.error")


class StatReload(BaseReload):
    reloader_name = "StatReload"

    def __init__(self, config: Config, target: Callable[..., None], sockets: list[socket]) -> None:
        super().__init__(config, target, sockets)
        self.mtimes: dict[Path, float] = {}
        if config.reload_excludes or config.reload_includes:
            logger.warning("--reload-include and --reload-exclude have no effect unless watchfiles is installed.")
        # The baseline, taken before the first child starts: an edit made while it starts counts.
        self.find_changes()

    def should_restart(self) -> list[Path] | None:
        if not self.pause():
            return None
        return self.find_changes() or None

    def find_changes(self) -> list[Path]:
        """The `*.py` files modified since the last pass (a file seen for the first time is not)."""
        changed = []
        for file in self.iter_py_files():
            try:
                mtime = file.stat().st_mtime
            except OSError:  # removed since the directory was listed
                continue
            previous = self.mtimes.setdefault(file, mtime)
            if mtime > previous:
                self.mtimes[file] = mtime
                changed.append(file)
        return changed

    def iter_py_files(self) -> Iterator[Path]:
        for reload_dir in self.config.reload_dirs:
            for path in list(reload_dir.rglob("*.py")):
                yield path.resolve()
