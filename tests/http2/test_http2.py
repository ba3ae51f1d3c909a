"""HTTP/2, black box: h2c with prior knowledge on the HTTP/1.1 port, bodies and flow control, RFC 9113 §8
malformed requests, the classic floods, the ``--http2-*`` limits, idle timeouts and graceful shutdown.

Frame-level cases use the small ``H2Conn`` client of ``tests/support/h2.py`` (``hyperframe`` frames, ``hpack``
header blocks), which can send anything; well-behaved traffic uses ``httpx`` with ``h2``. See
/work/shared/reference/conformance-tools.md §1.3 (the H2-xx table) and §5.3 (floods).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid

import httpx
import pytest
from hpack import Encoder
from hpack.hpack import encode_integer
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.support.h2 import PREFACE, FrameReader, H2Conn, send_batched
from tests.support.probes import decode_json, probe_result
from tests.support.raw import RawConn
from tests.support.server import ServerProcess

ROUTER = "tests.apps.router:app"
MAX_STREAM_ID = 2**31 - 1

# error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x7, 0xB
# SETTINGS identifiers
S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 0x3, 0x4, 0x5, 0x6

CHUNK_64K = bytes(range(256)) * 256  # the router's /download pattern


# ============================================================================ helpers


def h2_client(srv: ServerProcess, **kw) -> httpx.Client:
    kw.setdefault("timeout", 20.0)
    return httpx.Client(base_url=srv.url, http1=False, http2=True, trust_env=False, **kw)


def assert_fresh_client_served(srv: ServerProcess):
    """A new HTTP/2 connection and a new HTTP/1.1 connection both get a normal answer."""
    assert srv.alive(), f"server died\n{srv.log_tail()}"
    with h2_client(srv, timeout=10) as c:
        r = c.get("/fixed", params={"size": 3})
    assert r.status_code == 200 and r.http_version == "HTTP/2" and r.content == b"xxx"
    with srv.client(timeout=10) as c:
        assert c.get("/fixed", params={"size": 2}).content == b"xx"


def flush_access_log(srv: ServerProcess) -> None:
    """Make one request with a unique marker and wait for its access-log line: every earlier line is out."""
    marker = uuid.uuid4().hex
    with srv.client(timeout=10) as c:
        assert c.get("/fixed", params={"size": 1, "flush": marker}).status_code == 200
    srv.wait_for_line(marker, timeout=10, stream="stdout")


def access_lines(srv: ServerProcess, needle: str) -> list:
    return [line for line in srv.stdout_lines if needle in line]


def download_pattern(size: int) -> bytes:
    reps, rest = divmod(size, len(CHUNK_64K))
    return CHUNK_64K * reps + CHUNK_64K[:rest]


@pytest.fixture(scope="module")
def small_server():
    """Five concurrent streams and a 64 KiB - 1 stream window."""
    srv = ServerProcess.ferrocorn(
        ROUTER, "--http2-max-concurrent-streams", "5", "--http2-initial-stream-window-size", "65535"
    )
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def idle1_server():
    """``--timeout-keep-alive 1`` for the idle-timeout tests."""
    srv = ServerProcess.ferrocorn(ROUTER, "--timeout-keep-alive", "1")
    yield srv
    srv.close()


# ============================================================================ 1. basics


def test_h2c_get_and_access_log(router_server):
    marker = uuid.uuid4().hex[:10]
    with h2_client(router_server) as c:
        r = c.get("/fixed", params={"size": 7, "m": marker})
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    assert r.content == b"x" * 7
    assert r.headers["server"] == "ferrocorn"
    line = router_server.wait_for_line(marker, stream="stdout")
    assert re.search(r'"GET /fixed\?size=7&m=' + marker + r' HTTP/2" 200 OK$', line), line


def test_h2c_scope(router_server):
    with h2_client(router_server) as c:
        r = c.get("/scope/h2", params={"q": "1"}, headers={"x-probe": "yes"})
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    scope = decode_json(r.json())["scope"]
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "http"
    assert scope["method"] == "GET"
    assert scope["path"] == "/scope/h2" and scope["query_string"] == b"q=1"
    headers = scope["headers"]
    authority = f"127.0.0.1:{router_server.port}".encode()
    assert headers[0] == [b"host", authority], headers
    assert [h for h in headers if h[0] == b"host"] == [[b"host", authority]], "exactly one host header"
    assert [b"x-probe", b"yes"] in headers
    assert not any(name.startswith(b":") for name, _ in headers), "pseudo-headers leaked into the scope"


def test_h2c_scope_from_raw_authority(router_server):
    """:authority without a host header becomes the first ``host`` header of the scope."""
    with H2Conn(router_server.port) as conn:
        conn.send(conn.request(1, "/scope", authority=b"example.test:8443", extra=[(b"x-a", b"1")]))
        res = conn.response(1)
    assert res["status"] == 200, res
    headers = decode_json(json.loads(res["body"]))["scope"]["headers"]
    assert headers[0] == [b"host", b"example.test:8443"]
    assert [h[0] for h in headers].count(b"host") == 1


def test_many_concurrent_streams_on_one_connection(router_server):
    n, delay = 50, 0.4
    tag = uuid.uuid4().hex[:6]

    async def main():
        async with httpx.AsyncClient(
            base_url=router_server.url, http1=False, http2=True, trust_env=False, timeout=30
        ) as c:
            t0 = time.monotonic()
            rs = await asyncio.gather(*[c.get("/slow", params={"delay": delay, "tag": f"{tag}-{i}"}) for i in range(n)])
            return rs, time.monotonic() - t0

    responses, elapsed = asyncio.run(main())
    for i, r in enumerate(responses):
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        assert r.text == f"slept {tag}-{i}"
    # sequential service would take n * delay = 20 s
    assert elapsed < n * delay / 3, f"50 streams were not served concurrently ({elapsed:.1f}s)"
    flush_access_log(router_server)
    lines = access_lines(router_server, f"tag={tag}-")
    assert len(lines) == n
    clients = {line.split(" - ")[0] for line in lines}
    assert len(clients) == 1, f"expected one connection, saw {clients}"


def test_slow_stream_does_not_hold_up_others_on_its_connection(router_server):
    """Streams run inside their connection's task: one waiting on the app must not delay the rest."""

    async def main():
        async with httpx.AsyncClient(
            base_url=router_server.url, http1=False, http2=True, trust_env=False, timeout=30
        ) as c:
            slow = asyncio.ensure_future(c.get("/slow", params={"delay": 3}))
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            fast = [await c.get("/") for _ in range(20)]
            fast_elapsed = time.monotonic() - t0
            assert not slow.done()
            return fast, fast_elapsed, await slow

    fast, fast_elapsed, slow = asyncio.run(main())
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in fast)
    assert fast_elapsed < 2, f"20 quick requests took {fast_elapsed:.1f}s next to a slow stream"
    assert slow.status_code == 200


