"""A gunicorn worker class: `gunicorn app.main:app -k ferrocorn.workers.FerrocornWorker -w 4`.

gunicorn's arbiter binds the sockets, forks the workers, watches their heartbeat and replaces
them; each worker here is a ferrocorn `Server` serving the inherited sockets. gunicorn's settings
map onto ferrocorn's where the two mean the same thing (see `FerrocornWorker.config_kwargs`).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from ferrocorn.config import Config
from ferrocorn.server import HANDLED_SIGNALS, Server, asyncio_run


class _WorkerServer(Server):
    """gunicorn's signal meanings: TERM drains, QUIT and INT stop at once."""

    handled_signals = (*HANDLED_SIGNALS, signal.SIGQUIT)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig in (signal.SIGQUIT, signal.SIGINT):
            self.force_exit = True
        super().handle_exit(sig, frame)


class FerrocornWorker(Worker):  # type: ignore[misc]  # gunicorn ships no type information
    """Serves gunicorn's listening sockets with ferrocorn."""

    #: What every worker uses whatever gunicorn's settings say (subclasses may change them).
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = Config(app=None, **self.config_kwargs())
        self._adopt_gunicorn_logging()

    def config_kwargs(self) -> dict[str, Any]:
        """ferrocorn's settings from gunicorn's. gunicorn has already added its jitter to
        `max_requests` (`self.max_requests`), and halved `timeout` into the heartbeat period."""
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "log_config": None,
            "access_log": cfg.accesslog is not None,
            "access_log_format": cfg.access_log_format,
            "timeout_keep_alive": cfg.keepalive,
            "timeout_notify": self.timeout,
            "callback_notify": self.callback_notify,
            "timeout_graceful_shutdown": cfg.graceful_timeout,
            "limit_max_requests": self.max_requests if cfg.max_requests > 0 else None,
            "limit_concurrency": cfg.worker_connections,
            "forwarded_allow_ips": cfg.forwarded_allow_ips,
            "backlog": cfg.backlog,
            **_request_limits(cfg),
        }
        if cfg.is_ssl:
            ssl = cfg.ssl_options
            kwargs.update(
                ssl_keyfile=ssl["keyfile"],
                ssl_certfile=ssl["certfile"],
                ssl_version=int(ssl["ssl_version"]),
                ssl_cert_reqs=int(ssl["cert_reqs"]),
                ssl_ca_certs=ssl["ca_certs"],
                ssl_ciphers=ssl["ciphers"],
            )
        kwargs.update(self.CONFIG_KWARGS)
        return {name: value for name, value in kwargs.items() if value is not None or name in _NONE_MEANS_OFF}

    def _adopt_gunicorn_logging(self) -> None:
        # ferrocorn's records go through the handlers gunicorn configured (--error-logfile,
        # --access-logfile, --log-level, syslog), so USR1's reopen covers them too.
        for name, gunicorn_logger in (
            ("ferrocorn.error", self.log.error_log),
            ("ferrocorn.access", self.log.access_log),
        ):
            logger = logging.getLogger(name)
            logger.handlers = gunicorn_logger.handlers
            logger.setLevel(gunicorn_logger.level)
            logger.propagate = False

    def init_signals(self) -> None:
        # The server installs its own TERM/INT/QUIT handlers while it runs; until then (and for
        # the other signals) gunicorn's defaults stand, as its arbiter expects.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.signal(signal.SIGABRT, self.handle_abort)
        signal.siginterrupt(signal.SIGUSR1, False)

    def run(self) -> None:
        self.config.app = self.wsgi
        server = _WorkerServer(config=self.config)
        asyncio_run(server.serve(sockets=self.sockets), loop_factory=self.config.get_loop_factory())
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    async def callback_notify(self) -> None:
        # Called from the event loop's tick: a loop blocked by the app stops the heartbeat, and
        # the arbiter replaces the worker after --timeout.
        self.notify()


#: gunicorn's bounds (gunicorn/http/message.py): a longer `limit_request_line` is cut to this, and a
#: `limit_request_fields` of 0 or above this means this.
_GUNICORN_MAX_REQUEST_LINE = 8190
_GUNICORN_MAX_HEADERS = 32768


def _request_limits(cfg: Any) -> dict[str, int]:
    """gunicorn's `--limit-request-line`, `--limit-request-fields` and `--limit-request-field_size`, as
    gunicorn reads them: 0 means no limit for the line and (as its documentation says) the field size; a line
    limit above 8190 is 8190; a field count of 0 or above 32768 is 32768. gunicorn measures a field line with
    its ': ' and CRLF, Ferrocorn name plus value, so Ferrocorn admits a field up to 4 bytes longer."""
    line = cfg.limit_request_line
    fields = cfg.limit_request_fields
    return {
        "limit_request_line": min(line, _GUNICORN_MAX_REQUEST_LINE),
        "limit_request_headers": fields if 0 < fields <= _GUNICORN_MAX_HEADERS else _GUNICORN_MAX_HEADERS,
        "limit_request_field_size": cfg.limit_request_field_size,
    }


#: Settings passed through even when None: None is their "off".
_NONE_MEANS_OFF = frozenset({"limit_max_requests", "log_config"})
