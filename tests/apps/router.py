"""A plain ASGI 3 app that dispatches on the path. One server running it serves most of the suite.

Results that cannot travel in the response itself (what ``receive()`` returned after a disconnect, what
``send()`` raised) are stored in PROBES under a client-chosen id and read back with ``GET /probe/result?id=``.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hashlib
import json
import sys
import threading
import time
import urllib.parse

try:  # the server's disconnect exception (an OSError subclass)
    from ferrocorn import ClientDisconnected  # type: ignore
except Exception:  # pragma: no cover - reported by the tests that need it
    ClientDisconnected = None

PROBES: dict = {}
EVENTS: dict = {}
KEPT_EXTENSIONS: list = []
KEPT_STATES: list = []
BARRIERS: dict = {}
BACKGROUND: set = set()
INFLIGHT = {"slow": 0, "slow_started": 0, "slow_finished": 0}
LIFESPAN: dict = {"loop": None, "scope": None, "startup": False}

request_var: contextvars.ContextVar = contextvars.ContextVar("request_var", default="unset")
EAGER_VAR: contextvars.ContextVar = contextvars.ContextVar("eager_var")

CHUNK_64K = bytes(range(256)) * 256


# ----------------------------------------------------------------------------- helpers


def jsonable(o):
    if isinstance(o, (bytes, bytearray)):
        return {"__bytes__": bytes(o).decode("latin-1")}
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if o is None or isinstance(o, (str, int, float, bool)):
        return o
    return {"__repr__": repr(o)}


def type_name(o) -> str:
    return type(o).__name__


def exc_info(e: BaseException) -> dict:
    return {
        "raised": type(e).__name__,
        "module": type(e).__module__,
        "mro": [c.__name__ for c in type(e).__mro__],
        "is_oserror": isinstance(e, OSError),
        "is_client_disconnected": ClientDisconnected is not None and isinstance(e, ClientDisconnected),
        "message": str(e),
    }


def probe(scope_query: dict) -> dict:
    pid = scope_query.get("id", "default")
    return PROBES.setdefault(pid, {"id": pid})


def event(name: str) -> asyncio.Event:
    ev = EVENTS.get(name)
    if ev is None:
        ev = EVENTS[name] = asyncio.Event()
    return ev


async def start(send, status=200, headers=None, content_type=b"text/plain; charset=utf-8", length=None):
    hdrs = [(b"content-type", content_type)]
    if length is not None:
        hdrs.append((b"content-length", str(length).encode()))
    hdrs += list(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": hdrs})


async def respond(send, body: bytes = b"", status=200, headers=None, content_type=b"text/plain; charset=utf-8"):
    await start(send, status, headers, content_type, length=len(body))
    await send({"type": "http.response.body", "body": body})


async def respond_json(send, obj, status=200, headers=None):
    await respond(send, json.dumps(jsonable(obj)).encode(), status, headers, b"application/json")


async def read_body(receive) -> bytes:
    parts = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending the body")
        parts.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(parts)


def route_path(scope) -> str:
    """Path relative to root_path, as Starlette computes it (uvicorn semantics: path includes root_path)."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        rest = path[len(root) :]
        if rest == "" or rest.startswith("/"):
            return rest or "/"
    return path


# ----------------------------------------------------------------------------- lifespan


