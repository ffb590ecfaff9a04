#!/usr/bin/env python3
"""Fast clients next to slow uploaders: wsgi-gateway against gunicorn and granian.

Each server runs one worker with 4 Python threads (--threads) serving
config/example/hello.py. For each count of slow uploaders (0, 4 and 100 by default;
--uploaders), the uploaders connect and POST to /echo (which reads wsgi.input) a
100 000-byte body one byte every 0.5 s, half with Content-Length and half chunked; a
client that is answered or cut off starts over. After --settle seconds, `wrk -t1 -c64`
loads GET / (the fast clients) for --seconds; the script prints the fast clients'
requests/s, p99, non-2xx responses and socket errors (wrk counts a request that waits
more than 2 s as a timeout), and what the uploaders were answered (e.g. 408).

Servers and uploader counts alternate for --rounds rounds; the summary gives medians.
This is issue 11, item 2: without request buffering, 4 slow uploaders hold every Python
thread and the fast clients starve.

Run bench/setup.sh first (or bench/run.sh slow_clients). A short smoke run against a
debug build: bench/slow_clients.py --gateway target/debug/wsgi-gateway
--only wsgi-gateway --rounds 1 --seconds 2 --settle 1 --uploaders 0 4
"""

import argparse
import asyncio
import collections
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

from benchlib import GATEWAY, ROOT, VENV_BIN, free_port, only, run_wrk, wait_ready

APP_DIR = os.path.join(ROOT, "config", "example")
BODY_BYTES = 100_000
PACE_SECONDS = 0.5


def servers(gateway, threads):
    """name -> argv template ({port} is filled in); one worker, `threads` Python threads."""
    return {
        "wsgi-gateway": [gateway, "serve", "--app", "hello:application", "--bind",
                         "127.0.0.1:{port}", "--workers", "1", "--threads", str(threads)],
        "granian": [os.path.join(VENV_BIN, "granian"), "--interface", "wsgi", "--workers", "1",
                    "--blocking-threads", str(threads), "--http", "1", "--no-ws",
                    "--log-level", "warning", "--host", "127.0.0.1", "--port", "{port}",
                    "hello:application"],
        "gunicorn": [os.path.join(VENV_BIN, "gunicorn"), "--workers", "1", "--worker-class",
                     "gthread", "--threads", str(threads), "--log-level", "warning",
                     "--bind", "127.0.0.1:{port}", "hello:application"],
    }


async def slow_upload(port, chunked, stop, answers):
    """POST /echo a byte every PACE_SECONDS until `stop`; start over when answered."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY_BYTES}"
    head = f"POST /echo HTTP/1.1\r\nHost: bench\r\n{framing}\r\n\r\n".encode()
    piece = b"1\r\nx\r\n" if chunked else b"x"
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            for _ in range(BODY_BYTES):
                if stop.is_set():
                    break
                writer.write(piece)
                await writer.drain()
                try:
                    # The pace, and a look for an answer (or a close) meanwhile.
                    data = await asyncio.wait_for(reader.read(64), PACE_SECONDS)
                except asyncio.TimeoutError:
                    continue
                status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                answers[status] += 1
                break
        except OSError:
            answers["connect/write error"] += 1
            await asyncio.sleep(PACE_SECONDS)
        finally:
            if writer is not None:
                writer.close()


class Uploaders:
    """`count` slow uploaders on an asyncio loop in a thread, until stop()."""

    def __init__(self, port, count):
        self.answers = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(port, count),),
                                        daemon=True)
        self._thread.start()

    async def _run(self, port, count):
        await asyncio.gather(*(slow_upload(port, n % 2 == 1, self._stop, self.answers)
                               for n in range(count)))

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=PACE_SECONDS * 4)
        return dict(self.answers)


def start(argv, port):
    proc = subprocess.Popen([a.format(port=port) for a in argv], cwd=APP_DIR,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_ready(port, proc)
    return proc


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def measure(name, port, slow, args):
    uploaders = Uploaders(port, slow)
    time.sleep(args.settle)  # let the uploaders take their places
    try:
        result = run_wrk(port, args.seconds, args.connections)
    finally:
        result_answers = uploaders.stop()
    result["uploader_answers"] = result_answers
    print(f"{name:13s} slow {slow:>3d}  {result['rps']:>9.0f} req/s  "
          f"p99 {result['p99_ms']:8.2f} ms  non-2xx {result['non2xx']}  "
          f"socket errors: {result['socket_errors'] or 'none'}  "
          f"uploaders answered: {result_answers or 'nothing'}", flush=True)
    return result


def report(results):
    print()
    print(f"{'server':13s} {'slow':>4s} {'median req/s':>13s} {'median p99 ms':>14s}")
    for (name, slow), rows in sorted(results.items()):
        rps = statistics.median(r["rps"] for r in rows)
        p99 = statistics.median(r["p99_ms"] for r in rows)
        print(f"{name:13s} {slow:>4d} {rps:>13.0f} {p99:>14.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="wrk run per measurement")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds the uploaders run before wrk starts")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=4, help="Python threads, every server")
    parser.add_argument("--uploaders", type=int, nargs="+", default=[0, 4, 100])
    parser.add_argument("--gateway", default=GATEWAY, help="the wsgi-gateway binary")
    parser.add_argument("--only", nargs="*", help="subset of servers to run")
    args = parser.parse_args()

    chosen = only(servers(os.path.abspath(args.gateway), args.threads), args.only)
    results = collections.defaultdict(list)
    procs = {}
    try:
        for name, argv in chosen.items():
            port = free_port()
            procs[name] = (start(argv, port), port)
            run_wrk(port, 2, args.connections)  # warm-up
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}", flush=True)
            for slow in args.uploaders:
                for name, (_, port) in procs.items():
                    results[(name, slow)].append(measure(name, port, slow, args))
    finally:
        for proc, _ in procs.values():
            stop(proc)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
