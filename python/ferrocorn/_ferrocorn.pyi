"""Type stubs for the Rust extension `ferrocorn._ferrocorn`."""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypedDict, final, type_check_only

from typing_extensions import Self

__all__ = [
    "Core",
    "TlsConfig",
    "TlsConfigError",
    "HttpProtocol",
    "WebSocketProtocol",
    "Ready",
    "Done",
    "ClientDisconnected",
    "__version__",
    "HTTP_SPEC_VERSION",
]

__version__: str
HTTP_SPEC_VERSION: str

class ClientDisconnected(OSError):
    """Raised by `send()` once the client has gone (ASGI spec 2.4)."""

class TlsConfigError(ValueError):
    """The --ssl-* options cannot be used: a file, key, password or cipher is wrong."""

@final
class TlsConfig:
    """The --ssl-* options checked and turned into a rustls configuration (raises TlsConfigError)."""

    def __new__(
        cls,
        *,
        certfile: str,
        keyfile: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        cert_reqs: int = 0,
        ciphers: str = ...,  # "TLSv1": a default the extension's signature does not spell out
        version: int = 17,
        http2: bool = True,
    ) -> Self: ...
    @property
    def warnings(self) -> list[str]: ...

# The TypedDicts exist for type checkers only: the core takes plain dicts.
@type_check_only
class Http2Settings(TypedDict):
    max_concurrent_streams: int
    initial_stream_window_size: int
    initial_connection_window_size: int
    max_frame_size: int
    max_header_list_size: int
    keep_alive_interval: float | None
    keep_alive_timeout: float

@type_check_only
class WebSocketSettings(TypedDict):
    """The `--ws-*` options, as `Core(websocket=...)` takes them."""

    max_size: int
    max_queue: int
    ping_interval: float | None
    ping_timeout: float | None
    per_message_deflate: bool
    write_timeout: float | None

@type_check_only
class ProxyProtocolSettings(TypedDict):
    """`--proxy-protocol` (not off): the versions accepted, and from which peers."""

    version: str
    allow_ips: list[str]

@type_check_only
class NativeAccessLogSettings(TypedDict):
    """The access log written by the core (`ferrocorn.access.native_access_log`): uvicorn's line, gunicorn's
    atoms as ("literal", text) / ("atom", key) segments, or JSON (with segments for its message, if any)."""

    style: Literal["uvicorn", "atoms", "json"]
    colors: bool
    segments: list[tuple[str, str]] | None
    fd: int
    phrases: dict[int, str]

@type_check_only
class MetricsSlot(TypedDict):
    """`--metrics-bind`: the shared-memory block (`ferrocorn.metrics`) and this worker's slot in it."""

    path: str
    slot: int

@type_check_only
class ServerSettings(TypedDict):
    """Everything `Core` runs with, checked once in Rust (a bad value raises ValueError)."""

    root_path: str
    default_headers: list[tuple[bytes, bytes]]
    keep_alive_timeout: float
    max_header_size: int | None
    date_header: bool
    early_hints_http1: bool
    asgi_version: str
    reset_contextvars: bool
    limit_concurrency: int | None
    limit_request_body_size: int | None
    limit_request_headers: int
    #: 0: no limit.
    limit_request_line: int
    #: 0: no limit.
    limit_request_field_size: int
    forwarded_allow_ips: list[str] | None
    tls: TlsConfig | None
    tls_handshake_timeout: float
    request_head_timeout: float
    request_body_timeout: float
    response_write_timeout: float
    http2: Http2Settings | None
    websocket: WebSocketSettings | None
    proxy_protocol: ProxyProtocolSettings | None
    native_access_log: NativeAccessLogSettings | None
    metrics: MetricsSlot | None

@final
class Core:
    """The Rust side of one server: sockets, HTTP, and the hand-off to the event loop."""

    def __new__(
        cls,
        *,
        loop_: Any,
        runner: Callable[[dict[str, Any], HttpProtocol | WebSocketProtocol], Coroutine[Any, Any, None]],
        log: Callable[[int, str], None],
        settings: ServerSettings,
        access_log: Callable[[dict[str, Any], int], None] | None = None,
        state: dict[str, Any] | None = None,
        eager_task: Callable[[Coroutine[Any, Any, None]], Any] | None = None,
    ) -> Self: ...
    def listen(self, fd: int, unix_path: str | None = None) -> None: ...
    def start(self) -> None: ...
    def fileno(self) -> int: ...
    def drain(self) -> None: ...
    def stop_accepting(self) -> None: ...
    def force_close(self) -> None: ...
    def close(self) -> None: ...
    def cancel_tasks(self) -> int: ...
    @property
    def connections(self) -> int: ...
    @property
    def tasks(self) -> int: ...
    @property
    def total_requests(self) -> int: ...

@final
class HttpProtocol:
    """The ASGI `receive`/`send` pair of one HTTP request."""

    def receive(self) -> Awaitable[dict[str, Any]]: ...
    def send(self, message: dict[str, Any]) -> Awaitable[None]: ...
    def app_returned(self) -> str | None: ...
    def app_failed(self) -> None: ...
    @property
    def client_gone(self) -> bool: ...

@final
class WebSocketProtocol:
    """The ASGI `receive`/`send` pair of one WebSocket."""

    def receive(self) -> Awaitable[dict[str, Any]]: ...
    def send(self, message: dict[str, Any]) -> Awaitable[None]: ...
    def app_returned(self) -> str | None: ...
    def app_failed(self) -> None: ...
    @property
    def client_gone(self) -> bool: ...

@final
class Ready:
    def __await__(self) -> Ready: ...
    def __next__(self) -> Any: ...

@final
class Done:
    def __await__(self) -> Done: ...
    def __next__(self) -> None: ...
