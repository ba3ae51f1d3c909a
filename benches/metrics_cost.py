"""CPU cost per request of `--metrics-bind` (on vs off).

One ferrocorn worker pinned to CPU 0 (`taskset -c 0`, `--no-access-log`), `wrk -t1 -c32` on CPU 1 against the demo
app's `/`, the worker's utime + stime from /proc/PID/stat over the requests wrk completed. Both servers run at once
and the windows alternate (off, on, off, on, ...), so that the machine's noise falls on both alike; median of the
windows per mode.

    python benches/metrics_cost.py [SECONDS] [WINDOWS]      # needs wrk and taskset
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

from benches.access_log_cost import cpu_seconds

MODES: dict[str, list[str]] = {"off": [], "on": ["--metrics-bind", "127.0.0.1:18190"]}


def wrk(port: int, seconds: int) -> int:
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    raise AssertionError(output)


def main(seconds: int, windows: int) -> None:
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for index, (name, args) in enumerate(MODES.items()):
            port = 18100 + index
            command = ["taskset", "-c", "0", sys.executable, "-m", "ferrocorn", "ferrocorn.demo:app"]
            command += ["--port", str(port), "--no-access-log", *args]
            servers[name] = (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port)
        for _, port in servers.values():
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            wrk(port, 2)  # warm-up
        runs: dict[str, list[float]] = {name: [] for name in MODES}
        for _ in range(windows):
            for name, (server, port) in servers.items():
                before = cpu_seconds(server.pid)
                requests = wrk(port, seconds)
                runs[name].append((cpu_seconds(server.pid) - before) / requests * 1e6)
        for name, values in runs.items():
            rounded = [round(value, 2) for value in values]
            print(f"metrics {name:4s} {rounded} median {statistics.median(values):.2f} CPU us/request")
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
