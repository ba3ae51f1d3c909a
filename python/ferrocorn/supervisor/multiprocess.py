"""The worker supervisor: `--workers N` processes serving the sockets the parent bound.

The parent keeps N workers alive (respawning any that dies or stops answering its healthcheck)
and reacts to signals as uvicorn's supervisor does: SIGINT/SIGTERM stop every worker gracefully,
SIGHUP replaces them one by one, SIGTTIN/SIGTTOU add or remove one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

import click

from ferrocorn.config import STARTUP_FAILURE, Config
from ferrocorn.metrics import MetricsSlot, SupervisorMetrics, start_metrics_server
from ferrocorn.server import Server, asyncio_run
from ferrocorn.supervisor._subprocess import get_subprocess, spawn

#: The signals the supervisor reacts to, by number, with the name their handler is called after.
SIGNALS = {
    getattr(signal, f"SIG{name}"): name
    for name in ("INT", "TERM", "HUP", "QUIT", "TTIN", "TTOU", "USR1", "USR2", "WINCH")
    if hasattr(signal, f"SIG{name}")
}

#: How often the supervisor looks at its workers when nothing wakes it earlier.
TICK = 0.5

logger = logging.getLogger("ferrocorn.error")


# --- in the worker --------------------------------------------------------------------------


def run_worker(
    config: Config,
    sockets: list[socket.socket],
    healthcheck: Connection,
    heartbeat: Any,
    metrics: MetricsSlot | None = None,
) -> None:
    """A worker's main: serve until told to stop, answering the parent's pings and notifying it meanwhile."""
    server = Server(config=config)
    server.metrics_slot = metrics
    responder = HealthcheckResponder(server, healthcheck)
    responder.start()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        responder.loop = loop
        notify_from_loop(loop, server, heartbeat, interval=min(1.0, config.timeout_notify / 4))
        await server.serve(sockets=sockets)

    asyncio_run(serve(), loop_factory=config.get_loop_factory())
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # e.g. the lifespan startup failed: the parent must not respawn us


def notify_from_loop(loop: asyncio.AbstractEventLoop, server: Server, heartbeat: Any, interval: float) -> None:
    """Write the time into `heartbeat` (shared with the parent) every `interval` seconds from the event loop,
    once the server serves: a loop that stops turning stops notifying (--timeout-notify)."""

    def beat() -> None:
        if server.started:
            heartbeat.value = time.monotonic()
            loop.call_later(interval, beat)
        else:
            loop.call_later(0.01, beat)  # the first notification follows the start closely

    beat()


class HealthcheckResponder(threading.Thread):
    """Answers each ping from the parent with whether the server has started.

    Once the server is up, the answer is sent from the event loop, not from this thread: a worker
    whose loop is blocked (an app calling `time.sleep`, a deadlock) then fails the healthcheck
    and is replaced. Before that (importing the app, lifespan startup) this thread answers itself,
    so a slow startup is not taken for a hang.
    """

    def __init__(self, server: Server, connection: Connection) -> None:
        super().__init__(daemon=True, name="ferrocorn-healthcheck")
        self.server = server
        self.connection = connection
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        while True:
            try:
                self.connection.recv()
            except (EOFError, OSError):
                return  # the parent closed its end: it no longer watches us
            if self.server.started and self.loop is not None:
                try:
                    self.loop.call_soon_threadsafe(self.answer)
                    continue
                except RuntimeError:
                    pass  # the loop is closed: the worker is exiting
            self.answer()

    def answer(self) -> None:
        try:
            self.connection.send(self.server.started)
        except OSError:
            pass


# --- in the parent --------------------------------------------------------------------------


class Worker:
    """The parent's handle on one worker process and its healthcheck pipe."""

    def __init__(self, config: Config, sockets: list[socket.socket], metrics: SupervisorMetrics | None = None) -> None:
        self.parent_conn, child_conn = spawn.Pipe()
        #: When the worker last notified (time.monotonic()); 0 until it serves.
        self.heartbeat = spawn.RawValue("d", 0.0)
        target = functools.partial(run_worker, config)
        #: `--metrics-bind`: where the worker counts (its gauges zeroed); given back when it has exited.
        self.metrics = metrics
        self.metrics_slot = metrics.acquire() if metrics else None
        self.process = get_subprocess(
            config,
            target=target,
            sockets=sockets,
            healthcheck=child_conn,
            heartbeat=self.heartbeat,
            metrics=self.metrics_slot,
        )
        self._child_conn = child_conn
        #: The last healthcheck went unanswered while the pipe stayed open: the worker hangs.
        self.hung = False
        #: The worker stopped notifying (--timeout-notify) while the last healthcheck waited.
        self.silent = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    def start(self) -> None:
        self.process.start()
        self._child_conn.close()  # the child has its own copy; ours would keep the pipe open

    def _healthcheck(self, timeout: float, notify_timeout: float | None = None) -> bool | None:
        """The worker's `started` flag, or None if it does not answer within `timeout` seconds (or, given
        `notify_timeout`, stops notifying meanwhile: `silent`)."""
        self.hung = False
        self.silent = False
        try:
            self.parent_conn.send(b"ping")
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                wait = remaining if notify_timeout is None else min(remaining, 0.25)
                if self.parent_conn.poll(max(wait, 0.0)):
                    started: bool = self.parent_conn.recv()
                    return started
                if notify_timeout is not None and self.missed_notify(notify_timeout):
                    self.silent = True
                    return None
                if remaining <= 0:
                    break
        except (OSError, EOFError):
            return None  # the pipe broke: the worker has exited
        self.hung = True
        return None

    def missed_notify(self, timeout: float) -> bool:
        """Serving, but silent for more than `timeout` seconds."""
        last: float = self.heartbeat.value
        return last > 0 and time.monotonic() - last > timeout

    def is_alive(self, timeout: float, notify_timeout: float | None = None) -> bool:
        """Running, and its event loop answered a ping within `timeout` seconds (and kept notifying)."""
        return self.process.is_alive() and self._healthcheck(timeout, notify_timeout) is not None

    def wait_until_ready(self, timeout: float, should_exit: threading.Event) -> bool:
        """True once the worker serves; False if it exits, the supervisor stops, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not should_exit.is_set() and self.process.is_alive():
            if self._healthcheck(timeout=min(1.0, max(deadline - time.monotonic(), 0.01))):
                return True
            time.sleep(0.05)
        return False

    def terminate(self) -> None:
        """Ask the worker to stop gracefully (SIGTERM)."""
        if self.process.exitcode is None:
            assert self.process.pid is not None
            os.kill(self.process.pid, signal.SIGTERM)
            logger.info("Terminated child process [%s]", self.process.pid)
        self.parent_conn.close()

    def kill(self) -> None:
        self.process.kill()
        self.parent_conn.close()

    def join(self) -> None:
        logger.info("Waiting for child process [%s]", self.process.pid)
        self.process.join()
        if self.metrics:
            self.metrics.release(self.metrics_slot)
            self.metrics = None


def restart_reason(worker: Worker, silent: bool) -> str:
    """Why a dead or unresponsive worker is replaced (`ferrocorn_worker_restarts_total`'s label)."""
    if silent or worker.silent:
        return "notify_timeout"
    if worker.hung:
        return "healthcheck"
    return "exit" if worker.exitcode == 0 else "crash"


class Multiprocess:
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.processes_num: int = config.workers
        self.processes: list[Worker] = []
        self.should_exit = threading.Event()
        #: STARTUP_FAILURE once a worker could not start: the app is broken, respawning will not help.
        self.exit_code = 0
        self.signal_queue: list[int] = []
        # Signals are queued by the handler and acted on by the main loop. The wake-up pipe cuts
        # the loop's wait short, so a signal is handled at once, not at the next tick.
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        #: `--metrics-bind`: the endpoint and the workers' shared counters (exits 3 if it cannot bind).
        self.metrics = SupervisorMetrics(start_metrics_server(config.metrics_bind))

    def signal_handler(self, sig: int, frame: FrameType | None) -> None:
        self.signal_queue.append(sig)

    def run(self) -> None:
        pid = os.getpid()
        message = f"Started parent process [{pid}]"
        color_message = "Started parent process [{}]".format(click.style(str(pid), fg="cyan", bold=True))
        logger.info(message, extra={"color_message": color_message})

        for sig in SIGNALS:
            signal.signal(sig, self.signal_handler)
        previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
        try:
            self.init_processes()
            while not self.should_exit.is_set():
                self.wait_for_event(TICK)
                self.handle_signals()
                self.keep_subprocess_alive()
            self.terminate_all()
            self.join_all()
        finally:
            signal.set_wakeup_fd(previous_wakeup_fd)
            self._wakeup_reader.close()
            self._wakeup_writer.close()
            self.metrics.close()

        message = f"Stopping parent process [{pid}]"
        color_message = "Stopping parent process [{}]".format(click.style(str(pid), fg="cyan", bold=True))
        logger.info(message, extra={"color_message": color_message})

    def wait_for_event(self, timeout: float) -> None:
        """Sleep until a worker exits, a signal arrives, or `timeout` passes."""
        sentinels = [process.sentinel for process in self.processes]
        ready = wait([self._wakeup_reader, *sentinels], timeout=timeout)
        if self._wakeup_reader in ready:
            try:
                while self._wakeup_reader.recv(512):
                    pass
            except BlockingIOError:
                pass

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.processes.append(self.start_worker())

    def start_worker(self) -> Worker:
        worker = Worker(self.config, self.sockets, self.metrics)
        worker.start()
        return worker

    def terminate_all(self) -> None:
        for process in self.processes:
            process.terminate()

    def join_all(self) -> None:
        for process in self.processes:
            process.join()

    def keep_subprocess_alive(self) -> None:
        """Replace every worker that exited or failed its healthcheck."""
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return  # stopping: a worker going away is expected now
            notify_timeout = self.config.timeout_notify
            silent = process.missed_notify(notify_timeout)
            if not silent and process.is_alive(self.config.timeout_worker_healthcheck, notify_timeout):
                continue
            if silent or process.silent:
                logger.warning(
                    "Child process [%s] has not notified the supervisor within %s seconds, killing it.",
                    process.pid,
                    notify_timeout,
                )
            elif process.hung:
                logger.warning(
                    "Child process [%s] did not answer the healthcheck within %s seconds, killing it.",
                    process.pid,
                    self.config.timeout_worker_healthcheck,
                )
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving: the app, its lifespan or the socket is broken and
                # every replacement would fail the same way.
                logger.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.exit_code = STARTUP_FAILURE
                self.should_exit.set()
                return
            logger.info("Child process [%s] died", process.pid)
            self.metrics.worker_restarted(restart_reason(process, silent))
            self.processes[index] = self.start_worker()

    def restart_all(self) -> None:
        """Replace each worker in turn, retiring the old one only once its replacement serves."""
        for index, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self.start_worker()
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error(
                        "New child process [%s] was not ready in time; keeping worker [%s] and aborting the restart.",
                        new_process.pid,
                        old_process.pid,
                    )
                return
            old_process.terminate()
            old_process.join()
            self.metrics.worker_restarted("reload")
            self.processes[index] = new_process

    def handle_signals(self) -> None:
        while self.signal_queue:
            sig = self.signal_queue.pop(0)
            name = SIGNALS[sig]
            handler = getattr(self, f"handle_{name.lower()}", None)
            if handler is not None:
                handler()
            else:
                logger.debug("Received signal SIG%s, but no handler is defined for it.", name)

    def handle_int(self) -> None:
        logger.info("Received SIGINT, exiting.")
        self.should_exit.set()

    def handle_term(self) -> None:
        logger.info("Received SIGTERM, exiting.")
        self.should_exit.set()

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, restarting processes.")
        self.restart_all()

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self.start_worker())

    def handle_ttou(self) -> None:
        logger.info("Received SIGTTOU, decreasing number of processes.")
        if self.processes_num <= 1:
            logger.info("Already reached one process, cannot decrease the number of processes anymore.")
            return
        self.processes_num -= 1
        process = self.processes.pop()
        process.terminate()
        process.join()
