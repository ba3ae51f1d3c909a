"""Load for the load-and-fault tests: pipelined HTTP/1.1 requests counted by their exact size (a
million of them without a load generator to install), and client threads that record what became
of every request they sent."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field


def response_size(port: int, path: str) -> int:
    """The byte length of one whole response to GET `path` on a kept-alive connection, as it is on
    the wire (the server's answers to it all have this length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv(sock)
        head, _, rest = data.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        if b"content-length" in fields:
            body_size = int(fields[b"content-length"])
            while len(rest) < body_size:
                rest += _recv(sock)
        else:  # chunked: up to the last chunk and the empty trailer section
            while not rest.endswith(b"0\r\n\r\n"):
                rest += _recv(sock)
            body_size = len(rest)
        return len(head) + 4 + body_size


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection mid-response")
    return data


def pipelined_requests(port: int, path: str, total: int, connections: int = 32, batch: int = 64) -> int:
    """Send `total` GETs over `connections` keep-alive connections, `batch` at a time on each, and
    return how many complete `200` responses came back (every response must be as long as the
    first; a short or different one fails the count)."""
    size = response_size(port, path)
    request = f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode()
    status_line = b"HTTP/1.1 200 "

    async def one_connection(count: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ok = 0
        try:
            while count > 0:
                n = min(batch, count)
                writer.write(request * n)
                data = await reader.readexactly(size * n)
                ok += data.count(status_line)
                count -= n
        finally:
            writer.close()
        return ok

    async def run() -> int:
        share, extra = divmod(total, connections)
        counts = [share + (1 if i < extra else 0) for i in range(connections)]
        return sum(await asyncio.gather(*(one_connection(c) for c in counts if c)))

    return asyncio.run(run())


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None  # None: no response head (connection refused, reset or closed first)
    body: str = ""
    error: str = ""  # with a status: the body broke off

    @property
    def complete(self) -> bool:
        return self.status is not None and not self.error


@dataclass
class Hammer:
    """`threads` clients, each sending requests to `path` one after another on a fresh connection
    (or one kept-alive connection), recording every outcome, until stopped."""

    port: int
    path: str = "/"
    threads: int = 8
    keep_alive: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Hammer:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self, wait: bool = True) -> list[Outcome]:
        """Stop sending; with `wait`, wait for the requests still out (else they end on their own)."""
        self._stop.set()
        if wait:
            for worker in self._workers:
                worker.join(30)
        return self.outcomes

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            started = time.monotonic()
            status = None
            try:
                headers = {} if self.keep_alive else {"Connection": "close"}
                conn.request("GET", self.path, headers=headers)
                response = conn.getresponse()
                status = response.status
                body = response.read().decode()
                outcome = Outcome(started, time.monotonic(), status, body)
                if not self.keep_alive or response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = Outcome(started, time.monotonic(), status, error=repr(exc))
                conn.close()
                conn = None
                time.sleep(0.01)  # refused: the port is between workers or closed
            with self._lock:
                self.outcomes.append(outcome)
        if conn is not None:
            conn.close()
