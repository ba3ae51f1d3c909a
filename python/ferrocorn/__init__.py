"""Ferrocorn: an ASGI server with a Rust core, a drop-in for uvicorn."""

from ferrocorn._ferrocorn import ClientDisconnected
from ferrocorn._ferrocorn import __version__ as __version__
from ferrocorn.api import run, serve
from ferrocorn.cli import main
from ferrocorn.config import Config
from ferrocorn.server import Server

__all__ = ["ClientDisconnected", "Config", "Server", "__version__", "main", "run", "serve"]
