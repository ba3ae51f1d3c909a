"""Client disconnects: what the app sees from receive() and send(), and what the server logs."""

import re
import time
import uuid

import pytest

from tests.support.probes import probe_result
from tests.support.raw import build_request

ERROR_LINE = re.compile(r"^(ERROR|CRITICAL):|Traceback \(most recent call last\)|Exception in ASGI application")


def _new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex}"


def _no_errors_logged_since(server, mark, grace=0.5):
    """Sync with the server's log through a marker line, then check no error was logged since ``mark``."""
    time.sleep(grace)
    marker = f"LOG-MARKER-{uuid.uuid4().hex}"
    server.get("/log-marker", params={"m": marker})
    server.wait_for_line(marker, start=mark)
    bad = [line for line in server.lines_since(mark) if ERROR_LINE.search(line)]
    assert not bad, "server logged an error:\n" + "\n".join(server.lines_since(mark))


def test_disconnect_mid_request_body(router_server):
    pid = _new_id("mid-req")
    with router_server.raw() as conn:
        conn.send(
            build_request(
                "POST",
                f"/probe/receive-disconnect?id={pid}",
                headers=[("Content-Length", "100000")],
                content_length=False,
            )
            + b"x" * 1000
        )
        # wait until the app has the first part of the body, then go away
        # the body is streamed: the first part reaches the app before the rest is sent
        probe_result(router_server, pid, key="messages")
    result = probe_result(router_server, pid)
    assert not result.get("timeout"), f"receive() never returned http.disconnect: {result}"
    msgs = result["messages"]
    assert msgs[-1]["type"] == "http.disconnect"
    requests = [m for m in msgs if m["type"] == "http.request"]
    assert requests and all(m["more_body"] for m in requests), msgs
    assert sum(m["len"] for m in requests) <= 1000


def test_disconnect_while_app_waits_in_receive_then_send_raises(router_server):
    """GET, app reads the (empty) body then waits in receive(): the client closing must wake it with
    http.disconnect, and a later send() must raise ferrocorn.ClientDisconnected (an OSError subclass)."""
    pid = _new_id("wait-disc")
    mark = router_server.mark()
    with router_server.raw() as conn:
        conn.send(build_request("GET", f"/probe/wait-disconnect?id={pid}"))
        probe_result(router_server, pid, key="waiting")
    result = probe_result(router_server, pid)
    assert result["first"] == "http.request"
    assert result["second"] == "http.disconnect"
    send = result["send"]
    assert send["raised"] is not None, "send() after the client disconnected did not raise"
    assert send["is_oserror"], send
    assert send["is_client_disconnected"], send
    _no_errors_logged_since(router_server, mark)


@pytest.mark.parametrize("reraise", ["0", "1"])
def test_disconnect_mid_response_send_raises_oserror(router_server, reraise):
    pid = _new_id(f"mid-resp-{reraise}")
    mark = router_server.mark()
    with router_server.raw(timeout=10) as conn:
        conn.send(build_request("GET", f"/probe/stream-until-error?id={pid}&reraise={reraise}"))
        got = 0
        while got < 256 * 1024:
            data = conn.recv(65536)
            assert data, "server closed the stream early"
            got += len(data)
    result = probe_result(router_server, pid, timeout=20)
    send = result["send"]
    assert send.get("gave_up") is None, f"send() never raised after the client went away: {result}"
    assert send["is_oserror"], send
    assert send["is_client_disconnected"], send
    # the exception (caught by the app, or propagating out of it) is never logged as an error
    _no_errors_logged_since(router_server, mark)
    with router_server.raw() as conn:
        assert conn.request("GET", "/fixed?size=1").status == 200


def test_receive_after_response_complete_returns_disconnect(router_server):
    pid = _new_id("after")
    with router_server.raw() as conn:
        r = conn.request("POST", f"/probe/after-complete?id={pid}", body=b"abc")
        assert r.status == 200 and r.body == b"done"
        # keep the connection open: http.disconnect must come because the response is complete
        result = probe_result(router_server, pid)
        assert result["after"] == "http.disconnect"
        # and the kept-alive connection still works
        assert conn.request("GET", "/fixed?size=2").body == b"xx"


def test_client_gone_before_slow_app_responds_is_not_an_error(router_server):
    """The app's send() raises ClientDisconnected after the client left and the exception propagates out of
    the app: the server must treat it as a normal end, not log an error, and keep serving."""
    tag = uuid.uuid4().hex[:8]
    mark = router_server.mark()
    for i in range(10):
        with router_server.raw() as conn:
            conn.send(build_request("GET", f"/slow?delay=0.2&tag={tag}-{i}&id={tag}-{i}"))
            probe_result(router_server, f"{tag}-{i}", key="started")  # the app has it; now leave
    for i in range(10):
        router_server.wait_for_line(f"SLOW-FINISHED {tag}-{i}", start=mark)
    _no_errors_logged_since(router_server, mark)
    with router_server.client() as c:
        assert c.get("/fixed?size=3").text == "xxx"


def test_closing_empty_body_after_full_content_length_does_not_raise(router_server):
    """The app sends all Content-Length bytes with more_body=True, then the closing empty body message
    (Starlette's BaseHTTPMiddleware and StreamingResponse always end this way). The response is complete on
    the wire, so a client may close at once; the closing message has nothing to write and must not raise,
    or everything the app does afterwards (BackgroundTasks) is lost. uvicorn accepts it."""
    pid = _new_id("final-empty")
    with router_server.raw() as conn:
        r = conn.request("GET", f"/probe/final-empty-body?id={pid}&delay=0.2")
        assert r.status == 200 and r.body == b"ok"
    result = probe_result(router_server, pid)
    assert result["send"]["raised"] is None, result["send"]


def test_request_is_served_even_if_client_closes_right_after_sending_it(router_server):
    """A complete request followed at once by the client closing its socket (fire-and-forget clients, beacons,
    webhooks that do not wait) must still reach the app: uvicorn runs every one of them. The app then sees
    http.disconnect / ClientDisconnected; dropping the request unseen loses its side effects."""
    tag = uuid.uuid4().hex[:8]
    n = 50
    for i in range(n):
        with router_server.raw() as conn:
            conn.send(build_request("GET", f"/slow?delay=0.01&tag={tag}-{i}&id={tag}-{i}"))
    missing = []
    for i in range(n):
        try:
            probe_result(router_server, f"{tag}-{i}", key="started", timeout=3 if not missing else 0.1)
        except AssertionError:
            missing.append(i)
    assert not missing, f"{len(missing)} of {n} complete requests never reached the app"
