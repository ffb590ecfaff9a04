#!/usr/bin/env bash
# Install what the benchmarks need: wrk (Debian), the release binary, and bench/.venv
# with the peer servers (granian, gunicorn) pinned in bench/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        echo "bench/setup.sh: wrk is missing; install it (apt-get install wrk)" >&2
        exit 1
    fi
fi

python="${PYO3_PYTHON:-python3}"
venv=bench/.venv
if [ ! -f "$venv/pyvenv.cfg" ] || ! cmp -s bench/requirements.txt "$venv/.requirements"; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
    cp bench/requirements.txt "$venv/.requirements"
fi

cargo build --release --quiet
