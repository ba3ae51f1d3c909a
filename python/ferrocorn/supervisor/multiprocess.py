"""The worker supervisor: `--workers N` processes serving the sockets the parent bound.

The parent keeps N workers alive (respawning any that dies or stops answering its healthcheck)
and reacts to signals as uvicorn's supervisor does: SIGINT/SIGTERM stop every worker gracefully,
SIGHUP replaces them one by one, SIGTTIN/SIGTTOU add or remove one.

Workers are also recycled: after `--limit-worker-lifetime` seconds, above `--limit-worker-memory`
MiB of RSS, or once they reached `--limit-max-requests`. A recycle (like SIGHUP's) is a rolling
replacement, one worker at a time: the new worker starts, the old one serves on until the new one
does, and only then is the old one drained with SIGTERM (its requests in flight finish). Capacity
never drops, even with a single worker. Every replacement, whatever its reason, goes through
`worker_replaced(old, new, reason)`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

import click

from ferrocorn.config import STARTUP_FAILURE, Config
from ferrocorn.metrics import RESTART_REASONS, MetricsSlot, SupervisorMetrics, start_metrics_server
from ferrocorn.server import Server, asyncio_run
from ferrocorn.supervisor._subprocess import get_subprocess, spawn
from ferrocorn.systemd import Notifier

#: The signals the supervisor reacts to, by number, with the name their handler is called after.
SIGNALS = {
    getattr(signal, f"SIG{name}"): name
    for name in ("INT", "TERM", "HUP", "QUIT", "TTIN", "TTOU", "USR1", "USR2", "WINCH")
    if hasattr(signal, f"SIG{name}")
}

#: How often the supervisor looks at its workers when nothing wakes it earlier.
TICK = 0.5
#: How often the supervisor samples each worker's resident memory (--limit-worker-memory).
MEMORY_SAMPLE_INTERVAL = 1.0
#: Each worker's lifetime and memory limits are drawn from [1 - RECYCLE_JITTER, 1] times the configured
#: value: workers started together are not all replaced together, and no limit is ever exceeded.
RECYCLE_JITTER = 0.1
#: How long a replacement may take to serve (import, lifespan startup) before it is given up.
REPLACEMENT_TIMEOUT = 60.0
#: A worker that replaced one for its memory and is over its own limit this soon after it began serving is not
#: replaced: the limit is below what a fresh worker needs.
FRESH = 5.0
#: After a replacement failed, how long the old workers are kept before recycling is tried again.
RECYCLE_RETRY_DELAY = 10.0
#: The reasons a worker is replaced, as `worker_replaced` receives them (and metrics label them).
REASONS = RESTART_REASONS

logger = logging.getLogger("ferrocorn.error")


# --- in the worker --------------------------------------------------------------------------


def run_worker(
    config: Config,
    sockets: list[socket.socket],
    healthcheck: Connection,
    heartbeat: Any,
    retire: Any,
    notify_interval: float,
    metrics: MetricsSlot | None = None,
) -> None:
    """A worker's main: serve until told to stop, answering the parent's pings and notifying it meanwhile.
    At --limit-max-requests it sets `retire` (shared with the parent) and serves on until it is replaced."""
    server = Server(config=config)
    server.metrics_slot = metrics
    responder = HealthcheckResponder(server, healthcheck)
    responder.start()

    def request_replacement() -> None:
        retire.value = 1

    server.request_replacement = request_replacement

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        responder.loop = loop
        notify_from_loop(loop, server, heartbeat, interval=notify_interval)
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

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        notify_interval: float = 1.0,
        metrics: SupervisorMetrics | None = None,
    ) -> None:
        self.parent_conn, child_conn = spawn.Pipe()
        #: When the worker last notified (time.monotonic()); 0 until it serves.
        self.heartbeat = spawn.RawValue("d", 0.0)
        #: Set to 1 by the worker once it reached --limit-max-requests: it asks to be replaced.
        self.retire = spawn.RawValue("b", 0)
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
            retire=self.retire,
            notify_interval=notify_interval,
            metrics=self.metrics_slot,
        )
        self._child_conn = child_conn
        #: The last healthcheck went unanswered while the pipe stayed open: the worker hangs.
        self.hung = False
        #: The worker stopped notifying (--timeout-notify) while the last healthcheck waited.
        self.silent = False
        #: When the supervisor first saw it serve (time.monotonic()); its lifetime counts from there.
        self.serving_since: float | None = None
        #: Its own --limit-worker-lifetime (seconds) and --limit-worker-memory (MiB), jitter applied.
        self.lifetime = _jittered(config.limit_worker_lifetime)
        memory = _jittered(config.limit_worker_memory)
        self.memory_limit = None if memory is None else max(1, int(memory))
        #: Replace it at the next chance, for this reason (set for every worker by SIGHUP).
        self.pending_reason: str | None = None
        #: It was started to replace a worker that exceeded --limit-worker-memory.
        self.replaced_for_memory = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    @property
    def serving(self) -> bool:
        """Its server has started and its event loop has notified at least once."""
        return bool(self.heartbeat.value > 0)

    def rss_mib(self) -> float | None:
        """Its resident memory in MiB (the worker's own, not its children's); None if it cannot be read."""
        try:
            with open(f"/proc/{self.pid}/statm") as statm:
                resident_pages = int(statm.read().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)

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


def _jittered(limit: float | None) -> float | None:
    """`limit` less up to RECYCLE_JITTER of it, drawn once per worker."""
    return None if limit is None else limit * (1 - random.uniform(0, RECYCLE_JITTER))


@dataclass
class Replacement:
    """A rolling replacement in progress: `new` starts while `old` (at `index`) serves on."""

    index: int
    old: Worker
    new: Worker
    reason: str
    deadline: float


class Multiprocess:
    def __init__(self, config: Config, sockets: list[socket.socket], systemd: Notifier | None = None) -> None:
        self.config = config
        self.sockets = sockets
        self.processes_num: int = config.workers
        self.processes: list[Worker] = []
        #: Replaced workers draining after their SIGTERM, reaped once they exit.
        self.retiring: list[Worker] = []
        #: The one rolling replacement under way, if any.
        self.replacement: Replacement | None = None
        #: No recycling before this time (time.monotonic()): a replacement failed to serve.
        self.recycle_paused_until = 0.0
        self.next_memory_sample = 0.0
        self.should_exit = threading.Event()
        #: STARTUP_FAILURE once a worker could not start: the app is broken, respawning will not help.
        self.exit_code = 0
        self.signal_queue: list[int] = []
        #: The systemd service manager ($NOTIFY_SOCKET), told when every worker serves, on reload and on stop.
        self.systemd = systemd
        self.ready_sent = False
        self.reloading = False
        # A worker notifies often enough for --timeout-notify and for systemd's watchdog.
        intervals = [1.0, config.timeout_notify / 4]
        if systemd is not None and systemd.watchdog_timeout is not None:
            intervals.append(systemd.watchdog_timeout / 4)
        self.notify_interval = min(intervals)
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
            self.start_watchdog()
            while not self.should_exit.is_set():
                self.wait_for_event(TICK)
                self.handle_signals()
                self.keep_subprocess_alive()
                self.reap_retired()
                self.advance_replacement()
                self.recycle_workers()
                self.notify_systemd()
            if self.systemd is not None:
                self.systemd.stopping()
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
        sentinels = [process.sentinel for process in self.all_workers()]
        ready = wait([self._wakeup_reader, *sentinels], timeout=timeout)
        if self._wakeup_reader in ready:
            try:
                while self._wakeup_reader.recv(512):
                    pass
            except BlockingIOError:
                pass

    def all_workers(self) -> list[Worker]:
        """Every worker process: serving, starting as a replacement, or draining."""
        starting = [self.replacement.new] if self.replacement is not None else []
        return [*self.processes, *starting, *self.retiring]

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.processes.append(self.start_worker())

    def start_worker(self) -> Worker:
        worker = Worker(self.config, self.sockets, self.notify_interval, self.metrics)
        worker.start()
        return worker

    def worker_replaced(self, old: Worker, new: Worker, reason: str) -> None:
        """Every replacement of a worker goes through here, `reason` one of REASONS: once `new` serves in `old`'s
        place for a rolling replacement (reload, max-requests, lifetime, memory), as soon as `new` is started for a
        worker that died or was killed (crash, healthcheck, heartbeat)."""
        logger.debug("Child process [%s] replaced by [%s] (%s)", old.pid, new.pid, reason)
        self.metrics.worker_restarted(reason)

    def terminate_all(self) -> None:
        if self.replacement is not None:
            self.processes.append(self.replacement.new)
            self.replacement = None
        for process in self.processes:
            process.terminate()

    def join_all(self) -> None:
        for process in [*self.processes, *self.retiring]:
            process.join()

    # --- crashed, hung and silent workers -------------------------------------------------------

    def keep_subprocess_alive(self) -> None:
        """Replace every worker that exited or failed its healthcheck."""
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return  # stopping: a worker going away is expected now
            notify_timeout = self.config.timeout_notify
            silent = process.missed_notify(notify_timeout)
            if not silent and process.is_alive(self.config.timeout_worker_healthcheck, notify_timeout):
                continue
            reason = "crash"
            if silent or process.silent:
                reason = "heartbeat"
                logger.warning(
                    "Child process [%s] has not notified the supervisor within %s seconds, killing it.",
                    process.pid,
                    notify_timeout,
                )
            elif process.hung:
                reason = "healthcheck"
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
            self.respawn(index, reason)

    def respawn(self, index: int, reason: str) -> None:
        """The worker at `index` is gone: a replacement it was waiting for takes its place, or a new one starts."""
        old = self.processes[index]
        replacement = self.replacement
        if replacement is not None and replacement.old is old:
            self.replacement = None
            new = replacement.new
        else:
            new = self.start_worker()
        self.processes[index] = new
        self.worker_replaced(old, new, reason)

    # --- rolling replacements: recycling and SIGHUP --------------------------------------------

    def recycle_workers(self) -> None:
        """Start replacing the first worker that is due (SIGHUP, --limit-max-requests, --limit-worker-memory,
        --limit-worker-lifetime), unless a replacement is already under way: one at a time."""
        now = time.monotonic()
        for process in self.processes:
            if process.serving_since is None and process.serving:
                process.serving_since = now
        if self.replacement is not None or self.should_exit.is_set() or now < self.recycle_paused_until:
            return
        sample_memory = self.config.limit_worker_memory is not None and now >= self.next_memory_sample
        if sample_memory:
            self.next_memory_sample = now + MEMORY_SAMPLE_INTERVAL
        for index, process in enumerate(self.processes):
            reason = self.recycle_reason(process, now, sample_memory)
            if reason is not None:
                self.replace_worker(index, reason)
                return

    def recycle_reason(self, process: Worker, now: float, sample_memory: bool) -> str | None:
        """Why `process` should be replaced now (logging it), or None."""
        if process.pending_reason is not None:
            return process.pending_reason
        if process.serving_since is None:
            return None  # not serving yet: nothing to recycle
        if process.retire.value:
            logger.info("Child process [%s] reached its request limit, replacing it.", process.pid)
            return "max-requests"
        if sample_memory and process.memory_limit is not None:
            rss = process.rss_mib()
            fresh = process.replaced_for_memory and now - process.serving_since < FRESH
            if rss is not None and rss > process.memory_limit and fresh:
                # It replaced a worker for its memory, and is as big from the start: replacing it would go on
                # forever.
                logger.error(
                    "Child process [%s] uses %d MiB as soon as it serves, over its memory limit of %d MiB: "
                    "--limit-worker-memory is too low, not replacing it for its memory.",
                    process.pid,
                    rss,
                    process.memory_limit,
                )
                process.memory_limit = None
            elif rss is not None and rss > process.memory_limit:
                logger.info(
                    "Child process [%s] uses %d MiB, over its memory limit of %d MiB, replacing it.",
                    process.pid,
                    rss,
                    process.memory_limit,
                )
                return "memory"
        if process.lifetime is not None and now - process.serving_since >= process.lifetime:
            logger.info(
                "Child process [%s] reached its lifetime of %.2f seconds, replacing it.", process.pid, process.lifetime
            )
            return "lifetime"
        return None

    def replace_worker(self, index: int, reason: str) -> None:
        """Start the rolling replacement of the worker at `index`; `advance_replacement` finishes it."""
        old = self.processes[index]
        new = self.start_worker()
        new.replaced_for_memory = reason == "memory"
        self.replacement = Replacement(index, old, new, reason, time.monotonic() + REPLACEMENT_TIMEOUT)
        if self.systemd is not None:
            self.systemd.status(f"Replacing child process [{old.pid}] ({reason})")

    def advance_replacement(self) -> None:
        """Once the new worker serves, it takes the old one's place and the old one drains (SIGTERM). A new worker
        that exits or does not serve in time is given up: the old one stays, recycling pauses a while."""
        replacement = self.replacement
        if replacement is None:
            return
        old, new = replacement.old, replacement.new
        if new.serving:
            self.replacement = None
            self.processes[replacement.index] = new
            old.terminate()
            self.retiring.append(old)
            self.worker_replaced(old, new, replacement.reason)
            if self.systemd is not None and self.ready_sent and not self.reloading:
                self.systemd.status(self.serving_status())
            return
        if new.exitcode is None and time.monotonic() < replacement.deadline and not self.should_exit.is_set():
            return
        self.replacement = None
        new.kill()
        new.join()
        if self.should_exit.is_set():
            return
        logger.error(
            "New child process [%s] did not start serving; keeping child process [%s] and pausing its replacement.",
            new.pid,
            old.pid,
        )
        self.recycle_paused_until = time.monotonic() + RECYCLE_RETRY_DELAY
        for process in self.processes:
            if process.pending_reason == "reload":
                process.pending_reason = None  # abort the rest of a SIGHUP restart, as before

    def reap_retired(self) -> None:
        """Collect the replaced workers that have finished draining."""
        for process in list(self.retiring):
            if process.exitcode is not None:
                process.join()
                self.retiring.remove(process)

    def restart_all(self) -> None:
        """Replace each worker in turn (SIGHUP), retiring the old one only once its replacement serves."""
        for process in self.processes:
            process.pending_reason = "reload"

    # --- systemd ---------------------------------------------------------------------------------

    def serving_status(self) -> str:
        count = len(self.processes)
        return f"{count} worker{'s' if count != 1 else ''} serving"

    def notify_systemd(self) -> None:
        """READY=1 once every worker serves; again once a SIGHUP restart is over."""
        if self.systemd is None:
            return
        if not self.ready_sent and all(process.serving for process in self.processes):
            self.ready_sent = True
            self.systemd.ready(self.serving_status())
        elif self.reloading and self.replacement is None:
            if not any(process.pending_reason == "reload" for process in self.processes):
                self.reloading = False
                self.systemd.ready(self.serving_status())

    def start_watchdog(self) -> None:
        """With $WATCHDOG_USEC, a thread sends WATCHDOG=1 at half that period while a worker's event loop has
        notified within it: workers whose loops are all blocked stop the pings (one blocked worker among
        others is replaced through --timeout-notify)."""
        systemd = self.systemd
        if systemd is None or systemd.watchdog_interval is None or systemd.watchdog_timeout is None:
            return
        interval, timeout = systemd.watchdog_interval, systemd.watchdog_timeout

        def ping() -> None:
            while not self.should_exit.wait(interval):
                now = time.monotonic()
                beats = [process.heartbeat.value for process in list(self.processes)]
                if any(beat > 0 and now - beat < timeout for beat in beats):
                    systemd.watchdog()

        threading.Thread(target=ping, daemon=True, name="ferrocorn-watchdog").start()

    # --- signals -------------------------------------------------------------------------------

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
        if self.systemd is not None:
            self.reloading = True
            self.systemd.reloading()
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
        replacement = self.replacement
        if replacement is not None and replacement.old is process:
            self.replacement = None  # no need to replace a worker that goes away
            replacement.new.kill()
            replacement.new.join()
        process.terminate()
        self.retiring.append(process)
