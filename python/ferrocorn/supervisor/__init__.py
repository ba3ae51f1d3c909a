"""Process supervision: the reloader (`--reload`) and the worker supervisor (`--workers N`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferrocorn.supervisor.basereload import BaseReload
from ferrocorn.supervisor.multiprocess import Multiprocess

if TYPE_CHECKING:
    ChangeReload: type[BaseReload]
else:
    try:
        from ferrocorn.supervisor.watchfilesreload import WatchFilesReload as ChangeReload
    except ImportError:  # watchfiles is optional (the `standard` extra): poll file times instead
        from ferrocorn.supervisor.statreload import StatReload as ChangeReload

__all__ = ["BaseReload", "ChangeReload", "Multiprocess"]
