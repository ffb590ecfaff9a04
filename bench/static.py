#!/usr/bin/env python3
"""Static files: the gateway's `static` layer against nginx and granian's static mount.

The same two files, written by this script to a temporary folder, are served under
/static by each server with one worker:

- wsgi-gateway: `[[middleware]] kind = "static"` in front of config/example/hello.py;
- nginx (from Debian): a config this script writes, `worker_processes 1; sendfile on;
  access_log off;` (and keep-alive connections that last the whole run, as the others);
- granian: `--static-path-mount` in front of the same hello app.

Each file is loaded with `wrk -t1` on loopback, the servers in turn for several
alternating rounds: a 14 KB stylesheet with 64 connections (--connections) and a
20 MB file with 8 (--large-connections). The script prints req/s (and MB/s for the
large file), p99, server CPU per request (every thread of the server's process tree),
RSS, and the gateway's median ratios against each peer.

Run bench/setup.sh first (or use `bench/run.sh static`); nginx comes from Debian
(`apt-get install nginx-light` or `nginx`).
"""

import os
import shutil
import statistics
import sys
import tempfile

from benchlib import GATEWAY, ROOT, VENV_BIN, compare, only, parse_args, report

APP_DIR = os.path.join(ROOT, "config", "example")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MIME_TYPES = "/etc/nginx/mime.types"

SMALL = ("style.css", 14 * 1024)
LARGE = ("video.bin", 20 * 1024 * 1024)


def write_site(folder):
    """The served files: CSS-like text for the small one, random bytes for the large."""
    site = os.path.join(folder, "site")
    os.makedirs(site)
    rule = "body > .content .item:hover { color: #336699; margin: 0 auto; }\n"
    name, size = SMALL
    with open(os.path.join(site, name), "w") as f:
        f.write((rule * (size // len(rule) + 1))[:size])
    name, size = LARGE
    with open(os.path.join(site, name), "wb") as f:
        f.write(os.urandom(size))
    # nginx workers run as `nobody` when started as root: let them read the files.
    for path in (folder, site):
        os.chmod(path, 0o755)
    return site


def nginx_argv(folder, site):
    """A function of the port that writes nginx's config and returns its argv."""
    def argv(port):
        conf = os.path.join(folder, f"nginx-{port}.conf")
        temp = os.path.join(folder, f"nginx-{port}")
        os.makedirs(temp, exist_ok=True)
        with open(conf, "w") as f:
            f.write(f"""daemon off;
worker_processes 1;
pid {temp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    include {MIME_TYPES};
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {site}/; }}
    }}
}}
""")
        return [NGINX, "-p", temp, "-c", conf, "-e", "stderr"]
    return argv


def servers(folder, site):
    """name -> argv template ({port} is filled in) or a function of the port."""
    gateway_conf = os.path.join(folder, "gateway.toml")
    with open(gateway_conf, "w") as f:
        f.write(f'[[middleware]]\nkind = "static"\nmount = "/static"\ndir = "{site}"\n')
    return {
        "wsgi-gateway": [GATEWAY, "serve", "--config", gateway_conf, "--app", "hello:application",
                         "--bind", "127.0.0.1:{port}", "--workers", "1", "--threads", "1"],
        "nginx": nginx_argv(folder, site),
        "granian": [os.path.join(VENV_BIN, "granian"), "--interface", "wsgi", "--workers", "1",
                    "--blocking-threads", "1", "--http", "1", "--no-ws", "--log-level", "warning",
                    "--static-path-mount", site, "--static-path-route", "/static",
                    "--host", "127.0.0.1", "--port", "{port}", "hello:application"],
    }


def report_throughput(results, size):
    """MB/s per server (median) for a file of `size` bytes."""
    for name, rows in results.items():
        mbps = statistics.median(r["rps"] for r in rows) * size / 1e6
        print(f"{name:13s} {mbps:>10.1f} MB/s")


def options(parser):
    parser.add_argument("--large-connections", type=int, default=8,
                        help="wrk connections for the 20 MB file")


def main():
    args = parse_args(__doc__, extra=options)
    if not os.path.exists(MIME_TYPES) or not shutil.which(NGINX):
        print("bench/static.py: nginx is missing (apt-get install nginx-light)", file=sys.stderr)
        return 1
    folder = tempfile.mkdtemp(prefix="static-bench-")
    try:
        site = write_site(folder)
        chosen = only(servers(folder, site), args.only)
        for (name, size), connections in ((SMALL, args.connections),
                                          (LARGE, args.large_connections)):
            print(f"\n== {name}: {size // 1024} KiB, wrk -t1 -c{connections} ==")
            results = compare(chosen, APP_DIR, args.rounds, args.seconds, connections,
                              path=f"/static/{name}")
            report(results)
            if size >= 1 << 20:
                report_throughput(results, size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
