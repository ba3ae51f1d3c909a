"""Log formatting as uvicorn does it: `INFO:     message`, colours on a terminal, a TRACE level.

Loggers: `ferrocorn.error` (server messages, stderr) and `ferrocorn.access` (one line per
response, stdout), both children of `ferrocorn`.
"""

from __future__ import annotations

import copy as copy_module
import http
import json
import logging
import sys
from copy import copy
from datetime import datetime, timezone
from typing import Any, Literal

import click

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

LEVEL_COLOURS: dict[int, Any] = {
    TRACE_LOG_LEVEL: lambda text: click.style(str(text), fg="blue"),
    logging.DEBUG: lambda text: click.style(str(text), fg="cyan"),
    logging.INFO: lambda text: click.style(str(text), fg="green"),
    logging.WARNING: lambda text: click.style(str(text), fg="yellow"),
    logging.ERROR: lambda text: click.style(str(text), fg="red"),
    logging.CRITICAL: lambda text: click.style(str(text), fg="bright_red"),
}


class ColourizedFormatter(logging.Formatter):
    """Adds `%(levelprefix)s`: the level name, a colon, padded to line messages up."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        self.use_colors = use_colors if use_colors in (True, False) else sys.stdout.isatty()
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def color_level_name(self, level_name: str, level_no: int) -> str:
        colour = LEVEL_COLOURS.get(level_no)
        return colour(level_name) if colour else level_name

    def should_use_colors(self) -> bool:
        return True

    def formatMessage(self, record: logging.LogRecord) -> str:
        record_copy = copy(record)
        level_name = record_copy.levelname
        separator = " " * (8 - len(record_copy.levelname))
        if self.use_colors:
            level_name = self.color_level_name(level_name, record_copy.levelno)
            if "color_message" in record_copy.__dict__:
                record_copy.msg = record_copy.__dict__["color_message"]
                record_copy.__dict__["message"] = record_copy.getMessage()
        record_copy.__dict__["levelprefix"] = level_name + ":" + separator
        return super().formatMessage(record_copy)


class DefaultFormatter(ColourizedFormatter):
    def should_use_colors(self) -> bool:
        return sys.stderr.isatty()


class AccessFormatter(ColourizedFormatter):
    """Formats access records whose args are (client_addr, method, path, http_version, status)."""

    def get_status_code(self, status_code: int) -> str:
        try:
            phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            phrase = ""
        status_and_phrase = f"{status_code} {phrase}"
        if self.use_colors:
            if status_code < 200:
                return click.style(status_and_phrase, fg="white")
            if status_code < 300:
                return click.style(status_and_phrase, fg="green")
            if status_code < 400:
                return click.style(status_and_phrase, fg="yellow")
            if status_code < 500:
                return click.style(status_and_phrase, fg="red")
            return click.style(status_and_phrase, fg="bright_red")
        return status_and_phrase

    def formatMessage(self, record: logging.LogRecord) -> str:
        record_copy = copy(record)
        args = record_copy.args
        if isinstance(args, tuple) and len(args) == 5:
            fields: tuple[Any, ...] = args  # logged by ferrocorn: the status code is an int
            client_addr, method, full_path, http_version, status_code = fields
            request_line = f"{method} {full_path} HTTP/{http_version}"
            if self.use_colors:
                request_line = click.style(request_line, bold=True)
            record_copy.__dict__.update(
                client_addr=client_addr,
                request_line=request_line,
                status_code=self.get_status_code(int(status_code)),
            )
        return super().formatMessage(record_copy)


class JsonFormatter(logging.Formatter):
    """`--log-format json`: one JSON object per line with `time` (ISO 8601, UTC), `level`, `logger` and `message`;
    access records add `client`, `method`, `path`, `query`, `http_version`, `status`, `bytes`, `duration`
    (seconds), `user_agent` and `request_id` (from X-Request-ID); a traceback goes in `exc_info`."""

    def __init__(self, *args: Any, use_colors: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = record.__dict__.get("access")
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def with_formats(config: dict[str, Any], *, json_lines: bool, access_message_only: bool) -> dict[str, Any]:
    """A copy of the built-in logging config for `--log-format json` (every line a JSON object) or for an
    `--access-log-format` (the access line is the formatted record alone, as gunicorn writes it)."""
    config = copy_module.deepcopy(config)
    formatters = config.setdefault("formatters", {})
    if json_lines:
        formatters["default"] = {"()": "ferrocorn.logging.JsonFormatter"}
        formatters["access"] = {"()": "ferrocorn.logging.JsonFormatter"}
    elif access_message_only:
        formatters["access"] = {"()": "ferrocorn.logging.AccessFormatter", "fmt": "%(message)s"}
    return config


LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "ferrocorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "ferrocorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "ferrocorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "ferrocorn.error": {"level": "INFO"},
        "ferrocorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}
