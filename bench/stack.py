#!/usr/bin/env python3
"""Middleware-stack throughput: the paste-stack example (TransLogger, gzipper, Beaker
session, app) on gunicorn and granian, against wsgi-gateway serving its native rewrite
(access_log + compression native, Beaker in Python). Same app, same load, every request
with `Accept-Encoding: gzip`; one worker each; alternating rounds; median ratios.

Run bench/setup.sh first (or use bench/run.sh stack).
"""

import os
import sys

from benchlib import GATEWAY, ROOT, VENV_BIN, compare, only, parse_args, report, with_pip_build

STACK_DIR = os.path.join(ROOT, "config", "examples", "paste-stack")
PASTE_ENTRY = os.path.join(ROOT, "bench", "paste_entry")


def servers(threads):
    return with_pip_build({
        "wsgi-gateway": [GATEWAY, "serve", "--config", os.path.join(STACK_DIR, "gateway.toml"),
                         "--bind", "127.0.0.1:{port}", "--workers", "1", "--threads", str(threads)],
        "granian": [os.path.join(VENV_BIN, "granian"), "--interface", "wsgi", "--workers", "1",
                    "--blocking-threads", "1", "--http", "1", "--no-ws", "--log-level", "warning",
                    "--host", "127.0.0.1", "--port", "{port}", "--working-dir", PASTE_ENTRY,
                    "paste_app:application"],
        "gunicorn": [os.path.join(VENV_BIN, "gunicorn"), "--workers", "1", "--worker-class",
                     "gthread", "--threads", "4", "--log-level", "warning",
                     "--bind", "127.0.0.1:{port}", "--paste", os.path.join(STACK_DIR, "production.ini")],
    })


def main():
    args = parse_args(__doc__)
    chosen = only(servers(args.threads), args.only)
    env = dict(os.environ, VIRTUAL_ENV=os.path.join(ROOT, "bench", ".venv"),
               PYTHONPATH=STACK_DIR)
    results = compare(chosen, STACK_DIR, args.rounds, args.seconds, args.connections,
                      headers=["Accept-Encoding: gzip"], env=env)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
