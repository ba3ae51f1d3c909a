"""The listening sockets: bound from --fd, --uds or --host/--port, by the process that serves them
or by the reload/workers parent, whose children inherit them."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferrocorn.config import Config


def bind_sockets(config: Config) -> list[socket.socket]:
    """The listening sockets for --fd, --uds or --host/--port."""
    if config.fd is not None:
        return [bind_fd(config.fd)]
    if config.uds is not None:
        return [bind_unix(config.uds, config.backlog)]
    return bind_tcp(config.host, config.port, config.backlog)


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
