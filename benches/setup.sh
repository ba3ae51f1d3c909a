#!/usr/bin/env bash
# Install what benches/run.py needs: wrk and h2load (apt), the peer servers and the checking
# clients (pip), and build benches/wsload (the WebSocket load generator) and benches/httpload
# (the load generator of the file workloads) with cargo (crates.io only).
# Idempotent: apt runs only when wrk or h2load is missing; pip skips what is already installed;
# cargo rebuilds wsload and httpload only when their sources changed.
# It does not install ferrocorn itself: build it from the repository root with `pip install .`.
# PYTHON selects the interpreter (and so the environment) to install into, e.g.
#   PYTHON=/path/to/venv/bin/python bash benches/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

if ! command -v wrk >/dev/null 2>&1 || ! command -v h2load >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk nghttp2-client util-linux curl
fi

"$python" -m pip install -r "$here/requirements.txt"

if command -v cargo >/dev/null 2>&1; then
    cargo build --release --manifest-path "$here/wsload/Cargo.toml"
    cargo build --release --manifest-path "$here/httpload/Cargo.toml"
else
    echo "cargo not found: benches/wsload and benches/httpload (needed by the ws and files workloads) are not built" >&2
fi

wrk --version 2>&1 | head -n 1 || true
h2load --version 2>&1 | head -n 1 || true
for tool in wsload httpload; do
    if [ -x "$here/$tool/target/release/$tool" ]; then
        echo "$tool: $here/$tool/target/release/$tool"
    fi
done
"$python" - <<'PY'
from importlib import metadata

for package in (
    "uvicorn", "uvloop", "httptools", "websockets", "granian", "hypercorn", "fastapi", "httpx",
    "h2", "trustme",
):
    print(f"{package} {metadata.version(package)}")
try:
    import ferrocorn._ferrocorn  # noqa: F401
except ImportError:
    print("ferrocorn: not installed (pip install . from the repository root); "
          "benchmark the peers with: python3 benches/run.py --servers uvicorn,granian,hypercorn")
else:
    print(f"ferrocorn {metadata.version('ferrocorn')}")
PY
