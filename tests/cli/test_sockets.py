"""--uds and --fd: the server listens where it is told, and the scope says so."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx

from tests.support.server import REPO_ROOT, ServerProcess


def test_uds_serves_sets_mode_and_removes_the_file(tmp_path, start_server):
    path = str(tmp_path / "ferrocorn.sock")
    srv = start_server("tests.apps.sockets_app:app", "--uds", path, wait=False)
    srv.wait_for_line(f"Ferrocorn running on unix socket {path} (Press CTRL+C to quit)")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        response = client.get("http://localhost/over-uds")
    assert response.status_code == 200
    assert response.json() == {"server": [path, None], "client": None, "path": "/over-uds", "scheme": "http"}
    assert srv.stop(signal.SIGINT) == 0
    assert not os.path.exists(path), "the socket file must be removed on exit"


def test_fd_serves_a_socket_bound_by_the_parent():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    cmd = [sys.executable, "-m", "ferrocorn", "tests.apps.sockets_app:app", "--fd", str(listener.fileno())]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, pass_fds=[listener.fileno()], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/over-fd", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the server never answered on the inherited socket"
                time.sleep(0.1)
        assert response.status_code == 200
        body = response.json()
        assert body["server"] == ["127.0.0.1", port]
        assert body["client"][0] == "127.0.0.1" and isinstance(body["client"][1], int)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
        listener.close()
    assert proc.returncode == 0
    assert f"Ferrocorn running on socket ('127.0.0.1', {port}) (Press CTRL+C to quit)" in stderr


def test_demo_app_routes(start_server):
    srv: ServerProcess = start_server("ferrocorn.demo:app")
    assert srv.get("/").text == "Hello from ferrocorn!\n"
    assert srv.get("/json").json()["message"] == "Hello from ferrocorn!"
    assert srv.get("/state").json() == {"started_by": "ferrocorn.demo"}
    with srv.client() as client:
        assert client.post("/echo", content=b"x" * 100_000).content == b"x" * 100_000
        assert client.get("/stream").text.splitlines()[-1] == "chunk 9"
