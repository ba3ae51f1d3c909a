"""The lifespan protocol: --lifespan auto|on|off, startup/shutdown, failures, state."""

import threading

import pytest

APPS = "tests.apps.lifespan_apps"


def _index(lines, text):
    for i, line in enumerate(lines):
        if text in line:
            return i
    raise AssertionError(f"{text!r} not in log:\n" + "\n".join(lines))


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_state_and_shutdown(start_server, mode):
    srv = start_server(f"{APPS}:state_app", "--lifespan", mode)
    r = srv.get("/")
    assert r.status_code == 200
    data = r.json()
    assert data["state"] == {"db": "connected", "items": ["a"]}
    assert data["started_before_request"] is True
    ls = data["lifespan_scope"]
    assert ls["type"] == "lifespan"
    assert ls["asgi"]["version"] == "3.0"
    assert ls["state_type"] == "dict"
    rc = srv.stop()
    assert rc == 0
    lines = srv.stderr_lines
    order = [
        _index(lines, "Started server process"),
        _index(lines, "Waiting for application startup."),
        _index(lines, "LS-STARTUP-END"),
        _index(lines, "Application startup complete."),
        _index(lines, "Shutting down"),
        _index(lines, "Waiting for application shutdown."),
        _index(lines, "LS-SHUTDOWN"),
        _index(lines, "Application shutdown complete."),
        _index(lines, "Finished server process"),
    ]
    assert order == sorted(order), "\n".join(lines)
    assert f"[{srv.pid}]" in lines[_index(lines, "Started server process")]


def test_slow_startup_completes_before_serving(start_server):
    srv = start_server(f"{APPS}:state_app", env={"LS_STARTUP_DELAY": "0.5"})
    lines = srv.stderr_lines
    assert _index(lines, "Application startup complete.") < _index(lines, "running on http://")
    assert srv.get("/").json()["started_before_request"] is True


def test_state_is_copied_per_request(start_server):
    srv = start_server(f"{APPS}:state_app")
    with srv.client() as c:
        a = c.get("/").json()["state"]
        b = c.get("/").json()["state"]
    assert a == b == {"db": "connected", "items": ["a"]}


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_message_exits_3(start_server, mode):
    srv = start_server(f"{APPS}:startup_failed_app", "--lifespan", mode, wait=False)
    rc = srv.wait(timeout=20)
    assert rc == 3
    err = srv.stderr
    assert "Application startup failed. Exiting." in err
    assert "database unreachable (from the app)" in err
    assert "running on http://" not in err


def test_startup_raises_with_lifespan_on_exits_3(start_server):
    srv = start_server(f"{APPS}:startup_raises_app", "--lifespan", "on", wait=False)
    rc = srv.wait(timeout=20)
    assert rc == 3
    assert "Application startup failed. Exiting." in srv.stderr
    assert "startup-explodes" in srv.stderr


def test_startup_raises_with_lifespan_auto_continues(start_server):
    srv = start_server(f"{APPS}:startup_raises_app", "--lifespan", "auto")
    assert srv.get("/").json() == {"served": True}
    assert "ASGI 'lifespan' protocol appears unsupported." in srv.stderr
    assert srv.stop() == 0


def test_unsupported_lifespan_auto_continues(start_server):
    srv = start_server(f"{APPS}:unsupported_app")  # --lifespan auto is the default
    srv.wait_for_line("ASGI 'lifespan' protocol appears unsupported.")
    assert srv.has_line("APP-CALLED-WITH lifespan")
    assert srv.get("/").json()["served"] is True
    assert srv.stop() == 0
    err = srv.stderr
    assert "Traceback" not in err
    assert "ERROR:" not in err
    # no lifespan shutdown for an app without lifespan support
    assert "Waiting for application shutdown." not in err


def test_unsupported_lifespan_on_exits_3(start_server):
    srv = start_server(f"{APPS}:unsupported_app", "--lifespan", "on", wait=False)
    rc = srv.wait(timeout=20)
    assert rc == 3
    assert "Application startup failed. Exiting." in srv.stderr


def test_lifespan_off_never_calls_app_with_lifespan(start_server):
    srv = start_server(f"{APPS}:unsupported_app", "--lifespan", "off")
    assert srv.get("/").json()["served"] is True
    assert srv.stop() == 0
    err = srv.stderr
    assert "APP-CALLED-WITH" not in err
    assert "appears unsupported" not in err
    assert "Waiting for application startup." not in err


def test_lifespan_off_state_app_has_no_state(start_server):
    srv = start_server(f"{APPS}:state_app", "--lifespan", "off")
    data = srv.get("/").json()
    assert data["started_before_request"] is False
    assert data["state"] in ({}, "None")
    assert srv.stop() == 0
    assert "LS-STARTUP-BEGIN" not in srv.stderr
    assert "LS-SHUTDOWN" not in srv.stderr


def test_shutdown_failed_is_logged(start_server):
    srv = start_server(f"{APPS}:shutdown_failed_app")
    assert srv.get("/").json()["served"] is True
    srv.stop()
    assert "could not flush (from the app)" in srv.stderr
    assert "Application shutdown failed. Exiting." in srv.stderr


def test_lifespan_shutdown_runs_after_inflight_requests(start_server):
    srv = start_server(f"{APPS}:state_app")
    result = {}

    def slow():
        with srv.client() as c:
            result["r"] = c.get("/slow")

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    srv.wait_for_line("REQUEST-BEGIN")
    rc = srv.stop()
    t.join(10)
    assert rc == 0
    assert result["r"].status_code == 200
    lines = srv.stderr_lines
    assert _index(lines, "Shutting down") < _index(lines, "REQUEST-END") < _index(lines, "LS-SHUTDOWN")


def test_lifespan_coroutine_returning_after_startup_does_not_block_shutdown(start_server):
    srv = start_server(f"{APPS}:returns_after_startup_app")
    assert srv.get("/").json() == {"served": True}
    assert srv.stop(timeout=15) == 0
    assert "Finished server process" in srv.stderr
