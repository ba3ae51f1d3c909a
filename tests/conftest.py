"""Fixtures for the Ferrocorn black-box suite.

The server under test is always a subprocess: ``python3 -m ferrocorn tests.apps.X:app --host 127.0.0.1 --port 0``
run from the repository root. Run the suite from the repository root: ``python3 -m pytest tests -q``. The
per-test timeout (60 s) and ``--strict-markers`` are in ``[tool.pytest.ini_options]`` of pyproject.toml.
"""

from __future__ import annotations

import pytest

from tests.support.server import LIVE_SERVERS, ServerProcess


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and LIVE_SERVERS:
        for srv in list(LIVE_SERVERS):
            report.sections.append((f"server log {srv.name}", srv.log_tail(60)))


@pytest.fixture
def start_server():
    """Factory for a fresh server owned by one test; every server it started is stopped at teardown
    (SIGINT, wait, kill -9 on timeout)."""
    servers = []

    def _start(app: str, *args: str, port=None, wait: bool = True, env=None, timeout: float = 20.0):
        srv = ServerProcess.ferrocorn(app, *args, port=port, env=env, wait=False)
        servers.append(srv)
        if wait:
            srv.wait_ready(timeout=timeout)
        return srv

    yield _start
    for srv in servers:
        srv.close()


@pytest.fixture
def run_process():
    """Start an arbitrary command (cwd = repo root) as a ServerProcess; cleaned up at teardown."""
    procs = []

    def _run(cmd, **kw):
        p = ServerProcess(cmd, **kw)
        procs.append(p)
        return p

    yield _run
    for p in procs:
        p.close()


def _module_server(app: str, *args: str):
    srv = ServerProcess.ferrocorn(app, *args)
    return srv


@pytest.fixture(scope="module")
def router_server():
    """One router app server shared by a test module."""
    srv = _module_server("tests.apps.router:app")
    yield srv
    srv.close()
