"""Access records for `--access-log-format` (gunicorn's atoms) and `--log-format json`, and the choice of who
writes the access log.

When the `ferrocorn.access` logger is exactly the built-in configuration (one stream handler on standard output,
ferrocorn's own formatter, no filters), the Rust core formats and writes every record itself
(`native_access_log`): no Python object per request, and one write per batch of lines. Otherwise (a
`--log-config`, an app that adds handlers or filters, gunicorn's handlers) each record goes through Python's
logging, as below: the default line (uvicorn's) when the response starts, the others at its END (they need the
response's size and duration): the app's `send` is wrapped to note the status, the response headers and the body
bytes, and the record is logged once the last body message is sent (or, for a response the app never finished,
when the app ends).
"""

from __future__ import annotations

import base64
import binascii
import http
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from ferrocorn.logging import AccessFormatter, JsonFormatter

if TYPE_CHECKING:
    from ferrocorn._ferrocorn import NativeAccessLogSettings

access_logger = logging.getLogger("ferrocorn.access")

Runner = Callable[[dict[str, Any], Any], Coroutine[Any, Any, None]]

#: gunicorn's default --access-log-format.
GUNICORN_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


class Exchange:
    """What one response's access record is built from."""

    __slots__ = ("scope", "started", "status", "response_headers", "bytes", "duration", "logged")

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.started = time.perf_counter()
        self.status: int | None = None
        self.response_headers: Any = ()
        self.bytes = 0
        self.duration = 0.0
        self.logged = False

    def request_header(self, name: bytes) -> str | None:
        values = [value for key, value in self.scope["headers"] if key == name]
        return b",".join(values).decode("latin-1") if values else None

    def response_header(self, name: bytes) -> str | None:
        values = [bytes(value) for key, value in self.response_headers if bytes(key).lower() == name]
        return b",".join(values).decode("latin-1") if values else None

    def client(self) -> str:
        client = self.scope.get("client")
        return f"{client[0]}:{client[1]}" if client else ""

    def full_path(self) -> str:
        path = quote(self.scope["path"])
        query = self.scope["query_string"]
        return f"{path}?{query.decode('ascii', 'replace')}" if query else path


class Atoms(dict[str, str]):
    """gunicorn's log atoms, each computed only when the format names it; unknown ones are "-"."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__()
        self.exchange = exchange

    def __missing__(self, key: str) -> str:
        value = self._atom(key)
        return "-" if value is None else value

    def _atom(self, key: str) -> str | None:
        exchange = self.exchange
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                return exchange.request_header(name.lower().encode("latin-1"))
            if kind == "o":
                return exchange.response_header(name.lower().encode("latin-1"))
            if kind == "e":
                return os.environ.get(name)
            return None
        compute = SIMPLE_ATOMS.get(key)
        return compute(exchange) if compute is not None else None


def _micros(exchange: Exchange) -> int:
    return int(exchange.duration * 1_000_000)


#: gunicorn's one-letter atoms.
SIMPLE_ATOMS: dict[str, Callable[[Exchange], str | None]] = {
    "h": lambda e: e.scope["client"][0] if e.scope.get("client") else None,
    "l": lambda e: "-",
    "u": lambda e: basic_auth_user(e.request_header(b"authorization")),
    "t": lambda e: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda e: f"{e.scope['method']} {raw_uri(e.scope)} HTTP/{e.scope['http_version']}",
    "m": lambda e: e.scope["method"],
    "U": lambda e: e.scope["path"],
    "q": lambda e: e.scope["query_string"].decode("latin-1"),
    "H": lambda e: f"HTTP/{e.scope['http_version']}",
    "s": lambda e: str(e.status),
    "B": lambda e: str(e.bytes),
    "b": lambda e: str(e.bytes),
    "f": lambda e: e.request_header(b"referer"),
    "a": lambda e: e.request_header(b"user-agent"),
    "T": lambda e: str(_micros(e) // 1_000_000),
    "D": lambda e: str(_micros(e)),
    "M": lambda e: str(_micros(e) // 1000),
    "L": lambda e: f"{_micros(e) // 1_000_000}.{_micros(e) % 1_000_000:06d}",
    "p": lambda e: f"<{os.getpid()}>",
}


def raw_uri(scope: dict[str, Any]) -> str:
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope["query_string"]
    return (raw + b"?" + query if query else raw).decode("latin-1")


def basic_auth_user(authorization: str | None) -> str | None:
    if not authorization or not authorization[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, _ = decoded.partition(":")
    return user if separator else None


def check_format(fmt: str) -> None:
    """Raise ValueError if `fmt` cannot format an access record (every atom is a string)."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "http_version": "1.1",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }
    try:
        fmt % Atoms(Exchange(scope))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{fmt!r} is not a usable access log format ({type(exc).__name__}: {exc})") from None


