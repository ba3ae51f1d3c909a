"""The HTTP connection scope: every key, as uvicorn builds it, plus a fresh ``extensions`` dict."""

import pytest

from tests.support.probes import decode_json
from tests.support.server import ServerProcess

EXPECTED_KEYS = {
    "type",
    "asgi",
    "http_version",
    "server",
    "client",
    "scheme",
    "method",
    "root_path",
    "path",
    "raw_path",
    "query_string",
    "headers",
    "state",
    "extensions",
}


def raw_scope(server, target, headers=(), method="GET", version="1.1", body=b""):
    with server.raw() as conn:
        resp = conn.request(method, target, headers=headers, body=body, version=version)
        assert resp.status == 200, resp
        data = resp.json()
        data["_local_port"] = conn.local_port
        data["scope"]["headers"] = [tuple(h) for h in data["scope"]["headers"]]
        return data


@pytest.fixture(scope="module")
def rooted_server():
    srv = ServerProcess.ferrocorn("tests.apps.router:app", "--root-path", "/mnt")
    yield srv
    srv.close()


def test_every_scope_key(router_server):
    data = raw_scope(router_server, "/scope/a?x=1&y=2", headers=[("X-Custom", "Value")])
    scope, types = data["scope"], data["types"]
    assert set(scope) == EXPECTED_KEYS
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "http"
    assert scope["method"] == "GET"
    assert scope["root_path"] == ""
    assert scope["path"] == "/scope/a"
    assert scope["raw_path"] == b"/scope/a"
    assert scope["query_string"] == b"x=1&y=2"
    assert scope["server"] == ["127.0.0.1", router_server.port]
    assert scope["client"] == ["127.0.0.1", data["_local_port"]]
    assert types["path"] == "str" and types["root_path"] == "str" and types["method"] == "str"
    assert types["raw_path"] == "bytes" and types["query_string"] == "bytes"
    assert types["state"] == "dict" and types["extensions"] == "dict"
    assert types["client"] in ("tuple", "list") and types["server"] in ("tuple", "list")


def test_client_and_server_ports_are_ints(router_server):
    data = raw_scope(router_server, "/scope")
    assert data["client_types"] == ["str", "int"]
    assert data["server_types"] == ["str", "int"]


def test_headers_are_lowercase_bytes_pairs_with_duplicates(router_server):
    data = raw_scope(
        router_server,
        "/scope",
        headers=[
            ("X-First", "1"),
            ("X-Dup", "a"),
            ("Accept", "*/*"),
            ("X-Dup", "b"),
            ("X-Last", "Mixed Case Value"),
        ],
    )
    headers = data["scope"]["headers"]
    assert data["header_types"] == ["bytes,bytes"]
    for name, _ in headers:
        assert name == name.lower()
    assert (b"host", b"testserver") in headers
    assert (b"x-last", b"Mixed Case Value") in headers
    # duplicates are kept, in their order
    assert [v for k, v in headers if k == b"x-dup"] == [b"a", b"b"]
    # distinct names keep their relative order (hyper groups duplicates; see the contract)
    names = [k for k, _ in headers]
    assert names.index(b"host") < names.index(b"x-first") < names.index(b"accept") < names.index(b"x-last")


def test_header_pairs_are_not_tracked_by_the_cyclic_gc(router_server):
    """A (bytes, bytes) pair can be part of no cycle: the core hands it over untracked, so that the
    collections that run while hundreds of HTTP/2 requests are in flight do not walk each pair."""
    data = raw_scope(router_server, "/scope", headers=[("X-A", "1"), ("X-B", "2")])
    assert data["header_item_types"] == ["tuple"]
    assert data["header_pairs_gc_tracked"] == [False]


def test_header_value_bytes_preserved(router_server):
    data = raw_scope(router_server, "/scope", headers=[(b"X-Latin1", b"caf\xe9"), (b"X-Quote", b'"q" ; a=b')])
    headers = data["scope"]["headers"]
    assert (b"x-latin1", b"caf\xe9") in headers
    assert (b"x-quote", b'"q" ; a=b') in headers


def test_header_edge_cases(router_server):
    data = raw_scope(
        router_server,
        "/scope",
        headers=[
            ("X-Empty", ""),
            ("X-Case", "one"),
            ("x-CASE", "two"),
            ("X-Padded", "   padded value\t "),
        ],
    )
    headers = data["scope"]["headers"]
    assert (b"x-empty", b"") in headers
    assert [v for k, v in headers if k == b"x-case"] == [b"one", b"two"]
    # optional whitespace around the value is not part of it (RFC 9110 5.5)
    assert (b"x-padded", b"padded value") in headers


def test_long_request_target(router_server):
    segment = "a" * 4000
    scope = raw_scope(router_server, f"/scope/{segment}?q={segment}")["scope"]
    assert scope["path"] == f"/scope/{segment}"
    assert scope["query_string"] == f"q={segment}".encode()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_method(router_server, method):
    data = raw_scope(router_server, "/scope", method=method, body=b"x" if method in ("POST", "PUT", "PATCH") else b"")
    assert data["scope"]["method"] == method


