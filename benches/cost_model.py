"""Counts that survive a noisy machine: CPU time, syscalls, context switches per request, and RSS.

The figures behind the cost model in ``docs/performance.md``. One server (one worker, access log
off, started exactly as ``benches/run.py`` starts it) pinned to CPU 0, the load generator pinned to
CPU 1; each window reads the server's CPU time (utime + stime, per thread and in total, from
``/proc/PID/task/*/stat``), its context switches (``/proc/PID/task/*/status``) and, with
``--syscalls``, its syscalls by kind (``perf stat -e 'syscalls:sys_enter_*' --per-thread``), over
the requests the load generator completed. The file loads (``file-1m``, ``file-64m``: Starlette's
``FileResponse`` through ``benches/httpload``) also give the CPU per MiB sent, the server's and the
client's.

    python -m benches.cost_model cpu ferrocorn                  # plain GET, wrk -t1 -c64
    python -m benches.cost_model cpu ferrocorn --load h2c --syscalls
    python -m benches.cost_model cpu h2corn --load c256 --runs 5
    python -m benches.cost_model cpu nginx                      # the floor: nginx `return 200`
    python -m benches.cost_model cpu ferrocorn --load file-64m  # FileResponse, 64 MiB, httpload -c8
    python -m benches.cost_model rss ferrocorn uvicorn h2corn   # idle RSS of the process tree

Idle RSS: the server answers one request, then 2 s later the RSS of its whole process tree is
summed (psutil), as ``tests/support/server.py``'s ``rss()`` does. ``--after-load`` also loads it for
a few seconds and reads it again 2 s after the load ends.

Run from the repository root with the venv whose ferrocorn is under test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benches.run import HOST, HTTPLOAD, REPO_ROOT, server_command

TICK = os.sysconf("SC_CLK_TCK")

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    fastcgi_temp_path {dir};
    uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    server {{
        listen {host}:{port} reuseport;
        location / {{ default_type text/plain; return 200 "Hello, world!"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """One server pinned to a CPU, started as benches/run.py starts it (nginx: one worker)."""

    def __init__(self, name: str, cpu: str, app: str, extra: list[str], path: str = "/") -> None:
        self.name = name
        self.path = path
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"cost-{name}-"))
        if name == "nginx":
            conf = self.tmp / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=self.tmp, host=HOST, port=self.port))
            command = ["nginx", "-c", str(conf), "-p", str(self.tmp)]
        else:
            command = server_command(name, f"benches.apps:{app}", self.port, extra)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        self.log = open(self.tmp / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, *command],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited: {(self.tmp / 'server.log').read_text()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as sock:
                    sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{self.name} not ready")

    def pids(self) -> list[int]:
        """The server's processes: the leader and its descendants (nginx: master and worker)."""
        import psutil

        leader = psutil.Process(self.proc.pid)
        return [leader.pid, *(child.pid for child in leader.children(recursive=True))]

    def rss(self) -> int:
        import psutil

        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def thread_stats(pids: list[int]) -> dict[str, list[float]]:
    """Per thread (named pid:comm:tid, comm made unique): CPU seconds, voluntary and involuntary switches."""
    stats: dict[str, list[float]] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                stat = open(f"/proc/{pid}/task/{tid}/stat").read()
                status = open(f"/proc/{pid}/task/{tid}/status").read()
            except FileNotFoundError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            vol = int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            invol = int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            stats[f"{comm}/{tid}"] = [cpu, vol, invol]
    return stats


def process_cpu(pids: list[int]) -> float:
    """utime + stime of every thread the processes ever had (dead threads included)."""
    total = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


# The file loads: (app, path, connections) of Starlette's FileResponse through benches/httpload.
FILE_LOADS = {"file-1m": ("file_app", "/1m", 64), "file-64m": ("file_app", "/64m", 8)}


@dataclass
class Loaded:
    requests: int
    bytes: int = 0  # bytes received (file loads only)
    client_cpu: float = 0.0  # the load generator's CPU seconds (file loads only)


