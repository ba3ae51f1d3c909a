"""Large streaming uploads and downloads: the server must stream with backpressure, its RSS staying flat."""

import hashlib
import threading
import time
import uuid

import pytest

from tests.support.raw import build_request

MiB = 1024 * 1024
TOTAL_MIB = 100
RSS_BUDGET = 60 * MiB
CHUNK_64K = bytes(range(256)) * 256  # the router app's download pattern
CLIENT_CHUNK = bytes(range(256)) * 4096  # 1 MiB, yielded again and again: the client holds 1 MiB only


class RssSampler:
    """Samples the server's RSS (process + children) in a thread; keeps the peak."""

    def __init__(self, server, interval=0.01):
        self.server = server
        self.interval = interval
        self.baseline = server.rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.rss())
            except Exception:
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.server.rss())

    @property
    def growth(self):
        return self.peak - self.baseline


def expected_upload_sha(n_mib):
    h = hashlib.sha256()
    for _ in range(n_mib):
        h.update(CLIENT_CHUNK)
    return h.hexdigest()


def expected_download_sha(total):
    h = hashlib.sha256()
    sent = 0
    while sent < total:
        c = CHUNK_64K[: min(len(CHUNK_64K), total - sent)]
        h.update(c)
        sent += len(c)
    return h.hexdigest()


def warm_up(server):
    """Let the server's allocator and buffers reach their steady size before the baseline is taken."""
    with server.client() as c:
        for _ in range(2):
            r = c.post("/upload", content=(CLIENT_CHUNK for _ in range(8)))
            assert r.status_code == 200
            with c.stream("GET", "/download", params={"mib": 8}) as resp:
                for _ in resp.iter_raw(65536):
                    pass