@pytest.mark.parametrize(
    "target,path,raw_path",
    [
        ("/scope/caf%C3%A9", "/scope/café", b"/scope/caf%C3%A9"),
        ("/scope/a%20b", "/scope/a b", b"/scope/a%20b"),
        ("/scope/%E2%82%AC/%F0%9F%98%80", "/scope/€/😀", b"/scope/%E2%82%AC/%F0%9F%98%80"),
        ("/scope/a%2Fb", "/scope/a/b", b"/scope/a%2Fb"),
        ("/scope/a+b%2B", "/scope/a+b+", b"/scope/a+b%2B"),
        ("/scope/%25", "/scope/%", b"/scope/%25"),
        ("/scope//double//", "/scope//double//", b"/scope//double//"),
        ("/scope/a;b=c,d", "/scope/a;b=c,d", b"/scope/a;b=c,d"),
        ("/scope/%7Euser/%3Fnot-a-query", "/scope/~user/?not-a-query", b"/scope/%7Euser/%3Fnot-a-query"),
    ],
)
def test_path_percent_decoding(router_server, target, path, raw_path):
    scope = raw_scope(router_server, target)["scope"]
    assert scope["path"] == path
    assert scope["raw_path"] == raw_path


def test_path_invalid_utf8_percent_escape_is_replaced(router_server):
    # uvicorn: urllib.parse.unquote(raw_path) -> invalid UTF-8 becomes U+FFFD
    scope = raw_scope(router_server, "/scope/%FF")["scope"]
    assert scope["path"] == "/scope/\ufffd"
    assert scope["raw_path"] == b"/scope/%FF"


@pytest.mark.parametrize(
    "target,query",
    [
        ("/scope?a=%20b&c=d+e&flag", b"a=%20b&c=d+e&flag"),
        ("/scope?x=caf%C3%A9&x=2", b"x=caf%C3%A9&x=2"),
        ("/scope?", b""),
        ("/scope", b""),
        ("/scope?q=a?b/c", b"q=a?b/c"),
    ],
)
def test_query_string_is_raw(router_server, target, query):
    scope = raw_scope(router_server, target)["scope"]
    assert scope["query_string"] == query
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == b"/scope"


def test_raw_path_excludes_query(router_server):
    scope = raw_scope(router_server, "/scope/x%20y?a=%20")["scope"]
    assert scope["raw_path"] == b"/scope/x%20y"
    assert scope["query_string"] == b"a=%20"


def test_root_path_prefixes_path_and_raw_path(rooted_server):
    data = raw_scope(rooted_server, "/scope/x%20y?q=1")
    scope = data["scope"]
    assert scope["root_path"] == "/mnt"
    assert scope["path"] == "/mnt/scope/x y"
    assert scope["raw_path"] == b"/mnt/scope/x%20y"
    assert scope["query_string"] == b"q=1"


def test_http10_version(router_server):
    data = raw_scope(router_server, "/scope", version="1.0")
    assert data["scope"]["http_version"] == "1.0"


def test_scope_via_httpx_post(router_server):
    with router_server.client() as c:
        r = c.post("/scope/p?z=9", content=b"abc", headers={"content-type": "text/plain"})
    assert r.status_code == 200
    scope = decode_json(r.json())["scope"]
    scope["headers"] = [tuple(h) for h in scope["headers"]]
    assert scope["method"] == "POST"
    assert (b"content-length", b"3") in scope["headers"]
    assert (b"content-type", b"text/plain") in scope["headers"]


def test_extensions_is_a_fresh_dict_per_request(router_server):
    with router_server.client() as c:
        first = c.get("/extensions/check").json()
        second = c.get("/extensions/check").json()
    assert first["present"] and first["type"] == "dict"
    assert second["type"] == "dict"
    # the first request added a key to its extensions dict; the next request must not see it
    assert second["leaked_key"] is False
    assert second["same_object_as_earlier_request"] is False


def test_state_is_a_shallow_copy_of_lifespan_state(router_server):
    with router_server.client() as c:
        first = c.get("/state/check").json()
        second = c.get("/state/check").json()
    assert first["present"] and first["type"] == "dict"
    assert first["greeting"] == "hello"  # set by the app's lifespan startup
    # a key added to one request's state does not appear in the next (a copy) ...
    assert second["leaked_key"] is False
    assert second["same_object_as_earlier_request"] is False
    # ... but the values are shared (shallow): the list the first request appended to is the same object
    assert second["shared_list_len"] == first["shared_list_len"] + 1
    assert second["greeting"] == "hello"


def test_lifespan_scope(router_server):
    info = router_server.get("/lifespan-info").json()
    assert info["startup"] is True
    assert info["scope"]["type"] == "lifespan"
    assert info["scope"]["asgi"]["version"] == "3.0"
    assert info["scope"]["asgi"].get("spec_version", "1.0") in ("2.0", "1.0")
    assert info["state_type"] == "dict"
    # lifespan runs on the same event loop as the requests
    assert info["same_loop"] is True
