"""HTTP/2 clients on a ``RawSocket`` (``tests/support/raw.py``).

* ``H2Conn``: one h2c connection (prior knowledge) driven frame by frame with ``hyperframe`` frames and ``hpack``
  header blocks, so it can send anything (malformed requests, floods); ``FrameReader`` reads one in the
  background, ``send_batched`` sends many frames.
* ``H2WebSocketClient``: a well-behaved connection driven by the ``h2`` library, h2c or TLS with ALPN h2, that
  opens RFC 8441 WebSocket streams (extended CONNECT) and exchanges RFC 6455 frames in their DATA.
"""

from __future__ import annotations

import ssl
import struct
import threading
import time
import zlib
from typing import TYPE_CHECKING

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError
from hpack import Decoder, Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.support.raw import (
    WS_CLOSE,
    WS_RSV1,
    RawSocket,
    take_ws_frame,
    ws_close_payload,
    ws_frame,
    ws_frame_length,
)

if TYPE_CHECKING:
    from tests.support.server import ServerProcess

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR = 0x0


# ============================================================================ a frame-level h2 client


class H2Conn(RawSocket):
    """One h2c connection (prior knowledge) driven frame by frame. SETTINGS are ACKed automatically; PINGs
    too unless ``ack_pings`` is False. Every received frame is kept in ``frames``."""

    def __init__(
        self,
        port: int,
        settings: dict | None = None,
        timeout: float = 10.0,
        ack_pings: bool = True,
        rcvbuf: int | None = None,
        send_preface: bool = True,
    ):
        super().__init__("127.0.0.1", port, timeout=timeout, rcvbuf=rcvbuf)
        self.ack_pings = ack_pings
        self.enc = Encoder()
        self.dec = Decoder()
        self.frames: list = []
        if send_preface:
            self.send_raw(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    # ---------------------------------------------------------------- sending
    def send_raw(self, data: bytes):
        self.sendall(data)

    def send(self, *frames):
        self.send_raw(b"".join(f.serialize() for f in frames))

    def _send_quietly(self, frame):
        try:
            self.send(frame)
        except OSError:
            pass

    def block(self, headers) -> bytes:
        return self.enc.encode(headers)

    def request(
        self,
        sid: int,
        path: str | bytes,
        method: bytes = b"GET",
        end_stream: bool = True,
        extra=(),
        authority: bytes = b"127.0.0.1",
    ) -> HeadersFrame:
        path = path.encode() if isinstance(path, str) else path
        hdrs = [(b":method", method), (b":scheme", b"http"), (b":path", path), (b":authority", authority), *extra]
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        return HeadersFrame(sid, self.block(hdrs), flags=flags)

    # ---------------------------------------------------------------- receiving
    def next_frame(self, timeout: float = 5.0):
        """The next frame, None on EOF; raises TimeoutError if nothing complete arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) >= 9 + length:
                    frame.parse_body(memoryview(self.buf[9 : 9 + length]))
                    self.buf = self.buf[9 + length :]
                    self._on_frame(frame)
                    return frame
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.fill(remaining, size=1 << 20) is None:
                raise TimeoutError(f"no complete frame within {timeout}s")

    def _on_frame(self, frame):
        if isinstance(frame, HeadersFrame):
            # the server never splits its small header blocks; decode in order to keep the HPACK table right
            frame.decoded = [
                (k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                for k, v in self.dec.decode(frame.data)
            ]
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self._send_quietly(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags and self.ack_pings:
            self._send_quietly(PingFrame(0, flags=["ACK"], opaque_data=frame.opaque_data))
        self.frames.append(frame)

    def server_settings(self, timeout: float = 5.0) -> tuple[dict, int | None]:
        """The server's first SETTINGS and the connection WINDOW_UPDATE that follows it (None if none
        arrives within 0.5 s after the SETTINGS ACK)."""
        settings = None
        window = None
        deadline = time.monotonic() + timeout
        while settings is None or window is None:
            try:
                f = self.next_frame(max(0.01, deadline - time.monotonic()) if settings is None else 0.5)
            except TimeoutError:
                break
            if f is None:
                break
            if isinstance(f, SettingsFrame) and "ACK" not in f.flags and settings is None:
                settings = dict(f.settings)
            elif isinstance(f, WindowUpdateFrame) and f.stream_id == 0 and window is None:
                window = f.window_increment
        assert settings is not None, f"no SETTINGS from the server: {self.frames}"
        return settings, window

    def collect(self, stop, timeout: float) -> list:
        """Frames until ``stop(frame)`` is true (that frame included), EOF (None appended) or ``timeout``
        (TimeoutError)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"stop condition not met within {timeout}s; got {out}")
            f = self.next_frame(remaining)
            out.append(f)
            if f is None or stop(f):
                return out

    def until_eof(self, timeout: float) -> list:
        return self.collect(lambda f: False, timeout)

    def response(self, sid: int, timeout: float = 10.0) -> dict:
        """Read until stream ``sid`` ends (END_STREAM, RST_STREAM), a GOAWAY excludes it, or EOF."""
        res = {"status": None, "headers": [], "body": b"", "rst": None, "goaway": None, "eof": False, "ended": False}

        def stop(f):
            if f is None:
                return True
            if isinstance(f, GoAwayFrame):
                res["goaway"] = (f.last_stream_id, f.error_code)
                return f.last_stream_id < sid or f.error_code != NO_ERROR
            if f.stream_id != sid:
                return False
            if isinstance(f, HeadersFrame):
                if res["status"] is None:
                    res["headers"] = f.decoded
                    res["status"] = int(dict(f.decoded)[":status"])
                    if res["status"] < 200:  # interim
                        res["status"] = None
            elif isinstance(f, DataFrame):
                res["body"] += f.data
                if f.data:
                    self._send_quietly(WindowUpdateFrame(0, window_increment=len(f.data)))
                    if "END_STREAM" not in f.flags:
                        self._send_quietly(WindowUpdateFrame(sid, window_increment=len(f.data)))
            elif isinstance(f, RstStreamFrame):
                res["rst"] = f.error_code
                return True
            if "END_STREAM" in getattr(f, "flags", ()):
                res["ended"] = True
                return True
            return False

        frames = self.collect(stop, timeout)
        res["eof"] = frames[-1] is None
        return res


