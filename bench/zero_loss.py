#!/usr/bin/env python3
"""Zero-loss lifecycle check: constant wrk load while the gateway is reloaded twice
(SIGHUP) and then stopped (SIGTERM).

Phase 1, reloads: `wrk -t1 -c32` for 8 s with SIGHUP at 2 s and 5 s. Every request must
succeed: the script prints wrk's totals, non-2xx responses and socket errors (target 0).

Phase 2, drain: wrk load plus probe threads that timestamp each request; SIGTERM at 2 s.
Every request *started before SIGTERM* must complete with a 2xx (target 0 failures);
requests after it meet a closed server, as they should.

Run bench/setup.sh first (or bench/run.sh zero_loss).
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time

from benchlib import GATEWAY, ROOT, free_port, wait_ready

APP_DIR = os.path.join(ROOT, "config", "example")


def start_gateway(port, log):
    return subprocess.Popen(
        [GATEWAY, "serve", "--app", "hello:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4"],
        cwd=APP_DIR, stdout=log, stderr=log, start_new_session=True)


def wrk(port, seconds):
    return subprocess.Popen(["wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.PIPE, text=True)


def summarize(output):
    requests = re.search(r"(\d+) requests in", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return (int(requests.group(1)) if requests else 0,
            int(non2xx.group(1)) if non2xx else 0,
            errors.group(1) if errors else "none")


def wait_log_count(path, needle, count, timeout=60):
    """Wait until `needle` appears at least `count` times in the log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path) as f:
            if f.read().count(needle) >= count:
                return True
        time.sleep(0.05)
    return False


def probe(port, stop_at, results, deadline):
    """Keep-alive requests in a loop; record (started, ok) for each."""
    conn = None
    while time.time() < deadline:
        started = time.time()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            ok = response.status == 200 and body == b"Hello, World!"
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            ok = False
            conn = None
            if started > stop_at[0]:
                time.sleep(0.01)
        results.append((started, ok))


def main():
    port = free_port()
    log_path = os.path.join(ROOT, "target", "zero_loss.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    failures = 0
    with open(log_path, "w") as log:
        gateway = start_gateway(port, log)
        try:
            wait_ready(port, gateway)
            load = wrk(port, 8)
            for number, delay in ((1, 2), (2, 3)):
                time.sleep(delay)
                os.kill(gateway.pid, signal.SIGHUP)
                if wait_log_count(log_path, "reload complete", number, 30):
                    print(f"SIGHUP {number}: reload complete", flush=True)
                else:
                    print(f"SIGHUP {number}: reload did not complete")
                    failures += 1
            total, non2xx, errors = summarize(load.communicate()[0])
            print(f"phase 1 (2 reloads under load): {total} requests, non-2xx {non2xx}, "
                  f"socket errors: {errors}")
            if non2xx or errors != "none":
                failures += 1

            load = wrk(port, 6)
            results, stop_at = [], [float("inf")]
            deadline = time.time() + 5
            threads = [threading.Thread(target=probe, args=(port, stop_at, results, deadline))
                       for _ in range(8)]
            for t in threads:
                t.start()
            time.sleep(2)
            stop_at[0] = time.time()
            os.kill(gateway.pid, signal.SIGTERM)
            for t in threads:
                t.join()
            load.communicate()
            code = gateway.wait(timeout=60)
            before = [ok for started, ok in results if started < stop_at[0]]
            lost = before.count(False)
            print(f"phase 2 (SIGTERM under load): {len(before)} probe requests started before "
                  f"SIGTERM, {lost} failed; gateway exit code {code}")
            if lost or code != 0:
                failures += 1
        finally:
            if gateway.poll() is None:
                os.killpg(gateway.pid, signal.SIGKILL)
    print("zero-loss: OK" if failures == 0 else f"zero-loss: {failures} check(s) FAILED "
          f"(log: {log_path})")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
