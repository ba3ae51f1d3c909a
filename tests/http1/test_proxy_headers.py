"""--proxy-headers / --forwarded-allow-ips: X-Forwarded-For and X-Forwarded-Proto from trusted peers
set the scope's client and scheme, with uvicorn's rules. On by default, trusting 127.0.0.1."""

import httpx
import pytest

APP = "tests.apps.sockets_app:app"
FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def scope_of(srv, headers):
    return httpx.get(f"{srv.url}/", headers=headers, timeout=10).json()


def test_trusted_by_default_from_localhost(start_server):
    scope = scope_of(start_server(APP), FORWARDED)
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


def test_no_proxy_headers_ignores_them(start_server):
    scope = scope_of(start_server(APP, "--no-proxy-headers"), FORWARDED)
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] != 0
    assert scope["scheme"] == "http"


def test_untrusted_peer_is_ignored(start_server):
    scope = scope_of(start_server(APP, "--forwarded-allow-ips", "10.0.0.1"), FORWARDED)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


def test_chain_resolves_to_the_first_untrusted_hop(start_server):
    srv = start_server(APP, "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8")
    scope = scope_of(srv, {"X-Forwarded-For": "192.0.2.1, 198.51.100.1, 10.0.0.2"})
    assert scope["client"] == ["198.51.100.1", 0]


def test_star_from_the_environment_trusts_everyone(start_server):
    srv = start_server(APP, env={"FORWARDED_ALLOW_IPS": "*"})
    scope = scope_of(srv, {"X-Forwarded-For": "192.0.2.1, 198.51.100.1", "X-Forwarded-Proto": "wss"})
    assert scope["client"] == ["192.0.2.1", 0]
    assert scope["scheme"] == "wss"


@pytest.mark.parametrize("proto", ["ftp", "HTTPS", ""])
def test_unknown_proto_values_are_ignored(start_server, proto):
    scope = scope_of(start_server(APP), {"X-Forwarded-Proto": proto})
    assert scope["scheme"] == "http"
