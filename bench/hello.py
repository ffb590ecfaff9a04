#!/usr/bin/env python3
"""Hello-world throughput: wsgi-gateway against granian and gunicorn, side by side.

Each server runs one worker (or --workers N) serving config/example/hello.py (13-byte body). They are
loaded in turn with the same `wrk -t1 -c64` on loopback, alternating, for several rounds;
the script prints requests/s, p99 latency and RSS per round, and the median ratios.

With --routes N, a second gateway serves the same app behind a table of N routes that
the request does not match (a tenth of them on hosts, the rest on path prefixes, as a
site's table would be), so the report's ratio is what routing costs:
`bench/hello.py --routes 100 --only wsgi-gateway wsgi-gateway+routes`.

Run bench/setup.sh first (or use bench/run.sh, which does both).
"""

import os
import sys
import tempfile

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


def routes_config(count):
    """A gateway.toml with `count` routes that GET / on 127.0.0.1 does not match."""
    lines = ["[app]", 'wsgi = "hello:application"', ""]
    hosts = max(1, count // 10)
    for i in range(count):
        lines.append("[[route]]")
        if i < hosts:
            lines.append(f'host = "tenant{i}.example.com"')
        else:
            lines.append(f'path = "/section{i}"')
        lines.append(f'respond = {{ status = 200, body = "route {i}" }}')
        lines.append("")
    handle = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    handle.write("\n".join(lines))
    handle.close()
    return handle.name


def main():
    args = parse_args(__doc__, workers=True, extra=lambda p: p.add_argument(
        "--routes", type=int, default=0, help="also run a gateway behind N routes"))
    table = servers(args.threads, args.workers)
    if args.routes:
        routed = list(table["wsgi-gateway"])
        routed[routed.index("--app"):routed.index("--app") + 2] = ["--config", routes_config(args.routes)]
        table["wsgi-gateway+routes"] = routed
    chosen = only(table, args.only)
    results = compare(chosen, APP_DIR, args.rounds, args.seconds, args.connections)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
