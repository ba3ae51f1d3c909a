"""--access-log-format (gunicorn's atoms) and --log-format json: access records taken when the response ends, so
they carry its size and duration; the default stays uvicorn's line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.server import REPO_ROOT

ROUTER = "tests.apps.router:app"
GUNICORN = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
ACCESS_KEYS = {
    "time",
    "level",
    "logger",
    "message",
    "client",
    "method",
    "path",
    "query",
    "http_version",
    "status",
    "bytes",
    "duration",
    "user_agent",
    "request_id",
}


def access_line(srv, pattern: str = "") -> str:
    return srv.wait_for_line(pattern, stream="stdout", timeout=10)


def test_default_line_is_uvicorns(start_server):
    srv = start_server(ROUTER)
    httpx.get(f"{srv.url}/fixed?size=3", timeout=10)
    line = access_line(srv, "/fixed")
    assert re.fullmatch(r'INFO:     127\.0\.0\.1:\d+ - "GET /fixed\?size=3 HTTP/1\.1" 200 OK', line), line


def test_gunicorn_default_atoms(start_server):
    srv = start_server(ROUTER, "--access-log-format", GUNICORN)
    headers = {"User-Agent": "probe/1.0", "Referer": "http://example.test/from", "Authorization": "Basic dXNlcjpwdw=="}
    response = httpx.get(f"{srv.url}/fixed?size=1234", headers=headers, timeout=10)
    assert response.status_code == 200
    line = access_line(srv, "/fixed")
    match = re.fullmatch(
        r'127\.0\.0\.1 - user \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /fixed\?size=1234 HTTP/1\.1" '
        r'200 1234 "http://example\.test/from" "probe/1\.0"',
        line,
    )
    assert match, line


def test_duration_bytes_and_header_atoms(start_server):
    fmt = "%(s)s %(B)s %(D)s %(M)s %(L)s %(T)s %(m)s %(U)s %(q)s %(H)s [%({x-request-id}i)s] [%({X-Custom}o)s] %(x)s"
    srv = start_server(ROUTER, "--access-log-format", fmt)
    httpx.get(f"{srv.url}/slow?delay=0.3", headers={"X-Request-ID": "abc-123"}, timeout=10)
    fields = access_line(srv, " /slow ").split(" ")
    status, size, micros, millis, seconds, whole = fields[:6]
    assert (status, size) == ("200", str(len(b"slept ")))
    assert int(micros) >= 300_000, "the duration runs to the response's end"
    assert int(millis) == int(micros) // 1000
    assert seconds == f"{int(micros) // 1_000_000}.{int(micros) % 1_000_000:06d}"
    assert whole == "0"
    assert fields[6:] == ["GET", "/slow", "delay=0.3", "HTTP/1.1", "[abc-123]", "[-]", "-"]
    httpx.get(f"{srv.url}/headers", timeout=10)
    assert "[custom-value]" in access_line(srv, " /headers ")


def test_streamed_response_counts_every_byte(start_server):
    srv = start_server(ROUTER, "--access-log-format", "%(U)s %(s)s %(b)s")
    body = httpx.get(f"{srv.url}/many-chunks?n=500&size=7", timeout=10).content
    assert access_line(srv, "/many-chunks") == f"/many-chunks 200 {len(body)}"
    assert len(body) == 3500


def test_response_broken_by_the_app_is_still_logged(start_server):
    srv = start_server(ROUTER, "--access-log-format", "%(U)s %(s)s")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{srv.url}/error/after-start-chunked", timeout=10)
    assert access_line(srv, "/error/after-start-chunked") == "/error/after-start-chunked 200"


def test_http2_and_http10(start_server):
    srv = start_server(ROUTER, "--access-log-format", '"%(r)s" %(H)s')
    with httpx.Client(http2=True, http1=False) as client:
        client.get(f"{srv.url}/fixed?size=2", timeout=10)
    assert access_line(srv, "fixed?size=2") == '"GET /fixed?size=2 HTTP/2" HTTP/2'
    with srv.raw() as conn:
        assert conn.request("GET", "/fixed?size=4", version="1.0").status == 200
    assert access_line(srv, "fixed?size=4") == '"GET /fixed?size=4 HTTP/1.0" HTTP/1.0'


def test_json_lines(start_server):
    srv = start_server(ROUTER, "--log-format", "json")
    httpx.get(f"{srv.url}/fixed?size=10&a=b", headers={"User-Agent": "j/1", "X-Request-ID": "req-9"}, timeout=10)
    httpx.get(f"{srv.url}/status?code=404", timeout=10)
    record = json.loads(access_line(srv, "/fixed"))
    assert set(record) == ACCESS_KEYS
    assert record["level"] == "INFO" and record["logger"] == "ferrocorn.access"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["time"])
    assert re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /fixed\?size=10&a=b HTTP/1\.1" 200', record["message"])
    assert record["client"].startswith("127.0.0.1:")
    assert (record["method"], record["path"], record["query"]) == ("GET", "/fixed", "size=10&a=b")
    assert (record["http_version"], record["status"], record["bytes"]) == ("1.1", 200, 10)
    assert isinstance(record["duration"], float) and 0 <= record["duration"] < 5
    assert (record["user_agent"], record["request_id"]) == ("j/1", "req-9")
    missing = json.loads(access_line(srv, "/status"))
    assert (missing["status"], missing["request_id"], missing["user_agent"]) == (
        404,
        None,
        "python-httpx/" + httpx.__version__,
    )
    # Every server line is a JSON object with the four stable keys.
    srv.stop()
    server_records = [json.loads(line) for line in srv.stderr_lines if line.startswith("{")]
    app_prints = {"ROUTER-LIFESPAN-SHUTDOWN"}  # the app's own print(), not a log record
    assert len(server_records) == len([line for line in srv.stderr_lines if line.strip() not in app_prints | {""}])
    assert all(set(record) == {"time", "level", "logger", "message"} for record in server_records)
    assert any(record["message"].startswith("Ferrocorn running on") for record in server_records)
    assert server_records[-1]["message"].startswith("Finished server process")


def test_json_with_a_custom_format_and_an_error(start_server):
    srv = start_server(ROUTER, "--log-format", "json", "--access-log-format", "%(m)s %(U)s -> %(s)s")
    httpx.get(f"{srv.url}/error/before-start", timeout=10)
    line = srv.wait_for_line("Exception in ASGI application")
    error = json.loads(line)
    assert error["level"] == "ERROR" and "Traceback" in error["exc_info"]
    httpx.get(f"{srv.url}/fixed", timeout=10)
    assert json.loads(access_line(srv, "/fixed"))["message"] == "GET /fixed -> 200"


def test_no_access_log_wins(start_server):
    srv = start_server(ROUTER, "--log-format", "json", "--no-access-log")
    httpx.get(f"{srv.url}/fixed", timeout=10)
    time.sleep(0.3)
    assert srv.stdout_lines == []


@pytest.mark.parametrize("fmt", ["%(s)d", "%(h", "%(h)s %"])
def test_unusable_format_is_a_usage_error(fmt):
    result = subprocess.run(
        [sys.executable, "-m", "ferrocorn", ROUTER, "--access-log-format", fmt],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "Invalid value for '--access-log-format'" in result.stderr


def test_json_lines_with_workers(start_server):
    srv = start_server("tests.apps.workers_app:app", "--workers", "2", "--log-format", "json")
    httpx.get(f"{srv.url}/", timeout=10)
    record = json.loads(access_line(srv, "GET /"))
    assert record["status"] == 200 and record["bytes"] > 0
    srv.wait_for_line("Application startup complete")
    srv.stop()
    lines = [line for line in srv.stderr_lines if line.strip()]
    assert all(json.loads(line)["message"] for line in lines), lines
    assert not [line for line in lines if "applies to the built-in" in line]
    assert any("Started parent process" in line for line in lines)


def test_json_ignored_with_a_log_config_says_so(start_server, tmp_path):
    config = tmp_path / "log.json"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"h": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
                "loggers": {"ferrocorn": {"handlers": ["h"], "level": "INFO"}},
            }
        )
    )
    srv = start_server(ROUTER, "--log-format", "json", "--log-config", str(config))
    assert srv.has_line("--log-format json applies to the built-in logging configuration, not to --log-config.")
