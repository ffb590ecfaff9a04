#!/usr/bin/env bash
# Build, install the peers, and run the hello-world benchmark. Extra arguments go to
# bench/hello.py (e.g. --rounds 5 --seconds 15).
set -euo pipefail
cd "$(dirname "$0")/.."
bench/setup.sh
exec python3 bench/hello.py "$@"