def load(kind: str, port: int, seconds: float, cpu: str, discard: str = "trunc") -> Loaded:
    """Run the load generator on `cpu`; the requests it completed."""
    if kind in ("c64", "c256", "c1"):
        conns = kind[1:]
        out = subprocess.run(
            ["taskset", "-c", cpu, "wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", f"http://{HOST}:{port}/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"(\d+) requests in", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
        if errors:
            print(f"  wrk: {errors.group(0)}", file=sys.stderr)
        assert match, out
        return Loaded(int(match.group(1)))
    if kind == "h2c":
        out = subprocess.run(
            ["taskset", "-c", cpu, "h2load", "-t1", "-c32", "-m10", f"-D{int(seconds)}", f"http://{HOST}:{port}/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
        assert match and "h2c" in out, out
        return Loaded(int(match.group(1)))
    if kind in FILE_LOADS:
        _app, path, conns = FILE_LOADS[kind]
        out = subprocess.run(
            [
                "taskset",
                "-c",
                cpu,
                str(HTTPLOAD),
                "--url",
                f"http://{HOST}:{port}{path}",
                "--connections",
                str(conns),
                "--duration",
                str(seconds),
                "--discard",
                discard,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        report = json.loads(out)
        if report["errors"] or report["non_2xx"]:
            print(f"  httpload: {report['errors']} errors, {report['non_2xx']} non-2xx: {report['error_samples']}")
        cpu_s = report["cpu_s"]
        return Loaded(int(report["requests"]), int(report["bytes"]), cpu_s["user"] + cpu_s["system"])
    raise SystemExit(f"unknown load {kind}")


def perf_count(pids: list[int], seconds: float, events: str) -> tuple[subprocess.Popen[str], Path]:
    out = Path(tempfile.mkstemp(prefix="perf-stat-")[1])
    tids = [tid for pid in pids for tid in os.listdir(f"/proc/{pid}/task")]
    proc = subprocess.Popen(
        [
            "perf",
            "stat",
            "--no-big-num",
            "-x,",
            "--per-thread",
            "-e",
            events,
            "-t",
            ",".join(tids),
            "-o",
            str(out),
            "--",
            "sleep",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return proc, out


def parse_perf(out: Path) -> dict[str, Counter[str]]:
    per_thread: dict[str, Counter[str]] = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 4 or not parts[1].strip().isdigit():
            continue
        thread, count, event = parts[0], int(parts[1]), parts[3]
        if count:
            per_thread.setdefault(thread, Counter())[event.split(":")[-1].replace("sys_enter_", "")] += count
    out.unlink()
    return per_thread


def cpu_command(args: argparse.Namespace) -> None:
    app, path = args.app, "/"
    if args.load in FILE_LOADS:
        app, path, _conns = FILE_LOADS[args.load]
    server = Server(args.server, args.server_cpu, app, args.extra, path)
    try:
        load(args.load, server.port, 1, args.client_cpu, args.discard)  # warm-up
        results = []
        per_mib: list[float] = []
        for run in range(args.runs):
            pids = server.pids()
            before_threads = thread_stats(pids)
            before = sum(process_cpu([pid]) for pid in pids)
            events = args.events or ("syscalls:sys_enter_*" if args.syscalls else None)
            perf = perf_count(pids, args.seconds, events) if events else None
            loaded = load(args.load, server.port, args.seconds, args.client_cpu, args.discard)
            requests = max(loaded.requests, 1)
            after = sum(process_cpu([pid]) for pid in pids)
            after_threads = thread_stats(pids)
            us = (after - before) / requests * 1e6
            results.append(us)
            line = f"run {run + 1}: {requests / args.seconds:,.0f} req/s, {us:.2f} CPU µs/req"
            if loaded.bytes:
                mib = loaded.bytes / 2**20
                per_mib.append((after - before) / mib * 1e6)
                line += (
                    f", {mib / args.seconds:,.0f} MiB/s, CPU µs/MiB server {per_mib[-1]:.1f}"
                    f" client {loaded.client_cpu / mib * 1e6:.1f} (httpload --discard {args.discard})"
                )
            for name, (cpu, vol, invol) in after_threads.items():
                b = before_threads.get(name, [0, 0, 0])
                if cpu - b[0] > 0.005 * args.seconds or vol - b[1] > 100:
                    line += (
                        f"\n    {name:24s} {(cpu - b[0]) / requests * 1e6:6.2f} µs/req, "
                        f"switches/req vol {(vol - b[1]) / requests:.3f} invol {(invol - b[2]) / requests:.3f}"
                    )
            if perf is not None:
                perf[0].wait()
                counted = parse_perf(perf[1])
                for thread, counts in counted.items():
                    total = sum(counts.values())
                    if total < requests * 0.001:
                        continue
                    top = ", ".join(f"{k} {v / requests:.3f}" for k, v in counts.most_common(10))
                    kind = "syscalls" if args.syscalls else "events"
                    line += f"\n    {kind}/req {thread}: {total / requests:.3f}: {top}"
            print(line, flush=True)
        print(
            f"{args.server} {args.load}: median {statistics.median(results):.2f} CPU µs/req "
            f"({', '.join(f'{r:.2f}' for r in results)}); loadavg {os.getloadavg()[0]:.2f}"
        )
        if per_mib:
            print(f"{args.server} {args.load}: median {statistics.median(per_mib):.1f} server CPU µs/MiB")
        if args.rss:
            print(f"RSS after load: {server.rss() / 2**20:.1f} MiB")
    finally:
        server.stop()


def rss_command(args: argparse.Namespace) -> None:
    for name in args.servers:
        values = []
        for _ in range(args.runs):
            server = Server(name, args.server_cpu, args.app, args.extra)
            try:
                time.sleep(2)
                idle = server.rss()
                line = f"{name}: idle {idle / 2**20:.1f} MiB"
                if args.after_load:
                    load("c256", server.port, 3, args.client_cpu)
                    line += f", under load {server.rss() / 2**20:.1f} MiB"
                    time.sleep(2)
                    line += f", 2 s after {server.rss() / 2**20:.1f} MiB"
                values.append(idle)
                print("  " + line, flush=True)
            finally:
                server.stop()
        print(f"{name}: idle RSS median {statistics.median(values) / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--app", default="plain")
    parser.add_argument("--extra", action="append", default=[], help="an extra server argument (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    cpu = sub.add_parser("cpu", help="CPU time, switches and syscalls per request")
    cpu.add_argument("server")
    cpu.add_argument(
        "--load",
        default="c64",
        help="c1, c64, c256 (wrk -t1), h2c (h2load -c32 -m10), file-1m or file-64m (httpload -c64 / -c8; app file_app)",
    )
    cpu.add_argument("--discard", default="trunc", help="httpload --discard for the file loads: trunc, copy, splice")
    cpu.add_argument("--seconds", type=float, default=5)
    cpu.add_argument("--runs", type=int, default=3)
    cpu.add_argument("--syscalls", action="store_true", help="count syscalls by kind with perf stat")
    cpu.add_argument(
        "--events",
        help="other perf events to count per thread and request instead, e.g. uprobes on the allocators "
        "(docs/performance.md: 'perf probe -x _ferrocorn*.so --add mi_malloc_aligned')",
    )
    cpu.add_argument("--rss", action="store_true", help="print the RSS after the runs")
    rss = sub.add_parser("rss", help="idle RSS of the process tree")
    rss.add_argument("servers", nargs="+")
    rss.add_argument("--runs", type=int, default=3)
    rss.add_argument("--after-load", action="store_true")
    args = parser.parse_args()
    {"cpu": cpu_command, "rss": rss_command}[args.command](args)


if __name__ == "__main__":
    main()