class AccessLog:
    """Logs one access record per response, at its end: with `fmt` (gunicorn's atoms) as the message, or
    uvicorn's line; with `json`, the record also carries the fields the JSON formatter writes."""

    def __init__(self, fmt: str | None, json: bool) -> None:
        self.fmt = fmt
        self.json = json

    def log(self, exchange: Exchange) -> None:
        exchange.logged = True
        if not access_logger.isEnabledFor(logging.INFO):
            return
        exchange.duration = time.perf_counter() - exchange.started
        scope = exchange.scope
        if self.fmt is not None:
            message = self.fmt % Atoms(exchange)
        else:
            client, method, path = exchange.client(), scope["method"], exchange.full_path()
            message = f'{client} - "{method} {path} HTTP/{scope["http_version"]}" {exchange.status or 0}'
        extra = None
        if self.json:
            extra = {
                "access": {
                    "client": exchange.client() or None,
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope["query_string"].decode("latin-1"),
                    "http_version": scope["http_version"],
                    "status": exchange.status,
                    "bytes": exchange.bytes,
                    "duration": round(exchange.duration, 6),
                    "user_agent": exchange.request_header(b"user-agent"),
                    "request_id": exchange.request_header(b"x-request-id"),
                }
            }
        access_logger.info(message, extra=extra)

    def wrap(self, runner: Runner) -> Runner:
        """`runner` (see `server.make_runner`) with each HTTP response's record logged at its end."""

        async def run_logged(scope: dict[str, Any], protocol: Any) -> None:
            if scope["type"] != "http":
                await runner(scope, protocol)
                return
            exchange = Exchange(scope)
            try:
                await runner(scope, LoggedProtocol(protocol, exchange, self))
            finally:
                if not exchange.logged and exchange.status is not None:
                    self.log(exchange)  # the app ended without finishing its response

        return run_logged


class LoggedProtocol:
    """The core's protocol object, with `send` noting what the access record needs."""

    __slots__ = ("_protocol", "_exchange", "_access", "receive", "app_failed", "app_returned")

    def __init__(self, protocol: Any, exchange: Exchange, access: AccessLog) -> None:
        self._protocol = protocol
        self._exchange = exchange
        self._access = access
        self.receive = protocol.receive
        self.app_failed = protocol.app_failed
        self.app_returned = protocol.app_returned

    def send(self, message: dict[str, Any]) -> Awaitable[None]:
        # No coroutine of its own: the core's send() does its work when called and returns the awaitable.
        exchange = self._exchange
        kind = message.get("type")
        if kind == "http.response.start":
            exchange.status = message.get("status")
            exchange.response_headers = message.get("headers") or ()
        elif kind == "http.response.body":
            if exchange.scope["method"] != "HEAD":  # the server sends no body for HEAD: none is counted
                exchange.bytes += len(message.get("body", b""))
            if not message.get("more_body", False) and not exchange.logged:
                sent: Awaitable[None] = self._protocol.send(message)
                self._access.log(exchange)  # every byte is handed to the server: the response's end
                return sent
        result: Awaitable[None] = self._protocol.send(message)
        return result


