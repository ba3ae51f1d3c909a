"""TLS: uvicorn's --ssl-* options served by rustls, the ASGI `tls` extension, ALPN, mTLS and every startup error.

Certificates come from trustme; keys are re-encoded with `cryptography` (a trustme dependency) in each PEM form a
user may have: PKCS#8, PKCS#1 (RSA), SEC1 (EC), each also encrypted.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tests.support.probes import decode_json
from tests.support.server import ServerProcess

ROUTER = "tests.apps.router:app"

# Python's ssl constants, as uvicorn's --ssl-version and --ssl-cert-reqs take them.
TLS_1_2_ONLY = str(int(ssl.PROTOCOL_TLSv1_2))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca, tmp_path_factory):
    """Files for one server certificate (EC and RSA), a client certificate and the CA."""
    root = tmp_path_factory.mktemp("pki")
    files = {}

    def write(name: str, data: bytes) -> str:
        path = root / name
        path.write_bytes(data)
        files[name] = str(path)
        return str(path)

    server = ca.issue_cert("localhost", "127.0.0.1")
    write("cert.pem", b"".join(blob.bytes() for blob in server.cert_chain_pems))
    write("key.pem", server.private_key_pem.bytes())
    write("both.pem", server.private_key_and_cert_chain_pem.bytes())
    write("ca.pem", ca.cert_pem.bytes())

    rsa_ca = trustme.CA(key_type=trustme.KeyType.RSA)
    rsa_server = rsa_ca.issue_cert("localhost", "127.0.0.1")
    write("rsa-cert.pem", b"".join(blob.bytes() for blob in rsa_server.cert_chain_pems))
    write("rsa-ca.pem", rsa_ca.cert_pem.bytes())

    def reencode(leaf, prefix: str, fmt, password: bytes | None) -> None:
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        write(prefix, key.private_bytes(serialization.Encoding.PEM, fmt, encryption))

    reencode(server, "ec-pkcs8.pem", serialization.PrivateFormat.PKCS8, None)
    reencode(server, "ec-sec1.pem", serialization.PrivateFormat.TraditionalOpenSSL, None)
    reencode(server, "ec-pkcs8-enc.pem", serialization.PrivateFormat.PKCS8, b"s3cret")
    reencode(server, "ec-sec1-enc.pem", serialization.PrivateFormat.TraditionalOpenSSL, b"s3cret")
    reencode(rsa_server, "rsa-pkcs8.pem", serialization.PrivateFormat.PKCS8, None)
    reencode(rsa_server, "rsa-pkcs1.pem", serialization.PrivateFormat.TraditionalOpenSSL, None)
    reencode(rsa_server, "rsa-pkcs8-enc.pem", serialization.PrivateFormat.PKCS8, b"s3cret")
    reencode(rsa_server, "rsa-pkcs1-enc.pem", serialization.PrivateFormat.TraditionalOpenSSL, b"s3cret")

    client = ca.issue_cert("client.example", common_name="client.example")
    write("client-cert.pem", b"".join(blob.bytes() for blob in client.cert_chain_pems))
    write("client-key.pem", client.private_key_pem.bytes())
    other_ca = trustme.CA()
    stranger = other_ca.issue_cert("stranger.example", common_name="stranger.example")
    write("stranger-cert.pem", stranger.cert_chain_pems[0].bytes())
    write("stranger-key.pem", stranger.private_key_pem.bytes())
    write("garbage.pem", b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    write("empty.pem", b"")
    files["server_cert_pem"] = server.cert_chain_pems[0].bytes().decode()
    return files


def tls_args(pki, cert: str = "cert.pem", key: str = "key.pem") -> list[str]:
    return ["--ssl-certfile", pki[cert], "--ssl-keyfile", pki[key]]


def client(pki, ca: str = "ca.pem", **kwargs) -> httpx.Client:
    context = ssl.create_default_context(cafile=pki[ca])
    cert = kwargs.pop("cert", None)
    if cert:
        context.load_cert_chain(*cert)
    tls12 = kwargs.pop("tls12", False)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return httpx.Client(verify=context, trust_env=False, timeout=15, **kwargs)


def scope_over_tls(srv, pki, **kwargs) -> dict:
    with client(pki, **kwargs) as c:
        response = c.get(f"{srv.url}/scope")
    assert response.status_code == 200
    return decode_json(json.loads(response.content))["scope"]


@pytest.fixture(scope="module")
def tls_server(pki):
    srv = ServerProcess.ferrocorn(ROUTER, *tls_args(pki))
    yield srv
    srv.close()


# --------------------------------------------------------------------------- serving


def test_https_get_and_running_line(tls_server):
    assert tls_server.url.startswith("https://")
    assert tls_server.has_line(f"Ferrocorn running on https://127.0.0.1:{tls_server.port} (Press CTRL+C to quit)")


def test_scope_scheme_and_tls_extension(tls_server, pki):
    scope = scope_over_tls(tls_server, pki)
    assert scope["scheme"] == "https"
    tls = scope["extensions"]["tls"]
    assert tls["server_cert"].strip() == pki["server_cert_pem"].strip()
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)


@pytest.mark.parametrize("mtls", [False, True], ids=["server-only", "mutual"])
def test_tls_extension_is_fresh_for_each_request_on_a_connection(start_server, pki, mtls):
    """The core builds the extension once per connection and copies it: what one request's app changes in its
    dict and list is not what the next request on the same connection is given."""
    extra = ("--ssl-ca-certs", pki["ca.pem"], "--ssl-cert-reqs", "2") if mtls else ()
    srv = start_server(ROUTER, *tls_args(pki), *extra)
    cert = (pki["client-cert.pem"], pki["client-key.pem"]) if mtls else None
    with client(pki, cert=cert) as c:
        scopes = [decode_json(json.loads(c.get(f"{srv.url}/scope?tamper=1").content))["scope"] for _ in range(3)]
    assert len({tuple(scope["client"]) for scope in scopes}) == 1, "the requests did not share a connection"
    first = scopes[0]["extensions"]["tls"]
    assert "tampered" not in first and "tampered" not in first["client_cert_chain"]
    assert bool(first["client_cert_chain"]) == mtls
    for later in scopes[1:]:
        assert later["extensions"]["tls"] == first, "a request saw what an earlier one on its connection changed"


def test_plaintext_scope_has_no_tls_extension(router_server):
    scope = decode_json(json.loads(router_server.get("/scope").content))["scope"]
    assert "tls" not in scope["extensions"]
    assert scope["scheme"] == "http"


def test_alpn_offers_h2_and_http11(tls_server, pki):
    with client(pki, http2=True) as c:
        response = c.get(f"{tls_server.url}/")
        assert response.http_version == "HTTP/2"
        assert json.loads(c.get(f"{tls_server.url}/scope").content)["scope"]["http_version"] == "2"
    with client(pki) as c:
        assert c.get(f"{tls_server.url}/").http_version == "HTTP/1.1"
    # A client that offers no ALPN at all gets HTTP/1.1.
    context = ssl.create_default_context(cafile=pki["ca.pem"])
    with tls_server.raw(timeout=10, tls=context, server_hostname="localhost") as tls:
        assert tls.sock.selected_alpn_protocol() is None
        tls.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert tls.recv(12) == b"HTTP/1.1 200"


def test_curl_http2_over_tls(tls_server, pki):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl not installed")
    result = subprocess.run(
        [
            curl,
            "-sS",
            "--http2",
            "--cacert",
            pki["ca.pem"],
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
            f"{tls_server.url}/",
        ],
        capture_output=True,
        timeout=20,
        check=True,
    )
    body, _, status_line = result.stdout.rpartition(b"\n")
    assert (status_line, body) == (b"2 200", b"ok"), result


def test_tls_1_2_client_and_cipher_reported(tls_server, pki):
    scope = scope_over_tls(tls_server, pki, tls12=True)
    assert scope["extensions"]["tls"]["tls_version"] == 0x0303
    # ECDHE-ECDSA suites (the test certificate is EC): AES-128/256-GCM or CHACHA20.
    assert scope["extensions"]["tls"]["cipher_suite"] in (0xC02B, 0xC02C, 0xCCA9)


def test_large_bodies_over_tls(tls_server, pki):
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB
    with client(pki, http2=True) as c:
        response = c.post(f"{tls_server.url}/echo", content=payload)
    assert response.status_code == 200
    assert response.content == payload


def test_plain_http_to_the_tls_port_is_refused_cleanly(tls_server, pki):
    with tls_server.raw(timeout=10) as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = raw.recv(100)  # b"" at EOF or on a reset
        assert not data.startswith(b"HTTP/1.1 200")
    with client(pki) as c:
        assert c.get(f"{tls_server.url}/").status_code == 200


@pytest.mark.parametrize(
    "cert,key,password",
    [
        ("cert.pem", "ec-pkcs8.pem", None),
        ("cert.pem", "ec-sec1.pem", None),
        ("cert.pem", "ec-pkcs8-enc.pem", "s3cret"),
        ("cert.pem", "ec-sec1-enc.pem", "s3cret"),
        ("rsa-cert.pem", "rsa-pkcs8.pem", None),
        ("rsa-cert.pem", "rsa-pkcs1.pem", None),
        ("rsa-cert.pem", "rsa-pkcs8-enc.pem", "s3cret"),
        ("rsa-cert.pem", "rsa-pkcs1-enc.pem", "s3cret"),
    ],
)
def test_key_formats(start_server, pki, cert, key, password):
    args = tls_args(pki, cert, key)
    if password:
        args += ["--ssl-keyfile-password", password]
    srv = start_server(ROUTER, *args)
    ca = "rsa-ca.pem" if cert.startswith("rsa") else "ca.pem"
    with client(pki, ca=ca) as c:
        assert c.get(f"{srv.url}/").status_code == 200


def test_key_inside_the_certfile(start_server, pki):
    srv = start_server(ROUTER, "--ssl-certfile", pki["both.pem"])
    with client(pki) as c:
        assert c.get(f"{srv.url}/").status_code == 200


def test_ciphers_restrict_tls_1_2(start_server, pki):
    srv = start_server(
        ROUTER, *tls_args(pki), "--ssl-version", TLS_1_2_ONLY, "--ssl-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"
    )
    scope = scope_over_tls(srv, pki)
    assert scope["extensions"]["tls"]["tls_version"] == 0x0303
    assert scope["extensions"]["tls"]["cipher_suite"] == 0xC02C
    # A client limited to another suite cannot connect.
    context = ssl.create_default_context(cafile=pki["ca.pem"])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/", verify=context, trust_env=False)


def test_openssl_suites_rustls_lacks_are_skipped_with_a_warning(start_server, pki):
    ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256"
    srv = start_server(ROUTER, *tls_args(pki), "--ssl-ciphers", ciphers)
    assert srv.has_line("--ssl-ciphers: 'DHE-RSA-AES128-GCM-SHA256' is not offered by rustls and was skipped")
    with client(pki) as c:
        assert c.get(f"{srv.url}/").status_code == 200


# --------------------------------------------------------------------------- mutual TLS


def test_mtls_required(start_server, pki):
    srv = start_server(ROUTER, *tls_args(pki), "--ssl-ca-certs", pki["ca.pem"], "--ssl-cert-reqs", "2")
    scope = scope_over_tls(srv, pki, cert=(pki["client-cert.pem"], pki["client-key.pem"]))
    tls = scope["extensions"]["tls"]
    assert len(tls["client_cert_chain"]) >= 1
    assert tls["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert "CN=client.example" in tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    # Without a certificate, or with one from an unknown CA: refused during the handshake.
    for cert in (None, (pki["stranger-cert.pem"], pki["stranger-key.pem"])):
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            with client(pki, cert=cert) as c:
                c.get(f"{srv.url}/")
    with client(pki, cert=(pki["client-cert.pem"], pki["client-key.pem"])) as c:
        assert c.get(f"{srv.url}/").status_code == 200


def test_mtls_optional(start_server, pki):
    srv = start_server(ROUTER, *tls_args(pki), "--ssl-ca-certs", pki["ca.pem"], "--ssl-cert-reqs", "1")
    assert scope_over_tls(srv, pki)["extensions"]["tls"]["client_cert_chain"] == []
    with_cert = scope_over_tls(srv, pki, cert=(pki["client-cert.pem"], pki["client-key.pem"]))
    assert "CN=client.example" in with_cert["extensions"]["tls"]["client_cert_name"]


def test_ca_certs_without_cert_reqs_asks_for_no_certificate(start_server, pki):
    srv = start_server(ROUTER, *tls_args(pki), "--ssl-ca-certs", pki["ca.pem"])
    assert scope_over_tls(srv, pki)["extensions"]["tls"]["client_cert_chain"] == []


# --------------------------------------------------------------------------- startup errors


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ssl-certfile", "/nonexistent/cert.pem", "--ssl-keyfile", "key.pem"], "cannot read /nonexistent/cert.pem"),
        (["--ssl-certfile", "garbage.pem", "--ssl-keyfile", "key.pem"], "is not a PEM file"),
        (["--ssl-certfile", "empty.pem", "--ssl-keyfile", "key.pem"], "no certificate found in"),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "cert.pem"], "no private key found in"),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "stranger-key.pem"], "does not match the certificate"),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "ec-pkcs8-enc.pem"], "pass --ssl-keyfile-password"),
        (
            ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "ec-pkcs8-enc.pem", "--ssl-keyfile-password", "nope"],
            "wrong --ssl-keyfile-password",
        ),
        (
            ["--ssl-certfile", "rsa-cert.pem", "--ssl-keyfile", "rsa-pkcs1-enc.pem", "--ssl-keyfile-password", "no"],
            "wrong --ssl-keyfile-password",
        ),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem", "--ssl-ciphers", "BOGUS-CIPHER"], "unknown cipher"),
        (
            ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem", "--ssl-ciphers", "DHE-RSA-AES128-GCM-SHA256"],
            "selects no cipher suite",
        ),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem", "--ssl-cert-reqs", "2"], "needs --ssl-ca-certs"),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem", "--ssl-cert-reqs", "7"], "invalid --ssl-cert-reqs"),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem", "--ssl-version", "3"], "unsupported --ssl-version"),
        (
            ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem"]
            + ["--ssl-ca-certs", "garbage.pem", "--ssl-cert-reqs", "2"],
            "is not a PEM file",
        ),
        (["--ssl-keyfile", "key.pem"], "--ssl-keyfile needs --ssl-certfile"),
    ],
)
def test_startup_errors_are_one_line_and_exit_3(start_server, pki, args, message):
    args = [pki.get(arg, arg) for arg in args]
    srv = start_server(ROUTER, *args, wait=False)
    assert srv.wait(timeout=20) == 3
    errors = [line for line in srv.stderr_lines if line and line.startswith("ERROR:")]
    assert len(errors) == 1, srv.stderr_lines
    assert "Invalid TLS configuration" in errors[0] or "--ssl-keyfile needs" in errors[0]
    assert message in errors[0]
    assert not any("Traceback" in (line or "") for line in srv.stderr_lines)


# --------------------------------------------------------------------------- timeouts and shutdown


def test_handshake_timeout_closes_silent_and_trickling_clients(start_server, pki):
    srv = start_server(ROUTER, *tls_args(pki), "--timeout-tls-handshake", "1")
    for opening in (b"", b"\x16\x03\x01\x00"):  # nothing, or the start of a ClientHello
        with srv.raw(timeout=10) as raw:
            raw.send(opening)
            started = time.monotonic()
            assert raw.recv(100) == b""  # EOF, or a reset
            assert time.monotonic() - started < 5
    with client(pki) as c:
        assert c.get(f"{srv.url}/").status_code == 200


def test_graceful_shutdown_over_tls(start_server, pki):
    import threading

    srv = start_server(ROUTER, *tls_args(pki))
    results = []

    def slow_request():
        try:
            with client(pki, http2=True) as c:
                results.append(c.get(f"{srv.url}/slow", params={"delay": "1", "tag": "tls-drain"}))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    thread = threading.Thread(target=slow_request)
    thread.start()
    srv.wait_for_line("SLOW-STARTED tls-drain", timeout=10)
    assert srv.stop(timeout=15) == 0
    thread.join(10)
    assert len(results) == 1
    assert not isinstance(results[0], Exception), repr(results[0])
    assert results[0].status_code == 200
