"""Every setting of the server, declared once.

`OPTIONS` is the single source of truth: each entry gives the name (the `Config` attribute and
`run()` keyword), the command-line flags, the type, the default and the help text. `cli.py`
builds the click command from it, `Config` takes its keyword arguments from it, and the
environment variables (`FERROCORN_<NAME>`, then `UVICORN_<NAME>`) are derived from the names.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import logging.config
import os
import ssl
import sys
from collections.abc import Callable
from configparser import RawConfigParser
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import click

from ferrocorn import _ferrocorn
from ferrocorn.access import AccessLog, check_format
from ferrocorn.importer import ImportFromStringError, import_from_string
from ferrocorn.logging import LOGGING_CONFIG, TRACE_LOG_LEVEL, with_formats
from ferrocorn.middleware.asgi2 import ASGI2Middleware
from ferrocorn.sockets import parse_bind

if TYPE_CHECKING:
    from ferrocorn._ferrocorn import Http2Settings, ProxyProtocolSettings, WebSocketSettings

logger = logging.getLogger("ferrocorn.error")

#: Every startup failure (import, bind, lifespan) exits with this code, as uvicorn does.
STARTUP_FAILURE = 3

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}
LOOP_CHOICES = ("auto", "asyncio", "uvloop")
HTTP_CHOICES = ("auto", "h11", "httptools")
#: `--http` names that mean an HTTP/1.1-only server (uvicorn's h11 and httptools protocols).
HTTP1_ONLY_IMPLEMENTATIONS = ("h11", "httptools")
WS_CHOICES = ("auto", "none", "websockets", "websockets-sansio", "wsproto")
LIFESPAN_CHOICES = ("auto", "on", "off")
INTERFACE_CHOICES = ("auto", "asgi3", "asgi2", "wsgi")
SSL_PROTOCOL_VERSION = int(ssl.PROTOCOL_TLS_SERVER)


@dataclass(frozen=True)
class Option:
    """One setting: how it is spelled on the command line, its type, default and help."""

    name: str
    flags: tuple[str, ...]
    default: Any
    help: str
    type: Any = None
    multiple: bool = False
    is_flag: bool = False
    metavar: str | None = None
    show_default: bool = True
    #: Not yet acted on by this version: accepted for compatibility, with a warning if set.
    pending: str | None = None

    @property
    def envvars(self) -> list[str]:
        # FERROCORN_* wins over UVICORN_*, so one deployment can carry both.
        return [f"FERROCORN_{self.name.upper()}", f"UVICORN_{self.name.upper()}"]


OPTIONS: tuple[Option, ...] = (
    Option("host", ("--host",), "127.0.0.1", "Bind socket to this host.", type=str),
    Option("port", ("--port",), 8000, "Bind socket to this port. If 0, an available port will be picked.", type=int),
    Option("uds", ("--uds",), None, "Bind to a UNIX domain socket.", type=str),
    Option("fd", ("--fd",), None, "Bind to socket from this file descriptor.", type=int),
    Option(
        "bind",
        ("--bind", "-b"),
        None,
        "Also listen here: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeatable. --uds and --fd are added when "
        "given; --host/--port only when changed from their defaults.",
        type=str,
        multiple=True,
    ),
    Option("reload", ("--reload",), False, "Enable auto-reload.", is_flag=True),
    Option(
        "reload_dirs",
        ("--reload-dir",),
        None,
        "Set reload directories explicitly, instead of using the current working directory.",
        type=click.Path(exists=True),
        multiple=True,
    ),
    Option(
        "reload_includes",
        ("--reload-include",),
        None,
        "Set glob patterns to include while watching for files. Includes '*.py' by default; these defaults can be overridden with `--reload-exclude`. This option has no effect unless watchfiles is installed.",
        type=str,
        multiple=True,
    ),
    Option(
        "reload_excludes",
        ("--reload-exclude",),
        None,
        "Set glob patterns to exclude while watching for files. Includes '.*, .py[cod], .sw.*, ~*' by default; these defaults can be overridden with `--reload-include`. This option has no effect unless watchfiles is installed.",
        type=str,
        multiple=True,
    ),
    Option(
        "reload_delay",
        ("--reload-delay",),
        0.25,
        "Delay between previous and next check if application needs to be. Defaults to 0.25s.",
        type=float,
    ),
    Option(
        "workers",
        ("--workers",),
        None,
        "Number of worker processes. Defaults to the $WEB_CONCURRENCY environment variable if available, or 1. Not valid with --reload.",
        type=int,
    ),
    Option(
        "loop", ("--loop",), "auto", "Event loop factory implementation.", type=str, metavar="[auto|asyncio|uvloop]"
    ),
    Option(
        "http",
        ("--http",),
        "auto",
        "HTTP protocol implementation. Every value is served by ferrocorn's Rust core: h11 and httptools mean "
        "HTTP/1.1 only; auto, h2, zttp and any other name serve HTTP/1.1 and HTTP/2; an import path of a protocol "
        "class is accepted (ferrocorn's own HTTP implementation serves).",
        type=str,
        metavar="[auto|h11|httptools]",
    ),
    Option(
        "http2",
        ("--http2",),
        False,
        "Enable HTTP/2 support. Ferrocorn serves HTTP/2 unless --http names an HTTP/1.1-only implementation (h2 "
        "by ALPN over TLS, h2c with prior knowledge in cleartext); with --http h11|httptools it turns HTTP/2 back on.",
        is_flag=True,
    ),
    Option(
        "http2_max_concurrent_streams",
        ("--http2-max-concurrent-streams",),
        100,
        "HTTP/2: streams a client may have open at once on one connection.",
        type=click.IntRange(1, 2**31 - 1),
    ),
    Option(
        "http2_initial_stream_window_size",
        ("--http2-initial-stream-window-size",),
        1024 * 1024,
        "HTTP/2: flow-control window of each request body, in bytes.",
        type=click.IntRange(1, 2**31 - 1),
    ),
    Option(
        "http2_initial_connection_window_size",
        ("--http2-initial-connection-window-size",),
        2 * 1024 * 1024,
        "HTTP/2: flow-control window of a whole connection, in bytes; bounds the request-body bytes one client can "
        "make the server buffer.",
        type=click.IntRange(65535, 2**31 - 1),
    ),
    Option(
        "http2_max_frame_size",
        ("--http2-max-frame-size",),
        16384,
        "HTTP/2: largest frame payload the server accepts, in bytes.",
        type=click.IntRange(16384, 16777215),
    ),
    Option(
        "http2_max_header_list_size",
        ("--http2-max-header-list-size",),
        64 * 1024,
        "HTTP/2: largest decoded request header list, in bytes (HPACK bombs are refused past it).",
        type=click.IntRange(1024, 2**31 - 1),
    ),
    Option(
        "http2_keep_alive_interval",
        ("--http2-keep-alive-interval",),
        None,
        "HTTP/2: send a PING after this many idle seconds to detect dead peers (off by default).",
        type=click.FloatRange(min=0, min_open=True),
    ),
    Option(
        "http2_keep_alive_timeout",
        ("--http2-keep-alive-timeout",),
        20.0,
        "HTTP/2: close the connection if a keep-alive PING is not answered within this many seconds.",
        type=click.FloatRange(min=0, min_open=True),
    ),
    Option(
        "ws",
        ("--ws",),
        "auto",
        "WebSocket protocol implementation. Every choice but 'none' is served by ferrocorn's Rust core.",
        type=str,
        metavar="[auto|none|websockets|websockets-sansio|wsproto]",
    ),
    Option(
        "ws_max_size",
        ("--ws-max-size",),
        16777216,
        "WebSocket max size message in bytes.",
        type=int,
    ),
    Option(
        "ws_max_queue",
        ("--ws-max-queue",),
        32,
        "The maximum length of the WebSocket message queue.",
        type=int,
    ),
    Option(
        "ws_ping_interval",
        ("--ws-ping-interval",),
        20.0,
        "WebSocket ping interval in seconds.",
        type=float,
    ),
    Option(
        "ws_ping_timeout",
        ("--ws-ping-timeout",),
        20.0,
        "WebSocket ping timeout in seconds.",
        type=float,
    ),
    Option(
        "ws_per_message_deflate",
        ("--ws-per-message-deflate",),
        True,
        "WebSocket per-message-deflate compression",
        type=bool,
    ),
    Option("lifespan", ("--lifespan",), "auto", "Lifespan implementation.", type=click.Choice(LIFESPAN_CHOICES)),
    Option(
        "interface",
        ("--interface",),
        "auto",
        "Select ASGI3, ASGI2, or WSGI as the application interface.",
        type=click.Choice(INTERFACE_CHOICES),
    ),
    Option("env_file", ("--env-file",), None, "Environment configuration file.", type=click.Path(exists=True)),
    Option(
        "log_config",
        ("--log-config",),
        None,
        "Logging configuration file. Supported formats: .ini, .json, .yaml.",
        type=click.Path(exists=True),
        show_default=False,
    ),
    Option(
        "log_level",
        ("--log-level",),
        None,
        "Log level. [default: info]",
        type=click.Choice(list(LOG_LEVELS), case_sensitive=False),
        show_default=False,
    ),
    Option("access_log", ("--access-log/--no-access-log",), True, "Enable/Disable access log.", is_flag=True),
    Option(
        "access_log_format",
        ("--access-log-format",),
        None,
        "Access log line in gunicorn's format: %(h)s %(l)s %(u)s %(t)s %(r)s %(s)s %(b)s %(f)s %(a)s %(D)s %(M)s "
        "%(L)s %(T)s %(m)s %(U)s %(q)s %(H)s %(p)s, %({name}i)s request and %({name}o)s response headers. "
        "Logged when the response ends. Default: uvicorn's line.",
        type=str,
        show_default=False,
    ),
    Option(
        "log_format",
        ("--log-format",),
        "text",
        "'json' writes every server and access log record as one JSON object per line.",
        type=click.Choice(["text", "json"]),
    ),
    Option(
        "use_colors",
        ("--use-colors/--no-use-colors",),
        None,
        "Enable/Disable colorized logging.",
        is_flag=True,
        show_default=False,
    ),
    Option(
        "proxy_headers",
        ("--proxy-headers/--no-proxy-headers",),
        True,
        "Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and remote address info.",
        is_flag=True,
    ),
    Option(
        "server_header",
        ("--server-header/--no-server-header",),
        True,
        "Enable/Disable default Server header.",
        is_flag=True,
    ),
    Option(
        "date_header", ("--date-header/--no-date-header",), True, "Enable/Disable default Date header.", is_flag=True
    ),
    Option(
        "early_hints_http1",
        ("--early-hints-http1/--no-early-hints-http1",),
        False,
        "Enable/Disable 103 Early Hints (the http.response.early_hint extension) on HTTP/1.1 connections. Always "
        "on for HTTP/2; never sent to HTTP/1.0 requests.",
        is_flag=True,
    ),
    Option(
        "forwarded_allow_ips",
        ("--forwarded-allow-ips",),
        None,
        "Comma separated list of IP Addresses, IP Networks, or literals (e.g. UNIX Socket path) to trust with proxy headers. Defaults to the $FORWARDED_ALLOW_IPS environment variable if available, or '127.0.0.1'. The literal '*' means trust everything.",
        type=str,
    ),
    Option(
        "proxy_protocol",
        ("--proxy-protocol",),
        "off",
        "Read a PROXY protocol header (HAProxy, AWS NLB) first on each TCP connection from a peer in "
        "--forwarded-allow-ips, and report the client and server addresses it carries. 'auto' accepts v1 or v2. "
        "A trusted peer without a valid header, or an untrusted peer sending one, is disconnected.",
        type=click.Choice(["off", "v1", "v2", "auto"]),
    ),
    Option(
        "metrics_bind",
        ("--metrics-bind",),
        None,
        "Serve Prometheus metrics (GET /metrics) for the whole server, every worker included, on this "
        "HOST:PORT or [IPv6]:PORT. Off by default.",
        type=str,
        metavar="HOST:PORT",
    ),
    Option(
        "root_path",
        ("--root-path",),
        "",
        "Set the ASGI 'root_path' for applications submounted below a given URL path.",
        type=str,
    ),
    Option(
        "limit_concurrency",
        ("--limit-concurrency",),
        None,
        "Maximum number of concurrent connections or tasks to allow, before issuing HTTP 503 responses.",
        type=int,
    ),
    Option("backlog", ("--backlog",), 2048, "Maximum number of connections to hold in backlog", type=int),
    Option(
        "limit_max_requests",
        ("--limit-max-requests",),
        None,
        "Maximum number of requests to service before terminating the process.",
        type=int,
    ),
    Option(
        "limit_max_requests_jitter",
        ("--limit-max-requests-jitter",),
        0,
        "Maximum jitter to add to limit_max_requests. Staggers worker restarts to avoid all workers restarting simultaneously.",
        type=int,
    ),
    Option(
        "limit_worker_lifetime",
        ("--limit-worker-lifetime",),
        None,
        "Replace each worker after it has served for this many seconds (less up to 10 % of jitter, so workers "
        "started together are not replaced together). A rolling replacement: the new worker serves before the old "
        "one drains. Starts the supervisor even without --workers.",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
    ),
    Option(
        "limit_worker_memory",
        ("--limit-worker-memory",),
        None,
        "Replace a worker whose resident memory (RSS, sampled every second) exceeds this many MiB (less up to "
        "10 % of jitter). A rolling replacement: the new worker serves before the old one drains. Starts the "
        "supervisor even without --workers.",
        type=click.IntRange(min=1),
        metavar="MIB",
    ),
    Option(
        "limit_request_body_size",
        ("--limit-request-body-size",),
        None,
        "Largest request body, in bytes: a larger declared Content-Length is answered 413 before the app runs; a "
        "chunked or HTTP/2 body that grows past it ends with 413 and http.disconnect. No limit by default.",
        type=click.IntRange(min=0),
        metavar="BYTES",
    ),
    Option(
        "limit_request_headers",
        ("--limit-request-headers",),
        100,
        "Most header fields in a request (HTTP/1.1 and HTTP/2); a request with more is answered 431.",
        type=click.IntRange(1, 10000),
    ),
    Option(
        "limit_request_line",
        ("--limit-request-line",),
        8190,
        "Longest request line (method, target and version; on HTTP/2 the :path), in bytes: a longer one is "
        "answered 414. 0: no limit (the head as a whole stays bounded by --h11-max-incomplete-event-size).",
        type=click.IntRange(min=0),
        metavar="BYTES",
    ),
    Option(
        "limit_request_field_size",
        ("--limit-request-field-size",),
        8190,
        "Longest header field (name plus value), in bytes, on HTTP/1.1 and HTTP/2: a request with a longer one is "
        "answered 431. 0: no limit (the head as a whole stays bounded by --h11-max-incomplete-event-size).",
        type=click.IntRange(min=0),
        metavar="BYTES",
    ),
    Option(
        "timeout_keep_alive",
        ("--timeout-keep-alive",),
        5,
        "Close Keep-Alive connections if no new data is received within this timeout (in seconds).",
        type=int,
    ),
    Option(
        "timeout_tls_handshake",
        ("--timeout-tls-handshake",),
        10.0,
        "Close a TLS connection whose handshake has not finished within this many seconds.",
        type=click.FloatRange(min=0, min_open=True),
    ),
    Option(
        "timeout_request_head",
        ("--timeout-request-head",),
        10.0,
        "Close a connection whose request line and headers have not all arrived within this many seconds of their "
        "first byte (slow-header clients). Separate from --timeout-keep-alive, which bounds the silence before it.",
        type=click.FloatRange(min=0, min_open=True),
    ),
    Option(
        "timeout_request_body",
        ("--timeout-request-body",),
        30.0,
        "Give up on a request body when no byte of it arrives for this many seconds while the server waits for it: "
        "the app's receive() gets http.disconnect, the client 408 and the connection closes.",
        type=click.FloatRange(min=0, min_open=True),
    ),
    Option(
        "timeout_response_write",
        ("--timeout-response-write",),
        30.0,
        "Close a connection whose client has not accepted a byte of a response (or WebSocket) for this many seconds; "
        "the app's send() raises ClientDisconnected.",
        type=click.FloatRange(min=0, min_open=True),
    ),
    Option(
        "timeout_graceful_shutdown",
        ("--timeout-graceful-shutdown",),
        None,
        "Maximum number of seconds to wait for graceful shutdown.",
        type=int,
    ),
    Option(
        "timeout_notify",
        ("--timeout-notify",),
        30,
        "With --workers, replace a worker whose event loop has not notified the supervisor within this many "
        "seconds; from Python, how often callback_notify is called.",
        type=click.IntRange(min=1),
    ),
    Option(
        "timeout_worker_healthcheck",
        ("--timeout-worker-healthcheck",),
        5,
        "Maximum number of seconds to wait for a worker to respond to a healthcheck.",
        type=int,
    ),
    Option("ssl_keyfile", ("--ssl-keyfile",), None, "SSL key file", type=str),
    Option("ssl_certfile", ("--ssl-certfile",), None, "SSL certificate file", type=str),
    Option(
        "ssl_keyfile_password",
        ("--ssl-keyfile-password",),
        None,
        "SSL keyfile password",
        type=str,
    ),
    Option(
        "ssl_version",
        ("--ssl-version",),
        SSL_PROTOCOL_VERSION,
        "SSL version to use (see stdlib ssl module's)",
        type=int,
    ),
    Option(
        "ssl_cert_reqs",
        ("--ssl-cert-reqs",),
        int(ssl.CERT_NONE),
        "Whether client certificate is required (see stdlib ssl module's)",
        type=int,
    ),
    Option("ssl_ca_certs", ("--ssl-ca-certs",), None, "CA certificates file", type=str),
    Option(
        "ssl_ciphers",
        ("--ssl-ciphers",),
        None,
        "Ciphers to use (see stdlib ssl module's)",
        type=str,
    ),
    Option(
        "headers",
        ("--header",),
        None,
        "Specify custom default HTTP response headers as a Name:Value pair",
        type=str,
        multiple=True,
    ),
    Option(
        "app_dir",
        ("--app-dir",),
        "",
        "Look for APP in the specified directory, by adding this to the PYTHONPATH. Defaults to the current working directory.",
        type=str,
        show_default=False,
    ),
    Option(
        "h11_max_incomplete_event_size",
        ("--h11-max-incomplete-event-size",),
        None,
        "For h11, the maximum number of bytes to buffer of an incomplete event. Ferrocorn applies it as the limit on the request line plus headers (431 above it).",
        type=int,
    ),
    Option(
        "factory",
        ("--factory",),
        False,
        "Treat APP as an application factory, i.e. a () -> <ASGI app> callable.",
        is_flag=True,
    ),
    Option(
        "reset_contextvars",
        ("--reset-contextvars",),
        False,
        "Run each request in a fresh contextvars.Context.",
        is_flag=True,
    ),
    Option(
        "gc_freeze",
        ("--gc-freeze/--no-gc-freeze",),
        True,
        "Enable/Disable moving every object alive once the app has started (its modules, what its lifespan "
        "startup built) out of reach of the cyclic garbage collector (gc.collect() then gc.freeze()), so that "
        "collections under load only walk objects made since.",
        is_flag=True,
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}

#: Settings only reachable from Python (`run()`, `Config`), not from the command line.
PYTHON_ONLY_DEFAULTS: dict[str, Any] = {
    "ssl_context_factory": None,
    "callback_notify": None,
}


def _normalise_headers(headers: Any) -> list[tuple[str, str]]:
    """`--header Name:Value` strings (or pairs from Python) into (name, value) pairs."""
    pairs: list[tuple[str, str]] = []
    for header in headers or ():
        if isinstance(header, str):
            name, separator, value = header.partition(":")
            if not separator:
                raise click.BadParameter(f"{header!r} is not in the form Name:Value", param_hint="'--header'")
            pairs.append((name.strip(), value.strip()))
        else:
            name, value = header
            pairs.append((str(name), str(value)))
    return pairs


def _normalise_binds(binds: Any) -> list[str]:
    """--bind values as a list (one string from Python is one bind), each checked."""
    values = [binds] if isinstance(binds, str) else list(binds or ())
    for value in values:
        try:
            parse_bind(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--bind'") from None
    return values


class Config:
    """Server settings: every keyword in `OPTIONS` (and `PYTHON_ONLY_DEFAULTS`) is accepted.

    The class declares each option's attribute with its type, and nothing more: the name, default,
    flags and help live in `OPTIONS` alone, and `__init__` fills the attributes from there. The type
    is the value's once `__init__` is done; a few options are normalised on the way:

    - `workers`: None becomes $WEB_CONCURRENCY, or 1;
    - `forwarded_allow_ips`: None becomes $FORWARDED_ALLOW_IPS, or "127.0.0.1";
    - `reload_dirs`, `reload_includes`, `reload_excludes`: lists (empty unless reloading);
    - `headers`: a list of (name, value) pairs from the `Name:Value` strings;
    - `bind`: a list of checked `--bind` strings;
    - `log_config`: from Python, a copy of the built-in `LOGGING_CONFIG` by default (None from
      `OPTIONS` is the command line's "not given", which `cli.py` turns into the same).
    """

    # --- options: one per entry of OPTIONS, in its order ----------------------------------------
    host: str | None
    port: int
    uds: str | None
    fd: int | None
    bind: list[str]
    reload: bool
    reload_dirs: list[Path]
    reload_includes: list[str]
    reload_excludes: list[str]
    reload_delay: float
    workers: int
    loop: str | None
    http: str | type[asyncio.Protocol]
    http2: bool
    http2_max_concurrent_streams: int
    http2_initial_stream_window_size: int
    http2_initial_connection_window_size: int
    http2_max_frame_size: int
    http2_max_header_list_size: int
    http2_keep_alive_interval: float | None
    http2_keep_alive_timeout: float
    ws: str
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_per_message_deflate: bool
    lifespan: str
    interface: str
    env_file: str | os.PathLike[str] | None
    log_config: dict[str, Any] | str | RawConfigParser | IO[str] | None
    log_level: str | int | None
    access_log: bool
    access_log_format: str | None
    log_format: str
    use_colors: bool | None
    proxy_headers: bool
    server_header: bool
    date_header: bool
    early_hints_http1: bool
    forwarded_allow_ips: str | list[str]
    proxy_protocol: str
    metrics_bind: str | None
    root_path: str
    limit_concurrency: int | None
    backlog: int
    limit_max_requests: int | None
    limit_max_requests_jitter: int
    limit_worker_lifetime: float | None
    limit_worker_memory: int | None
    limit_request_body_size: int | None
    limit_request_headers: int
    limit_request_line: int
    limit_request_field_size: int
    timeout_keep_alive: float
    timeout_tls_handshake: float
    timeout_request_head: float
    timeout_request_body: float
    timeout_response_write: float
    timeout_graceful_shutdown: float | None
    timeout_notify: float
    timeout_worker_healthcheck: float
    ssl_keyfile: str | os.PathLike[str] | None
    ssl_certfile: str | os.PathLike[str] | None
    ssl_keyfile_password: str | None
    ssl_version: int
    ssl_cert_reqs: int
    ssl_ca_certs: str | os.PathLike[str] | None
    ssl_ciphers: str | None
    headers: list[tuple[str, str]]
    app_dir: str | None
    h11_max_incomplete_event_size: int | None
    factory: bool
    reset_contextvars: bool
    gc_freeze: bool

    # --- options only Python can set: one per entry of PYTHON_ONLY_DEFAULTS -------------------
    ssl_context_factory: Callable[..., Any] | None
    callback_notify: Callable[..., Any] | None

    # --- state: derived from the options, or set by load() ---------------------------------
    app: Any
    loaded: bool
    loaded_app: Any
    lifespan_state: dict[str, Any]
    encoded_headers: list[tuple[bytes, bytes]]
    reload_dirs_excludes: list[Path]
    tls: _ferrocorn.TlsConfig | None

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.app = app
        # From Python, log_config defaults to the built-in configuration; None leaves logging alone.
        log_config = kwargs.pop("log_config", LOGGING_CONFIG)
        for option in OPTIONS:
            setattr(self, option.name, kwargs.pop(option.name, option.default))
        self.log_config = copy.deepcopy(log_config) if isinstance(log_config, dict) else log_config
        for name, default in PYTHON_ONLY_DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"Config() got unexpected keyword argument(s): {unknown}")

        self.loaded = False
        self.loaded_app = None
        self.lifespan_state = {}
        self.tls = None
        self.configure_logging()

        if self.env_file is not None:
            from dotenv import load_dotenv

            logger.info("Loading environment from '%s'", self.env_file)
            load_dotenv(dotenv_path=self.env_file)

        if self.workers is None:
            self.workers = int(os.environ.get("WEB_CONCURRENCY", 1))
        if self.forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        self._resolve_reload_settings()
        if self.reload and self.workers > 1:
            logger.warning('"workers" flag is ignored when reloading is enabled.')
        if self.should_reload and self.recycles_workers:
            logger.warning("--limit-worker-lifetime and --limit-worker-memory are ignored when reloading is enabled.")
        self.headers = _normalise_headers(self.headers)
        self.bind = _normalise_binds(self.bind)
        if self.access_log_format is not None:
            try:
                check_format(self.access_log_format)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="'--access-log-format'") from None
        self.encoded_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers
        ]
        if self.server_header and not any(name == b"server" for name, _ in self.encoded_headers):
            self.encoded_headers.insert(0, (b"server", b"ferrocorn"))
        self._warn_pending_options()

    # --- derived settings -------------------------------------------------------------------

    @property
    def asgi_version(self) -> Literal["2.0", "3.0"]:
        return "2.0" if self.interface == "asgi2" else "3.0"

    @property
    def trusted_proxies(self) -> list[str]:
        """--forwarded-allow-ips as a list (a comma-separated string or a list from Python)."""
        value = self.forwarded_allow_ips
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return [item.strip() for item in items if item.strip()]

    @property
    def proxy_protocol_settings(self) -> ProxyProtocolSettings | None:
        """--proxy-protocol for the Rust core: None when off. Its trust list is --forwarded-allow-ips, whether or
        not --proxy-headers is on."""
        if self.proxy_protocol == "off":
            return None
        return {"version": self.proxy_protocol, "allow_ips": self.trusted_proxies}

    @property
    def websocket_settings(self) -> WebSocketSettings | None:
        """The `--ws-*` options for the Rust core; None with `--ws none` (upgrades stay HTTP)."""
        if self.ws == "none":
            return None
        return {
            "max_size": int(self.ws_max_size),
            "max_queue": int(self.ws_max_queue),
            "ping_interval": None if self.ws_ping_interval is None else float(self.ws_ping_interval),
            "ping_timeout": None if self.ws_ping_timeout is None else float(self.ws_ping_timeout),
            "per_message_deflate": bool(self.ws_per_message_deflate),
            "write_timeout": float(self.timeout_response_write),
        }

    @property
    def recycles_workers(self) -> bool:
        """--limit-worker-lifetime or --limit-worker-memory: the supervisor replaces workers, even a single one."""
        return self.limit_worker_lifetime is not None or self.limit_worker_memory is not None

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile)

    @property
    def http2_enabled(self) -> bool:
        """HTTP/2 is served beside HTTP/1.1 unless --http names an HTTP/1.1-only implementation (h11,
        httptools) and --http2 is not given: `--http h2`, `zttp` or a protocol class's import path keep it on."""
        return self.http not in HTTP1_ONLY_IMPLEMENTATIONS or bool(self.http2)

    def http2_settings(self) -> Http2Settings | None:
        """The HTTP/2 knobs, as the Rust core takes them; None when HTTP/2 is off."""
        if not self.http2_enabled:
            return None
        return {
            "max_concurrent_streams": self.http2_max_concurrent_streams,
            "initial_stream_window_size": self.http2_initial_stream_window_size,
            "initial_connection_window_size": self.http2_initial_connection_window_size,
            "max_frame_size": self.http2_max_frame_size,
            "max_header_list_size": self.http2_max_header_list_size,
            "keep_alive_interval": self.http2_keep_alive_interval,
            "keep_alive_timeout": self.http2_keep_alive_timeout,
        }

    def load_tls(self) -> None:
        """Build the TLS configuration from the --ssl-* options (rustls), or exit with code 3 and one line
        saying what is wrong. Sets `self.tls` (None without TLS)."""
        self.tls = None
        if self.ssl_context_factory is not None:
            logger.error(
                "ssl_context_factory is not supported: ferrocorn terminates TLS with rustls, not Python's ssl "
                "module. Configure TLS with the ssl_* options instead."
            )
            sys.exit(STARTUP_FAILURE)
        if not self.is_ssl:
            return
        if not self.ssl_certfile:
            logger.error("--ssl-keyfile needs --ssl-certfile.")
            sys.exit(STARTUP_FAILURE)
        try:
            self.tls = _ferrocorn.TlsConfig(
                certfile=os.fspath(self.ssl_certfile),
                keyfile=os.fspath(self.ssl_keyfile) if self.ssl_keyfile else None,
                password=self.ssl_keyfile_password or None,
                ca_certs=os.fspath(self.ssl_ca_certs) if self.ssl_ca_certs else None,
                cert_reqs=int(self.ssl_cert_reqs),
                ciphers=self.ssl_ciphers or "TLSv1",
                version=int(self.ssl_version),
                http2=self.http2_enabled,
            )
        except _ferrocorn.TlsConfigError as exc:
            logger.error("Invalid TLS configuration: %s", exc)
            sys.exit(STARTUP_FAILURE)
        for warning in self.tls.warnings:
            logger.warning("%s", warning)

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and self.reload

    def _resolve_reload_settings(self) -> None:
        """Turn --reload-dir/--reload-include/--reload-exclude into the directories to watch and the
        glob patterns to apply, as uvicorn does: a pattern naming a directory watches (or stops
        watching) that directory, and the current directory is watched when nothing else is."""
        given_dirs = _as_list(self.reload_dirs)
        given_includes = _as_list(self.reload_includes)
        given_excludes = _as_list(self.reload_excludes)
        self.reload_dirs = []
        self.reload_dirs_excludes = []
        self.reload_includes = []
        self.reload_excludes = []
        if (given_dirs or given_includes or given_excludes) and not self.should_reload:
            logger.warning(
                "Current configuration will not reload as not all conditions are met, please refer to documentation."
            )
        if not self.should_reload:
            return

        self.reload_includes, self.reload_dirs = _split_reload_patterns(given_includes, given_dirs)
        self.reload_excludes, self.reload_dirs_excludes = _split_reload_patterns(given_excludes, [])
        self.reload_dirs = [
            directory
            for directory in self.reload_dirs
            if not any(excluded == directory or excluded in directory.parents for excluded in self.reload_dirs_excludes)
        ]
        self.reload_includes = [pattern for pattern in self.reload_includes if pattern not in self.reload_excludes]
        if not self.reload_dirs:
            if given_dirs:
                logger.warning(
                    "Provided reload directories %s did not contain valid directories, watching current working directory.",
                    given_dirs,
                )
            self.reload_dirs = [Path.cwd()]
        logger.info("Will watch for changes in these directories: %s", sorted(map(str, self.reload_dirs)))

    def _warn_pending_options(self) -> None:
        for option in OPTIONS:
            if option.pending is None:
                continue
            value = getattr(self, option.name)
            unchanged = value == option.default or (option.multiple and not value)
            if not unchanged:
                logger.warning("Option '%s' is accepted but has no effect yet: %s.", option.name, option.pending)
        if self.http != "auto":
            versions = "HTTP/1.1 and HTTP/2" if self.http2_enabled else "HTTP/1.1 only"
            if isinstance(self.http, str) and not ("." in self.http or ":" in self.http):
                logger.info("--http %s: served by ferrocorn's Rust HTTP implementation (%s).", self.http, versions)
            else:
                name = self.http if isinstance(self.http, str) else f"{self.http.__module__}.{self.http.__qualname__}"
                logger.info(
                    "--http %s: protocol classes are not loaded; ferrocorn's own Rust HTTP implementation serves (%s).",
                    name,
                    versions,
                )
        if self.ws not in ("auto", "none"):
            logger.info("--ws %s: served by ferrocorn's Rust WebSocket implementation.", self.ws)

    # --- logging ----------------------------------------------------------------------------

    def configure_logging(self) -> None:
        logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")
        formats_ignored = False
        if self.log_format == "json" or self.access_log_format is not None:
            formatted = with_formats(
                LOGGING_CONFIG,
                json_lines=self.log_format == "json",
                access_message_only=self.access_log_format is not None,
            )
            if self.log_config == LOGGING_CONFIG:
                self.log_config = formatted
            elif self.log_config != formatted:  # (a worker applying its parent's configuration again)
                formats_ignored = self.log_format == "json"
        if self.log_config is not None:
            if isinstance(self.log_config, dict):
                if self.use_colors in (True, False):
                    formatters = self.log_config.get("formatters", {})
                    for name in ("default", "access"):
                        if name in formatters:
                            formatters[name]["use_colors"] = self.use_colors
                logging.config.dictConfig(_for_ferrocorn(self.log_config))
            elif isinstance(self.log_config, str) and self.log_config.endswith(".json"):
                import json

                with open(self.log_config) as file:
                    logging.config.dictConfig(_for_ferrocorn(json.load(file)))
            elif isinstance(self.log_config, str) and self.log_config.endswith((".yaml", ".yml")):
                import yaml

                with open(self.log_config) as file:
                    logging.config.dictConfig(_for_ferrocorn(yaml.safe_load(file)))
            else:
                logging.config.fileConfig(self.log_config, disable_existing_loggers=False)
            _adopt_uvicorn_loggers()

        if self.log_level is not None:
            level = LOG_LEVELS[self.log_level.lower()] if isinstance(self.log_level, str) else self.log_level
            for name in ("ferrocorn.error", "ferrocorn.access", "ferrocorn.asgi"):
                logging.getLogger(name).setLevel(level)
        if self.access_log is False:
            access_logger = logging.getLogger("ferrocorn.access")
            access_logger.handlers = []
            access_logger.propagate = False
        if formats_ignored:
            logger.warning("--log-format json applies to the built-in logging configuration, not to --log-config.")

    @property
    def end_of_response_access_log(self) -> AccessLog | None:
        """The access log taken at each response's end (--access-log-format, --log-format json); None for
        uvicorn's line, which the core logs at http.response.start."""
        if not self.access_log or (self.access_log_format is None and self.log_format != "json"):
            return None
        return AccessLog(self.access_log_format, json=self.log_format == "json")

    # --- the app ----------------------------------------------------------------------------

    def load(self) -> None:
        """Import and prepare the app; on failure log one line and exit with code 3."""
        assert not self.loaded
        self.load_tls()
        if self.app_dir is not None:
            sys.path.insert(0, self.app_dir)
        try:
            self.loaded_app = import_from_string(self.app)
        except ImportFromStringError as exc:
            logger.error("Error loading ASGI app. %s", exc)
            sys.exit(STARTUP_FAILURE)
        except Exception as exc:
            # The app's own import failed: one readable line; the traceback only when debugging.
            logger.error("Error loading ASGI app. %s", describe_exception(exc))
            logger.debug("Traceback of the import error:", exc_info=exc)
            sys.exit(STARTUP_FAILURE)

        try:
            self.loaded_app = self.loaded_app()
        except TypeError as exc:
            if self.factory:
                logger.error("Error loading ASGI app factory: %s", exc)
                sys.exit(STARTUP_FAILURE)
        else:
            if not self.factory:
                logger.warning(
                    "ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly."
                )

        if self.interface == "auto":
            if inspect.isclass(self.loaded_app):
                use_asgi_3 = hasattr(self.loaded_app, "__await__")
            elif inspect.isfunction(self.loaded_app):
                use_asgi_3 = asyncio.iscoroutinefunction(self.loaded_app)
            else:
                use_asgi_3 = asyncio.iscoroutinefunction(type(self.loaded_app).__call__)
            self.interface = "asgi3" if use_asgi_3 else "asgi2"

        if self.interface == "wsgi":
            logger.error("Error loading ASGI app. The WSGI interface is not supported; wrap the app with a2wsgi.")
            sys.exit(STARTUP_FAILURE)
        if self.interface == "asgi2":
            self.loaded_app = ASGI2Middleware(self.loaded_app)
        self.loaded = True

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        # Declared: without uvloop installed, or from an import string, the factory is untyped.
        loop_factory: Callable[[], asyncio.AbstractEventLoop]
        if self.loop in ("none", None):
            return None
        if self.loop == "asyncio":
            return asyncio.new_event_loop
        if self.loop in ("auto", "uvloop"):
            try:
                import uvloop
            except ImportError:
                if self.loop == "uvloop":
                    raise
                return asyncio.new_event_loop
            loop_factory = uvloop.new_event_loop
            return loop_factory
        try:
            loop_factory = import_from_string(self.loop)
        except ImportFromStringError as exc:
            logger.error("Error loading custom loop setup function. %s", exc)
            sys.exit(STARTUP_FAILURE)
        return loop_factory


#: A log config written for uvicorn names these loggers; ferrocorn logs under its own names.
UVICORN_LOGGER_NAMES = {
    "uvicorn": "ferrocorn",
    "uvicorn.error": "ferrocorn.error",
    "uvicorn.access": "ferrocorn.access",
    "uvicorn.asgi": "ferrocorn.asgi",
}


def _for_ferrocorn(config: dict[str, Any]) -> dict[str, Any]:
    """Point `uvicorn.logging.*` formatter classes at ferrocorn's (same formats) when uvicorn is
    not installed, so a log config written for uvicorn loads unchanged.

    uvicorn is imported only when the config names it: its package brings its reloaders and
    watchfiles (~1.5 MiB of every worker's memory)."""
    uses_uvicorn = [
        (formatter, key)
        for formatter in config.get("formatters", {}).values()
        for key in ("()", "class")
        if isinstance(formatter.get(key), str) and formatter[key].startswith("uvicorn.logging.")
    ]
    if not uses_uvicorn:
        return config
    try:
        import uvicorn.logging  # noqa: F401
    except ImportError:
        pass
    else:
        return config
    for formatter, key in uses_uvicorn:
        formatter[key] = "ferrocorn.logging." + formatter[key].removeprefix("uvicorn.logging.")
    return config


def _adopt_uvicorn_loggers() -> None:
    """If the applied config set up `uvicorn.*` loggers and left ferrocorn's alone, ferrocorn's take
    their handlers, level and propagation: the config works as it did under uvicorn."""
    for uvicorn_name, ferrocorn_name in UVICORN_LOGGER_NAMES.items():
        source = logging.getLogger(uvicorn_name)
        target = logging.getLogger(ferrocorn_name)
        source_configured = bool(source.handlers) or source.level != logging.NOTSET
        target_configured = bool(target.handlers) or target.level != logging.NOTSET
        if source_configured and not target_configured:
            target.handlers = list(source.handlers)
            target.setLevel(source.level)
            target.propagate = source.propagate
            target.disabled = source.disabled


def _as_list(value: Any) -> list[str]:
    """A repeatable option's value from the CLI (a tuple) or from Python (None, one string, a list)."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return list(dict.fromkeys(os.fspath(item) for item in value))


def _is_dir(path: Path) -> bool:
    try:
        return path.resolve().is_dir()
    except OSError:
        return False


def _split_reload_patterns(patterns: list[str], directories: list[str]) -> tuple[list[str], list[Path]]:
    """The glob patterns, and the directories to watch: `directories` plus every directory a
    pattern names or matches under the current directory. A directory nested in another is
    dropped, since watching the outer one already covers it."""
    found = [Path(directory) for directory in directories]
    cwd = Path.cwd()
    for pattern in patterns:
        if pattern == ".*":
            continue  # as a directory glob it would only match hidden directories: not meant that way
        if _is_dir(Path(pattern)):
            found.append(Path(pattern))
        else:
            found.extend(match for match in cwd.glob(pattern) if _is_dir(match))
    resolved = {path.resolve() for path in found if _is_dir(path)}
    outermost = [path for path in resolved if not any(other in path.parents for other in resolved)]
    return list(dict.fromkeys(patterns)), outermost


def describe_exception(exc: BaseException) -> str:
    """`Type: message (raised at file:line)`, the frame being the innermost one."""
    text = f"{type(exc).__name__}: {exc}"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        text += f" (raised at {os.path.relpath(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
    return text
