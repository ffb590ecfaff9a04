#!/usr/bin/env python3
"""Failover under load: one of two upstream servers is stopped, then restarted.

The gateway (one worker) proxies to two nginx upstreams (`[upstream.pair]`, the
default `retries = 1`, passive health with `max_fails = 3`, `cooldown = "2s"`). `wrk`
sends GETs for --seconds; a third of the way in, one upstream is killed (SIGKILL: its
pooled connections die with requests on them), and two thirds in it is started again
on the same port. The gateway must answer every GET with 200: connect errors and resets
before the response head are retried on the other server, and the dead one is ejected
until it answers again. The script prints wrk's counts and the gateway's log lines
about the upstream, and exits 1 on any failed request.

Run bench/setup.sh first (or `bench/run.sh proxy_failover`).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import GATEWAY, ROOT, free_port, parse_args, run_wrk
from proxy import nginx_conf, wait_port


def start_nginx(folder, port):
    argv = nginx_conf(folder, "upstream", port, f"""    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "served by {port}"; }}
    }}""")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_port(port)
    return proc


def main():
    args = parse_args(__doc__)
    folder = tempfile.mkdtemp(prefix="failover-bench-")
    ports = [free_port(), free_port()]
    upstreams = [start_nginx(folder, port) for port in ports]
    gateway_port = free_port()
    conf = os.path.join(folder, "gateway.toml")
    with open(conf, "w") as f:
        f.write(f"""[upstream.pair]
servers = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
health = {{ max_fails = 3, cooldown = "2s" }}
[[route]]
proxy = "pair"
""")
    log = open(os.path.join(folder, "gateway.log"), "w+")
    gateway = subprocess.Popen([GATEWAY, "serve", "--config", conf, "--bind",
                                f"127.0.0.1:{gateway_port}", "--workers", "1"],
                               cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    result = {}
    try:
        wait_port(gateway_port)
        load = threading.Thread(target=lambda: result.update(
            run_wrk(gateway_port, args.seconds, args.connections)))
        load.start()
        time.sleep(args.seconds / 3)
        print(f"stopping the upstream on {ports[0]}", flush=True)
        os.killpg(upstreams[0].pid, signal.SIGKILL)
        upstreams[0].wait()
        time.sleep(args.seconds / 3)
        print(f"restarting the upstream on {ports[0]}", flush=True)
        upstreams[0] = start_nginx(folder, ports[0])
        load.join()
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(timeout=10)
        for proc in upstreams:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
    log.seek(0)
    for line in log:
        if "upstream=" in line:
            print("  " + line.rstrip()[:200])
    shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{result.get('rps', 0):.0f} req/s, non-2xx {result.get('non2xx')}, "
          f"socket errors: {result.get('socket_errors') or 'none'}")
    failed = result.get("non2xx", 1) != 0 or bool(result.get("socket_errors"))
    print("FAILED: some GETs failed" if failed else "OK: zero failed GETs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
