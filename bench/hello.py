#!/usr/bin/env python3
"""Hello-world throughput: wsgi-gateway against granian and gunicorn, side by side.

Each server runs one worker serving config/example/hello.py (13-byte body). They are
loaded in turn with the same `wrk -t1 -c64` on loopback, alternating, for several rounds;
the script prints requests/s, p99 latency and RSS per round, and the median ratios.

Run bench/setup.sh first (or use bench/run.sh, which does both).
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_DIR = os.path.join(ROOT, "config", "example")
VENV_BIN = os.path.join(ROOT, "bench", ".venv", "bin")
GATEWAY = os.path.join(ROOT, "target", "release", "wsgi-gateway")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def servers(threads):
    """name -> argv template ({port} is filled in). Each peer with its fastest settings."""
    return {
        "wsgi-gateway": [GATEWAY, "serve", "--app", "hello:application", "--bind",
                         "127.0.0.1:{port}", "--workers", "1", "--threads", str(threads)],
        "granian": [os.path.join(VENV_BIN, "granian"), "--interface", "wsgi", "--workers", "1",
                    "--blocking-threads", "1", "--http", "1", "--no-ws", "--log-level", "warning",
                    "--host", "127.0.0.1", "--port", "{port}", "hello:application"],
        "gunicorn": [os.path.join(VENV_BIN, "gunicorn"), "--workers", "1", "--worker-class",
                     "gthread", "--threads", "4", "--log-level", "warning",
                     "--bind", "127.0.0.1:{port}", "hello:application"],
    }


def wait_ready(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.read() == b"Hello, World!":
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def rss_kib(pid):
    """RSS of a process and all its descendants, in KiB."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return total


def parse_latency(text, label):
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\b", text, re.M)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port, seconds, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p99_ms": parse_latency(out, "99%"),
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="gateway Python threads")
    parser.add_argument("--only", nargs="*", help="subset of servers to run")
    args = parser.parse_args()

    chosen = servers(args.threads)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only}
    results = {name: [] for name in chosen}
    procs = {}
    try:
        for name, argv in chosen.items():
            port = free_port()
            proc = subprocess.Popen([a.format(port=port) for a in argv], cwd=APP_DIR,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            wait_ready(port, proc)
            run_wrk(port, 2, args.connections)  # warm-up
            procs[name] = (proc, port)
        for round_no in range(1, args.rounds + 1):
            for name, (proc, port) in procs.items():
                result = run_wrk(port, args.seconds, args.connections)
                result["rss_mib"] = rss_kib(proc.pid) / 1024
                results[name].append(result)
                print(f"round {round_no} {name:13s} {result['rps']:>10.0f} req/s  "
                      f"p99 {result['p99_ms']:6.2f} ms  rss {result['rss_mib']:6.1f} MiB  "
                      f"non-2xx {result['non2xx']} {result['socket_errors']}", flush=True)
    finally:
        for proc, _ in procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)

    print()
    print(f"{'server':13s} {'median req/s':>13s} {'median p99 ms':>14s} {'max RSS MiB':>12s}")
    medians = {}
    for name, rows in results.items():
        medians[name] = statistics.median(r["rps"] for r in rows)
        p99 = statistics.median(r["p99_ms"] for r in rows)
        rss = max(r["rss_mib"] for r in rows)
        print(f"{name:13s} {medians[name]:>13.0f} {p99:>14.2f} {rss:>12.1f}")
    if "wsgi-gateway" in medians:
        for peer in ("granian", "gunicorn"):
            if peer in medians:
                ratios = [g["rps"] / p["rps"] for g, p in zip(results["wsgi-gateway"], results[peer])]
                print(f"gateway/{peer}: median ratio {statistics.median(ratios):.2f} "
                      f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
