#!/usr/bin/env bash
# Install what benches/run.py needs: wrk and h2load (apt) and the peer servers (pip).
# Idempotent: apt runs only when wrk or h2load is missing; pip skips what is already installed.
# It does not install ferrocorn itself: build it from the repository root with `pip install .`.
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

wrk --version 2>&1 | head -n 1 || true
"$python" - <<'PY'
from importlib import metadata

for package in ("uvicorn", "uvloop", "httptools", "granian", "fastapi", "httpx"):
    print(f"{package} {metadata.version(package)}")
try:
    import ferrocorn._ferrocorn  # noqa: F401
except ImportError:
    print("ferrocorn: not installed (pip install . from the repository root); "
          "benchmark the peers with: python3 benches/run.py --servers uvicorn,granian")
else:
    print(f"ferrocorn {metadata.version('ferrocorn')}")
PY
