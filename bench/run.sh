#!/usr/bin/env bash
# Build, install the peers, and run a benchmark: `bench/run.sh` (hello world) or
# `bench/run.sh stack` (the paste-stack middleware stack) or `bench/run.sh zero_loss`
# (reloads and a drain under load) or `bench/run.sh static` (static files against nginx
# and granian) or `bench/run.sh slow_clients` (fast clients next to slow uploaders) or
# `bench/run.sh proxy` (the reverse proxy against nginx; `--stream` for 1 GiB each way)
# or `bench/run.sh proxy_failover` (an upstream stopped and restarted under load).
# Extra arguments go to the
# script (e.g. --rounds 5 --seconds 15).
set -euo pipefail
cd "$(dirname "$0")/.."
bench/setup.sh
script=hello
case "${1:-}" in
    hello | stack | zero_loss | static | slow_clients | proxy | proxy_failover) script=$1; shift ;;
esac
exec python3 "bench/$script.py" "$@"
