"""CPU cost per request of each access-log mode (none, uvicorn's default line, --access-log-format, --log-format json).

End to end: one ferrocorn worker pinned to CPU 0 (`taskset -c 0`), `wrk -t1 -c1` on CPU 1 against the demo app's
`/`, the worker's utime + stime from /proc/PID/stat over the requests wrk completed; three windows per mode, median.
uvicorn serves the same app in the same run, without and with its access log (it has no custom or JSON format of
its own), when it is installed (benches/requirements.txt).
In process (`--in-process`): the Python-side work alone (the runner driving a start + body app on a protocol whose
send completes at once, plus the record written to /dev/null), which a busy machine disturbs far less.

    python benches/access_log_cost.py [SECONDS]      # needs wrk and taskset
    python benches/access_log_cost.py --in-process
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time

MODES: dict[str, list[str]] = {
    "no-access-log": ["--no-access-log"],
    "default": [],
    "custom": ["--access-log-format", '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'],
    "json": ["--log-format", "json"],
}
# uvicorn's modes in the same run: (server module, arguments).
UVICORN_MODES: dict[str, list[str]] = {
    "uvicorn no-log": ["--no-access-log"],
    "uvicorn default": [],
}


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, seconds: int) -> int:
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c1", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+) requests in", output)
    assert match, output
    return int(match.group(1))


def end_to_end(seconds: int) -> None:
    servers = [("ferrocorn", name, args) for name, args in MODES.items()]
    try:
        import uvicorn  # noqa: F401

        servers += [("uvicorn", name, args) for name, args in UVICORN_MODES.items()]
    except ImportError:
        print("uvicorn is not installed: its rows are left out", file=sys.stderr)
    for index, (module, name, args) in enumerate(servers):
        port = 18000 + index
        command = ["taskset", "-c", "0", sys.executable, "-m", module, "ferrocorn.demo:app", "--port", str(port)]
        server = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            wrk(port, 2)  # warm-up
            runs = []
            for _ in range(3):
                before = cpu_seconds(server.pid)
                requests = wrk(port, seconds)
                runs.append((cpu_seconds(server.pid) - before) / requests * 1e6)
        finally:
            server.terminate()
            server.wait()
        print(f"{name:16s} {[round(run, 1) for run in runs]} median {statistics.median(runs):.1f} CPU us/request")


def in_process() -> None:
    sys.stdout = open(os.devnull, "w")  # the access handler's stream, resolved when logging is configured
    from ferrocorn.config import Config
    from ferrocorn.server import log_access, make_runner

    class Done:
        def __await__(self):  # type: ignore[no-untyped-def]
            return iter(())

    class Protocol:
        def receive(self) -> Done:
            return Done()

        def send(self, message: object) -> Done:
            return Done()

        def app_failed(self) -> None:
            pass

        def app_returned(self) -> None:
            return None

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"Hello, world!"})

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "http_version": "1.1",
        "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"x"), (b"user-agent", b"wrk")],
    }
    options = {
        "no-access-log": {"access_log": False},
        "default": {},
        "custom": {"access_log_format": MODES["custom"][1]},
        "json": {"log_format": "json"},
    }
    for name, kwargs in options.items():
        config = Config("ferrocorn.demo:app", **kwargs)
        at_end = config.end_of_response_access_log
        runner = make_runner(app) if at_end is None else at_end.wrap(make_runner(app))
        core_logs_at_start = config.access_log and at_end is None
        protocol = Protocol()

        def one(runner=runner, protocol=protocol, core_logs_at_start=core_logs_at_start) -> None:  # type: ignore[no-untyped-def]
            coro = runner(dict(scope), protocol)
            if core_logs_at_start:
                log_access(scope, 200)  # what the core calls at http.response.start
            try:
                coro.send(None)
            except StopIteration:
                pass

        for _ in range(2000):
            one()
        runs = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(20000):
                one()
            runs.append((time.process_time() - started) / 20000 * 1e6)
        print(f"{name:14s} median {statistics.median(runs):.1f} CPU us/request (Python side)", file=sys.stderr)


if __name__ == "__main__":
    if "--in-process" in sys.argv:
        in_process()
    else:
        end_to_end(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