def wait_until_stalled(read_value, limit, settle=0.3, timeout=15.0):
    """Poll read_value() until it stops changing for ``settle`` seconds (or reaches ``limit``)."""
    deadline = time.monotonic() + timeout
    last, last_change = read_value(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        v = read_value()
        if v != last:
            last, last_change = v, time.monotonic()
        elif time.monotonic() - last_change >= settle:
            return v
        if v >= limit:
            return v
    return last


@pytest.mark.timeout(120)
def test_upload_100mib_chunked_streams_with_flat_rss(router_server):
    warm_up(router_server)
    with RssSampler(router_server) as rss:
        with router_server.client(timeout=60) as c:
            r = c.post("/upload", content=(CLIENT_CHUNK for _ in range(TOTAL_MIB)))
    assert r.status_code == 200
    result = r.json()
    assert result["length"] == TOTAL_MIB * MiB
    assert result["sha256"] == expected_upload_sha(TOTAL_MIB)
    assert result["messages"] > 1, "the body was delivered in one message: it was buffered whole"
    assert rss.growth < RSS_BUDGET, f"server RSS grew by {rss.growth / MiB:.1f} MiB during a {TOTAL_MIB} MiB upload"


@pytest.mark.timeout(120)
def test_upload_100mib_content_length_streams_with_flat_rss(router_server):
    warm_up(router_server)
    with RssSampler(router_server) as rss:
        with router_server.raw(timeout=60) as conn:
            conn.send(
                build_request(
                    "POST", "/upload", headers=[("Content-Length", str(TOTAL_MIB * MiB))], content_length=False
                )
            )
            for _ in range(TOTAL_MIB):
                conn.send(CLIENT_CHUNK)
            r = conn.read_response()
    assert r.status == 200
    result = r.json()
    assert result["length"] == TOTAL_MIB * MiB
    assert result["sha256"] == expected_upload_sha(TOTAL_MIB)
    assert result["biggest_message"] < TOTAL_MIB * MiB
    assert rss.growth < RSS_BUDGET, f"server RSS grew by {rss.growth / MiB:.1f} MiB during a {TOTAL_MIB} MiB upload"


@pytest.mark.timeout(120)
def test_download_100mib_with_backpressure_and_flat_rss(router_server):
    warm_up(router_server)
    pid = f"dl-{uuid.uuid4().hex}"
    total = TOTAL_MIB * MiB
    h = hashlib.sha256()
    received = 0
    with router_server.client(timeout=60) as probe_client, RssSampler(router_server) as rss:

        def app_sent():
            r = probe_client.get("/probe/result", params={"id": pid})
            return r.json().get("sent", 0) if r.status_code == 200 else 0

        with router_server.client(timeout=60) as c:
            with c.stream("GET", "/download", params={"mib": TOTAL_MIB, "id": pid}) as resp:
                assert resp.status_code == 200
                it = resp.iter_raw(65536)
                # read a little, then stop reading: the app's send() must block (backpressure)
                for chunk in it:
                    h.update(chunk)
                    received += len(chunk)
                    if received >= MiB:
                        break
                stalled_at = wait_until_stalled(app_sent, total)
                for chunk in it:
                    h.update(chunk)
                    received += len(chunk)
    assert received == total
    assert h.hexdigest() == expected_download_sha(total)
    problems = []
    if stalled_at >= total:
        problems.append("the app sent all 100 MiB while the client was not reading: send() has no backpressure")
    if rss.growth >= RSS_BUDGET:
        problems.append(f"server RSS grew by {rss.growth / MiB:.1f} MiB during a {TOTAL_MIB} MiB download")
    assert not problems, "; ".join(problems)


@pytest.mark.timeout(120)
def test_download_with_content_length(router_server):
    total = 20 * MiB
    with router_server.client(timeout=60) as c:
        with c.stream("GET", "/download", params={"mib": 20, "cl": 1}) as resp:
            assert resp.headers["content-length"] == str(total)
            assert "transfer-encoding" not in resp.headers
            h = hashlib.sha256()
            n = 0
            for chunk in resp.iter_raw(65536):
                h.update(chunk)
                n += len(chunk)
    assert n == total
    assert h.hexdigest() == expected_download_sha(total)


@pytest.mark.timeout(120)
def test_upload_backpressure_when_app_does_not_read(router_server):
    """While the app is not calling receive(), the server must stop reading the socket instead of
    buffering the whole body."""
    warm_up(router_server)
    ev = f"up-{uuid.uuid4().hex}"
    yielded = [0]
    result = {}

    def gen():
        for _ in range(TOTAL_MIB):
            yielded[0] += len(CLIENT_CHUNK)
            yield CLIENT_CHUNK

    def upload():
        try:
            with router_server.client(timeout=60) as c:
                result["response"] = c.post("/upload", params={"wait": ev, "id": ev}, content=gen())
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    with RssSampler(router_server) as rss:
        t = threading.Thread(target=upload, daemon=True)
        t.start()
        stalled_at = wait_until_stalled(lambda: yielded[0], TOTAL_MIB * MiB)
        router_server.get("/release", params={"id": ev})
        t.join(60)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    r = result["response"]
    assert r.status_code == 200
    assert r.json()["length"] == TOTAL_MIB * MiB
    assert r.json()["sha256"] == expected_upload_sha(TOTAL_MIB)
    problems = []
    if stalled_at >= TOTAL_MIB * MiB:
        problems.append("the client could send all 100 MiB while the app was not reading: no read backpressure")
    if rss.growth >= RSS_BUDGET:
        problems.append(f"server RSS grew by {rss.growth / MiB:.1f} MiB while the app was not reading")
    assert not problems, "; ".join(problems)


def test_single_50mib_body_message(router_server):
    with router_server.client(timeout=60) as c:
        r = c.get("/fixed", params={"size": 50 * MiB})
    assert r.status_code == 200
    assert len(r.content) == 50 * MiB and r.content.count(b"x") == 50 * MiB


def test_ten_thousand_small_chunks(router_server):
    with router_server.client(timeout=60) as c:
        r = c.get("/many-chunks", params={"n": 10000, "size": 10})
    assert r.content == b"".join(b"%09d\n" % i for i in range(10000))


def test_receive_message_types(router_server):
    with router_server.client() as c:
        post = c.post("/upload", content=(CLIENT_CHUNK for _ in range(2))).json()
        get = c.get("/upload").json()
    assert post["message_types"] == ["http.request:bytes:bool"]
    assert post["length"] == 2 * MiB
    # a request without a body: exactly one http.request with b"" and more_body False
    assert get["messages"] == 1 and get["length"] == 0
    assert get["message_types"] == ["http.request:bytes:bool"]


def upload_while_the_app_waits(server, body: bytes, pieces: int) -> dict:
    """POST ``body`` to /upload in ``pieces`` separate writes while the app has not called receive() yet;
    release the app once the server has had time to read what it will read (a body past the high-water mark
    stops being read, so the pieces are written from a thread); the app's account of what it got."""
    name = f"body-{uuid.uuid4().hex}"
    step = -(-len(body) // pieces)
    with server.raw(timeout=30) as conn:
        conn.send(build_request("POST", f"/upload?wait={name}", headers=[("Content-Length", str(len(body)))]))

        def write_pieces():
            for at in range(0, len(body), step):
                conn.send(body[at : at + step])
                time.sleep(0.01)  # each piece its own read on the server's side

        writer = threading.Thread(target=write_pieces, daemon=True)
        writer.start()
        time.sleep(0.01 * pieces + 0.3)
        with server.client() as c:
            assert c.get("/release", params={"id": name}).status_code == 200
        writer.join(30)
        r = conn.read_response()
    assert r.status == 200
    result = r.json()
    assert result["length"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    return result


def test_body_read_while_the_app_was_busy_arrives_as_one_message(router_server):
    """Pieces the server read before the app asked reach it as one ``bytes``: copied once, not once per read
    and again when the app joins them."""
    result = upload_while_the_app_waits(router_server, bytes(range(256)) * 192, pieces=12)  # 48 KiB
    assert result["messages"] == 1, result
    assert result["message_types"] == ["http.request:bytes:bool"]


def test_body_past_the_high_water_mark_still_arrives_in_bounded_messages(router_server):
    """Above the 64 KiB high-water mark the server stops reading until the app catches up: however far
    behind the app was, no message carries the whole 4 MiB body."""
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB
    result = upload_while_the_app_waits(router_server, body, pieces=64)
    assert result["messages"] > 1, result
    assert result["biggest_message"] <= 1024 * 1024, result
