"""`Server`: one worker process serving one app, as uvicorn's `Server` does.

The Rust core owns the sockets and HTTP; this module owns the lifecycle around it: lifespan,
the startup lines, the once-a-tick checks, signals and the graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

from ferrocorn import _ferrocorn
from ferrocorn._ferrocorn import ClientDisconnected
from ferrocorn.access import native_access_log
from ferrocorn.config import STARTUP_FAILURE, Config
from ferrocorn.lifespan import Lifespan
from ferrocorn.sockets import BindTarget, bind_sockets, target_of, unix_socket_paths
from ferrocorn.systemd import Notifier

if TYPE_CHECKING:
    # Imported when --metrics-bind is used: http.server is memory a single worker need not carry.
    from ferrocorn.metrics import MetricsServer, MetricsSlot

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

logger = logging.getLogger("ferrocorn.error")
access_logger = logging.getLogger("ferrocorn.access")


#: What the core hands the runner for each request: its receive/send pair.
CoreProtocol = _ferrocorn.HttpProtocol | _ferrocorn.WebSocketProtocol


def make_runner(app: Any) -> Callable[[dict[str, Any], CoreProtocol], Coroutine[Any, Any, None]]:
    """The coroutine the core starts for each request: the app, plus what its failures mean."""

    async def run_http(scope: dict[str, Any], protocol: CoreProtocol) -> None:
        try:
            await app(scope, protocol.receive, protocol.send)
        except ClientDisconnected:
            protocol.app_failed()  # the client left mid-response: nothing to report
        except Exception as exc:
            protocol.app_failed()
            logger.error("Exception in ASGI application\n", exc_info=exc)
        except BaseException:
            protocol.app_failed()  # cancelled at shutdown, or the process is exiting
            raise
        else:
            problem = protocol.app_returned()
            if problem is not None:
                logger.error(problem)

    return run_http


def eager_task_factory(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, None]], Any] | None:
    """How the core creates each request's Task: on CPython 3.12+, started eagerly (its first step runs
    inside the call, so an app that answers without waiting is never scheduled: no loop callback, no
    extra iteration), unless the app's lifespan set a task factory of its own, which then decides.

    The Task is real from its first instruction: `asyncio.current_task()` is the request's task and
    the app runs in the task's own copy of the context, as with `loop.create_task`."""
    if sys.version_info < (3, 12) or loop.get_task_factory() is not None:
        return None
    return functools.partial(asyncio.Task, loop=loop, eager_start=True)


def freeze_startup_objects() -> None:
    """Before the first request: what is alive now lives as long as the process, so the cyclic garbage
    collector need not walk it again. Under load it runs every few hundred requests (each request's
    scope, headers, coroutine and Task count towards its threshold), and its full collections walked
    the app's whole heap: 12 % of the server's CPU on HTTP/2 (`docs/performance.md`). Garbage that
    exists now is collected first; frozen objects are still freed by reference counting, only a
    cycle among them that becomes garbage later is kept."""
    gc.collect()
    gc.freeze()


def log_access(scope: dict[str, Any], status: int) -> None:
    if not access_logger.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    client_addr = f"{client[0]}:{client[1]}" if client else ""
    path = quote(scope["path"])
    if scope["query_string"]:
        path = f"{path}?{scope['query_string'].decode('ascii', 'replace')}"
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d',
        client_addr,
        scope["method"],
        path,
        scope["http_version"],
        status,
    )


def log_started_message(config: Config, sockets: list[socket.socket]) -> None:
    """The "running on" lines, one per place listened on: by the server that bound its sockets, or by the
    reload/workers parent."""
    announced: list[BindTarget] = []
    for sock in sockets:
        target = target_of(sock)
        if target is None:
            break  # sockets bound elsewhere (handed to Server.serve): named after the configuration
        if target not in announced:  # a host resolving to several addresses is one line, as in uvicorn
            announced.append(target)
            log_running_on(config, target, sock)
    else:
        if announced:
            return
    _log_configured_listener(config, sockets)


def log_running_on(config: Config, target: BindTarget, sock: socket.socket) -> None:
    """uvicorn's "running on" line for one kind of listener."""
    if target.kind == "fd" and target.name:
        logger.info(
            "Ferrocorn running on socket %s from systemd (%s) (Press CTRL+C to quit)", sock.getsockname(), target.name
        )
    elif target.kind == "fd":
        logger.info("Ferrocorn running on socket %s (Press CTRL+C to quit)", sock.getsockname())
    elif target.kind == "unix":
        logger.info("Ferrocorn running on unix socket %s (Press CTRL+C to quit)", target.path)
    else:
        host = "0.0.0.0" if target.host is None else target.host
        address_format = "%s://[%s]:%d" if ":" in host else "%s://%s:%d"
        port = target.port or sock.getsockname()[1]
        scheme = "https" if config.is_ssl else "http"
        message = f"Ferrocorn running on {address_format} (Press CTRL+C to quit)"
        color_message = "Ferrocorn running on " + click.style(address_format, bold=True) + " (Press CTRL+C to quit)"
        logger.info(message, scheme, host, port, extra={"color_message": color_message})