# --------------------------------------------------------------------------- written by the core

#: uvicorn's access line, the built-in `access` formatter's format.
UVICORN_ACCESS_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
#: A printf-style field of an access format: `%(key)s`, or `%%`.
_FIELD = re.compile(r"%\((?P<key>[^)]*)\)s|%%")
#: Atoms the core fills in per request (the others are the same for every record).
_CORE_ATOMS = frozenset("h u t r m U q H s b B f a T D M L".split())
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def native_access_log(access_log_format: str | None) -> NativeAccessLogSettings | None:
    """The settings for the core to write the access log itself, or None when Python's logging must: the
    `ferrocorn.access` logger has to be exactly the built-in configuration, so that the core's lines are the
    ones that configuration would write. Decided once, when the server starts (after the app's lifespan
    startup, so logging the app configures there is seen)."""
    logger = access_logger
    if logger.disabled or not logger.isEnabledFor(logging.INFO) or logger.propagate or logger.filters:
        return None
    if len(logger.handlers) != 1 or type(logger.handlers[0]) is not logging.StreamHandler:
        return None
    handler: logging.StreamHandler[Any] = logger.handlers[0]
    if handler.filters or handler.level > logging.INFO or handler.stream is not sys.stdout:
        return None
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # not a real file (a test's capture, a StringIO)
    if (sys.stdout.encoding or "").lower().replace("-", "").replace("_", "") != "utf8":
        return None  # the core writes UTF-8
    formatter = handler.formatter
    style: Literal["uvicorn", "atoms", "json"]
    segments = None
    if access_log_format is not None:
        segments = format_segments(access_log_format)
        if segments is None:
            return None
    if type(formatter) is JsonFormatter:
        style = "json"
    elif type(formatter) is AccessFormatter and formatter._fmt == UVICORN_ACCESS_FORMAT and segments is None:
        style = "uvicorn"
    elif type(formatter) is AccessFormatter and formatter._fmt == "%(message)s" and segments is not None:
        style = "atoms"
    else:
        return None
    sys.stdout.flush()  # what Python wrote so far comes before the core's lines
    return {
        "style": style,
        "colors": bool(getattr(formatter, "use_colors", False)),
        "segments": segments,
        "fd": fd,
        "phrases": {status.value: status.phrase for status in http.HTTPStatus},
    }


def format_segments(fmt: str) -> list[tuple[str, str]] | None:
    """`fmt` as the core's segments: ("literal", text) and ("atom", key) for the atoms that vary per request,
    with `%%` and the constant atoms (`l`, `p`, `{name}e`, unknown names) already resolved. None if the format
    uses anything else printf-style (a width, another conversion), which only Python's `%` formats."""
    segments: list[tuple[str, str]] = []
    literal: list[str] = []
    position = 0
    for match in _FIELD.finditer(fmt):
        text = fmt[position : match.start()]
        if "%" in text:
            return None
        literal.append(text)
        position = match.end()
        key = match.group("key")
        if key is None:
            literal.append("%")
        elif key in _CORE_ATOMS or _header_atom(key):
            if literal:
                segments.append(("literal", "".join(literal)))
                literal = []
            segments.append(("atom", key))
        else:
            value = Atoms(Exchange({"headers": [], "client": None}))._atom(key)
            literal.append("-" if value is None else value)
    tail = fmt[position:]
    if "%" in tail:
        return None
    literal.append(tail)
    if any(literal):
        segments.append(("literal", "".join(literal)))
    return segments


def _header_atom(key: str) -> bool:
    """`{name}i` or `{name}o` with a valid header name (other names never match a header: `-`)."""
    return (
        key.startswith("{")
        and len(key) > 3
        and key[-2] == "}"
        and key[-1] in "io"
        and _HEADER_NAME.fullmatch(key[1:-2]) is not None
    )
