"""systemd as the host: `Type=notify` readiness, the watchdog, and socket activation.

The service manager hands its settings over in the environment: `$NOTIFY_SOCKET` (an AF_UNIX datagram socket,
`@` meaning the abstract namespace) takes `READY=1`, `STOPPING=1`, `WATCHDOG=1`... as sd_notify(3) sends them;
`$WATCHDOG_USEC` asks for a `WATCHDOG=1` at least that often; `$LISTEN_PID`/`$LISTEN_FDS`/`$LISTEN_FDNAMES`
pass listening sockets from descriptor 3 on (sd_listen_fds(3)). Everything here is a no-op when they are absent,
and each is read once and removed from the environment, so the worker processes, or anything the app starts, do
not take them for their own. No dependency on python-systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger("ferrocorn.error")

#: The first inherited descriptor of socket activation (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

_NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class Notifier:
    """Sends sd_notify(3) messages to the service manager over its datagram socket."""

    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        #: `@name` is the abstract namespace, as systemd writes it.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_usec = watchdog_usec
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._failed = False

    @classmethod
    def from_environment(cls) -> Notifier | None:
        """The notifier $NOTIFY_SOCKET asks for, or None outside systemd. Takes $NOTIFY_SOCKET, $WATCHDOG_USEC and
        $WATCHDOG_PID out of the environment (sd_notify's `unset_environment`)."""
        values = {name: os.environ.pop(name, None) for name in _NOTIFY_VARIABLES}
        address = values["NOTIFY_SOCKET"]
        if not address or not address.startswith(("/", "@")):
            return None  # unset, or a vsock address: not for us
        watchdog_usec: int | None = None
        watchdog_pid = values["WATCHDOG_PID"]
        if values["WATCHDOG_USEC"] and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            try:
                watchdog_usec = int(values["WATCHDOG_USEC"]) or None
            except ValueError:
                logger.warning("Ignoring WATCHDOG_USEC=%r: not a number of microseconds.", values["WATCHDOG_USEC"])
        return cls(address, watchdog_usec)

    @property
    def watchdog_interval(self) -> float | None:
        """How often to send WATCHDOG=1 (half the watchdog timeout, as sd_watchdog_enabled(3) advises), or None."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    @property
    def watchdog_timeout(self) -> float | None:
        return None if self.watchdog_usec is None else self.watchdog_usec / 1e6

    def notify(self, *fields: str) -> None:
        """Send one message (`KEY=value` lines). A manager that went away is reported once, never raised."""
        try:
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.warning("Could not notify systemd at %r: %s", self.address.replace("\0", "@"), exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        # Type=notify-reload wants the time the reload began (CLOCK_MONOTONIC, microseconds).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=Reloading")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=Stopping: finishing the requests in flight")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        self._socket.close()


#: The sockets systemd passed this process (descriptor, name), read once: None until then.
_listen_fds: list[tuple[int, str]] | None = None


def listen_fds() -> list[tuple[int, str]]:
    """The listening sockets of socket activation, as (descriptor, name) from 3 on, when $LISTEN_PID is this
    process; [] otherwise. The first call takes the three variables out of the environment; later calls (and
    calls after the process was started by one that read them) return the same list."""
    global _listen_fds
    if _listen_fds is not None:
        return _listen_fds
    values = {name: os.environ.pop(name, None) for name in _LISTEN_VARIABLES}
    _listen_fds = []
    if values["LISTEN_PID"] != str(os.getpid()) or not values["LISTEN_FDS"]:
        return _listen_fds
    try:
        count = int(values["LISTEN_FDS"])
    except ValueError:
        logger.warning("Ignoring LISTEN_FDS=%r: not a number of descriptors.", values["LISTEN_FDS"])
        return _listen_fds
    names = (values["LISTEN_FDNAMES"] or "").split(":")
    for index in range(count):
        fd = LISTEN_FDS_START + index
        name = names[index] if index < len(names) and names[index] else "unknown"
        try:
            os.set_inheritable(fd, False)  # shared with the workers by the supervisor, never by inheritance
            kind = socket.socket(fileno=os.dup(fd))
        except OSError as exc:
            logger.warning("Ignoring socket-activated descriptor %d (%s): %s", fd, name, exc)
            continue
        with kind:
            is_stream = kind.type == socket.SOCK_STREAM
        if not is_stream:
            logger.warning("Ignoring socket-activated descriptor %d (%s): not a stream socket.", fd, name)
            continue
        _listen_fds.append((fd, name))
    return _listen_fds
