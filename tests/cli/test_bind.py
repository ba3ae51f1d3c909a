"""--bind (repeatable): one server, or one set of --workers, listening on several TCP addresses, UNIX sockets and
inherited descriptors at once; each is announced with uvicorn's wording for its kind, and the scope's `server` is
the listener that accepted the connection."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.server import REPO_ROOT, ServerProcess, free_port

APP = "tests.apps.sockets_app:app"
RUNNING = re.compile(r"Ferrocorn running on (.*) \(Press CTRL\+C to quit\)$")


def ferrocorn_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ferrocorn", *args]


def running_lines(srv: ServerProcess, count: int) -> list[str]:
    """The "running on" lines once `count` of them were logged."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [m.group(1) for line in srv.stderr_lines if (m := RUNNING.search(line))]
        if len(found) >= count:
            time.sleep(0.3)  # no more than `count` must come
            return [m.group(1) for line in srv.stderr_lines if (m := RUNNING.search(line))]
        assert srv.alive(), srv.log_tail()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} running lines\n{srv.log_tail()}")


def tcp_scope(host: str, port: int) -> dict:
    url_host = f"[{host}]" if ":" in host else host
    return httpx.get(f"http://{url_host}:{port}/", timeout=10).json()


def uds_scope(path: str) -> dict:
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        return client.get("http://localhost/").json()


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_two_tcp_ports(run_process):
    first, second = free_port(), free_port()
    srv = run_process(ferrocorn_cmd(APP, "--bind", f"127.0.0.1:{first}", "-b", f"127.0.0.1:{second}"))
    lines = running_lines(srv, 2)
    assert lines == [f"http://127.0.0.1:{first}", f"http://127.0.0.1:{second}"]  # not the default 127.0.0.1:8000
    assert tcp_scope("127.0.0.1", first)["server"] == ["127.0.0.1", first]
    assert tcp_scope("127.0.0.1", second)["server"] == ["127.0.0.1", second]
    assert srv.stop(signal.SIGINT) == 0


def test_tcp_from_host_and_port_plus_a_unix_socket(start_server, tmp_path):
    """--host/--port changed from their defaults (the suite passes --port 0) listen alongside --bind."""
    path = str(tmp_path / "b.sock")
    srv = start_server(APP, "--bind", f"unix:{path}")
    lines = running_lines(srv, 2)
    assert lines == [f"unix socket {path}", f"http://127.0.0.1:{srv.port}"]
    assert uds_scope(path)["server"] == [path, None]
    assert tcp_scope("127.0.0.1", srv.port)["server"] == ["127.0.0.1", srv.port]
    assert srv.stop(signal.SIGINT) == 0
    assert not os.path.exists(path), "the socket file is removed on exit"


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv4_and_ipv6_on_one_port(run_process):
    port = free_port()
    srv = run_process(ferrocorn_cmd(APP, "--bind", f"127.0.0.1:{port}", "--bind", f"[::1]:{port}"))
    assert running_lines(srv, 2) == [f"http://127.0.0.1:{port}", f"http://[::1]:{port}"]
    assert tcp_scope("127.0.0.1", port)["server"] == ["127.0.0.1", port]
    v6 = tcp_scope("::1", port)
    assert v6["server"] == ["::1", port]
    assert v6["client"][0] == "::1"
    assert srv.stop(signal.SIGINT) == 0


def test_workers_share_every_listener(run_process, tmp_path):
    path = str(tmp_path / "w.sock")
    port = free_port()
    srv = run_process(
        ferrocorn_cmd(
            "tests.apps.workers_app:app", "--workers", "2", "--bind", f"127.0.0.1:{port}", "--bind", f"unix:{path}"
        )
    )
    assert running_lines(srv, 2) == [f"http://127.0.0.1:{port}", f"unix socket {path}"]
    srv.wait_for_line("Started parent process")
    pids = set()
    deadline = time.monotonic() + 30
    while (len({pid for _, pid in pids}) < 2 or len({url for url, _ in pids}) < 2) and time.monotonic() < deadline:
        with httpx.Client(timeout=10) as tcp, httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as uds:
            for _ in range(10):
                for client, url in ((tcp, f"http://127.0.0.1:{port}/"), (uds, "http://localhost/")):
                    try:
                        response = client.get(url, headers={"Connection": "close"})
                    except httpx.TransportError:
                        continue  # a worker still starting
                    assert response.status_code == 200
                    pids.add((url, response.text))
        time.sleep(0.1)
    assert {url for url, _ in pids} == {f"http://127.0.0.1:{port}/", "http://localhost/"}
    assert len({pid for _, pid in pids}) == 2, "both workers serve"
    assert srv.stop(signal.SIGINT) == 0
    assert not os.path.exists(path)


def test_an_inherited_descriptor_and_a_tcp_port():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    inherited = listener.getsockname()[1]
    port = free_port()
    cmd = ferrocorn_cmd(APP, "--bind", f"fd://{listener.fileno()}", "--bind", f"127.0.0.1:{port}")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, pass_fds=[listener.fileno()], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                scopes = [tcp_scope("127.0.0.1", inherited), tcp_scope("127.0.0.1", port)]
                break
            except httpx.TransportError:
                assert proc.poll() is None
                assert time.monotonic() < deadline, "the server never answered on both listeners"
                time.sleep(0.1)
        assert [scope["server"] for scope in scopes] == [["127.0.0.1", inherited], ["127.0.0.1", port]]
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
        listener.close()
    assert proc.returncode == 0
    assert f"Ferrocorn running on socket ('127.0.0.1', {inherited}) (Press CTRL+C to quit)" in stderr
    assert f"Ferrocorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in stderr


@pytest.mark.parametrize("value", ["8000", "localhost:http", "::1:8000", "unix:", "fd://x", "127.0.0.1:70000"])
def test_a_malformed_bind_is_a_usage_error(value):
    result = subprocess.run(
        ferrocorn_cmd(APP, "--bind", value), cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "Invalid value for '--bind'" in result.stderr


def test_a_bind_that_fails_stops_the_server_with_exit_code_3(run_process):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        srv = run_process(ferrocorn_cmd(APP, "--bind", f"127.0.0.1:{free_port()}", "--bind", f"127.0.0.1:{port}"))
        assert srv.wait(timeout=30) == 3
        assert srv.has_line("address already in use")
        assert not srv.has_line("running on")
    finally:
        busy.close()
