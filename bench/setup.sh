#!/usr/bin/env bash
# Install what the benchmarks need: wrk and nginx (Debian), the release binary, and
# bench/.venv with the peer servers (granian, gunicorn) pinned in bench/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "bench/setup.sh: ${missing[*]} missing; install with apt-get install ${missing[*]}" >&2
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
