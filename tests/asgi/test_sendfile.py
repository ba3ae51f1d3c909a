"""Files on cleartext HTTP/1.1 go out with sendfile(2): hyper writes stand-in bytes that the transport
replaces with the file's range (src/net/sendfile.rs). What must hold whatever the mechanism: every byte
is the file's, in order, across keep-alive and pipelined requests mixing files, HEAD and ordinary bodies,
zerocopysend ranges between body messages, and a file that shrinks mid-send breaks the body off (never
padding it) while the server goes on serving."""

from __future__ import annotations

import concurrent.futures
import os
import time

import httpx
import pytest

from tests.support.raw import RawConn
from tests.support.server import ServerProcess

APP = "tests.apps.extensions_app:app"
MiB = 1024 * 1024
STEP = 8 * MiB  # net::sendfile::SENDFILE_CHUNK: the most one step of a file body covers


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess.ferrocorn(APP)
    srv.wait_ready()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, bytes]:
    """Files of awkward sizes: empty, one byte, just over one sendfile step, several steps."""
    folder = tmp_path_factory.mktemp("sendfile")
    sizes = {"empty": 0, "one": 1, "step": STEP + 7, "several": 2 * STEP + 4097}
    out = {}
    for name, size in sizes.items():
        data = os.urandom(size)
        path = folder / f"{name}.bin"
        path.write_bytes(data)
        out[str(path)] = data
    return out


def get(path: str) -> bytes:
    return f"GET /pathsend?path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_files_head_and_bodies_in_turn_on_one_connection(server, files):
    with RawConn("127.0.0.1", server.port) as conn:
        for _round in range(2):
            for path, data in files.items():
                conn.send(get(path))
                resp = conn.read_response()
                assert resp.status == 200
                assert resp.header("content-length") == str(len(data))
                assert resp.body == data, f"{path}: bytes differ from the file's"
                # A HEAD produces no body at all: the next file must not be shifted by it.
                conn.send(f"HEAD /pathsend?path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head = conn.read_response("HEAD")
                assert head.status == 200 and head.body == b""
                resp = conn.request("GET", "/probe?id=none")
                assert resp.status == 200 and resp.json() == {"result": None}


def test_pipelined_files_arrive_whole_and_in_order(server, files):
    order = [*files, *reversed(files)]
    with RawConn("127.0.0.1", server.port) as conn:
        conn.send(b"".join(get(path) for path in order))
        for path in order:
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body == files[path]


@pytest.mark.parametrize("parts", [1, 3])
def test_zerocopysend_ranges_between_body_messages(server, files, parts):
    path, data = next((p, d) for p, d in files.items() if len(d) > 2 * MiB)
    offset, count = 4096 + 3, 2 * MiB + 11
    with RawConn("127.0.0.1", server.port) as conn:
        resp = conn.request("GET", f"/zerocopy?path={path}&offset={offset}&count={count}&parts={parts}")
        assert resp.status == 200
        assert resp.body.startswith(data[offset : offset + count])


def test_concurrent_clients_each_get_their_own_file(server, files):
    big = [(p, d) for p, d in files.items() if len(d) > MiB]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            jobs = [pool.submit(client.get, "/pathsend", params={"path": p}) for p, _ in big * 8]
            expected = [d for _, d in big * 8]
            for job, data in zip(jobs, expected, strict=True):
                assert job.result().content == data


def test_a_file_that_shrinks_mid_send_breaks_the_body_off(server, tmp_path):
    data = os.urandom(32 * MiB)
    path = tmp_path / "shrinking.bin"
    path.write_bytes(data)
    conn = RawConn("127.0.0.1", server.port, rcvbuf=64 * 1024)
    try:
        conn.send(get(str(path)))
        head = conn.read_head()
        assert head is not None and head.header("content-length") == str(len(data))
        got = bytearray()  # recv() hands out what read_head() buffered first
        while len(got) < MiB:
            got += conn.recv(MiB)
        os.truncate(path, 2 * MiB)
        conn.settimeout(10)
        while True:
            try:
                chunk = conn.recv(MiB)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    finally:
        conn.close()
    assert len(got) < len(data), "the body looked complete although the file shrank"
    assert bytes(got) == data[: len(got)], "bytes past the file's new end were sent"
    # The worker goes on serving.
    assert httpx.get(f"http://127.0.0.1:{server.port}/probe?id=none", timeout=5).status_code == 200


def evict(path: str, offset: int = 0, length: int = 0) -> None:
    """Drop the file's pages (from offset, length bytes; 0: to the end) from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_files_out_of_the_page_cache_are_read_in_first(server, tmp_path):
    # A step whose range is not (all) in the page cache is read in on the blocking pool before its
    # sendfile; cached steps go out at once. Every byte is the file's either way, in any mix.
    data = os.urandom(3 * STEP + 12345)
    path = str(tmp_path / "cold.bin")
    with open(path, "wb") as f:
        f.write(data)
    with RawConn("127.0.0.1", server.port) as conn:
        for offset, length in ((0, 0), (STEP + 100, MiB), (2 * STEP - 1, 2), (0, 4096)):
            evict(path, offset, length)
            conn.send(get(path))
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body == data, f"bytes differ after evicting {length} bytes at {offset}"


def test_over_a_unix_socket(files, tmp_path):
    uds = str(tmp_path / "ferrocorn.sock")
    srv = ServerProcess.ferrocorn(APP, "--uds", uds, wait=False)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(uds) and time.monotonic() < deadline:
            time.sleep(0.05)
        transport = httpx.HTTPTransport(uds=uds)
        with httpx.Client(transport=transport, base_url="http://x", timeout=30) as client:
            for path, data in files.items():
                assert client.get("/pathsend", params={"path": path}).content == data
    finally:
        srv.close()