async def lifespan(scope, receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            LIFESPAN["loop"] = asyncio.get_running_loop()
            LIFESPAN["scope"] = {k: v for k, v in scope.items() if k != "state"}
            LIFESPAN["state_type"] = type_name(scope.get("state"))
            if isinstance(scope.get("state"), dict):
                scope["state"]["greeting"] = "hello"
                scope["state"]["shared_list"] = []
            LIFESPAN["startup"] = True
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            print("ROUTER-LIFESPAN-SHUTDOWN", file=sys.stderr, flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


# ----------------------------------------------------------------------------- endpoints


async def ep_scope(scope, receive, send, q):
    out = {
        "scope": {k: v for k, v in scope.items()},
        "types": {k: type_name(v) for k, v in scope.items()},
        "client_types": [type_name(x) for x in scope["client"]] if scope.get("client") is not None else None,
        "server_types": [type_name(x) for x in scope["server"]] if scope.get("server") is not None else None,
        "header_types": sorted({f"{type_name(k)},{type_name(v)}" for k, v in scope.get("headers", [])}),
        "header_item_types": sorted({type_name(h) for h in scope.get("headers", [])}),
        "header_pairs_gc_tracked": sorted({gc.is_tracked(h) for h in scope.get("headers", [])}),
    }
    await respond_json(send, out)
    if "tamper" in q:
        # After answering: the next request on this connection must get its own, untouched objects.
        for extension in scope["extensions"].values():
            extension["tampered"] = True
            for value in extension.values():
                if isinstance(value, list):
                    value.append("tampered")


async def ep_echo(scope, receive, send, q):
    body = await read_body(receive)
    await respond(send, body, content_type=b"application/octet-stream")


async def ep_upload(scope, receive, send, q):
    """Stream the request body: count and hash it without keeping it."""
    p = probe(q) if "id" in q else None
    if "wait" in q:
        if p is not None:
            p["waiting"] = True
        await asyncio.wait_for(event(q["wait"]).wait(), 30)
    h = hashlib.sha256()
    n = messages = biggest = 0
    types = set()
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if p is not None:
                p.update(disconnected=True, received=n, done=True)
            return
        body = msg.get("body", b"")
        types.add(f"{msg['type']}:{type_name(body)}:{type_name(msg.get('more_body'))}")
        h.update(body)
        n += len(body)
        messages += 1
        biggest = max(biggest, len(body))
        if p is not None:
            p["received"] = n
        if not msg.get("more_body", False):
            break
    result = {
        "length": n,
        "sha256": h.hexdigest(),
        "messages": messages,
        "biggest_message": biggest,
        "message_types": sorted(types),
    }
    if p is not None:
        p.update(result, done=True)
    await respond_json(send, result)


async def ep_download(scope, receive, send, q):
    """Stream N MiB of CHUNK_64K pattern (chunked unless cl=1)."""
    mib = float(q.get("mib", "1"))
    total = int(mib * 1024 * 1024)
    p = probe(q) if "id" in q else None
    headers = []
    if q.get("cl") == "1":
        headers.append((b"content-length", str(total).encode()))
    await start(send, 200, headers, b"application/octet-stream")
    sent = 0
    while sent < total:
        chunk = CHUNK_64K[: min(len(CHUNK_64K), total - sent)]
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += len(chunk)
        if p is not None:
            p["sent"] = sent
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    if p is not None:
        p["done"] = True


async def ep_fixed(scope, receive, send, q):
    size = int(q.get("size", "5"))
    await respond(send, b"x" * size)


async def ep_many_chunks(scope, receive, send, q):
    n, size = int(q.get("n", "1000")), int(q.get("size", "10"))
    await start(send, 200)
    for i in range(n):
        await send({"type": "http.response.body", "body": (b"%09d\n" % i)[-size:], "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def ep_chunked(scope, receive, send, q):
    parts = q.get("parts", "a,b,c").split(",")
    await start(send, 200)
    for part in parts:
        await send({"type": "http.response.body", "body": part.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def ep_status(scope, receive, send, q):
    code = int(q.get("code", "200"))
    await send({"type": "http.response.start", "status": code, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def ep_headers(scope, receive, send, q):
    await respond(
        send,
        b"h",
        headers=[
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"x-custom", b"custom-value"),
            (b"x-latin1", b"caf\xe9"),
        ],
    )


async def ep_slow(scope, receive, send, q):
    delay = float(q.get("delay", "1"))
    tag = q.get("tag", "")
    INFLIGHT["slow"] += 1
    INFLIGHT["slow_started"] += 1
    if "id" in q:
        probe(q)["started"] = True
    if tag:
        print(f"SLOW-STARTED {tag}", file=sys.stderr, flush=True)
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        print(f"SLOW-CANCELLED {tag}", file=sys.stderr, flush=True)
        raise
    finally:
        INFLIGHT["slow"] -= 1
    INFLIGHT["slow_finished"] += 1
    print(f"SLOW-FINISHED {tag}", file=sys.stderr, flush=True)
    await respond(send, b"slept " + tag.encode())


async def ep_inflight(scope, receive, send, q):
    await respond_json(send, INFLIGHT)


async def ep_release(scope, receive, send, q):
    event(q["id"]).set()
    await respond(send, b"released")


async def ep_probe_result(scope, receive, send, q):
    p = PROBES.get(q.get("id", ""))
    if p is None:
        await respond(send, b"no such probe", status=404)
    else:
        await respond_json(send, p)


async def ep_log_marker(scope, receive, send, q):
    print(q.get("m", "MARKER"), file=sys.stderr, flush=True)
    await respond(send, b"logged")


async def ep_state_check(scope, receive, send, q):
    st = scope.get("state")
    if not isinstance(st, dict):
        await respond_json(send, {"present": "state" in scope, "type": type_name(st)})
        return
    res = {
        "present": True,
        "type": type_name(st),
        "keys": sorted(st),
        "greeting": st.get("greeting"),
        "shared_list_len": len(st.get("shared_list", [])),
        "same_object_as_earlier_request": any(st is s for s in KEPT_STATES),
        "leaked_key": "added_by_request" in st,
    }
    st["added_by_request"] = True
    if "shared_list" in st:
        st["shared_list"].append(1)
    KEPT_STATES.append(st)
    await respond_json(send, res)


async def ep_extensions_check(scope, receive, send, q):
    ext = scope.get("extensions")
    res = {
        "present": "extensions" in scope,
        "type": type_name(ext),
        "keys": sorted(ext) if isinstance(ext, dict) else None,
        "same_object_as_earlier_request": any(ext is e for e in KEPT_EXTENSIONS),
        "leaked_key": isinstance(ext, dict) and "test.mutated" in ext,
    }
    if isinstance(ext, dict):
        ext["test.mutated"] = {}
        KEPT_EXTENSIONS.append(ext)
    await respond_json(send, res)


async def ep_lifespan_info(scope, receive, send, q):
    await respond_json(
        send,
        {
            "startup": LIFESPAN["startup"],
            "scope": LIFESPAN["scope"],
            "state_type": LIFESPAN.get("state_type"),
            "same_loop": asyncio.get_running_loop() is LIFESPAN["loop"],
        },
    )


# --- asyncio ---------------------------------------------------------------------------------


async def ep_asyncio_task(scope, receive, send, q):
    t = asyncio.current_task()
    info = {
        "is_task": isinstance(t, asyncio.Task),
        "task_type": type_name(t),
        "task_done": t.done() if t is not None else None,
        "in_all_tasks": t is not None and t in asyncio.all_tasks(),
        "task_loop_is_running_loop": t is not None and t.get_loop() is asyncio.get_running_loop(),
    }
    await asyncio.sleep(0)
    t2 = asyncio.current_task()
    info["same_task_after_sleep0"] = t2 is t
    await asyncio.sleep(0.01)
    info["same_task_after_sleep"] = asyncio.current_task() is t
    info["loop_type"] = type_name(asyncio.get_running_loop())
    await respond_json(send, info)


async def ep_asyncio_eager(scope, receive, send, q):
    """Whether this first step runs inside an eager start (CPython 3.12+ keeps such tasks in a set of
    its own until they first suspend), and whether the task is real and its context its own."""
    t = asyncio.current_task()
    eager_tasks = getattr(asyncio.tasks, "_eager_tasks", set())
    info = {
        "eager": t in eager_tasks,
        "is_task": isinstance(t, asyncio.Task),
        "context_value_before": EAGER_VAR.get("unset"),
    }
    EAGER_VAR.set(q.get("value", "set"))
    await asyncio.sleep(0)
    info["same_task_after_sleep0"] = asyncio.current_task() is t
    info["context_value_after"] = EAGER_VAR.get("unset")
    await respond_json(send, info)


async def ep_asyncio_sleep(scope, receive, send, q):
    t0 = time.monotonic()
    await asyncio.sleep(float(q.get("delay", "0.05")))
    await respond_json(send, {"slept": time.monotonic() - t0})


async def ep_asyncio_contextvar(scope, receive, send, q):
    initial = request_var.get()
    request_var.set(q.get("value", "x"))
    await asyncio.sleep(float(q.get("delay", "0")))
    after_sleep = request_var.get()
    await respond_json(send, {"initial": initial, "after": after_sleep})


async def ep_asyncio_barrier(scope, receive, send, q):
    """Returns 200 once n requests with the same key are inside the app at the same time."""
    key, n = q["key"], int(q.get("n", "2"))
    b = BARRIERS.setdefault(key, {"count": 0, "event": asyncio.Event()})
    b["count"] += 1
    if b["count"] >= n:
        b["event"].set()
    try:
        await asyncio.wait_for(b["event"].wait(), float(q.get("timeout", "10")))
    except asyncio.TimeoutError:
        await respond(send, f"only {b['count']} of {n} arrived".encode(), status=504)
        return
    await respond(send, b"released")


async def ep_asyncio_timeout(scope, receive, send, q):
    """asyncio.timeout cancels the current task and converts it to TimeoutError: needs a real Task."""
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(10)
        result = "not cancelled"
    except TimeoutError:
        result = "timed out"
    # the task must not stay cancelled
    await asyncio.sleep(0)
    t = asyncio.current_task()
    await respond_json(send, {"result": result, "cancelling": t.cancelling() if t else None})


async def ep_asyncio_anyio_timeout(scope, receive, send, q):
    import anyio

    with anyio.move_on_after(0.05) as cs:
        await anyio.sleep(10)
    await respond_json(send, {"cancelled_caught": cs.cancelled_caught})


async def ep_asyncio_background(scope, receive, send, q):
    p = probe(q)

    async def later():
        await asyncio.sleep(0.05)
        p["done"] = True

    task = asyncio.get_running_loop().create_task(later())
    BACKGROUND.add(task)
    task.add_done_callback(BACKGROUND.discard)
    await respond(send, b"scheduled")


async def ep_asyncio_executor(scope, receive, send, q):
    loop = asyncio.get_running_loop()
    name = await loop.run_in_executor(None, lambda: threading.current_thread().name)
    await respond_json(send, {"executor_thread": name, "loop_thread": threading.current_thread().name})


# --- disconnect probes -------------------------------------------------------------------------


async def ep_probe_receive_disconnect(scope, receive, send, q):
    """Receive until http.disconnect (the client sends a partial body and then closes)."""
    p = probe(q)
    p["messages"] = []
    try:
        while True:
            msg = await asyncio.wait_for(receive(), 20)
            p["messages"].append(
                {"type": msg["type"], "len": len(msg.get("body", b"")), "more_body": msg.get("more_body", False)}
            )
            if msg["type"] == "http.disconnect":
                break
    except asyncio.TimeoutError:
        p["timeout"] = True
    p["done"] = True


async def ep_probe_wait_disconnect(scope, receive, send, q):
    """Read the (empty) body, then wait in receive() for the client to go away, then try to send."""
    p = probe(q)
    first = await receive()
    p["first"] = first["type"]
    p["waiting"] = True
    try:
        msg = await asyncio.wait_for(receive(), 20)
        p["second"] = msg["type"]
    except asyncio.TimeoutError:
        p["second"] = "timeout"
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        p["send"] = {"raised": None}
    except BaseException as e:  # noqa: BLE001 - we record exactly what was raised
        p["send"] = exc_info(e)
    p["done"] = True


async def ep_probe_stream_until_error(scope, receive, send, q):
    """Stream 64 KiB chunks until send() raises (the client reads a little and closes)."""
    p = probe(q)
    p["sent"] = 0
    await start(send, 200, [], b"application/octet-stream")
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            await send({"type": "http.response.body", "body": CHUNK_64K, "more_body": True})
            p["sent"] += len(CHUNK_64K)
            if p["sent"] % (16 * len(CHUNK_64K)) == 0:
                await asyncio.sleep(0)  # never hog the loop, even if send() never blocks
        p["send"] = {"raised": None, "gave_up": True}
    except BaseException as e:  # noqa: BLE001
        p["send"] = exc_info(e)
        if q.get("reraise") == "1":
            p["done"] = True
            raise
    p["done"] = True


async def ep_probe_after_complete(scope, receive, send, q):
    """After the response is complete, receive() must return http.disconnect (without blocking)."""
    p = probe(q)
    await read_body(receive)
    await respond(send, b"done")
    try:
        msg = await asyncio.wait_for(receive(), 5)
        p["after"] = msg["type"]
    except asyncio.TimeoutError:
        p["after"] = "timeout (receive() blocked)"
    except BaseException as e:  # noqa: BLE001
        p["after"] = "raised " + type(e).__name__
    p["done"] = True


async def ep_probe_post_response_work(scope, receive, send, q):
    """Work done after the response is complete (like a BackgroundTask) must run even if the client
    closes the connection as soon as it has the response."""
    p = probe(q)
    try:
        await respond(send, b"done")
        p["send_returned"] = True
        await asyncio.sleep(0.05)
        p["slept_after_response"] = True
    except asyncio.CancelledError:
        p["cancelled"] = True
        p["done"] = True
        raise
    except BaseException as e:  # noqa: BLE001
        p["error"] = exc_info(e)
    p["done"] = True


async def ep_probe_final_empty_body(scope, receive, send, q):
    """Content-Length body sent in full with more_body=True, then (after the client may have closed) the
    closing empty message: what Starlette's BaseHTTPMiddleware and StreamingResponse do."""
    p = probe(q)
    await start(send, 200, length=2)
    await send({"type": "http.response.body", "body": b"ok", "more_body": True})
    await asyncio.sleep(float(q.get("delay", "0.2")))
    try:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        p["send"] = {"raised": None}
    except BaseException as e:  # noqa: BLE001
        p["send"] = exc_info(e)
    p["done"] = True


async def ep_stream_wait(scope, receive, send, q):
    """Send a first chunk, then wait for /release?id=ID before finishing: the first chunk must reach the
    client while the app waits (server-sent events, long polling)."""
    p = probe(q)
    await start(send, 200)
    await send({"type": "http.response.body", "body": b"first-chunk", "more_body": True})
    p["first_sent"] = True
    await asyncio.wait_for(event(q["id"]).wait(), 20)
    await send({"type": "http.response.body", "body": b"second-chunk", "more_body": False})
    p["done"] = True


async def ep_app_connection_close(scope, receive, send, q):
    await respond(send, b"bye", headers=[(b"connection", b"close")])


async def ep_app_transfer_encoding(scope, receive, send, q):
    """The app sets transfer-encoding: chunked itself: the body must be chunked once, not twice."""
    await start(send, 200, headers=[(b"transfer-encoding", b"chunked")])
    for part in (b"abc", b"def"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def ep_continue_wait(scope, receive, send, q):
    """Do not call receive() until /release?id=ID; then echo the body."""
    p = probe(q)
    p["started"] = True
    await asyncio.wait_for(event(q["id"]).wait(), 20)
    p["receiving"] = True
    body = await read_body(receive)
    p["done"] = True
    await respond(send, body)


# --- application errors -------------------------------------------------------------------------


async def ep_error_before_start(scope, receive, send, q):
    raise RuntimeError("boom-before-start")


async def ep_error_after_start_chunked(scope, receive, send, q):
    await start(send, 200)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom-after-start-chunked")


async def ep_error_after_start_cl(scope, receive, send, q):
    await start(send, 200, length=100)
    await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
    raise RuntimeError("boom-after-start-cl")


async def ep_error_no_response(scope, receive, send, q):
    return


async def ep_error_incomplete_return(scope, receive, send, q):
    await start(send, 200)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    return


MISUSE = {
    "body-before-start": [{"type": "http.response.body", "body": b"too early"}],
    "double-start": "special",
    "after-complete-body": "special",
    "after-complete-start": "special",
    "status-1000": [{"type": "http.response.start", "status": 1000, "headers": []}],
    "status-99": [{"type": "http.response.start", "status": 99, "headers": []}],
    "status-str": [{"type": "http.response.start", "status": "200", "headers": []}],
    "status-missing": [{"type": "http.response.start", "headers": []}],
    "header-name-crlf": [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-bad\r\nx-injected", b"1"), (b"content-length", b"3")],
        }
    ],
    "header-name-lf": [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-bad\nx-injected", b"1"), (b"content-length", b"3")],
        }
    ],
    "header-name-nul": [
        {"type": "http.response.start", "status": 200, "headers": [(b"x-bad\x00", b"1"), (b"content-length", b"3")]}
    ],
    "header-value-crlf": [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-bad", b"ok\r\nx-injected: 1"), (b"content-length", b"3")],
        }
    ],
    "header-value-lf": [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-bad", b"ok\nx-injected: 1"), (b"content-length", b"3")],
        }
    ],
    "header-value-cr": [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-bad", b"ok\rx-injected: 1"), (b"content-length", b"3")],
        }
    ],
    "header-value-nul": [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-bad", b"ok\x00x-injected"), (b"content-length", b"3")],
        }
    ],
    "too-many-headers": [
        {
            "type": "http.response.start",
            "status": 200,
            # more distinct names than the core's header map holds (32768): refused, never a panic
            "headers": [(b"x-many-%d" % i, b"1") for i in range(40_000)],
        }
    ],
    "unknown-type": [{"type": "http.response.bogus", "body": b"?"}],
    "content-length-not-a-number": [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"abc")]}
    ],
    "content-length-first-of-two-bad": [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"3x"), (b"x-bad", b"1"), (b"content-length", b"3")],
        }
    ],
    "body-not-bytes": "special",
    "body-longer-than-content-length": "special",
    "body-shorter-than-content-length": "special",
}


