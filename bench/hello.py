#!/usr/bin/env python3
"""Hello-world throughput: wsgi-gateway against granian and gunicorn, side by side.

Each server runs one worker (or --workers N) serving config/example/hello.py (13-byte body). They are
loaded in turn with the same `wrk -t1 -c64` on loopback, alternating, for several rounds;
the script prints requests/s, p99 latency and RSS per round, and the median ratios.

Run bench/setup.sh first (or use bench/run.sh, which does both).
"""

import os
import sys

from benchlib import GATEWAY, ROOT, VENV_BIN, compare, only, parse_args, report, with_pip_build

APP_DIR = os.path.join(ROOT, "config", "example")


def servers(threads, workers=1):
    """name -> argv template ({port} is filled in). Each peer with its fastest settings."""
    return with_pip_build({
        "wsgi-gateway": [GATEWAY, "serve", "--app", "hello:application", "--bind",
                         "127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)],
        "granian": [os.path.join(VENV_BIN, "granian"), "--interface", "wsgi", "--workers", str(workers),
                    "--blocking-threads", "1", "--http", "1", "--no-ws", "--log-level", "warning",
                    "--host", "127.0.0.1", "--port", "{port}", "hello:application"],
        "gunicorn": [os.path.join(VENV_BIN, "gunicorn"), "--workers", str(workers), "--worker-class",
                     "gthread", "--threads", "4", "--log-level", "warning",
                     "--bind", "127.0.0.1:{port}", "hello:application"],
    })


def main():
    args = parse_args(__doc__, workers=True)
    chosen = only(servers(args.threads, args.workers), args.only)
    results = compare(chosen, APP_DIR, args.rounds, args.seconds, args.connections)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
