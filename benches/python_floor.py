"""What CPython itself needs per request: the floor under any ASGI server's Python side.

Each line is CPU µs per request (``time.process_time``, median of 5 rounds of 20,000), on one
core, no I/O:

- ``coroutine``: driving the plain benchmark app (start + body ``send``, each answered by an
  awaitable that completes at once) by ``coro.send(None)``, no Task: the least any server can do;
- ``runner``: the same through ferrocorn's per-request runner (``server.make_runner``);
- ``task (asyncio|uvloop)``: the runner's coroutine run as one Task per request, created in batches
  of 64 (as a drained batch of the bridge starts them) and run to completion by the loop;
- ``eager task``: the same created as ferrocorn does on CPython 3.12+ (``asyncio.Task(coro,
  loop=loop, eager_start=True)``): the Task's first step runs inside the call, so a request that
  never suspends is never scheduled;
- ``scope``: copying a 14-key scope template and setting the per-request values.

    python benches/python_floor.py
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

ROUNDS = 5
N = 20_000
BATCH = 64


class Done:
    """An awaitable that completes at once (what the core's send returns)."""

    __slots__ = ()

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> None:
        raise StopIteration


DONE = Done()


class Protocol:
    __slots__ = ()

    def receive(self) -> Done:
        return DONE

    def send(self, message: object) -> Done:
        return DONE

    def app_returned(self) -> None:
        return None

    def app_failed(self) -> None:
        pass


def measure(name: str, one_round: Callable[[], None]) -> float:
    one_round()  # warm-up
    runs = []
    for _ in range(ROUNDS):
        started = time.process_time()
        one_round()
        runs.append((time.process_time() - started) / N * 1e6)
    median = statistics.median(runs)
    print(f"{name:40s} {median:6.2f} CPU µs/request  ({', '.join(f'{r:.2f}' for r in runs)})")
    return median


def main() -> None:
    from ferrocorn.server import make_runner

    from benches.apps import plain

    runner = make_runner(plain)
    protocol = Protocol()
    scope = {"type": "http", "path": "/", "method": "GET", "headers": []}
    print(f"CPython {sys.version.split()[0]}")

    def coroutine() -> None:
        for _ in range(N):
            coro = plain(scope, protocol.receive, protocol.send)
            try:
                coro.send(None)
            except StopIteration:
                pass

    def through_runner() -> None:
        for _ in range(N):
            coro = runner(scope, protocol)  # type: ignore[arg-type]
            try:
                coro.send(None)
            except StopIteration:
                pass

    measure("coroutine (app only, send(None))", coroutine)
    measure("runner (ferrocorn's run_http + app)", through_runner)

    def tasks(loop: asyncio.AbstractEventLoop, create_task: Callable[[Any], Any]) -> Callable[[], None]:
        async def batches() -> None:
            for _ in range(N // BATCH):
                for _ in range(BATCH):
                    create_task(runner(scope, protocol))  # type: ignore[arg-type]
                await asyncio.sleep(0)  # one loop iteration runs the batch

        return lambda: loop.run_until_complete(batches())

    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [("asyncio", asyncio.new_event_loop)]
    try:
        import uvloop

        loops.append(("uvloop", uvloop.new_event_loop))
    except ImportError:
        pass
    for loop_name, factory in loops:
        loop = factory()
        measure(f"task per request ({loop_name})", tasks(loop, loop.create_task))
        if sys.version_info >= (3, 12):
            # As ferrocorn starts them (server.eager_task_factory).
            eager = functools.partial(asyncio.Task, loop=loop, eager_start=True)
            measure(f"eager task per request ({loop_name})", tasks(loop, eager))
        loop.close()

    template = dict.fromkeys(
        (
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
        )
    )

    def scopes() -> None:
        for _ in range(N):
            s = template.copy()
            s["http_version"] = "1.1"
            s["server"] = ("127.0.0.1", 8000)
            s["client"] = ("127.0.0.1", 50000)
            s["scheme"] = "http"
            s["method"] = "GET"
            s["path"] = "/"
            s["raw_path"] = b"/"
            s["query_string"] = b""
            s["headers"] = [(b"host", b"127.0.0.1:8000")]
            s["asgi"] = {"version": "3.0", "spec_version": "2.4"}
            s["extensions"] = {"http.response.pathsend": {}, "http.response.zerocopysend": {}}

    measure("scope dict (built in Python)", scopes)


if __name__ == "__main__":
    main()
