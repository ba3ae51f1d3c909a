"""The access log written by the core (the built-in logging configuration) is, line for line, the one Python's
logging writes (any other configuration: here an app adds a filter to the access logger at startup): uvicorn's
line, gunicorn's atoms and JSON, over escaped and non-ASCII paths, odd queries, HTTP/1.0 and HTTP/2, header atoms,
a root path and a proxied client."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.support.raw import RawConn

APP = "tests.apps.access_app:app"
#: Every atom but the clock-dependent ones (t, T, D, M, L), with a literal %, a constant and an unknown atom.
ATOMS = (
    '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(m)s %(U)s %(q)s %(H)s '
    "%({x-test}i)s %({X-Missing}i)s %({content-type}o)s %({bad name}i)s %(zz)s 100%% %(p)s"
)
REQUESTS = [
    ("GET", "/fixed?size=3", [], b"", "1.1"),
    ("GET", "/a%20b/caf%C3%A9/%E2%9C%93?x=%FF&y=1&z", [], b"", "1.1"),
    ("GET", "/100%25/%zz/%4/semi;colon", [("User-Agent", 'probe/1.0 ("quoted")')], b"", "1.1"),
    ("GET", "/fixed?size=5", [("Referer", "http://x.test/é".encode().decode("latin-1"))], b"", "1.0"),
    ("POST", "/echo", [("Content-Type", "text/plain"), ("X-Test", "one")], b"x" * 300, "1.1"),
    ("GET", "/missing?q=%22", [("Authorization", "Basic dXNlcjpwYXNz"), ("X-Request-ID", "req-42")], b"", "1.1"),
    ("GET", "/fixed", [("X-Test", "a"), ("X-Test", "b"), ("X-Forwarded-For", "203.0.113.7")], b"", "1.1"),
    ("HEAD", "/fixed?size=9", [], b"", "1.1"),
]


def serve_and_log(start_server, *args: str, python: bool) -> list[str]:
    env = {"ACCESS_FILTER": "1"} if python else None
    srv = start_server(APP, *args, env=env)
    with RawConn("127.0.0.1", srv.port) as conn:
        for method, target, headers, body, version in REQUESTS:
            conn.request(method, target, headers=[(k, v) for k, v in headers], body=body, version=version)
            if version == "1.0":
                conn.close()
                conn.__init__("127.0.0.1", srv.port)
    # One HTTP/2 request, through httpx.
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        client.get(f"{srv.url}/fixed?size=2")
    deadline = time.monotonic() + 10
    while len(srv.stdout_lines) < len(REQUESTS) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = srv.stdout_lines
    assert len(lines) == len(REQUESTS) + 1, srv.log_tail()
    # Client ports and process ids differ from run to run.
    return [re.sub(r"<\d+>", "<PID>", re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)) for line in lines]


def without_clock(line: str) -> dict:
    record = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record.pop("time"))
    assert isinstance(record.pop("duration"), float)
    return record


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="uvicorn-line"),
        pytest.param(("--root-path", "/api"), id="uvicorn-line-root-path"),
        pytest.param(("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"), id="uvicorn-line-proxied"),
        pytest.param(("--access-log-format", ATOMS), id="atoms"),
        pytest.param(("--access-log-format", ATOMS, "--root-path", "/api"), id="atoms-root-path"),
    ],
)
def test_text_lines_match_pythons(start_server, args):
    native = serve_and_log(start_server, *args, python=False)
    python = serve_and_log(start_server, *args, python=True)
    assert native == python


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--log-format", "json"), id="json"),
        pytest.param(("--log-format", "json", "--access-log-format", ATOMS), id="json-atoms"),
    ],
)
def test_json_records_match_pythons(start_server, args):
    native = [without_clock(line) for line in serve_and_log(start_server, *args, python=False)]
    python = [without_clock(line) for line in serve_and_log(start_server, *args, python=True)]
    assert native == python


def test_clock_atoms_have_their_shapes(start_server):
    srv = start_server(APP, "--access-log-format", "%(t)s %(T)s %(D)s %(M)s %(L)s")
    httpx.get(f"{srv.url}/fixed?size=1", timeout=10)
    line = srv.wait_for_line("", stream="stdout", timeout=10)
    match = re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] (\d+) (\d+) (\d+) (\d+)\.(\d{6})", line)
    assert match, line
    seconds, micros, millis, whole, fraction = (int(group) for group in match.groups())
    assert seconds == micros // 1_000_000 == whole and millis == micros // 1000 and fraction == micros % 1_000_000


def test_lines_reach_the_log_promptly_under_no_load(start_server):
    """Lines are batched per I/O pass: a lone request's line is written when the I/O thread goes idle."""
    srv = start_server(APP)
    for index in range(3):
        httpx.get(f"{srv.url}/fixed?size={index}", timeout=10)
        srv.wait_for_line(re.compile(rf"/fixed\?size={index} "), stream="stdout", timeout=2)