class FrameReader(threading.Thread):
    """Reads an H2Conn in the background (so a flood's GOAWAY is not lost in a reset), until EOF."""

    def __init__(self, conn: H2Conn):
        super().__init__(daemon=True)
        self.conn = conn
        self.done = threading.Event()
        self.count = 0

    def run(self):
        try:
            while True:
                try:
                    f = self.conn.next_frame(60)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if f is None:
                    break
                self.count += 1
        finally:
            self.done.set()

    def goaways(self) -> list:
        return [(f.last_stream_id, f.error_code) for f in list(self.conn.frames) if isinstance(f, GoAwayFrame)]

    def of_type(self, cls) -> list:
        return [f for f in list(self.conn.frames) if isinstance(f, cls)]


def send_batched(conn: H2Conn, frames: list, batch: int = 500) -> tuple[int, str | None]:
    """Send ``frames`` in batches; stop at the first socket error (the server closed the connection)."""
    sent = 0
    for i in range(0, len(frames), batch):
        part = frames[i : i + batch]
        try:
            conn.send_raw(b"".join(f.serialize() for f in part))
        except OSError as e:
            return sent, f"{type(e).__name__}: {e}"
        sent += len(part)
    return sent, None


# ============================================================================ WebSockets over HTTP/2 (RFC 8441)


class Stream:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] | None = None
        self.data = b""
        self.ended = False
        self.reset: int | None = None


