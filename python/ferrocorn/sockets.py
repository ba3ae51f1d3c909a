"""The listening sockets: bound from --bind, --fd, --uds or --host/--port, or passed by systemd's socket
activation, by the process that serves them or by the reload/workers parent, whose children inherit them."""

from __future__ import annotations

import os
import socket
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ferrocorn import systemd

if TYPE_CHECKING:
    from ferrocorn.config import Config

#: --host and --port defaults: with --bind, the --host/--port listener is added only when either was changed.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class BindTarget:
    """One place to listen: a TCP host and port (every address the host resolves to), a UNIX socket path, or an
    inherited file descriptor."""

    kind: str  # "tcp", "unix" or "fd"
    host: str | None = None
    port: int = 0
    path: str = ""
    fd: int = -1
    #: A socket-activated descriptor's name ($LISTEN_FDNAMES), for the startup line; "" otherwise.
    name: str = ""


#: Which target each socket bound here was bound for: the "running on" lines name targets, not sockets.
_TARGETS: weakref.WeakKeyDictionary[socket.socket, BindTarget] = weakref.WeakKeyDictionary()


def parse_bind(value: str) -> BindTarget:
    """`HOST:PORT`, `[IPv6]:PORT`, `unix:PATH` or `fd://N`; ValueError with the reason otherwise."""
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError(f"{value!r}: unix: needs a path")
        return BindTarget("unix", path=path)
    if value.startswith("fd://"):
        number = value[len("fd://") :]
        if not number.isdigit():
            raise ValueError(f"{value!r}: fd:// needs a file descriptor number")
        return BindTarget("fd", fd=int(number))
    host, separator, port = value.rpartition(":")
    if not separator or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: an IPv6 address goes in brackets, as in [::1]:8000")
    return BindTarget("tcp", host=host or None, port=int(port))


def bind_targets(config: Config) -> list[BindTarget]:
    """Where to listen: every --bind and every socket systemd passed ($LISTEN_FDS), then --fd, --uds or
    --host/--port as uvicorn picks one of them (fd first). With --bind or socket activation, --fd and --uds are
    added when given, --host/--port only when changed from their defaults."""
    targets = [parse_bind(value) for value in config.bind]
    named_fds = {target.fd for target in targets if target.kind == "fd"} | {config.fd}
    targets += [BindTarget("fd", fd=fd, name=name) for fd, name in systemd.listen_fds() if fd not in named_fds]
    if config.fd is not None:
        targets.append(BindTarget("fd", fd=config.fd))
    elif config.uds is not None:
        targets.append(BindTarget("unix", path=config.uds))
    elif not targets or (config.host, config.port) != (DEFAULT_HOST, DEFAULT_PORT):
        targets.append(BindTarget("tcp", host=config.host, port=config.port))
    return targets


def bind_sockets(config: Config) -> list[socket.socket]:
    """The listening sockets of every target; if one cannot be bound, none is kept."""
    sockets: list[socket.socket] = []
    try:
        for target in bind_targets(config):
            if target.kind == "fd":
                bound = [bind_fd(target.fd)]
            elif target.kind == "unix":
                bound = [bind_unix(target.path, config.backlog)]
            else:
                bound = bind_tcp(target.host, target.port, config.backlog)
            for sock in bound:
                _TARGETS[sock] = target
            sockets.extend(bound)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def target_of(sock: socket.socket) -> BindTarget | None:
    """The target `sock` was bound for here; None for a socket bound elsewhere (handed to `Server.serve`)."""
    return _TARGETS.get(sock)


def unix_socket_paths(config: Config) -> list[str]:
    """The UNIX socket files this configuration creates (removed on exit)."""
    return [target.path for target in bind_targets(config) if target.kind == "unix"]


def bind_fd(fd: int) -> socket.socket:
    """The socket already listening on file descriptor `fd` (handed over by a process manager)."""
    sock = socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM)
    return socket.socket(fileno=sock.detach())


def bind_unix(path: str, backlog: int) -> socket.socket:
    """A UNIX socket at `path` (replacing a stale one), writable by everyone as uvicorn makes it."""
    if os.path.exists(path):
        os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    sock.listen(backlog)
    return sock


def bind_tcp(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Bind every address `host` resolves to, with the error text asyncio's create_server gives."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                reason = err.strerror.lower() if err.strerror else str(err)
                message = f"error while attempting to bind on address {address!r}: {reason}"
                raise OSError(err.errno, message) from None
            sock.listen(backlog)
            if port == 0 and len(infos) > 1:
                port = sock.getsockname()[1]  # keep every family on the port picked first
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
