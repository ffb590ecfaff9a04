#!/usr/bin/env python3
"""Middleware-stack throughput: the paste-stack example (TransLogger, gzipper, Beaker
session, app) on gunicorn and granian, against wsgi-gateway serving its hand-written
native rewrite (gateway.toml: access_log + compression native, Beaker in Python) and
what `wsgi-gateway convert production.ini` wrote (converted.toml: the same layers, the
app loaded through PasteDeploy). Same app, same load, every request with
`Accept-Encoding: gzip`; one worker each; alternating rounds; median ratios.

Run bench/setup.sh first (or use bench/run.sh stack).
"""

import os
import statistics
import sys

from benchlib import GATEWAY, ROOT, VENV_BIN, compare, only, parse_args, report, with_pip_build

STACK_DIR = os.path.join(ROOT, "config", "examples", "paste-stack")
PASTE_ENTRY = os.path.join(ROOT, "bench", "paste_entry")


def servers(threads):
    return with_pip_build({
        "wsgi-gateway": [GATEWAY, "serve", "--config", os.path.join(STACK_DIR, "gateway.toml"),
                         "--bind", "127.0.0.1:{port}", "--workers", "1", "--threads", str(threads)],
        "wsgi-gateway (converted)": [
            GATEWAY, "serve", "--config", os.path.join(STACK_DIR, "converted.toml"),
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
    converted_ratios(results)
    return 0


def converted_ratios(results, subject="wsgi-gateway (converted)"):
    """The converted config's req/s against every other server, per round."""
    if subject not in results:
        return
    for peer, rows in results.items():
        if peer == subject:
            continue
        ratios = [c["rps"] / p["rps"] for c, p in zip(results[subject], rows)]
        print(f"{subject}/{peer}: median ratio {statistics.median(ratios):.2f} "
              f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    sys.exit(main())
