"""Instructions per request on each thread of a ferrocorn server, counted by valgrind's callgrind.

Deterministic where wall-clock pairs are not (``docs/performance.md``: on identical builds the
second run of a pair reads up to 1 µs higher): the server runs under
``valgrind --tool=callgrind --separate-threads=yes``, started as ``benches/run.py`` starts it
(``benches.apps:plain``, one worker, access log off), answers a warm-up of 200 requests, its
counters are zeroed, then exactly ``--requests`` requests go through ``h2load``, and the counters
are dumped. Each thread's instructions (Ir, user space only) over that window, divided by the
requests, is the figure; the threads are named by what runs on them (``io``: tokio and hyper,
``python``: the interpreter).

    python -m benches.instructions                                 # h2c: h2load -c4 -m10
    python -m benches.instructions --load h2c1 --load h1 --rounds 3
    python -m benches.instructions --python /work/venv-a/bin/python --python /work/venv-b/bin/python
    python -m benches.instructions --top 25                        # and the hottest functions

Loads: ``h2c`` (``-c4 -m10``), ``h2c1`` (``-c1 -m1``), ``h2c32`` (``-c32 -m10``, as the h2c
workload of ``benches/run.py``: enough requests in flight for the cyclic GC to run), ``h1``
(``--h1 -c8``), ``h1c1`` (``--h1 -c1``). With several ``--python``, each round runs them in turn, alternating the order
(ABBA) from round to round. Run from the repository root; ``--keep`` leaves the callgrind files for
``callgrind_annotate``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benches.run import HOST, REPO_ROOT, server_command

LOADS = {
    "h2c": ["-c4", "-m10"],
    "h2c1": ["-c1", "-m1"],
    "h2c32": ["-c32", "-m10"],
    "h1": ["--h1", "-c8"],
    "h1c1": ["--h1", "-c1"],
}
WARM_UP = 200


@dataclass
class Thread:
    number: int
    kind: str
    instructions: int
    path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, server: subprocess.Popen[bytes], stderr: Path) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"the server did not start:\n{stderr.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)


def h2load(port: int, load: str, count: int) -> None:
    args = ["h2load", "-n", str(count), *LOADS[load], f"http://{HOST}:{port}/"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    match = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if not match or int(match.group(1)) != count:
        sys.exit(f"h2load did not complete {count} requests:\n{out}")


def thread_kind(text: str) -> str:
    # The Python thread calls into the core too (tokio's channels): the interpreter decides.
    if "_PyEval_EvalFrameDefault" in text:
        return "python"
    if "hyper" in text:
        return "io"
    return "other"


def measure(python: str, load: str, requests: int, out: Path) -> list[Thread]:
    """One server under callgrind: warm up, zero, `requests` requests, dump; its threads."""
    port = free_port()
    command = server_command("ferrocorn", "benches.apps:plain", port)
    command[0] = python
    stderr = out / "stderr"
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        "--dump-instr=no",
        f"--callgrind-out-file={out}/cg.%p",
    ]
    with stderr.open("w") as err:
        server = subprocess.Popen(valgrind + command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_listening(port, server, stderr)
        h2load(port, load, WARM_UP)
        time.sleep(0.5)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)
        h2load(port, load, requests)
        time.sleep(0.5)
        subprocess.run(["callgrind_control", "--dump=measured", str(server.pid)], check=True, capture_output=True)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    threads = []
    # The measured window's dump is part 1 of each thread's files: cg.PID.1-NN.
    for path in sorted(out.glob(f"cg.{server.pid}.1-*")):
        text = path.read_text(errors="replace")
        total = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        number = re.search(r"^thread:\s*(\d+)", text, re.M)
        instructions = int(total.group(1)) if total else 0
        if instructions >= requests * 10:
            threads.append(Thread(int(number.group(1)) if number else 0, thread_kind(text), instructions, path))
    return sorted(threads, key=lambda thread: -thread.instructions)


def top_functions(path: Path, count: int) -> str:
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    lines = [line for line in out.splitlines() if re.match(r"^\s*[\d,]+ \(", line)]
    return "\n".join(lines[: count + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", help="the venv's python of a build under test (repeatable)")
    parser.add_argument("--load", action="append", choices=sorted(LOADS), help="repeatable; default h2c")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--top", type=int, default=0, help="print this many hottest functions per thread")
    parser.add_argument("--keep", action="store_true", help="keep the callgrind files")
    args = parser.parse_args()
    pythons = args.python or [sys.executable]
    loads = args.load or ["h2c"]
    if shutil.which("valgrind") is None or shutil.which("h2load") is None:
        sys.exit("needs valgrind and h2load (apt-get install valgrind nghttp2-client)")
    for round_number in range(args.rounds):
        order = pythons if round_number % 2 == 0 else pythons[::-1]
        for load in loads:
            for python in order:
                out = Path(tempfile.mkdtemp(prefix="cg-"))
                threads = measure(python, load, args.requests, out)
                figures = "  ".join(f"{thread.kind}:{thread.instructions / args.requests:.0f}" for thread in threads)
                print(f"round {round_number + 1} {load} {python}: Ir/request  {figures}", flush=True)
                for thread in threads if args.top else []:
                    print(f"--- {thread.kind} (thread {thread.number}) ---\n{top_functions(thread.path, args.top)}")
                if args.keep:
                    print(f"  files: {out}")
                else:
                    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
