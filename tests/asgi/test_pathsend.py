"""The `http.response.pathsend` extension: the server reads the file itself, in bounded chunks as the client
takes them, over HTTP/1.1, HTTP/2 and TLS; errors before the response started are a 500; a client that leaves
mid-file gets the file closed; Starlette's FileResponse uses it."""

from __future__ import annotations

import os
import ssl
import time

import httpx
import pytest
import trustme
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

from tests.support.h2 import H2Conn
from tests.support.raw import RawConn
from tests.support.server import ServerProcess

APP = "tests.apps.extensions_app:app"
MiB = 1024 * 1024
GiB = 1024 * MiB


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess.ferrocorn(APP)
    srv.wait_ready()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> tuple[str, bytes]:
    """A 3 MiB file of varied bytes (several read chunks, not a multiple of one)."""
    data = os.urandom(3 * MiB + 12345)
    path = tmp_path_factory.mktemp("pathsend") / "payload.bin"
    path.write_bytes(data)
    return str(path), data


def open_fds_to(pid: int, path: str) -> int:
    """How many of the process's file descriptors point at ``path``."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                count += 1
        except OSError:
            pass
    return count


# ============================================================================ the scope


def test_advertised_on_http11_and_http2(server):
    with httpx.Client(trust_env=False) as client:
        assert "http.response.pathsend" in client.get(f"{server.url}/extensions").json()["extensions"]
    with httpx.Client(http1=False, http2=True, trust_env=False) as client:
        response = client.get(f"{server.url}/extensions")
    assert response.http_version == "HTTP/2" and "http.response.pathsend" in response.json()["extensions"]


# ============================================================================ the file on the wire


def test_http11_sends_the_file_with_its_size_as_content_length(server, payload):
    path, data = payload
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", f"/pathsend?path={path}")
        assert response.status == 200 and not response.chunked
        assert response.header("content-length") == str(len(data))
        assert response.header("content-type") == "application/octet-stream"
        assert response.body == data
        # keep-alive: the next request on the same connection is served
        assert conn.request("GET", "/extensions").status == 200


def test_http2_sends_the_file_in_data_frames(server, payload):
    path, data = payload
    with H2Conn(server.port) as conn:
        conn.send(conn.request(1, f"/pathsend?path={path}"))
        response = conn.response(1, timeout=20)
    assert response["status"] == 200 and response["ended"] and response["rst"] is None
    assert dict(response["headers"])["content-length"] == str(len(data))
    assert response["body"] == data


def test_app_content_length_wins_and_a_short_file_breaks_the_body_off(server, payload):
    path, data = payload
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", f"/pathsend?path={path}&length=1000")
        assert response.header_all("content-length") == ["1000"] and response.body == data[:1000]
        assert conn.request("GET", "/extensions").status == 200
    with RawConn("127.0.0.1", server.port) as conn:
        conn.send(f"GET /pathsend?path={path}&length={len(data) + 10} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        partial = conn.read_response(allow_incomplete=True)
    assert not partial.complete, "a file shorter than Content-Length must not look complete"
    assert data.startswith(partial.body) and len(partial.body) > len(data) // 2


def test_head_gets_the_length_and_no_body(server, payload):
    path, data = payload
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("HEAD", f"/pathsend?path={path}")
        assert response.status == 200 and response.header("content-length") == str(len(data))
        assert conn.request("GET", "/extensions").body.startswith(b"{")


def test_over_tls_with_http11_and_http2(payload, tmp_path, start_server):
    path, data = payload
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    srv = start_server(APP, "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    for http2 in (False, True):
        with httpx.Client(http2=http2, verify=context, trust_env=False, timeout=20) as client:
            response = client.get(f"https://127.0.0.1:{srv.port}/pathsend", params={"path": path})
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert response.status_code == 200 and response.content == data


# ============================================================================ errors


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/does/not/exist.bin", "FileNotFoundError: [Errno 2] No such file or directory: '/does/not/exist.bin'"),
        ("/tmp", "IsADirectoryError: [Errno 21] Is a directory: '/tmp'"),
        (
            "relative/file.bin",
            "RuntimeError: 'http.response.pathsend' needs an absolute 'path', got \"relative/file.bin\".",
        ),
    ],
)
def test_a_file_that_cannot_be_sent_is_a_500_and_a_log_line(server, target, error):
    probe = f"err-{abs(hash(target))}"
    for http2 in (False, True):
        with httpx.Client(http1=not http2, http2=http2, trust_env=False, timeout=10) as client:
            response = client.get(f"{server.url}/pathsend", params={"path": target, "id": probe})
        assert response.status_code == 500 and response.text == "Internal Server Error"
    with httpx.Client(trust_env=False) as client:
        assert client.get(f"{server.url}/probe", params={"id": probe}).json()["result"] == error
    server.wait_for_line(error.split(":")[0])
    assert server.has_line("Exception in ASGI application")


def test_send_after_pathsend_is_an_error(server, payload):
    path, data = payload
    with httpx.Client(trust_env=False) as client:
        response = client.get(f"{server.url}/pathsend-twice", params={"path": path, "id": "twice"})
        assert response.content == data
        result = client.get(f"{server.url}/probe", params={"id": "twice"}).json()["result"]
    assert result == (
        "RuntimeError: Unexpected ASGI message 'http.response.body' sent, after response already completed."
    )


# ============================================================================ bounded memory, prompt close


@pytest.fixture
def huge_file(tmp_path) -> str:
    """1 GiB, sparse: reading it costs the server memory only if it reads ahead."""
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(GiB)
    return str(path)


def test_http11_slow_client_gets_no_read_ahead_and_leaving_closes_the_file(server, huge_file):
    baseline = server.rss()
    conn = RawConn("127.0.0.1", server.port, rcvbuf=64 * 1024)
    try:
        conn.send(f"GET /pathsend?path={huge_file} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = conn.read_head()
        assert head is not None and head.header("content-length") == str(GiB)
        got = len(conn.buf)
        while got < 8 * MiB:  # read 8 MiB, then stop reading
            got += len(conn.recv(1 << 20))
        time.sleep(1.5)
        grown = server.rss() - baseline
        assert grown < 64 * MiB, f"server RSS grew by {grown / MiB:.0f} MiB serving a file to a stalled client"
        assert open_fds_to(server.pid, huge_file) == 1, "the file should be open while it is being sent"
    finally:
        conn.close()
    deadline = time.monotonic() + 3
    while open_fds_to(server.pid, huge_file) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open_fds_to(server.pid, huge_file) == 0, "the file stayed open after the client left"


def test_http2_stalled_stream_gets_no_read_ahead_and_a_reset_closes_the_file(server, huge_file):
    baseline = server.rss()
    with H2Conn(server.port) as conn:
        conn.send(conn.request(1, f"/pathsend?path={huge_file}"))
        received = 0
        deadline = time.monotonic() + 5
        headers = None
        while time.monotonic() < deadline and received < 65535:  # the client's initial window, never opened
            frame = conn.next_frame(5)
            if isinstance(frame, HeadersFrame) and frame.stream_id == 1:
                headers = dict(frame.decoded)
            elif isinstance(frame, DataFrame) and frame.stream_id == 1:
                received += len(frame.data)
        assert headers is not None and headers["content-length"] == str(GiB)
        assert received == 65535
        time.sleep(1.5)
        grown = server.rss() - baseline
        assert grown < 64 * MiB, f"server RSS grew by {grown / MiB:.0f} MiB for a stream with no window"
        assert open_fds_to(server.pid, huge_file) == 1
        conn.send(RstStreamFrame(1, error_code=0x8))  # CANCEL
        deadline = time.monotonic() + 3
        while open_fds_to(server.pid, huge_file) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert open_fds_to(server.pid, huge_file) == 0, "the file stayed open after the stream was reset"
        # the connection goes on (its window, used up by stream 1, opened again)
        conn.send(WindowUpdateFrame(0, window_increment=1 << 20), conn.request(3, "/extensions"))
        assert conn.response(3)["status"] == 200


# ============================================================================ Starlette


def test_starlette_file_response_uses_pathsend(start_server, payload):
    path, data = payload
    srv = start_server("tests.apps.extensions_app:starlette_app")
    for http2 in (False, True):
        with httpx.Client(http1=not http2, http2=http2, trust_env=False, timeout=20) as client:
            response = client.get(f"{srv.url}/file", params={"path": path})
            assert response.status_code == 200 and response.content == data
            assert response.headers["content-length"] == str(len(data))
    with httpx.Client(trust_env=False) as client:
        sent = client.get(f"{srv.url}/sent").json()["types"]
    # FileResponse sends the file itself (http.response.body chunks) unless the server offers pathsend.
    assert sent == [["http.response.start", "http.response.pathsend"]] * 2


# ============================================================================ http.response.zerocopysend


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_zerocopysend_ranges_mixed_with_body_messages(server, payload, http2):
    # Three zerocopysend messages of the file's range, then a body message; the app closes its file before
    # the last send returns, so the server must read from a descriptor of its own.
    path, data = payload
    start, count = 1000, 2 * MiB + 7
    with httpx.Client(http1=not http2, http2=http2, trust_env=False, timeout=20) as client:
        response = client.get(
            f"{server.url}/zerocopy", params={"path": path, "offset": start, "count": count, "parts": 3}
        )
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(count + len(b"<tail>"))
        assert response.content == data[start : start + count] + b"<tail>"
        assert "http.response.zerocopysend" in client.get(f"{server.url}/extensions").json()["extensions"]


def test_zerocopysend_without_offset_or_count_sends_from_the_file_position_to_its_end(server, payload):
    path, data = payload
    with RawConn("127.0.0.1", server.port) as conn:
        response = conn.request("GET", f"/zerocopy?path={path}&seek=4321")
        assert response.body == data[4321:] + b"<tail>"
        assert conn.request("GET", "/extensions").status == 200


def test_zerocopysend_of_a_large_range_waits_until_the_client_took_it(server, payload):
    # Backpressure as for body bytes: a range counts as buffered until it is sent, so send() returns only once
    # the client has read (nearly) all of it; small ranges cannot pile up descriptors.
    path, data = payload
    with H2Conn(server.port) as conn, RawConn("127.0.0.1", server.port) as probe:
        conn.send(conn.request(1, f"/zerocopy-wait?path={path}&id=wait"))
        received = 0
        while received < 65535:  # the client's initial window, not opened yet
            frame = conn.next_frame(5)
            if isinstance(frame, DataFrame) and frame.stream_id == 1:
                received += len(frame.data)
        time.sleep(1)
        assert probe.request("GET", "/probe?id=wait").json()["result"] is None, "send() returned before the range left"
        conn.send(WindowUpdateFrame(0, window_increment=len(data)), WindowUpdateFrame(1, window_increment=len(data)))
        rest = conn.response(1, timeout=20)
        assert rest["ended"] and len(rest["body"]) + received == len(data) + 4 and rest["body"].endswith(b"done")
        deadline = time.monotonic() + 5
        while probe.request("GET", "/probe?id=wait").json()["result"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe.request("GET", "/probe?id=wait").json()["result"] == "returned"
