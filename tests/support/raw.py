"""Raw protocol clients, for what httpx, h2 and websockets cannot express: pipelining, HTTP/1.0, 100-continue,
malformed input, truncated responses, disconnects, hand-made WebSocket frames.

* ``connect``: a TCP connection (TCP_NODELAY), optionally wrapped in TLS.
* ``RawSocket``: such a connection with a receive buffer and the reads every raw client needs (one read, exactly
  n bytes, a line, everything until EOF, "did the peer close?").
* ``RawConn``: a ``RawSocket`` with a strict HTTP/1.x response reader; ``build_request`` and ``chunked`` write
  requests byte for byte.
* ``RawWebSocket``: a ``RawConn`` that sends an upgrade request as given, then masked RFC 6455 frames;
  ``ws_frame`` and ``take_ws_frame`` encode and decode single frames (``tests/support/h2.py`` uses them too).

The HTTP/2 clients built on ``RawSocket`` are in ``tests/support/h2.py``.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import ssl
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.support.probes import decode_json

# ============================================================================ connections


def connect(
    host: str,
    port: int,
    timeout: float | None = 10.0,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    rcvbuf: int | None = None,
) -> socket.socket:
    """A TCP connection with TCP_NODELAY, wrapped in TLS when ``tls`` is given (SNI and certificate check against
    ``server_hostname``, else ``host``). ``rcvbuf`` sets SO_RCVBUF before connecting, so that the TCP window is
    small from the start."""
    if rcvbuf:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
    except BaseException:
        sock.close()
        raise
    return sock


class RawSocket:
    """One connection (see ``connect``) and a receive buffer, ``buf``. A reset counts as EOF everywhere."""

    def __init__(self, host: str, port: int, timeout: float | None = 10.0, **connect_kw):
        self.sock = connect(host, port, timeout=timeout, **connect_kw)
        self.buf = b""
        self.eof = False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def sendall(self, data: bytes):
        self.sock.sendall(data)

    def settimeout(self, t):
        self.sock.settimeout(t)

    # ---------------------------------------------------------------- reading
    def fill(self, timeout: float | None = None, size: int = 262144) -> bool | None:
        """One read into ``buf``: True if bytes came, False at EOF. With ``timeout`` (which the socket keeps), None
        if nothing arrived within it; without, the socket's own timeout raises TimeoutError."""
        if self.eof:
            return False
        if timeout is not None:
            self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(size)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        except TimeoutError:
            if timeout is None:
                raise
            return None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv(self, n: int = 65536) -> bytes:
        """As ``socket.recv``: the buffered bytes (at most ``n``), or else one read; b"" at EOF. The socket's
        timeout raises TimeoutError."""
        if not self.buf:
            self.fill(size=n)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv_some(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` (b'' if nothing). Raises nothing on timeout."""
        old = self.sock.gettimeout()
        try:
            if not self.buf:
                self.fill(timeout)
            data, self.buf = self.buf, b""
            return data
        finally:
            self.sock.settimeout(old)

    def readable(self) -> bool:
        """True if a read would not block now (bytes buffered or arrived, or EOF)."""
        return bool(self.buf) or bool(select.select([self.sock], [], [], 0)[0])

    def read_line(self, limit: int = 1 << 20) -> bytes | None:
        """One CRLF-terminated line without its CRLF; None if the connection closes first."""
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("line too long in response")
            if not self.fill():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes, or fewer if the connection closes first."""
        while len(self.buf) < n:
            if not self.fill():
                data, self.buf = self.buf, b""
                return data
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_until_eof(self, stop_on_timeout: bool = False) -> bytes:
        """Everything until the peer closes. A socket timeout raises TimeoutError, unless ``stop_on_timeout``: then
        what came so far is returned."""
        try:
            while self.fill():
                pass
        except TimeoutError:
            if not stop_on_timeout:
                raise
        data, self.buf = self.buf, b""
        return data

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the peer closes the connection (EOF/RST) within ``timeout`` without sending more bytes.
        Raises AssertionError if unexpected bytes arrive."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            if self.buf:
                raise AssertionError(f"unexpected extra bytes: {self.buf[:200]!r}")
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if data:
                raise AssertionError(f"unexpected extra bytes: {data[:200]!r}")
            return True
        finally:
            self.sock.settimeout(old)

    def at_eof(self, timeout: float = 5.0) -> bool:
        """True if the peer closes the connection before ``timeout`` passes without a byte; what it sends
        before closing is read and dropped."""
        self.sock.settimeout(timeout)
        try:
            while self.fill():
                self.buf = b""
        except TimeoutError:
            return False
        return True


# ============================================================================ HTTP/1.x


class IncompleteResponse(Exception):
    def __init__(self, msg, partial: RawResponse):
        super().__init__(msg)
        self.partial = partial


@dataclass
class RawResponse:
    http_version: str
    status: int
    reason: str
    headers: list = field(default_factory=list)  # list of (lowercase name str, value str)
    body: bytes = b""
    complete: bool = True
    chunked: bool = False
    raw_head: bytes = b""
    trailers: list = field(default_factory=list)  # the chunked trailer section's raw lines (bytes)

    def header(self, name: str) -> str | None:
        vals = self.header_all(name)
        return vals[0] if vals else None

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        return decode_json(json.loads(self.body))


_STATUS_RE = re.compile(rb"^HTTP/(1\.[01]) (\d{3})(?: (.*))?$")
_TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class RawConn(RawSocket):
    """A ``RawSocket`` with a buffered, strict HTTP/1.x response reader."""

    def send(self, data: bytes):
        self.sendall(data)

    def read_head(self) -> RawResponse | None:
        """Read a status line and headers. None if the connection closed before any byte."""
        line = self.read_line()
        if line is None:
            if self.buf:
                raise AssertionError(f"connection closed mid status line: {self.buf!r}")
            return None
        m = _STATUS_RE.match(line)
        if not m:
            raise AssertionError(f"malformed status line: {line!r}")
        resp = RawResponse(
            http_version=m.group(1).decode(), status=int(m.group(2)), reason=(m.group(3) or b"").decode("latin-1")
        )
        raw = [line]
        while True:
            h = self.read_line()
            if h is None:
                raise AssertionError(f"connection closed inside response headers: {b''.join(raw)!r}")
            raw.append(h)
            if h == b"":
                break
            if b":" not in h:
                raise AssertionError(f"malformed header line: {h!r}")
            name, value = h.split(b":", 1)
            if not _TOKEN_RE.match(name):
                raise AssertionError(f"malformed header name: {name!r}")
            if any(c in value for c in (b"\r", b"\n", b"\x00")):
                raise AssertionError(f"malformed header value: {value!r}")
            resp.headers.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
        resp.raw_head = b"\r\n".join(raw) + b"\r\n"
        return resp

    def read_response(
        self, method: str = "GET", allow_incomplete: bool = False, skip_interim: bool = True
    ) -> RawResponse:
        """Read one complete response. 1xx interim responses are skipped unless ``skip_interim`` is False.
        A response whose body is cut short raises IncompleteResponse (or is returned with complete=False
        when ``allow_incomplete``)."""
        while True:
            resp = self.read_head()
            if resp is None:
                raise AssertionError("connection closed before a response was received")
            if 100 <= resp.status < 200 and resp.status != 101:
                if skip_interim:
                    continue
                return resp
            break
        te = ",".join(resp.header_all("transfer-encoding")).lower()
        cls = resp.header_all("content-length")
        if method == "HEAD" or resp.status in (204, 304):
            return resp
        if te:
            if te.replace(" ", "").split(",")[-1] != "chunked":
                raise AssertionError(f"unexpected transfer-encoding {te!r}")
            resp.chunked = True
            body = []
            while True:
                size_line = self.read_line()
                if size_line is None:
                    resp.body, resp.complete = b"".join(body), False
                    break
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise AssertionError(f"malformed chunk size line {size_line!r}") from None
                if size == 0:
                    # trailers
                    while True:
                        t = self.read_line()
                        if t is None:
                            resp.body, resp.complete = b"".join(body), False
                            break
                        if t == b"":
                            resp.body = b"".join(body)
                            break
                        resp.trailers.append(t)
                    break
                chunk = self.read_exact(size)
                body.append(chunk)
                if len(chunk) < size:
                    resp.body, resp.complete = b"".join(body), False
                    break
                crlf = self.read_exact(2)
                if crlf != b"\r\n":
                    if len(crlf) < 2:
                        resp.body, resp.complete = b"".join(body), False
                        break
                    raise AssertionError(f"chunk not followed by CRLF: {crlf!r}")
        elif cls:
            if len(set(cls)) != 1:
                raise AssertionError(f"conflicting content-length headers {cls}")
            n = int(cls[0])
            resp.body = self.read_exact(n)
            resp.complete = len(resp.body) == n
        else:
            resp.body = self.read_until_eof()
        if not resp.complete and not allow_incomplete:
            raise IncompleteResponse(f"incomplete response body ({len(resp.body)} bytes)", resp)
        return resp

    def request(
        self,
        method: str,
        target: str,
        headers: Iterable = (),
        body: bytes = b"",
        version: str = "1.1",
        host: str | None = "testserver",
    ) -> RawResponse:
        self.send(build_request(method, target, headers, body, version, host))
        return self.read_response(method)


def build_request(
    method: str,
    target: str,
    headers: Iterable = (),
    body: bytes = b"",
    version: str = "1.1",
    host: str | None = "testserver",
    content_length: bool | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/{version}".encode()]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    names = set()
    for k, v in headers:
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        names.add(k.lower())
        lines.append(k + b": " + v)
    if content_length is None:
        content_length = bool(body) or method in ("POST", "PUT", "PATCH")
    if content_length and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(*parts: bytes) -> bytes:
    out = b""
    for p in parts:
        if p:
            out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n\r\n"


# ============================================================================ WebSocket (RFC 6455)

WS_CONTINUATION, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_RSV1 = 0x40  # "compressed" with permessage-deflate


def ws_mask(payload: bytes, key: bytes) -> bytes:
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """One frame as a client writes it: masked with a random key unless ``mask`` is False; ``rsv`` is or-ed into
    the first byte (``WS_RSV1``...)."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask:
        key = os.urandom(4)
        payload = ws_mask(payload, key)
        header += key
    return header + payload


def ws_frame_length(data: bytes) -> int | None:
    """The length of the (unmasked) frame at the start of ``data``, header included; None until it is complete."""
    if len(data) < 2:
        return None
    length = data[1] & 0x7F
    offset = 2
    if length == 126:
        if len(data) < 4:
            return None
        length, offset = struct.unpack("!H", data[2:4])[0], 4
    elif length == 127:
        if len(data) < 10:
            return None
        length, offset = struct.unpack("!Q", data[2:10])[0], 10
    return offset + length if len(data) >= offset + length else None


def take_ws_frame(data: bytes) -> tuple[tuple[int, bool, bytes], bytes] | None:
    """Split the server frame at the start of ``data`` off: ((opcode, rsv1, payload), rest), or None while it is
    incomplete."""
    total = ws_frame_length(data)
    if total is None:
        return None
    frame, rest = data[:total], data[total:]
    first, second = frame[0], frame[1]
    assert not second & 0x80, "server frames must not be masked"
    offset = {126: 4, 127: 10}.get(second & 0x7F, 2)
    return (first & 0x0F, bool(first & WS_RSV1), frame[offset:]), rest


def ws_close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawWebSocket(RawConn):
    """A minimal client over HTTP/1.1: sends ``request`` (an upgrade, as the test wrote it) to ``srv`` (anything
    with ``host`` and ``port``), reads the response head (``status``, ``headers``: 0 and {} if the connection
    closes first), then sends masked frames and reads unmasked ones."""

    def __init__(self, srv, request: bytes, timeout: float = 5.0, **connect_kw) -> None:
        super().__init__(srv.host, srv.port, timeout=timeout, **connect_kw)
        self.send(request)
        head = self.read_head()
        self.status = head.status if head is not None else 0
        self.headers = dict(head.headers) if head is not None else {}

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> None:
        self.send(ws_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; EOFError if the connection closes first."""
        while (taken := take_ws_frame(self.buf)) is None:
            if not self.fill():
                raise EOFError
        (opcode, _, payload), self.buf = taken
        return opcode, payload

    def expect_close(self) -> int:
        """Read until a close frame; return its code (1005 when empty)."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == WS_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else 1005