def test_http11_still_served_on_the_same_port(router_server):
    with router_server.client() as c:
        r = c.get("/scope")
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    assert decode_json(r.json())["scope"]["http_version"] == "1.1"
    with router_server.raw() as conn:
        resp = conn.request("GET", "/fixed?size=4")
        assert resp.http_version == "1.1" and resp.body == b"xxxx"


def test_curl_http2_prior_knowledge(router_server):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl not installed")
    out = subprocess.run(
        [
            curl,
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
            f"{router_server.url}/fixed?size=9",
        ],
        capture_output=True,
        timeout=20,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "x" * 9 + "\n2 200"


def test_h2load_smoke(router_server):
    h2load = shutil.which("h2load")
    if not h2load:
        pytest.skip("h2load not installed")
    out = subprocess.run(
        [h2load, "-n", "400", "-c", "4", "-m", "10", f"{router_server.url}/fixed?size=10"],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "400 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "Application protocol: h2c" in out.stdout


# ============================================================================ 2. bodies and flow control


def test_upload_5mib_intact(router_server):
    body = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32)
    with h2_client(router_server) as c:
        r = c.post("/upload", content=body)
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    info = r.json()
    assert info["length"] == len(body) == 5 * 1024 * 1024
    assert info["sha256"] == hashlib.sha256(body).hexdigest()


def test_echo_body_roundtrip(router_server):
    body = bytes(range(256)) * 4096  # 1 MiB through request and response flow control
    with h2_client(router_server) as c:
        r = c.post("/echo", content=body)
    assert r.status_code == 200 and r.content == body


def test_download_5mib_intact(router_server):
    with h2_client(router_server) as c:
        r = c.get("/download", params={"mib": 5})
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert len(r.content) == 5 * 1024 * 1024
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(download_pattern(5 * 1024 * 1024)).digest()


def test_request_trailers_do_not_break_the_body(router_server):
    pid = uuid.uuid4().hex[:8]
    body = b"hello " * 1000 + b"trailers"
    with H2Conn(router_server.port) as conn:
        conn.send(
            conn.request(1, f"/upload?id={pid}", method=b"POST", end_stream=False, extra=[(b"te", b"trailers")]),
            DataFrame(1, body[:4000]),
            DataFrame(1, body[4000:]),
            HeadersFrame(1, conn.block([(b"x-checksum", b"abc123")]), flags=["END_HEADERS", "END_STREAM"]),
        )
        res = conn.response(1)
    assert res["status"] == 200 and res["rst"] is None, res
    info = json.loads(res["body"])
    assert info["length"] == len(body)
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    assert probe_result(router_server, pid)["length"] == len(body)


def test_small_stream_window_upload_and_download(small_server):
    with H2Conn(small_server.port) as conn:
        settings, _ = conn.server_settings()
    assert settings[S_INITIAL_WINDOW_SIZE] == 65535
    body = bytes(range(256)) * 4096 * 2  # 2 MiB: ~32 stream windows
    with h2_client(small_server) as c:
        r = c.post("/upload", content=body)
        d = c.get("/download", params={"mib": 2})
    assert r.status_code == 200
    assert r.json()["length"] == len(body) and r.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert d.content == download_pattern(2 * 1024 * 1024)


def test_client_overrunning_the_stream_window_is_reset(small_server):
    """More DATA than the advertised 65535-byte stream window (the app does not read yet) →
    RST_STREAM(FLOW_CONTROL_ERROR) or GOAWAY(FLOW_CONTROL_ERROR); the app sees a disconnect."""
    pid = uuid.uuid4().hex[:8]
    with H2Conn(small_server.port) as conn:
        conn.server_settings()
        conn.send(
            conn.request(1, f"/upload?id={pid}&wait={pid}", method=b"POST", end_stream=False),
            *[DataFrame(1, b"x" * 16384) for _ in range(5)],  # 81920 > 65535
        )
        res = conn.response(1, timeout=10)
    assert res["status"] is None, res
    assert res["rst"] == FLOW_CONTROL_ERROR or (res["goaway"] and res["goaway"][1] == FLOW_CONTROL_ERROR), res
    with small_server.client() as c:
        c.get("/release", params={"id": pid})
    p = probe_result(small_server, pid)
    assert p.get("disconnected") and "sha256" not in p, p


def test_server_honours_the_client_stream_window(router_server):
    """The client advertises a 1000-byte stream window: the server sends no more until WINDOW_UPDATE."""

    def drain(conn, quiet):
        got = 0
        while True:
            try:
                f = conn.next_frame(quiet)
            except TimeoutError:
                return got
            assert f is not None, "server closed the connection"
            assert not isinstance(f, (RstStreamFrame, GoAwayFrame)), f
            if isinstance(f, DataFrame):
                got += len(f.data)

    with H2Conn(router_server.port, settings={S_INITIAL_WINDOW_SIZE: 1000}) as conn:
        conn.send(conn.request(1, "/download?mib=1"))
        first = drain(conn, 1.0)
        assert first == 1000, f"server sent {first} bytes into a 1000-byte window"
        conn.send(WindowUpdateFrame(1, window_increment=5000))
        second = drain(conn, 1.0)
        assert first + second == 6000


def test_data_frame_over_max_frame_size_is_a_connection_error(router_server):
    with H2Conn(router_server.port) as conn:
        conn.server_settings()
        conn.send(conn.request(1, "/upload", method=b"POST", end_stream=False))
        conn.send_raw(DataFrame(1, b"y" * 20000, flags=["END_STREAM"]).serialize())  # > 16384
        frames = conn.until_eof(10)
    goaways = [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[-1][1] == FRAME_SIZE_ERROR, frames
    assert_fresh_client_served(router_server)


# ============================================================================ 3. RFC 9113 §8 malformed requests


def _base(path, method=b"GET"):
    return [(b":method", method), (b":scheme", b"http"), (b":path", path), (b":authority", b"127.0.0.1")]


# name -> (builder(path) -> (headers, body or None), RFC section)
MALFORMED = {
    "H2-01-content-length-over": (lambda p: (_base(p, b"POST") + [(b"content-length", b"5")], b"abc"), "8.1.1"),
    "H2-02-content-length-under": (lambda p: (_base(p, b"POST") + [(b"content-length", b"1")], b"abc"), "8.1.1"),
    "H2-03-crlf-in-value": (lambda p: (_base(p) + [(b"x-bad", b"a\r\nx-injected: 1")], None), "8.2.1"),
    "H2-04-nul-in-value": (lambda p: (_base(p) + [(b"x-bad", b"a\x00b")], None), "8.2.1"),
    "H2-05-uppercase-name": (lambda p: (_base(p) + [(b"X-Upper", b"v")], None), "8.2.1"),
    "H2-06-connection-header": (lambda p: (_base(p) + [(b"connection", b"keep-alive")], None), "8.2.2"),
    "H2-07-transfer-encoding": (lambda p: (_base(p, b"POST") + [(b"transfer-encoding", b"chunked")], b"abc"), "8.2.2"),
    "H2-08-te-gzip": (lambda p: (_base(p) + [(b"te", b"gzip")], None), "8.2.2"),
    "H2-09-missing-path": (
        lambda p: ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"), (b"x-case", p)], None),
        "8.3.1",
    ),
    "H2-10-empty-path": (
        lambda p: (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b""),
                (b":authority", b"127.0.0.1"),
                (b"x-case", p),
            ],
            None,
        ),
        "8.3.1",
    ),
    "H2-11-pseudo-after-regular": (
        lambda p: (
            [(b":method", b"GET"), (b":scheme", b"http"), (b"x-a", b"1"), (b":path", p), (b":authority", b"127.0.0.1")],
            None,
        ),
        "8.3",
    ),
    "H2-12-duplicate-method": (
        lambda p: (
            [
                (b":method", b"GET"),
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", p),
                (b":authority", b"127.0.0.1"),
            ],
            None,
        ),
        "8.3.1",
    ),
    "H2-13-unknown-pseudo": (lambda p: (_base(p) + [(b":foo", b"bar")], None), "8.3"),
    "H2-14-space-in-name": (lambda p: (_base(p) + [(b"x bad", b"v")], None), "8.2.1"),
    "H2-15-colon-in-name": (lambda p: (_base(p) + [(b"x:bad", b"v")], None), "8.2.1"),
    "H2-16-space-in-path": (lambda p: (_base(p + b"/a b"), None), "8.3.1"),
    "H2-17-host-differs-from-authority": (lambda p: (_base(p) + [(b"host", b"other.example")], None), "8.3.1"),
    "H2-18-leading-space-in-value": (lambda p: (_base(p) + [(b"x-bad", b" lead")], None), "8.2.1"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_rejected(router_server, case):
    builder, _section = MALFORMED[case]
    uid = uuid.uuid4().hex[:10]
    content_length_case = case.startswith(("H2-01", "H2-02"))
    # the content-length cases are only malformed once the DATA arrives (hyper may already have dispatched
    # the request): they go to /upload, whose probe shows whether the app ever saw a complete body
    path = f"/upload?id={uid}" if content_length_case else f"/h2bad-{case[:5]}-{uid}"
    headers, body = builder(path.encode())
    with H2Conn(router_server.port) as conn:
        conn.server_settings()
        frames = [HeadersFrame(1, conn.block(headers), flags=["END_HEADERS"] + ([] if body else ["END_STREAM"]))]
        if body:
            frames.append(DataFrame(1, body, flags=["END_STREAM"]))
        conn.send(*frames)
        res = conn.response(1, timeout=10)
    assert res["status"] is None, f"{case}: the malformed request got a response: {res}"
    rejected = res["rst"] == PROTOCOL_ERROR or (res["goaway"] is not None and res["goaway"][1] == PROTOCOL_ERROR)
    assert rejected, f"{case}: expected RST_STREAM or GOAWAY with PROTOCOL_ERROR, got {res}"
    flush_access_log(router_server)
    if content_length_case:
        r = httpx.get(f"{router_server.url}/probe/result", params={"id": uid}, timeout=10)
        if r.status_code == 200:  # the app was started: it must have seen a disconnect, never a complete body
            p = r.json()
            assert "sha256" not in p and "length" not in p, f"{case}: the app received a complete body: {p}"
    else:
        assert access_lines(router_server, uid) == [], f"{case}: the request reached the app"
    assert_fresh_client_served(router_server)


def test_header_list_over_the_limit_gets_431_or_reset(router_server):
    """~70 KB of plain headers (> 65536 max header list): 431 from the server or a reset, never the app."""
    uid = uuid.uuid4().hex[:10]
    with H2Conn(router_server.port) as conn:
        conn.server_settings()
        hdrs = _base(f"/toolarge-{uid}".encode()) + [(b"x-h%d" % i, b"v" * 1000) for i in range(70)]
        blk = Encoder().encode(hdrs)  # separate encoder: nothing indexed in the connection's table
        conn.enc = Encoder()
        frames = [HeadersFrame(1, blk[:16384], flags=["END_STREAM"])]
        rest = blk[16384:]
        while rest:
            chunk, rest = rest[:16384], rest[16384:]
            frames.append(ContinuationFrame(1, chunk, flags=[] if rest else ["END_HEADERS"]))
        conn.send(*frames)
        res = conn.response(1, timeout=10)
    assert res["status"] == 431 or res["rst"] is not None or res["goaway"] is not None, res
    flush_access_log(router_server)
    assert access_lines(router_server, uid) == []
    assert_fresh_client_served(router_server)


# ============================================================================ 4. floods


def test_rapid_reset_flood(router_server):
    """CVE-2023-44487: 5000 HEADERS+RST_STREAM pairs → GOAWAY(ENHANCE_YOUR_CALM) or close, server alive."""
    uid = uuid.uuid4().hex[:10]
    pairs = 5000
    with H2Conn(router_server.port) as conn:
        reader = FrameReader(conn)
        reader.start()
        frames = []
        for i in range(pairs):
            sid = 1 + 2 * i
            frames += [conn.request(sid, f"/slow?delay=5&tag=rr{uid}"), RstStreamFrame(sid, error_code=0x8)]
        sent, err = send_batched(conn, frames, batch=400)
        assert reader.done.wait(15), f"connection still open after {sent} frames"
        goaways = reader.goaways()
    print(f"rapid reset: {sent} frames sent ({err}), GOAWAY {goaways}")
    assert goaways, "connection closed without GOAWAY"
    assert goaways[-1][1] == ENHANCE_YOUR_CALM, goaways
    assert goaways[-1][0] < 2 * pairs // 10, f"too many streams processed before GOAWAY: {goaways}"
    assert_fresh_client_served(router_server)
    flush_access_log(router_server)
    # no more than a handful of the reset streams may have reached the app
    assert len(access_lines(router_server, f"rr{uid}")) <= 100


def test_continuation_flood(router_server):
    """VU#421644: a HEADERS frame followed by 20k CONTINUATION frames that never end."""
    uid = uuid.uuid4().hex[:10]
    with H2Conn(router_server.port) as conn:
        reader = FrameReader(conn)
        reader.start()
        head = HeadersFrame(1, conn.block(_base(f"/contflood-{uid}".encode())), flags=["END_STREAM"])
        filler = (b"\x00\x03x-a\x03aaa" * 120)[:1024]  # literal, not indexed
        sent, err = send_batched(conn, [head] + [ContinuationFrame(1, filler) for _ in range(20000)], batch=200)
        assert reader.done.wait(15), f"connection still open after {sent} frames"
        goaways = reader.goaways()
    print(f"CONTINUATION flood: {sent} frames sent ({err}), GOAWAY {goaways}")
    assert goaways and goaways[-1][1] in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM), goaways
    assert sent < 20001 or err is None
    flush_access_log(router_server)
    assert access_lines(router_server, uid) == []
    assert_fresh_client_served(router_server)


def test_empty_data_flood(router_server):
    """CVE-2019-9518: 100k empty DATA frames on one stream → GOAWAY(ENHANCE_YOUR_CALM)."""
    pid = uuid.uuid4().hex[:8]
    with H2Conn(router_server.port) as conn:
        reader = FrameReader(conn)
        reader.start()
        frames = [conn.request(1, f"/upload?id={pid}", method=b"POST", end_stream=False)]
        frames += [DataFrame(1, b"") for _ in range(100000)]
        sent, err = send_batched(conn, frames, batch=1000)
        assert reader.done.wait(15), f"connection still open after {sent} frames"
        goaways = reader.goaways()
    print(f"empty DATA flood: {sent} frames sent ({err}), GOAWAY {goaways}")
    assert goaways and goaways[-1][1] == ENHANCE_YOUR_CALM, goaways
    assert_fresh_client_served(router_server)


def test_settings_flood(router_server):
    """CVE-2019-9515: 100k SETTINGS frames. Each is ACKed (or the connection is cut), memory stays bounded."""
    n = 100000
    rss0 = router_server.rss()
    with H2Conn(router_server.port) as conn:
        reader = FrameReader(conn)
        reader.start()
        flood = SettingsFrame(0, settings={S_INITIAL_WINDOW_SIZE: 65535}).serialize()
        sent = 0
        try:
            for _ in range(n // 1000):
                conn.send_raw(flood * 1000)
                sent += 1000
        except OSError:
            pass

        def acks():
            return sum(1 for f in list(conn.frames) if isinstance(f, SettingsFrame) and "ACK" in f.flags)

        deadline = time.monotonic() + 20
        while acks() < sent + 1 and not reader.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        rss1 = router_server.rss()
        print(
            f"SETTINGS flood: {sent} sent, {acks()} ACKs, GOAWAY {reader.goaways()}, "
            f"RSS {rss0 >> 20} → {rss1 >> 20} MiB"
        )
        assert acks() >= sent + 1 or reader.done.is_set(), "the server neither ACKed every SETTINGS nor closed"
        assert rss1 - rss0 < 50 * 1024 * 1024
        assert_fresh_client_served(router_server)


def test_ping_flood_with_client_not_reading(router_server):
    """CVE-2019-9512: PINGs while never reading the PONGs: the server stops reading (backpressure) or closes;
    memory stays bounded and other clients are served while the flood connection is still open."""
    rss0 = router_server.rss()
    ping = PingFrame(0, opaque_data=b"flood!!!").serialize()
    with H2Conn(router_server.port, rcvbuf=16384, ack_pings=False) as conn:
        conn.sock.settimeout(2.0)
        sent = 0
        outcome = "all sent"
        try:
            for _ in range(1000):  # up to 1M PINGs (17 MB)
                conn.send_raw(ping * 1000)
                sent += 1000
        except TimeoutError:
            outcome = "send blocked (server stopped reading)"
        except OSError as e:
            outcome = f"connection closed ({type(e).__name__})"
        rss1 = router_server.rss()
        print(f"PING flood: {sent} PINGs sent, {outcome}, RSS {rss0 >> 20} → {rss1 >> 20} MiB")
        assert outcome != "all sent", "17 MB of PINGs were swallowed without backpressure"
        assert rss1 - rss0 < 50 * 1024 * 1024
        assert_fresh_client_served(router_server)


def test_hpack_bomb(router_server):
    """One 4000-byte header indexed once, then referenced 4000 times (~16 MB decoded, 65536 allowed):
    GOAWAY (ENHANCE_YOUR_CALM / COMPRESSION_ERROR), 431 or a reset, never the app."""
    uid = uuid.uuid4().hex[:10]
    with H2Conn(router_server.port) as conn:
        conn.server_settings()
        reader = FrameReader(conn)
        reader.start()
        block = conn.block(_base(f"/bomb-{uid}".encode()))
        # literal with incremental indexing, new name: it becomes dynamic-table entry 62
        block += b"\x40" + bytes(encode_integer(6, 7)) + b"x-bomb" + bytes(encode_integer(4000, 7)) + b"v" * 4000
        block += bytes([0x80 | 62]) * 4000
        frames = [
            HeadersFrame(1, block[:16000], flags=["END_STREAM"]),
            ContinuationFrame(1, block[16000:], flags=["END_HEADERS"]),
        ]
        send_batched(conn, frames)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not reader.done.is_set():
            if any(isinstance(f, (HeadersFrame, RstStreamFrame)) for f in list(conn.frames)):
                break
            time.sleep(0.02)
        statuses = [dict(f.decoded).get(":status") for f in reader.of_type(HeadersFrame)]
        rsts = [f.error_code for f in reader.of_type(RstStreamFrame)]
        goaways = reader.goaways()
    print(f"HPACK bomb: GOAWAY {goaways}, RST {rsts}, statuses {statuses}")
    assert goaways or rsts or statuses == ["431"], "the bomb got no answer"
    assert all(s == "431" for s in statuses), statuses
    flush_access_log(router_server)
    assert access_lines(router_server, uid) == []
    assert_fresh_client_served(router_server)


# ============================================================================ 5. limits and settings


def test_default_settings(router_server):
    with H2Conn(router_server.port) as conn:
        settings, window = conn.server_settings()
    assert settings[S_MAX_CONCURRENT_STREAMS] == 100
    assert settings[S_INITIAL_WINDOW_SIZE] == 1024 * 1024
    assert settings.get(S_MAX_FRAME_SIZE, 16384) == 16384
    assert settings[S_MAX_HEADER_LIST_SIZE] == 65536
    assert window == 2 * 1024 * 1024 - 65535


def test_settings_reflect_options(start_server):
    srv = start_server(
        ROUTER,
        "--http2-max-concurrent-streams",
        "7",
        "--http2-initial-stream-window-size",
        "100000",
        "--http2-initial-connection-window-size",
        "3000000",
        "--http2-max-frame-size",
        "32768",
        "--http2-max-header-list-size",
        "20000",
    )
    with H2Conn(srv.port) as conn:
        settings, window = conn.server_settings()
    assert settings[S_MAX_CONCURRENT_STREAMS] == 7
    assert settings[S_INITIAL_WINDOW_SIZE] == 100000
    assert settings[S_MAX_FRAME_SIZE] == 32768
    assert settings[S_MAX_HEADER_LIST_SIZE] == 20000
    assert window == 3000000 - 65535
    # and the limits are live: a 32 KiB DATA frame is fine now
    body = b"z" * 32768
    with H2Conn(srv.port) as conn:
        conn.server_settings()
        conn.send(conn.request(1, "/echo", method=b"POST", end_stream=False), DataFrame(1, body, flags=["END_STREAM"]))
        res = conn.response(1)
    assert res["status"] == 200 and res["body"] == body


def test_max_concurrent_streams_enforced(small_server):
    tag = uuid.uuid4().hex[:6]
    with H2Conn(small_server.port) as conn:
        settings, _ = conn.server_settings()
        assert settings[S_MAX_CONCURRENT_STREAMS] == 5
        sids = [1 + 2 * i for i in range(8)]
        conn.send(*[conn.request(sid, f"/slow?delay=1&tag={tag}-{sid}") for sid in sids])
        status, body, refused = {}, {}, []
        deadline = time.monotonic() + 15
        while len(status) + len(refused) < len(sids) or any(s not in body for s in status):
            f = conn.next_frame(max(0.01, deadline - time.monotonic()))
            assert f is not None, "connection closed"
            assert not isinstance(f, GoAwayFrame) or f.error_code == NO_ERROR, f
            if isinstance(f, RstStreamFrame):
                assert f.error_code == REFUSED_STREAM, f
                refused.append(f.stream_id)
            elif isinstance(f, HeadersFrame):
                status[f.stream_id] = dict(f.decoded)[":status"]
            elif isinstance(f, DataFrame) and "END_STREAM" in f.flags:
                body[f.stream_id] = f.data
    assert sorted(refused) == [11, 13, 15], refused
    assert sorted(status) == [1, 3, 5, 7, 9] and set(status.values()) == {"200"}
    assert all(body[s] == f"slept {tag}-{s}".encode() for s in status)


def test_keep_alive_interval_sends_ping(start_server):
    srv = start_server(ROUTER, "--http2-keep-alive-interval", "0.5", "--timeout-keep-alive", "30")
    with H2Conn(srv.port) as conn:
        conn.server_settings()
        t0 = time.monotonic()
        frames = conn.collect(lambda f: isinstance(f, PingFrame) and "ACK" not in f.flags, timeout=5)
        elapsed = time.monotonic() - t0
        assert frames[-1] is not None, "connection closed before a PING"
        assert elapsed < 4.5
        # the ACK was sent automatically; the connection stays usable
        conn.send(conn.request(1, "/fixed?size=2"))
        assert conn.response(1)["body"] == b"xx"


# ============================================================================ 6. timeouts


def test_idle_h2c_connection_gets_goaway_and_is_closed(idle1_server):
    with H2Conn(idle1_server.port) as conn:
        conn.send(conn.request(1, "/fixed?size=1"))
        assert conn.response(1)["status"] == 200
        t0 = time.monotonic()
        frames = conn.until_eof(8)
        elapsed = time.monotonic() - t0
    goaways = [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[-1] == (1, NO_ERROR), frames
    assert 0.5 < elapsed < 4, f"closed after {elapsed:.1f}s with --timeout-keep-alive 1"


def test_idle_h2c_connection_closed_even_if_client_ignores_ping(idle1_server):
    silent = H2Conn(idle1_server.port, ack_pings=False)  # sends preface + SETTINGS, never answers a PING
    bare = H2Conn(idle1_server.port, send_preface=False)
    bare.send_raw(PREFACE)  # the preface only: no SETTINGS
    try:
        t0 = time.monotonic()
        for conn in (silent, bare):
            try:
                frames = conn.until_eof(max(0.1, t0 + 5 - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"still open after 5 s with --timeout-keep-alive 1: {conn.frames}") from None
            assert frames[-1] is None
    finally:
        silent.close()
        bare.close()


@pytest.mark.parametrize(
    "payload",
    [b"", b"PRI * HTTP/2.0\r\n", b"PRI * HTTP/2.0\r\n\r\nSM"],
    ids=["silent", "half-preface", "preface-minus-2"],
)
def test_unfinished_preface_is_closed_after_keep_alive_timeout(idle1_server, payload):
    with RawConn("127.0.0.1", idle1_server.port, timeout=10) as s:
        if payload:
            s.send(payload)
        t0 = time.monotonic()
        data = s.recv(65536)  # b"" at EOF or on a reset
        elapsed = time.monotonic() - t0
    assert data == b"" or not data.startswith(b"\x00"), f"unexpected HTTP/2 frames: {data[:50]!r}"
    assert 0.5 < elapsed < 4, f"closed after {elapsed:.1f}s with --timeout-keep-alive 1"


def test_open_stream_is_not_idle(idle1_server):
    """A stream in flight longer than --timeout-keep-alive is not cut by the idle timeout."""
    with H2Conn(idle1_server.port) as conn:
        conn.send(conn.request(1, "/slow?delay=2.2&tag=notidle"))
        res = conn.response(1, timeout=10)
    assert res["status"] == 200 and res["body"] == b"slept notidle", res


# ============================================================================ 7. graceful shutdown


def test_graceful_shutdown_finishes_inflight_stream_and_refuses_new(start_server):
    srv = start_server(ROUTER)
    tag = uuid.uuid4().hex[:8]
    late = uuid.uuid4().hex[:10]
    with H2Conn(srv.port, timeout=20) as conn:
        conn.server_settings()
        conn.send(conn.request(1, f"/slow?delay=1&tag={tag}"))
        srv.wait_for_line(f"SLOW-STARTED {tag}", timeout=10)
        srv.send_signal(signal.SIGINT)
        late_sent = False
        status = body = None
        rst3 = None
        goaways = []
        deadline = time.monotonic() + 15
        while True:
            f = conn.next_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                break
            if isinstance(f, GoAwayFrame):
                goaways.append((f.last_stream_id, f.error_code))
                if f.last_stream_id != MAX_STREAM_ID and not late_sent:
                    # the final GOAWAY: a stream opened now must not be served
                    late_sent = True
                    try:
                        conn.send(conn.request(3, f"/late-{late}"))
                    except OSError:
                        pass
            elif isinstance(f, HeadersFrame):
                assert f.stream_id == 1, f"stream {f.stream_id} opened after GOAWAY was answered: {f.decoded}"
                status = dict(f.decoded)[":status"]
            elif isinstance(f, DataFrame) and f.stream_id == 1:
                body = (body or b"") + f.data
            elif isinstance(f, RstStreamFrame):
                assert f.stream_id == 3, f
                rst3 = f.error_code
    rc = srv.wait(timeout=15)
    assert goaways, "no GOAWAY before the close"
    assert all(code == NO_ERROR for _, code in goaways), goaways
    assert status == "200" and body == f"slept {tag}".encode()
    assert late_sent, f"no final GOAWAY (last_stream_id < 2^31-1): {goaways}"
    assert goaways[-1][0] == 1 or rst3 == REFUSED_STREAM, goaways
    assert rc == 0
    assert not any(late in line for line in srv.stdout_lines)


def test_graceful_shutdown_httpx_inflight_request_completes(start_server):
    """httpx/h2 fails its in-flight requests on GOAWAY; the server must still let this one finish."""
    srv = start_server(ROUTER)
    tag = uuid.uuid4().hex[:8]
    result = {}

    def run():
        try:
            with h2_client(srv, timeout=20) as c:
                result["r"] = c.get("/slow", params={"delay": 1, "tag": tag})
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    srv.wait_for_line(f"SLOW-STARTED {tag}", timeout=10)
    srv.send_signal(signal.SIGTERM)
    t.join(20)
    rc = srv.wait(timeout=15)
    assert "e" not in result, f"in-flight request failed: {result['e']!r}"
    assert result["r"].status_code == 200 and result["r"].text == f"slept {tag}"
    assert rc == 0


def test_shutdown_with_idle_h2_connection(start_server):
    srv = start_server(ROUTER)
    with H2Conn(srv.port) as conn:
        conn.send(conn.request(1, "/fixed?size=1"))
        assert conn.response(1)["status"] == 200
        t0 = time.monotonic()
        srv.send_signal(signal.SIGINT)
        frames = conn.until_eof(10)
        rc = srv.wait(timeout=10)
    assert any(isinstance(f, GoAwayFrame) for f in frames)
    assert rc == 0 and time.monotonic() - t0 < 8


def test_shutdown_not_blocked_by_client_ignoring_ping(start_server):
    srv = start_server(ROUTER)
    conn = H2Conn(srv.port, ack_pings=False)
    try:
        conn.server_settings()
        srv.send_signal(signal.SIGINT)
        try:
            rc = srv.proc.wait(6)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "server still running 6 s after SIGINT (idle h2 connection, PING unanswered)"
            ) from None
        assert rc == 0
    finally:
        conn.close()
        srv.close(timeout=5)


# ============================================================================ 8. --http h11


def test_http_h11_rejects_the_h2c_preface(start_server):
    srv = start_server(ROUTER, "--http", "h11")
    with RawConn("127.0.0.1", srv.port, timeout=10) as s:
        s.send(PREFACE + SettingsFrame(0).serialize())
        data = s.read_until_eof(stop_on_timeout=True)  # a reset counts as EOF
    assert data == b"" or data.startswith(b"HTTP/1.1 4"), f"unexpected answer: {data[:80]!r}"
    assert not data.startswith(b"\x00"), "HTTP/2 frames with --http h11"
    with h2_client(srv, timeout=10) as c, pytest.raises(httpx.HTTPError):
        c.get("/")
    with srv.client() as c:
        assert c.get("/fixed?size=1").http_version == "HTTP/1.1"


def test_http_h11_with_http2_flag_serves_h2c(start_server):
    srv = start_server(ROUTER, "--http", "h11", "--http2")
    with h2_client(srv) as c:
        r = c.get("/scope")
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert decode_json(r.json())["scope"]["http_version"] == "2"
    with srv.client() as c:
        assert c.get("/fixed?size=1").http_version == "HTTP/1.1"
