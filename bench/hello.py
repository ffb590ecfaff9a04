#!/usr/bin/env python3
"""Hello-world throughput: wsgi-gateway against granian and gunicorn, side by side.

Each server runs one worker (or --workers N) serving config/example/hello.py (13-byte body). They are
loaded in turn with the same `wrk -t1 -c64` on loopback, alternating, for several rounds;
the script prints requests/s, p99 latency and RSS per round, and the median ratios.

Run bench/setup.sh first (or use bench/run.sh, which does both).
"""

import argparse
import os
import sys

from benchlib import GATEWAY, ROOT, VENV_BIN, compare, report

APP_DIR = os.path.join(ROOT, "config", "example")


def servers(threads, workers=1):
    """name -> argv template ({port} is filled in). Each peer with its fastest settings."""
    return {
        "wsgi-gateway": [GATEWAY, "serve", "--app", "hello:application", "--bind",
                         "127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)],
        "granian": [os.path.join(VENV_BIN, "granian"), "--interface", "wsgi", "--workers", str(workers),
                    "--blocking-threads", "1", "--http", "1", "--no-ws", "--log-level", "warning",
                    "--host", "127.0.0.1", "--port", "{port}", "hello:application"],
        "gunicorn": [os.path.join(VENV_BIN, "gunicorn"), "--workers", str(workers), "--worker-class",
                     "gthread", "--threads", "4", "--log-level", "warning",
                     "--bind", "127.0.0.1:{port}", "hello:application"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="gateway Python threads")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, every server")
    parser.add_argument("--only", nargs="*", help="subset of servers to run")
    args = parser.parse_args()
    chosen = servers(args.threads, args.workers)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only}
    results = compare(chosen, APP_DIR, args.rounds, args.seconds, args.connections)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