async def ep_misuse(scope, receive, send, q):
    """Do one protocol violation, record what send() raised, then try to finish with a valid response."""
    case = q["case"]
    p = probe(q)
    p["case"] = case
    spec = MISUSE[case]

    async def attempt(msgs):
        try:
            for m in msgs:
                await send(m)
            p["send"] = {"raised": None}
        except BaseException as e:  # noqa: BLE001 - record exactly what was raised
            p["send"] = exc_info(e)

    async def followup(msgs):
        try:
            for m in msgs:
                await send(m)
        except BaseException as e:  # noqa: BLE001
            p["followup"] = exc_info(e)

    if spec != "special":
        await attempt(spec)
        try:
            await respond(send, b"recovered")
        except BaseException as e:  # noqa: BLE001
            p["recover"] = exc_info(e)
            p["done"] = True
            raise
    elif case == "double-start":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await attempt([{"type": "http.response.start", "status": 201, "headers": [(b"x-second", b"1")]}])
        await followup([{"type": "http.response.body", "body": b"ok"}])
    elif case == "body-not-bytes":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await attempt([{"type": "http.response.body", "body": "a str, not bytes"}])
        await followup([{"type": "http.response.body", "body": b"ok"}])
    elif case == "body-longer-than-content-length":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await attempt([{"type": "http.response.body", "body": b"123EXTRA-BYTES"}])
    elif case == "body-shorter-than-content-length":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await attempt([{"type": "http.response.body", "body": b"123"}])
    elif case == "after-complete-body":
        await respond(send, b"ok")
        await attempt([{"type": "http.response.body", "body": b"EXTRA-BYTES"}])
    elif case == "after-complete-start":
        await respond(send, b"ok")
        await attempt([{"type": "http.response.start", "status": 200, "headers": [(b"x-second", b"1")]}])
    p["done"] = True


