"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferrocorn.config import Config

LIFESPAN_SPEC_VERSION = "2.0"
_EXPECTED_MESSAGES = (
    "lifespan.startup.complete",
    "lifespan.startup.failed",
    "lifespan.shutdown.complete",
    "lifespan.shutdown.failed",
)


class Lifespan:
    """Runs the app's lifespan scope. With `--lifespan off` every step is a no-op."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.logger = logging.getLogger("ferrocorn.error")
        self.state: dict[str, Any] = {}
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error_occurred = False
        self.startup_failed = False
        self.shutdown_failed = False
        self.should_exit = False
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.config.lifespan != "off"

    async def startup(self) -> None:
        if not self.enabled:
            return
        self.logger.info("Waiting for application startup.")
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.startup_failed or (self.error_occurred and self.config.lifespan == "on"):
            self.logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if not self.enabled or self.error_occurred:
            return
        self.logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()
        if self.shutdown_failed or (self.error_occurred and self.config.lifespan == "on"):
            self.logger.error("Application shutdown failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application shutdown complete.")

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": self.config.asgi_version, "spec_version": LIFESPAN_SPEC_VERSION},
            "state": self.state,
        }
        try:
            await self.config.loaded_app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.error_occurred = True  # the loop is closing (forced exit): nothing to report
            raise
        except BaseException as exc:
            self.error_occurred = True
            if self.startup_failed or self.shutdown_failed:
                return
            if self.config.lifespan == "auto":
                self.logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                self.logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            self.startup_event.set()
            self.shutdown_event.set()

    async def receive(self) -> dict[str, Any]:
        return await self.receive_queue.get()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind not in _EXPECTED_MESSAGES:
            raise RuntimeError(f"Unexpected ASGI lifespan message type {kind!r}.")
        if kind.startswith("lifespan.startup."):
            if self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError(f"Got invalid state transition on lifespan protocol: {kind!r}.")
            self.startup_failed = kind == "lifespan.startup.failed"
            self.startup_event.set()
        else:
            if not self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError(f"Got invalid state transition on lifespan protocol: {kind!r}.")
            self.shutdown_failed = kind == "lifespan.shutdown.failed"
            self.shutdown_event.set()
        if kind.endswith(".failed") and message.get("message"):
            self.logger.error(message["message"])