class H2WebSocketClient(RawSocket):
    """One HTTP/2 connection, h2c (prior knowledge) or TLS with ALPN h2. Any number of streams; WebSocket frames
    are read from and written to a stream's DATA."""

    def __init__(self, srv: ServerProcess, tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        super().__init__(srv.host, srv.port, timeout=timeout, tls=tls, server_hostname="localhost")
        if tls is not None:
            assert self.sock.selected_alpn_protocol() == "h2"
        self.scheme = b"https" if tls is not None else b"http"
        self.authority = f"{srv.host}:{srv.port}".encode()
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.flush()
        self.streams: dict[int, Stream] = {}
        self.remote_settings: dict[int, int] = {}
        self.terminated: ConnectionTerminated | None = None
        self.pump_until(lambda: self.remote_settings_seen)

    remote_settings_seen = False

    def __enter__(self) -> H2WebSocketClient:
        return self

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sendall(data)

    def pump(self, timeout: float) -> bool:
        """Read once (up to `timeout`) and handle the events; False on timeout or EOF."""
        if not self.fill(timeout, size=1 << 20):
            return False
        data, self.buf = self.buf, b""
        try:
            received = self.conn.receive_data(data)
        except ProtocolError:
            # h2 refuses frames after a GOAWAY (the server's PING that follows it, say): the connection is over.
            self.eof = True
            return False
        for event in received:
            if isinstance(event, RemoteSettingsChanged):
                self.remote_settings_seen = True
                for code, change in event.changed_settings.items():
                    self.remote_settings[int(code)] = change.new_value
            elif isinstance(event, ResponseReceived):
                self.streams[event.stream_id].headers = dict(event.headers)
            elif isinstance(event, DataReceived):
                self.streams[event.stream_id].data += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.streams[event.stream_id].ended = True
            elif isinstance(event, StreamReset):
                self.streams[event.stream_id].reset = event.error_code
            elif isinstance(event, ConnectionTerminated):
                self.terminated = event
        self.flush()
        return True

    def pump_until(self, condition, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof:
                raise AssertionError("condition not met" + (" (connection closed)" if self.eof else ""))
            self.pump(remaining)

    # ------------------------------------------------------------------ requests
    def open_stream(self, headers: list[tuple[bytes, bytes]], end_stream: bool) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = Stream()
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return sid

    def get(self, path: str) -> tuple[int, bytes]:
        head = [(b":method", b"GET"), (b":scheme", self.scheme), (b":path", path.encode())]
        sid = self.open_stream([*head, (b":authority", self.authority)], end_stream=True)
        self.pump_until(lambda: self.streams[sid].ended or self.streams[sid].reset is not None)
        stream = self.streams[sid]
        assert stream.headers is not None
        return int(stream.headers[b":status"]), stream.data

    def websocket(self, path: str, extra: list[tuple[bytes, bytes]] = ()) -> tuple[int, int, dict[bytes, bytes]]:
        """Send the extended CONNECT; wait for the response head. Returns (stream id, status, headers)."""
        sid = self.open_stream(
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", self.scheme),
                (b":path", path.encode()),
                (b":authority", self.authority),
                (b"sec-websocket-version", b"13"),
                *extra,
            ],
            end_stream=False,
        )
        self.pump_until(lambda: self.streams[sid].headers is not None or self.streams[sid].reset is not None)
        stream = self.streams[sid]
        assert stream.headers is not None, f"stream reset with {stream.reset}"
        return sid, int(stream.headers[b":status"]), stream.headers

    def body(self, sid: int) -> bytes:
        self.pump_until(lambda: self.streams[sid].ended or self.streams[sid].reset is not None)
        return self.streams[sid].data

    # ------------------------------------------------------------------ WebSocket frames
    def send_frame(
        self, sid: int, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False, end_stream: bool = False
    ) -> None:
        frame = ws_frame(opcode, payload, fin=fin, rsv=WS_RSV1 if rsv1 else 0)
        # Respect the server's flow-control window.
        while frame:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(1.0)
                continue
            chunk, frame = frame[:window], frame[window:]
            self.conn.send_data(sid, chunk, end_stream=end_stream and not frame)
            self.flush()

    def read_frame(self, sid: int, timeout: float = 10.0) -> tuple[int, bool, bytes]:
        """(opcode, rsv1, payload) of the next complete frame from the server (unmasked)."""
        stream = self.streams[sid]

        def complete() -> bool:
            return ws_frame_length(stream.data) is not None or stream.ended or stream.reset is not None

        self.pump_until(complete, timeout)
        taken = take_ws_frame(stream.data)
        if taken is None:
            raise EOFError(f"stream over (ended={stream.ended}, reset={stream.reset})")
        frame, stream.data = taken
        return frame

    def read_message(self, sid: int) -> tuple[int, bytes]:
        opcode, compressed, payload = self.read_frame(sid)
        if compressed:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        return opcode, payload

    def expect_close(self, sid: int) -> tuple[int, str]:
        while True:
            opcode, payload = self.read_message(sid)
            if opcode == WS_CLOSE:
                if not payload:
                    return 1005, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def close_ws(self, sid: int, code: int | None = 1000, reason: bytes = b"") -> tuple[int, str]:
        payload = b"" if code is None else ws_close_payload(code, reason)
        self.send_frame(sid, WS_CLOSE, payload)
        return self.expect_close(sid)
