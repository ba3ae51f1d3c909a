"""The command line: app loading errors, exit codes, log format, access log, programmatic serve()."""

import os
import re
import signal
import socket
import sys
import time

import pytest

from tests.support.server import REPO_ROOT, SERVER_NAME, free_port

ROUTER = "tests.apps.router:app"


def _exit_code(start_server, app, *args, **kw):
    srv = start_server(app, *args, wait=False, **kw)
    rc = srv.wait(timeout=20)
    return srv, rc


def test_missing_module_exits_3_without_traceback(start_server):
    srv, rc = _exit_code(start_server, "tests.apps.does_not_exist:app")
    assert rc == 3
    assert 'ERROR:    Error loading ASGI app. Could not import module "tests.apps.does_not_exist".' in srv.stderr_lines
    assert "Traceback" not in srv.stderr


def test_missing_attribute_exits_3(start_server):
    srv, rc = _exit_code(start_server, "tests.apps.router:no_such_app")
    assert rc == 3
    assert (
        'ERROR:    Error loading ASGI app. Attribute "no_such_app" not found in module "tests.apps.router".'
        in srv.stderr_lines
    )


def test_import_string_without_colon_exits_3(start_server):
    srv, rc = _exit_code(start_server, "tests.apps.router")
    assert rc == 3
    assert (
        'ERROR:    Error loading ASGI app. Import string "tests.apps.router" must be in format '
        '"<module>:<attribute>".' in srv.stderr_lines
    )


def test_nested_missing_module_exits_3_with_its_name(start_server):
    srv, rc = _exit_code(start_server, "tests.apps.broken_import:app")
    assert rc == 3
    assert "ferrocorn_tests_nonexistent_dependency" in srv.stderr
    # it is the dependency that is missing, not the app module
    assert 'Could not import module "tests.apps.broken_import"' not in srv.stderr


def test_module_raising_on_import_exits_3(start_server):
    srv, rc = _exit_code(start_server, "tests.apps.raises_on_import:app")
    assert rc == 3
    assert "import-boom from tests.apps.raises_on_import" in srv.stderr


def test_bind_error_exits_3(start_server):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        srv, rc = _exit_code(start_server, ROUTER, port=port)
    assert rc == 3
    assert srv.has_line(re.compile(r"^ERROR:"))


def test_startup_and_shutdown_log_lines(start_server):
    srv = start_server(ROUTER)
    pid = srv.pid
    assert srv.get("/").status_code == 200
    assert srv.stop() == 0
    lines = srv.stderr_lines
    expected_in_order = [
        f"INFO:     Started server process [{pid}]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
        f"INFO:     {SERVER_NAME} running on http://127.0.0.1:{srv.port} (Press CTRL+C to quit)",
        "INFO:     Shutting down",
        "INFO:     Waiting for application shutdown.",
        "INFO:     Application shutdown complete.",
        f"INFO:     Finished server process [{pid}]",
    ]
    positions = []
    for exp in expected_in_order:
        assert exp in lines, f"missing log line {exp!r} in:\n" + "\n".join(lines)
        positions.append(lines.index(exp))
    assert positions == sorted(positions), "\n".join(lines)


def test_access_log_line_format(start_server):
    srv = start_server(ROUTER)
    with srv.raw() as conn:
        r = conn.request("GET", "/fixed?size=1")
        r2 = conn.request("POST", "/status?code=404", body=b"")
        local = conn.local_port
    assert r.status == 200 and r2.status == 404
    srv.wait_for_line(f'INFO:     127.0.0.1:{local} - "GET /fixed?size=1 HTTP/1.1" 200 OK', stream="stdout")
    srv.wait_for_line(f'INFO:     127.0.0.1:{local} - "POST /status?code=404 HTTP/1.1" 404 Not Found', stream="stdout")
    # access lines go to stdout, not stderr
    assert not any('"GET /fixed?size=1 HTTP/1.1"' in line for line in srv.stderr_lines)


def test_access_log_http10_and_quoted_path(start_server):
    srv = start_server(ROUTER)
    with srv.raw() as conn:
        conn.send(b"GET /scope/a%20b HTTP/1.0\r\n\r\n")
        assert conn.read_response().status == 200
        local = conn.local_port
    srv.wait_for_line(f'INFO:     127.0.0.1:{local} - "GET /scope/a%20b HTTP/1.0" 200 OK', stream="stdout")


def test_no_access_log(start_server):
    srv = start_server(ROUTER, "--no-access-log")
    with srv.client() as c:
        assert c.get("/fixed?size=1").status_code == 200
    srv.stop()
    assert not any("GET /fixed" in line for line in srv.stdout_lines + srv.stderr_lines)
    # the other logs are still there
    assert any("Application startup complete." in line for line in srv.stderr_lines)


def test_log_level_warning_hides_info(start_server):
    port = free_port()
    srv = start_server(ROUTER, "--log-level", "warning", port=port)
    with srv.client() as c:
        assert c.get("/fixed?size=1").status_code == 200
    assert srv.stop() == 0
    all_lines = srv.stderr_lines + srv.stdout_lines
    assert not [line for line in all_lines if line.startswith("INFO:")], all_lines


@pytest.mark.parametrize("level", ["trace", "debug"])
def test_verbose_log_levels_accepted(start_server, level):
    srv = start_server(ROUTER, "--log-level", level)
    with srv.client() as c:
        assert c.get("/fixed?size=1").status_code == 200
    assert srv.stop() == 0
    assert "INFO:     Application startup complete." in srv.stderr_lines


def test_error_log_format_for_app_exception(start_server):
    srv = start_server(ROUTER)
    assert srv.get("/error/before-start").status_code == 500
    srv.wait_for_line("ERROR:    Exception in ASGI application")


def test_programmatic_serve(run_process):
    port = free_port()
    proc = run_process(
        [sys.executable, os.path.join(REPO_ROOT, "tests", "apps", "serve_script.py"), str(port)],
        port=port,
        name="serve_script",
    )
    proc.wait_ready(timeout=20)
    r = proc.get("/scope/served")
    assert r.status_code == 200
    assert r.json()["scope"]["path"] == "/scope/served"
    proc.wait_for_line(f"running on http://127.0.0.1:{port}")
    assert proc.stop(signal.SIGINT) == 0


def test_client_disconnected_is_an_oserror_subclass():
    import ferrocorn

    assert issubclass(ferrocorn.ClientDisconnected, OSError)
    assert callable(ferrocorn.serve)


def test_callback_notify_is_called_every_timeout_notify(run_process):
    port = free_port()
    srv = run_process(
        [sys.executable, os.path.join(REPO_ROOT, "tests", "apps", "notify_script.py"), str(port)],
        port=port,
        name="notify_script",
    )
    srv.wait_for_line("NOTIFIED", timeout=10)
    mark = srv.mark()
    srv.wait_for_line("NOTIFIED", timeout=5, start=mark)
    started = time.monotonic()
    srv.wait_for_line("NOTIFIED", timeout=5, start=srv.mark())
    assert 0.5 < time.monotonic() - started < 3.5