def _log_configured_listener(config: Config, sockets: list[socket.socket]) -> None:
    if config.fd is not None:
        logger.info("Ferrocorn running on socket %s (Press CTRL+C to quit)", sockets[0].getsockname())
        return
    if config.uds is not None:
        logger.info("Ferrocorn running on unix socket %s (Press CTRL+C to quit)", config.uds)
        return
    address_format = "%s://%s:%d"
    host = "0.0.0.0" if config.host is None else config.host
    if ":" in host:
        address_format = "%s://[%s]:%d"
    port = config.port
    if port == 0 and sockets:
        port = sockets[0].getsockname()[1]
    scheme = "https" if config.is_ssl else "http"
    message = f"Ferrocorn running on {address_format} (Press CTRL+C to quit)"
    color_message = "Ferrocorn running on " + click.style(address_format, bold=True) + " (Press CTRL+C to quit)"
    logger.info(message, scheme, host, port, extra={"color_message": color_message})


class Server:
    #: The Rust side of the server, created by `startup()` once the lifespan startup is done.
    core: _ferrocorn.Core
    #: The signals that stop the server while `serve()` runs (a gunicorn worker adds SIGQUIT).
    handled_signals: tuple[int, ...] = HANDLED_SIGNALS

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.servers: list[socket.socket] = []
        self._owned_sockets: list[socket.socket] = []
        self._captured_signals: list[int] = []
        self.limit_max_requests: int | None = None
        self.last_notified = 0.0
        #: Under a supervisor that replaces workers: called once --limit-max-requests is reached, instead of
        #: exiting; the worker serves on until its replacement does and the supervisor drains it (SIGTERM).
        self.request_replacement: Callable[[], None] | None = None
        self._replacement_requested = False
        #: The systemd service manager to tell about readiness, the drain and the watchdog ($NOTIFY_SOCKET):
        #: set by `run()` for a server that is the whole service, None for a worker or a gunicorn worker.
        self.systemd: Notifier | None = None
        self._last_watchdog = 0.0
        #: `--metrics-bind`: this worker's slot, given by the supervisor (or its own, see startup()).
        self.metrics_slot: MetricsSlot | None = None
        self.metrics: MetricsServer | None = None

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio_run(self.serve(sockets=sockets), loop_factory=self.config.get_loop_factory())

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        process_id = os.getpid()
        config = self.config
        if not config.loaded:
            config.load()
        self.lifespan = Lifespan(config)
        logger.info("Started server process [%d]", process_id)

        await self.startup(sockets=sockets)
        if self.should_exit:
            return
        if self.systemd is not None:
            # Every listener is bound, the lifespan startup is done and the core accepts: the service is up.
            self.systemd.ready(f"Serving (pid {process_id})")
        await self.main_loop()
        await self.shutdown(sockets=sockets)
        logger.info("Finished server process [%d]", process_id)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            self.should_exit = True
            return

        config = self.config
        if sockets is None:
            try:
                sockets = bind_sockets(config)
            except OSError as exc:
                logger.error(exc)
                await self.lifespan.shutdown()
                sys.exit(STARTUP_FAILURE)
            self._owned_sockets = sockets
        self.servers = list(sockets)
        if self.metrics_slot is None and config.metrics_bind is not None:
            # Not a supervised worker: this process serves its own metrics.
            from ferrocorn.metrics import start_metrics_server

            try:
                self.metrics = start_metrics_server(config.metrics_bind, slots=1)
            except SystemExit:
                for sock in self._owned_sockets:
                    sock.close()
                await self.lifespan.shutdown()
                raise
            self.metrics_slot = self.metrics.block.acquire() if self.metrics else None

        loop = asyncio.get_running_loop()
        native_log = native_access_log(config.access_log_format) if config.access_log else None
        end_access_log = None if native_log else config.end_of_response_access_log
        runner = make_runner(config.loaded_app)
        self.core = _ferrocorn.Core(
            loop_=loop,
            runner=end_access_log.wrap(runner) if end_access_log else runner,
            log=logger.log,
            access_log=log_access if config.access_log and not native_log and end_access_log is None else None,
            state=self.lifespan.state,
            eager_task=eager_task_factory(loop),
            settings={
                "root_path": config.root_path,
                "default_headers": config.encoded_headers,
                "keep_alive_timeout": float(config.timeout_keep_alive),
                "max_header_size": config.h11_max_incomplete_event_size,
                "date_header": config.date_header,
                "early_hints_http1": config.early_hints_http1,
                "asgi_version": config.asgi_version,
                "reset_contextvars": config.reset_contextvars,
                "limit_concurrency": config.limit_concurrency,
                "limit_request_body_size": config.limit_request_body_size,
                "limit_request_headers": config.limit_request_headers,
                "limit_request_line": config.limit_request_line,
                "limit_request_field_size": config.limit_request_field_size,
                "forwarded_allow_ips": config.trusted_proxies if config.proxy_headers else None,
                "tls": config.tls,
                "tls_handshake_timeout": float(config.timeout_tls_handshake),
                "request_head_timeout": float(config.timeout_request_head),
                "request_body_timeout": float(config.timeout_request_body),
                "response_write_timeout": float(config.timeout_response_write),
                "http2": config.http2_settings(),
                "websocket": config.websocket_settings,
                "proxy_protocol": config.proxy_protocol_settings,
                "native_access_log": native_log,
                "metrics": self.metrics_slot,
            },
        )
        for sock in sockets:
            unix_path = sock.getsockname() if sock.family == socket.AF_UNIX else None
            self.core.listen(sock.fileno(), unix_path=unix_path or None)
        loop.add_reader(self.core.fileno(), self.core.drain)
        if config.gc_freeze:
            freeze_startup_objects()
        self.core.start()

        if config.limit_max_requests is not None:
            import random

            self.limit_max_requests = config.limit_max_requests + random.randint(0, config.limit_max_requests_jitter)
        if self._owned_sockets:
            # Sockets handed in (by the reload or workers parent) were announced by whoever bound them.
            self._log_started_message(sockets)
        self.started = True

    def _log_started_message(self, sockets: list[socket.socket]) -> None:
        log_started_message(self.config, sockets)

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.1)
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        if self.should_exit:
            return True
        if self.config.callback_notify is not None:
            # Every --timeout-notify seconds, as uvicorn calls it: the heartbeat of a supervised
            # worker (gunicorn's arbiter). Sent from the loop, so a loop blocked by the app misses
            # it and the worker is replaced.
            now = time.monotonic()
            if now - self.last_notified > self.config.timeout_notify:
                self.last_notified = now
                await self.config.callback_notify()
        systemd = self.systemd
        if systemd is not None and systemd.watchdog_interval is not None:
            # From the event loop: a loop blocked by the app stops the pings, and systemd acts on it.
            now = time.monotonic()
            if now - self._last_watchdog >= systemd.watchdog_interval:
                self._last_watchdog = now
                systemd.watchdog()
        if self.limit_max_requests is not None and self.core.total_requests >= self.limit_max_requests:
            if self.request_replacement is None:
                logger.warning("Maximum request limit of %d exceeded. Terminating process.", self.limit_max_requests)
                return True
            if not self._replacement_requested:
                self._replacement_requested = True
                logger.warning(
                    "Maximum request limit of %d exceeded. Terminating process once its replacement serves.",
                    self.limit_max_requests,
                )
                self.request_replacement()
        return False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        if self.systemd is not None:
            self.systemd.stopping()
        core = self.core
        core.stop_accepting()
        for sock in self._owned_sockets:
            sock.close()
        try:
            await asyncio.wait_for(self._wait_for_requests(), timeout=self.config.timeout_graceful_shutdown)
        except asyncio.TimeoutError:
            logger.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded",
                core.tasks,
            )
        if core.tasks:
            core.cancel_tasks()
            await asyncio.sleep(0)  # let the cancelled tasks end their responses
        core.force_close()
        loop = asyncio.get_running_loop()
        loop.remove_reader(core.fileno())
        core.close()
        for path in unix_socket_paths(self.config) if self._owned_sockets else []:
            if os.path.exists(path):
                os.remove(path)
        if not self.force_exit:
            await self.lifespan.shutdown()
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    async def _wait_for_requests(self) -> None:
        core = self.core
        if core.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            while core.connections and not self.force_exit:
                await asyncio.sleep(0.1)
        if core.tasks and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            while core.tasks and not self.force_exit:
                await asyncio.sleep(0.1)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled in the main thread
            return
        # Keyed by int: the captured signals come back as plain numbers.
        original_handlers: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
            sig: signal.signal(sig, self.handle_exit) for sig in self.handled_signals
        }
        try:
            yield
        finally:
            for sig, handler in original_handlers.items():
                signal.signal(sig, handler)
        # Deliver each captured signal to the handler installed before us (SIGINT's default
        # raises KeyboardInterrupt, which run() swallows). A signal whose disposition was the
        # default is not re-raised: the graceful shutdown is done, and the exit code is 0.
        for captured in reversed(self._captured_signals):
            previous = original_handlers[captured]
            if callable(previous):
                signal.raise_signal(captured)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._captured_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def asyncio_run(
    main: Coroutine[Any, Any, None], *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main)
        return
    loop = (loop_factory or asyncio.new_event_loop)()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
