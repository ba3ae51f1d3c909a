"""Reload on changes reported by watchfiles (inotify on Linux): the default when it is installed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from socket import socket

from watchfiles import watch

from ferrocorn.config import Config
from ferrocorn.supervisor.basereload import BaseReload

DEFAULT_INCLUDES = ["*.py"]
DEFAULT_EXCLUDES = [".*", ".py[cod]", ".sw.*", "~*"]
WATCH_TIMEOUT_MS = 100


class FileFilter:
    """Decides whether a changed path calls for a reload, from --reload-include/--reload-exclude.

    A default pattern named on the other side is dropped (`--reload-exclude '*.py'` stops watching
    Python files); a file named explicitly by an include always counts.
    """

    def __init__(self, config: Config) -> None:
        includes = [pattern for pattern in DEFAULT_INCLUDES if pattern not in config.reload_excludes]
        self.includes = list(dict.fromkeys([*includes, *config.reload_includes]))
        excludes = [pattern for pattern in DEFAULT_EXCLUDES if pattern not in config.reload_includes]
        self.exclude_dirs = list(config.reload_dirs_excludes)
        excluded_dir_names = {str(path) for path in self.exclude_dirs}
        for pattern in config.reload_excludes:
            if pattern not in excluded_dir_names and not Path(pattern).is_dir():
                excludes.append(pattern)
        self.excludes = list(dict.fromkeys(excludes))

    def __call__(self, path: Path) -> bool:
        for include in self.includes:
            if not path.match(include):
                continue
            if str(path).endswith(include):
                return True  # the file itself was named
            if any(directory in path.parents for directory in self.exclude_dirs):
                return False
            return not any(path.match(exclude) for exclude in self.excludes)
        return False


class WatchFilesReload(BaseReload):
    reloader_name = "WatchFiles"

    def __init__(self, config: Config, target: Callable[..., None], sockets: list[socket]) -> None:
        super().__init__(config, target, sockets)
        self.watch_filter = FileFilter(config)
        # Each next() returns the changes collected since the previous one, or an empty set after
        # WATCH_TIMEOUT_MS without any (so the loop keeps its --reload-delay rhythm).
        self.watcher = watch(
            *config.reload_dirs,
            watch_filter=None,
            stop_event=self.should_exit,
            rust_timeout=WATCH_TIMEOUT_MS,
            yield_on_timeout=True,
            ignore_permission_denied=True,
        )
        # watchfiles only starts watching on the first next(): do it now, before the first child
        # starts, or an edit made while the child is coming up would go unnoticed.
        next(self.watcher)

    def should_restart(self) -> list[Path] | None:
        if not self.pause():
            return None
        try:
            changes = next(self.watcher)
        except StopIteration:  # should_exit was set while waiting
            return None
        changed_paths = {Path(path) for _, path in changes}
        return sorted(path for path in changed_paths if self.watch_filter(path))
