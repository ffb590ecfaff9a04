"""Helpers shared by the benchmark scripts: ports, readiness, RSS, wrk, reporting."""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, "bench", ".venv", "bin")
# GATEWAY_BIN overrides the binary (a debug build for a smoke run).
GATEWAY = os.environ.get("GATEWAY_BIN") or os.path.join(ROOT, "target", "release", "wsgi-gateway")
# GATEWAY_PIP_BIN adds the pip-installed gateway (the extension-module build, e.g.
# bench/.venv/bin/wsgi-gateway after `bench/.venv/bin/pip install dist/wsgi_gateway-*.whl`)
# as one more server, "gateway-pip", with the same arguments as "wsgi-gateway".
GATEWAY_PIP = os.environ.get("GATEWAY_PIP_BIN")


def with_pip_build(servers):
    """`servers`, plus "gateway-pip" when GATEWAY_PIP_BIN names the pip-installed gateway."""
    if GATEWAY_PIP:
        servers["gateway-pip"] = [GATEWAY_PIP if arg == GATEWAY else arg
                                  for arg in servers["wsgi-gateway"]]
    return servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=30, path="/"):
    """Wait until GET `path` answers 200."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def rss_kib(pid):
    """RSS of a process and all its descendants, in KiB."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def descendants(pid):
    """A process and all its descendants."""
    found, pids = [], [pid]
    while pids:
        p = pids.pop()
        found.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def cpu_seconds(pid):
    """User + system CPU time of a process tree (every thread), in seconds."""
    ticks = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def parse_latency(text, label):
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\b", text, re.M)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port, seconds, connections, headers=(), path="/"):
    """One wrk run against GET `path`; returns req/s, p99 and error counts."""
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra,
         f"http://127.0.0.1:{port}{path}"],
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




def parse_args(description, workers=False, extra=None):
    """The options every comparison script takes (`extra(parser)` adds a script's own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="gateway Python threads")
    if workers:
        parser.add_argument("--workers", type=int, default=1,
                            help="worker processes, every server")
    parser.add_argument("--only", nargs="*", help="subset of servers to run")
    if extra:
        extra(parser)
    return parser.parse_args()


def only(servers, names):
    """`servers` restricted to `names` (all of them when `names` is empty)."""
    return {k: v for k, v in servers.items() if not names or k in names}


def compare(servers, cwd, rounds, seconds, connections, headers=(), env=None, path="/"):
    """Start every server, then load them in turn for `rounds` alternating rounds.

    `servers` maps a name to an argv template with {port} (or a function of the port
    returning the argv). Every run loads GET `path`. Returns name -> list of per-round
    results, and prints one line per run."""
    results = {name: [] for name in servers}
    procs = {}
    try:
        for name, argv in servers.items():
            port = free_port()
            argv = argv(port) if callable(argv) else [a.format(port=port) for a in argv]
            proc = subprocess.Popen(argv, cwd=cwd, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            wait_ready(port, proc, path=path)
            run_wrk(port, 2, connections, headers, path)  # warm-up
            procs[name] = (proc, port)
        for round_no in range(1, rounds + 1):
            for name, (proc, port) in procs.items():
                cpu_before = cpu_seconds(proc.pid)
                result = run_wrk(port, seconds, connections, headers, path)
                cpu = cpu_seconds(proc.pid) - cpu_before
                # The server's own CPU per request: what a load generator on other
                # cores would see, free of wrk's share of these two cores.
                result["cpu_us"] = cpu / (result["rps"] * seconds) * 1e6
                result["rss_mib"] = rss_kib(proc.pid) / 1024
                results[name].append(result)
                print(f"round {round_no} {name:13s} {result['rps']:>10.0f} req/s  "
                      f"p99 {result['p99_ms']:6.2f} ms  cpu {result['cpu_us']:5.1f} us/req  "
                      f"rss {result['rss_mib']:6.1f} MiB  "
                      f"non-2xx {result['non2xx']} {result['socket_errors']}", flush=True)
    finally:
        for proc, _ in procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
    return results


def report(results, subject="wsgi-gateway"):
    """Print medians per server and the subject's median ratio against each peer."""
    print()
    print(f"{'server':13s} {'median req/s':>13s} {'median p99 ms':>14s} "
          f"{'CPU us/req':>11s} {'max RSS MiB':>12s}")
    for name, rows in results.items():
        rps = statistics.median(r["rps"] for r in rows)
        p99 = statistics.median(r["p99_ms"] for r in rows)
        cpu = statistics.median(r["cpu_us"] for r in rows)
        rss = max(r["rss_mib"] for r in rows)
        print(f"{name:13s} {rps:>13.0f} {p99:>14.2f} {cpu:>11.2f} {rss:>12.1f}")
    for peer in results:
        if peer == subject or subject not in results:
            continue
        ratios = [g["rps"] / p["rps"] for g, p in zip(results[subject], results[peer])]
        print(f"{subject}/{peer}: median ratio {statistics.median(ratios):.2f} "
              f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
        cpu = [p["cpu_us"] / g["cpu_us"] for g, p in zip(results[subject], results[peer])]
        print(f"{peer}/{subject} server CPU per request: median ratio "
              f"{statistics.median(cpu):.2f} (rounds: {', '.join(f'{r:.2f}' for r in cpu)})")
