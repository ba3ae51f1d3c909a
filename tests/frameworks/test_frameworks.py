"""FastAPI and Starlette apps served for real."""

import hashlib
import time
import uuid

import pytest

from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def fastapi_server():
    srv = ServerProcess.ferrocorn("tests.apps.fastapi_app:app")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def starlette_server():
    srv = ServerProcess.ferrocorn("tests.apps.starlette_app:app")
    yield srv
    srv.close()


def _background_runs_every_time(server, method, path, log_path, n=20):
    """n requests, each on a fresh connection that the client closes as soon as it has the response (as
    most clients do); every background task must run."""
    tags = [uuid.uuid4().hex for _ in range(n)]
    for tag in tags:
        with server.client() as c:
            r = c.request(method, path, params={"tag": tag})
            assert r.status_code == 200
    deadline = time.monotonic() + 5
    while True:
        log = server.get(log_path).json()["log"]
        missing = [t for t in tags if t not in log]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not missing, f"{len(missing)} of {n} background tasks never ran"


# ---------------------------------------------------------------------------------------------- FastAPI


def test_fastapi_root(fastapi_server):
    r = fastapi_server.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"hello": "fastapi"}


def test_fastapi_path_and_query_params(fastapi_server):
    assert fastapi_server.get("/items/42", params={"q": "x y"}).json() == {"item_id": 42, "q": "x y"}
    assert fastapi_server.get("/items/7").json() == {"item_id": 7, "q": None}


def test_fastapi_validation_and_http_errors(fastapi_server):
    r = fastapi_server.get("/items/not-an-int")
    assert r.status_code == 422
    r = fastapi_server.get("/items/404")
    assert r.status_code == 404 and r.json() == {"detail": "Item not found"}
    assert fastapi_server.get("/no/such/route").status_code == 404


def test_fastapi_json_body_model(fastapi_server):
    with fastapi_server.client() as c:
        r = c.post("/items", json={"name": "widget", "price": 2.5, "tags": ["a", "b"]})
        assert r.status_code == 201
        assert r.json() == {"created": {"name": "widget", "price": 2.5, "tags": ["a", "b"]}, "total": 5.0}
        bad = c.post("/items", json={"name": "widget"})
        assert bad.status_code == 422


def test_fastapi_dependencies_and_sync_endpoint(fastapi_server):
    assert fastapi_server.get("/deps", params={"q": "z", "limit": 3}).json() == {"q": "z", "limit": 3}
    assert fastapi_server.get("/sync").json() == {"sync": True}


def test_fastapi_streaming_response(fastapi_server):
    with fastapi_server.client() as c:
        with c.stream("GET", "/stream", params={"n": 20}) as r:
            assert r.status_code == 200
            body = b"".join(r.iter_bytes())
    assert body == b"".join(f"line {i}\n".encode() for i in range(20))


def test_fastapi_background_tasks(fastapi_server):
    tag = uuid.uuid4().hex
    with fastapi_server.client() as c:
        r = c.post("/background", params={"tag": tag})
    assert r.json() == {"scheduled": tag}
    assert r.headers["x-middleware"] == "fastapi"
    _background_runs_every_time(fastapi_server, "POST", "/background", "/background/log")


def test_fastapi_request_body_raw_and_streamed(fastapi_server):
    body = bytes(range(256)) * 4096  # 1 MiB
    with fastapi_server.client() as c:
        r = c.post("/raw", content=body)
        assert r.json() == {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        r = c.post("/stream-upload", content=(body for _ in range(4)))
        assert r.json() == {"len": 4 * len(body)}


def test_fastapi_lifespan_state(fastapi_server):
    a = fastapi_server.get("/state").json()
    b = fastapi_server.get("/state").json()
    assert a["started_by"] == "fastapi-lifespan"
    assert b["counter"] == a["counter"] + 1  # shallow copy: the list is shared


def test_fastapi_request_info(fastapi_server):
    info = fastapi_server.get("/request-info").json()
    assert info["url"] == f"http://127.0.0.1:{fastapi_server.port}/request-info"
    assert info["client_host"] == "127.0.0.1"
    assert info["root_path"] == ""


def test_fastapi_openapi_and_docs(fastapi_server):
    r = fastapi_server.get("/openapi.json")
    assert r.status_code == 200
    assert "/items/{item_id}" in r.json()["paths"]
    assert fastapi_server.get("/docs").status_code == 200


def test_fastapi_root_path(start_server):
    srv = start_server("tests.apps.fastapi_app:app", "--root-path", "/api")
    info = srv.get("/request-info").json()
    assert info["root_path"] == "/api"
    assert info["url"] == f"http://127.0.0.1:{srv.port}/api/request-info"
    assert srv.get("/items/3").json() == {"item_id": 3, "q": None}
    assert srv.get("/openapi.json").json()["servers"] == [{"url": "/api"}]


# ---------------------------------------------------------------------------------------------- Starlette


def test_starlette_homepage_and_middleware(starlette_server):
    r = starlette_server.get("/")
    assert r.text == "hello starlette"
    assert r.headers["x-middleware"] == "yes"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


def test_starlette_path_convertor_and_query(starlette_server):
    r = starlette_server.get("/users/12", params={"a": "1", "b": "two words"})
    assert r.json() == {"user_id": 12, "type": "int", "query": {"a": "1", "b": "two words"}}
    assert starlette_server.get("/users/abc").status_code == 404


def test_starlette_json_body(starlette_server):
    with starlette_server.client() as c:
        r = c.post("/json", json={"x": [1, 2, {"y": "é"}]})
    assert r.json() == {"received": {"x": [1, 2, {"y": "é"}]}}


def test_starlette_streaming_response(starlette_server):
    with starlette_server.client() as c:
        with c.stream("GET", "/stream", params={"n": 10}) as r:
            assert r.headers.get("transfer-encoding") == "chunked"
            body = r.read()
    assert body == b"".join(f"chunk{i};".encode() for i in range(10))


def test_starlette_streamed_upload(starlette_server):
    chunk = b"z" * 65536
    with starlette_server.client() as c:
        r = c.post("/upload", content=(chunk for _ in range(64)))
    assert r.json()["len"] == 64 * 65536


def test_starlette_background_task(starlette_server):
    assert starlette_server.get("/background", params={"tag": "first"}).text == "ok"
    _background_runs_every_time(starlette_server, "GET", "/background", "/background/log")


def test_starlette_lifespan_state(starlette_server):
    assert starlette_server.get("/state").json() == {"greeting": "hi from starlette lifespan"}


def test_starlette_mount_and_url_for(starlette_server):
    r = starlette_server.get("/sub/")
    assert r.json() == {"mounted": True, "path": "/sub/", "url_for": f"http://127.0.0.1:{starlette_server.port}/sub/"}


def test_starlette_multiple_set_cookie(starlette_server):
    r = starlette_server.get("/cookies")
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/; SameSite=lax", "b=2; Path=/; SameSite=lax"]


def test_starlette_head_and_405(starlette_server):
    with starlette_server.client() as c:
        h = c.head("/")
        assert h.status_code == 200 and h.content == b""
        assert c.post("/").status_code == 405
