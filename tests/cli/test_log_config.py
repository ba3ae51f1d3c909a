"""--log-config: a configuration written for uvicorn's logger names works unchanged."""

import json
import os
import re

import httpx

from tests.support.server import REPO_ROOT

UVICORN_STYLE_CONFIG = {
    "version": 1,
    "formatters": {
        "plain": {"format": "CUSTOM-ERROR %(levelname)s %(message)s"},
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": 'CUSTOM-ACCESS %(client_addr)s "%(request_line)s" %(status_code)s',
            "use_colors": False,
        },
    },
    "handlers": {
        "default": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def test_uvicorn_json_log_config_applies_unchanged(tmp_path, start_server):
    path = tmp_path / "uvicorn-logging.json"
    path.write_text(json.dumps(UVICORN_STYLE_CONFIG))
    srv = start_server("tests.apps.sockets_app:app", "--log-config", str(path))
    assert httpx.get(f"{srv.url}/logged?x=1").status_code == 200
    srv.wait_for_line(
        re.compile(r'^CUSTOM-ACCESS 127\.0\.0\.1:\d+ "GET /logged\?x=1 HTTP/1\.1" 200 OK$'), stream="stdout"
    )
    assert srv.has_line(re.compile(r"^CUSTOM-ERROR INFO Started server process \[\d+\]$"))
    assert srv.has_line(re.compile(r"^CUSTOM-ERROR INFO Ferrocorn running on http://127\.0\.0\.1:\d+"))
    assert not srv.has_line(re.compile(r"^INFO: "))  # the built-in format is not used


def test_uvicorn_yaml_log_config_with_ini_style_levels(tmp_path, start_server):
    yaml = __import__("pytest").importorskip("yaml")
    config = json.loads(json.dumps(UVICORN_STYLE_CONFIG))
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"  # access lines switched off by the config
    path = tmp_path / "uvicorn-logging.yaml"
    path.write_text(yaml.safe_dump(config))
    srv = start_server("tests.apps.sockets_app:app", "--log-config", str(path))
    assert httpx.get(f"{srv.url}/quiet").status_code == 200
    srv.wait_for_line(re.compile(r"^CUSTOM-ERROR INFO Ferrocorn running on"))
    assert not any("CUSTOM-ACCESS" in line for line in srv.stdout_lines)


def test_uvicorn_formatter_classes_resolve_without_uvicorn_installed(tmp_path, start_server):
    """Where uvicorn is not installed, `uvicorn.logging.*` classes in the config map to ferrocorn's."""
    shadow = tmp_path / "shadow" / "uvicorn"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('uvicorn is not installed here')\n")
    path = tmp_path / "uvicorn-logging.json"
    path.write_text(json.dumps(UVICORN_STYLE_CONFIG))
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), REPO_ROOT])}
    srv = start_server("tests.apps.sockets_app:app", "--log-config", str(path), env=env)
    assert httpx.get(f"{srv.url}/no-uvicorn").status_code == 200
    srv.wait_for_line(
        re.compile(r'^CUSTOM-ACCESS 127\.0\.0\.1:\d+ "GET /no-uvicorn HTTP/1\.1" 200 OK$'), stream="stdout"
    )
