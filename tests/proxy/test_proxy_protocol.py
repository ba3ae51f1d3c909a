"""--proxy-protocol: a PROXY protocol header (v1 text, v2 binary) sent first by a trusted load balancer gives the
scope its `client` and `server`; TLS and HTTP follow it on the same connection. A trusted peer without a valid
header, a truncated header (once the keep-alive timeout passes) and a header from an untrusted peer are dropped
with a log line. Every test talks over a raw socket and reads the scope back from the router app's /scope."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time

import pytest
import trustme
from hyperframe.frame import SettingsFrame

from tests.support.h2 import PREFACE, H2Conn
from tests.support.probes import decode_json
from tests.support.raw import RawConn

ROUTER = "tests.apps.router:app"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_TCP4 = b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 443\r\n"


def v2(command: int, family: int, block: bytes = b"") -> bytes:
    """A v2 header: command 0 LOCAL / 1 PROXY, family byte (0x11 TCP4, 0x21 TCP6, 0x00 UNSPEC)."""
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def v2_tcp4(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    block = socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
    return v2(1, 0x11, block + struct.pack("!HH", sport, dport) + tlvs)


def v2_tcp6(src: str, dst: str, sport: int, dport: int) -> bytes:
    block = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    return v2(1, 0x21, block + struct.pack("!HH", sport, dport))


GET_SCOPE = b"GET /scope HTTP/1.1\r\nHost: testserver\r\n\r\n"


def scope_after(srv, header: bytes, *, pieces: int = 1) -> tuple[dict, RawConn]:
    """Send `header` (in `pieces` parts, a moment apart) then a request for /scope; the scope and the connection."""
    conn = RawConn("127.0.0.1", srv.port, timeout=10)
    step = -(-len(header) // pieces)
    for start in range(0, len(header), step):
        conn.send(header[start : start + step])
        if pieces > 1:
            time.sleep(0.05)
    conn.send(GET_SCOPE)
    response = conn.read_response()
    assert response.status == 200, response
    return response.json()["scope"], conn


def dropped(srv, data: bytes, log: str, mark: int) -> None:
    """The server closes the connection without a response and logs `log`."""
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(data)
        assert conn.read_until_eof() == b""
    srv.wait_for_line(log, start=mark)


@pytest.fixture(scope="module")
def v1_server():
    from tests.support.server import ServerProcess

    srv = ServerProcess.ferrocorn(ROUTER, "--proxy-protocol", "v1", "--timeout-keep-alive", "1")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def v2_server():
    from tests.support.server import ServerProcess

    srv = ServerProcess.ferrocorn(ROUTER, "--proxy-protocol", "v2", "--timeout-keep-alive", "1")
    yield srv
    srv.close()


# ----------------------------------------------------------------------------- v1


def test_v1_tcp4_gives_client_and_server(v1_server):
    scope, conn = scope_after(v1_server, V1_TCP4)
    assert scope["client"] == ["203.0.113.7", 51234]
    assert scope["server"] == ["10.0.0.2", 443]
    assert scope["scheme"] == "http"
    # The header comes once per connection: the next request on it keeps the carried addresses.
    conn.send(GET_SCOPE)
    assert conn.read_response().json()["scope"]["client"] == ["203.0.113.7", 51234]
    conn.close()


def test_v1_tcp6(v1_server):
    scope, conn = scope_after(v1_server, b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 8000\r\n")
    conn.close()
    assert scope["client"] == ["2001:db8::7", 65535]
    assert scope["server"] == ["2001:db8::1", 8000]


def test_v1_unknown_keeps_the_real_peer(v1_server):
    scope, conn = scope_after(v1_server, b"PROXY UNKNOWN\r\n")
    local_port = conn.local_port
    conn.close()
    assert scope["client"] == ["127.0.0.1", local_port]
    assert scope["server"] == ["127.0.0.1", v1_server.port]


def test_v1_header_arriving_in_pieces(v1_server):
    scope, conn = scope_after(v1_server, V1_TCP4, pieces=4)
    conn.close()
    assert scope["client"] == ["203.0.113.7", 51234]


def test_v1_header_and_request_in_one_segment(v1_server):
    with RawConn("127.0.0.1", v1_server.port, timeout=10) as conn:
        conn.send(V1_TCP4 + GET_SCOPE)
        assert conn.read_response().json()["scope"]["client"] == ["203.0.113.7", 51234]


@pytest.mark.parametrize(
    "garbage, log",
    [
        (GET_SCOPE, "no PROXY protocol header"),
        (b"PROXY TCP4 203.0.113.7 10.0.0.2 51234\r\n" + GET_SCOPE, "malformed PROXY protocol header"),
        (b"PROXY TCP4 203.0.113.7 10.0.0.2 99999 443\r\n" + GET_SCOPE, "malformed PROXY protocol header"),
        (b"PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n" + GET_SCOPE, "malformed PROXY protocol header"),
        (b"PROXY UNKNOWN " + b"x" * 120, "PROXY protocol v1 header longer than 107 bytes"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + GET_SCOPE, "malformed PROXY protocol header"),
        (v2(0, 0), "PROXY protocol v2 header, which --proxy-protocol does not accept"),
    ],
    ids=["plain-http", "missing-port", "port-range", "family-mismatch", "too-long", "bare-lf", "v2-on-v1"],
)
def test_v1_garbage_is_dropped_with_a_log_line(v1_server, garbage, log):
    dropped(v1_server, garbage, f"dropped: {log}", v1_server.mark())


def test_truncated_header_times_out(v1_server):
    mark = v1_server.mark()
    with RawConn("127.0.0.1", v1_server.port, timeout=10) as conn:
        conn.send(V1_TCP4[:20])
        started = time.monotonic()
        assert conn.read_until_eof() == b""
        waited = time.monotonic() - started
    assert 0.5 < waited < 8, waited  # --timeout-keep-alive 1
    v1_server.wait_for_line("timed out waiting for the PROXY protocol header", start=mark)


def test_peer_closing_mid_header_is_logged(v1_server):
    mark = v1_server.mark()
    with RawConn("127.0.0.1", v1_server.port, timeout=10) as conn:
        conn.send(V1_TCP4[:20])
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.read_until_eof() == b""
    v1_server.wait_for_line("connection closed before the PROXY protocol header ended", start=mark)


def test_server_keeps_serving_after_bad_headers(v1_server):
    for _ in range(3):
        with RawConn("127.0.0.1", v1_server.port, timeout=10) as conn:
            conn.send(b"\x00\xff garbage\r\n\r\n")
            conn.read_until_eof()
    scope, conn = scope_after(v1_server, V1_TCP4)
    conn.close()
    assert scope["client"] == ["203.0.113.7", 51234]


# ----------------------------------------------------------------------------- v2


def test_v2_tcp4(v2_server):
    scope, conn = scope_after(v2_server, v2_tcp4("198.51.100.9", "10.1.2.3", 40000, 8443))
    conn.close()
    assert scope["client"] == ["198.51.100.9", 40000]
    assert scope["server"] == ["10.1.2.3", 8443]


def test_v2_tcp4_with_tlvs_in_pieces(v2_server):
    # AWS NLB sends a PP2_TYPE_AWS TLV (0xEA) with the VPC endpoint id; TLVs are skipped.
    aws = b"\xea" + struct.pack("!H", 23) + b"\x01vpce-0123456789abcdef0"
    tlvs = aws + b"\x04" + struct.pack("!H", 300) + b"a" * 300
    scope, conn = scope_after(v2_server, v2_tcp4("198.51.100.9", "10.1.2.3", 40000, 8443, tlvs), pieces=3)
    conn.close()
    assert scope["client"] == ["198.51.100.9", 40000]


def test_v2_tcp6(v2_server):
    scope, conn = scope_after(v2_server, v2_tcp6("2001:db8::9", "2001:db8::2", 1234, 443))
    conn.close()
    assert scope["client"] == ["2001:db8::9", 1234]
    assert scope["server"] == ["2001:db8::2", 443]


@pytest.mark.parametrize(
    "header",
    [v2(0, 0x00), v2(0, 0x11, b"\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"), v2(1, 0x00)],
    ids=["local", "local-with-addresses", "proxy-unspec"],
)
def test_v2_local_and_unspec_keep_the_real_peer(v2_server, header):
    scope, conn = scope_after(v2_server, header)
    local_port = conn.local_port
    conn.close()
    assert scope["client"] == ["127.0.0.1", local_port]
    assert scope["server"] == ["127.0.0.1", v2_server.port]


@pytest.mark.parametrize(
    "garbage, log",
    [
        (V1_TCP4 + GET_SCOPE, "PROXY protocol v1 header, which --proxy-protocol does not accept"),
        (V2_SIGNATURE[:6] + b"XXXXXX" + b"\x21\x11\x00\x00", "no PROXY protocol header"),
        (v2(1, 0x11, b"\x01" * 11) + GET_SCOPE, "v2 TCP4 address block too short"),
        (V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12, "v2 version nibble is not 2"),
        (V2_SIGNATURE + b"\x2f\x11\x00\x0c" + b"\x00" * 12, "v2 command is not LOCAL or PROXY"),
        (v2(1, 0x51, b"\x00" * 12), "v2 family or protocol unknown"),
    ],
    ids=["v1-on-v2", "bad-signature", "short-block", "version", "command", "family"],
)
def test_v2_garbage_is_dropped_with_a_log_line(v2_server, garbage, log):
    dropped(v2_server, garbage, log, v2_server.mark())


def test_v2_truncated_in_its_address_block_times_out(v2_server):
    mark = v2_server.mark()
    with RawConn("127.0.0.1", v2_server.port, timeout=10) as conn:
        conn.send(v2_tcp4("198.51.100.9", "10.1.2.3", 40000, 8443)[:20])
        assert conn.read_until_eof() == b""
    v2_server.wait_for_line("timed out waiting for the PROXY protocol header", start=mark)


def test_http2_after_a_v2_header(v2_server):
    conn = H2Conn(v2_server.port, send_preface=False)
    try:
        conn.send_raw(v2_tcp4("192.0.2.44", "10.0.0.1", 5555, 443) + PREFACE + SettingsFrame(0).serialize())
        conn.send(conn.request(1, "/scope"))
        response = conn.response(1)
    finally:
        conn.close()
    assert response["status"] == 200
    scope = decode_json(json.loads(response["body"]))["scope"]
    assert scope["http_version"] == "2"
    assert scope["client"] == ["192.0.2.44", 5555]
    assert scope["server"] == ["10.0.0.1", 443]


# ----------------------------------------------------------------------------- auto, trust, TLS, Unix


def test_auto_accepts_both_versions(start_server):
    srv = start_server(ROUTER, "--proxy-protocol", "auto")
    scope, conn = scope_after(srv, V1_TCP4)
    conn.close()
    assert scope["client"] == ["203.0.113.7", 51234]
    scope, conn = scope_after(srv, v2_tcp4("198.51.100.9", "10.1.2.3", 40000, 8443))
    conn.close()
    assert scope["client"] == ["198.51.100.9", 40000]
    dropped(srv, GET_SCOPE, "no PROXY protocol header", 0)


def test_untrusted_peer_sending_a_header_is_dropped(start_server):
    srv = start_server(ROUTER, "--proxy-protocol", "auto", "--forwarded-allow-ips", "10.0.0.0/8")
    dropped(srv, V1_TCP4 + GET_SCOPE, "from a peer not in --forwarded-allow-ips", 0)
    mark = srv.mark()
    dropped(srv, v2_tcp4("198.51.100.9", "10.1.2.3", 40000, 8443), "from a peer not in --forwarded-allow-ips", mark)
    # A prefix of a header trickling in is waited for, then refused too.
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(b"PRO")
        time.sleep(0.2)
        conn.send(b"XY UNKNOWN\r\n")
        assert conn.read_until_eof() == b""
    # A direct client (no header) of an untrusted address is served as itself.
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(GET_SCOPE)
        scope = conn.read_response().json()["scope"]
        assert scope["client"] == ["127.0.0.1", conn.local_port]
    # ... even when its request starts like a header ("PROPFIND").
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(b"PROPFIND /scope HTTP/1.1\r\nHost: testserver\r\n\r\n")
        assert conn.read_response().status == 200


def test_trust_does_not_need_proxy_headers(start_server):
    """--no-proxy-headers turns X-Forwarded-* off; PROXY trust still comes from --forwarded-allow-ips."""
    srv = start_server(ROUTER, "--proxy-protocol", "v1", "--no-proxy-headers")
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(V1_TCP4 + b"GET /scope HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n")
        assert conn.read_response().json()["scope"]["client"] == ["203.0.113.7", 51234]


def test_forwarded_headers_are_trusted_by_the_carried_client(start_server):
    """X-Forwarded-For counts only when the client the PROXY header names is itself a trusted proxy."""
    srv = start_server(ROUTER, "--proxy-protocol", "v1", "--forwarded-allow-ips", "127.0.0.1,10.9.9.9")
    request = b"GET /scope HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n\r\n"
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(V1_TCP4 + request)  # carried client 203.0.113.7: not trusted, its X-Forwarded-* ignored
        scope = conn.read_response().json()["scope"]
        assert (scope["client"], scope["scheme"]) == (["203.0.113.7", 51234], "http")
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(b"PROXY TCP4 10.9.9.9 10.0.0.2 1000 443\r\n" + request)  # a trusted proxy behind the LB
        scope = conn.read_response().json()["scope"]
        assert (scope["client"], scope["scheme"]) == (["192.0.2.1", 0], "https")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    root = tmp_path_factory.mktemp("proxy-tls")
    cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    return str(root / "server.pem"), str(root / "ca.pem")


def test_tls_is_terminated_after_the_header(start_server, tls_files):
    server_pem, ca_pem = tls_files
    srv = start_server(ROUTER, "--proxy-protocol", "v2", "--ssl-certfile", server_pem, "--ssl-keyfile", server_pem)
    context = ssl.create_default_context(cafile=ca_pem)
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    raw.sendall(v2_tcp4("192.0.2.77", "10.0.0.5", 6000, 443))
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(GET_SCOPE)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    scope = decode_json(json.loads(body))["scope"]
    assert scope["scheme"] == "https"
    assert scope["client"] == ["192.0.2.77", 6000]
    assert scope["server"] == ["10.0.0.5", 443]


def test_unix_socket_is_not_affected(start_server, tmp_path):
    path = str(tmp_path / "p.sock")
    srv = start_server(ROUTER, "--uds", path, "--proxy-protocol", "v1", wait=False)
    srv.wait_for_line("running on unix socket")
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(path)
    sock.sendall(b"GET /scope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 200")


def test_off_by_default_a_header_is_not_http(start_server):
    srv = start_server(ROUTER)
    with RawConn("127.0.0.1", srv.port, timeout=10) as conn:
        conn.send(V1_TCP4 + GET_SCOPE)
        assert conn.read_response().status == 400


def test_a_port_probe_is_not_logged(v1_server):
    """A TCP health check (connect, close) is no error worth a line."""
    mark = v1_server.mark()
    socket.create_connection(("127.0.0.1", v1_server.port), timeout=10).close()
    scope, conn = scope_after(v1_server, V1_TCP4)  # a later connection is served: the probe was handled
    conn.close()
    time.sleep(0.2)
    assert not [line for line in v1_server.lines_since(mark) if "dropped" in line]