# ----------------------------------------------------------------------------- dispatch

ROUTES = {
    "/": lambda s, r, se, q: respond(se, b"ok"),
    "/echo": ep_echo,
    "/upload": ep_upload,
    "/download": ep_download,
    "/fixed": ep_fixed,
    "/chunked": ep_chunked,
    "/many-chunks": ep_many_chunks,
    "/status": ep_status,
    "/headers": ep_headers,
    "/slow": ep_slow,
    "/inflight": ep_inflight,
    "/release": ep_release,
    "/probe/result": ep_probe_result,
    "/log-marker": ep_log_marker,
    "/state/check": ep_state_check,
    "/extensions/check": ep_extensions_check,
    "/lifespan-info": ep_lifespan_info,
    "/asyncio/task": ep_asyncio_task,
    "/asyncio/eager": ep_asyncio_eager,
    "/asyncio/sleep": ep_asyncio_sleep,
    "/asyncio/contextvar": ep_asyncio_contextvar,
    "/asyncio/barrier": ep_asyncio_barrier,
    "/asyncio/timeout": ep_asyncio_timeout,
    "/asyncio/anyio-timeout": ep_asyncio_anyio_timeout,
    "/asyncio/background": ep_asyncio_background,
    "/asyncio/executor": ep_asyncio_executor,
    "/probe/receive-disconnect": ep_probe_receive_disconnect,
    "/probe/wait-disconnect": ep_probe_wait_disconnect,
    "/probe/stream-until-error": ep_probe_stream_until_error,
    "/probe/after-complete": ep_probe_after_complete,
    "/probe/final-empty-body": ep_probe_final_empty_body,
    "/probe/post-response-work": ep_probe_post_response_work,
    "/continue/wait": ep_continue_wait,
    "/stream/wait": ep_stream_wait,
    "/app-connection-close": ep_app_connection_close,
    "/app-transfer-encoding": ep_app_transfer_encoding,
    "/error/before-start": ep_error_before_start,
    "/error/after-start-chunked": ep_error_after_start_chunked,
    "/error/after-start-cl": ep_error_after_start_cl,
    "/error/no-response": ep_error_no_response,
    "/error/incomplete-return": ep_error_incomplete_return,
    "/misuse": ep_misuse,
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    path = route_path(scope)
    q = dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    if path == "/scope" or path.startswith("/scope/"):
        await ep_scope(scope, receive, send, q)
        return
    handler = ROUTES.get(path)
    if handler is None:
        await respond(send, b"not found: " + path.encode("utf-8", "replace"), status=404)
        return
    await handler(scope, receive, send, q)
