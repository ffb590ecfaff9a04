#!/usr/bin/env python3
"""The reverse proxy: wsgi-gateway's `proxy` route against nginx's `proxy_pass`.

Both proxy to the same upstream, an nginx (1 worker) that answers a 13-byte body from
memory, each with one worker and keep-alive connections to it:

- wsgi-gateway: `[upstream.bench] servers = ["127.0.0.1:UPSTREAM"]` and a route
  `proxy = "bench"` (pooled HTTP/1.1, the default `max_idle`);
- nginx: `upstream bench { server 127.0.0.1:UPSTREAM; keepalive 64; }` and
  `proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection "";`
  with `X-Forwarded-For` set, as the gateway does.

They are loaded in turn with the same `wrk -t1` on loopback for several alternating
rounds; the script prints req/s, p99, server CPU per request (each proxy's process
tree, not the upstream's) and RSS, and the gateway's median ratios against nginx.

`--direct` is the baseline without a proxy: each server answers the same 13 bytes
itself (the gateway from a `respond` route, nginx from `return 200`). The ratio of the
proxied run over this one tells how much of the gap is the proxy and how much the
server that receives the request.

`--stream` instead sends 1 GiB up and 1 GiB down (a sparse file) through each proxy and
prints the time and each proxy's peak RSS: bodies stream, so the peak stays flat. The
upload goes to a sink this script runs, which reads the whole body before it answers
with the byte count (nginx's `return` answers first and discards the body after, and
an early answer ends an upload through a proxy).

Run bench/setup.sh first (or `bench/run.sh proxy`); nginx comes from Debian.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import GATEWAY, ROOT, compare, descendants, free_port, only, parse_args, report

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GIB = 1 << 30


def nginx_conf(folder, name, port, body):
    """Write an nginx config with one server block `body` on `port`; return its argv."""
    temp = os.path.join(folder, f"{name}-{port}")
    os.makedirs(temp, exist_ok=True)
    conf = os.path.join(temp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {temp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_max_body_size 0;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{body}
}}
""")
    return [NGINX, "-p", temp, "-c", conf, "-e", "stderr"]


def start_upstream(folder):
    """The shared upstream: 13 bytes from memory, a sink, and a sparse 1 GiB file."""
    big = os.path.join(folder, "big.bin")
    with open(big, "wb") as f:
        f.truncate(GIB)
    os.chmod(folder, 0o755)
    port = free_port()
    argv = nginx_conf(folder, "upstream", port, f"""    server {{
        listen 127.0.0.1:{port};
        location = / {{ return 200 "Hello, World!"; }}
        location = /sink {{ return 200 "ok"; }}
        location = /big {{ alias {big}; }}
    }}""")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_port(port)
    return proc, port


def start_sink():
    """A server that reads each request's whole body (Content-Length) before it
    answers with the number of bytes read; returns its port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve(conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                piece = conn.recv(65536)
                if not piece:
                    return
                head += piece
            head, body = head.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            got = len(body)
            buf = memoryview(bytearray(1 << 20))
            while got < length:
                n = conn.recv_into(buf)
                if not n:
                    break
                got += n
            answer = str(got).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(answer), answer))

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def servers(folder, upstream, direct=False, sink=None):
    """name -> function of the port that returns the argv; with `direct`, each answers
    the upstream's 13 bytes itself instead of proxying; with a `sink` port, /sink goes
    there."""
    def gateway(port):
        conf = os.path.join(folder, f"gateway-{port}.toml")
        with open(conf, "w") as f:
            if direct:
                f.write('[[route]]\nrespond = { body = "Hello, World!" }\n')
            else:
                f.write(f"""[limits]
max_body_size = "2GiB"
[upstream.bench]
servers = ["127.0.0.1:{upstream}"]
read_timeout = "600s"
""")
                if sink:
                    f.write(f"""[upstream.sink]
servers = ["127.0.0.1:{sink}"]
read_timeout = "600s"
[[route]]
path = "/sink"
proxy = "sink"
""")
                f.write("""[[route]]
proxy = "bench"
""")
        return [GATEWAY, "serve", "--config", conf, "--bind", f"127.0.0.1:{port}",
                "--workers", "1"]

    sink_location = (f"location = /sink {{ proxy_pass http://127.0.0.1:{sink}; "
                     "proxy_http_version 1.1; proxy_read_timeout 600s; }" if sink else "")

    def nginx(port):
        if direct:
            return nginx_conf(folder, "direct", port, f"""    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "Hello, World!"; }}
    }}""")
        return nginx_conf(folder, "proxy", port, f"""    upstream bench {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout 600s;
        {sink_location}
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}""")

    return {"wsgi-gateway": gateway, "nginx": nginx}


def peak_rss_kib(pid):
    """The largest VmHWM (peak RSS) in a process tree."""
    peak = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak


def stream(chosen, gib, folder):
    """1 GiB (or `gib`) up to the sink and down from the upstream through each proxy:
    time, what the sink read (its answer) and the status, and peak RSS."""
    size = int(gib * GIB)
    upload = os.path.join(folder, "upload.bin")
    with open(upload, "wb") as f:
        f.truncate(size)
    for name, argv in chosen.items():
        port = free_port()
        proc = subprocess.Popen(argv(port), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(port)
            time.sleep(0.5)
            before = peak_rss_kib(proc.pid)
            started = time.time()
            up = subprocess.run(
                ["curl", "-sS", "-o", "-", "-w", " %{http_code}", "-T", upload,
                 f"http://127.0.0.1:{port}/sink"],
                capture_output=True, text=True)
            up_s = time.time() - started
            started = time.time()
            down = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                 "-r", f"0-{size - 1}", f"http://127.0.0.1:{port}/big"],
                capture_output=True, text=True)
            down_s = time.time() - started
            peak = peak_rss_kib(proc.pid)
            print(f"{name:13s} up {up.stdout.strip()} (bytes read, status) in {up_s:6.2f} s   "
                  f"down {down.stdout.strip()} in {down_s:6.2f} s   "
                  f"peak RSS {before / 1024:6.1f} -> {peak / 1024:6.1f} MiB", flush=True)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=10)


def options(parser):
    parser.add_argument("--stream", action="store_true",
                        help="1 GiB up and down instead of the throughput rounds")
    parser.add_argument("--direct", action="store_true",
                        help="baseline: each server answers the 13 bytes itself")
    parser.add_argument("--gib", type=float, default=1.0, help="size for --stream, in GiB")


def main():
    args = parse_args(__doc__, extra=options)
    if not os.path.exists(NGINX):
        print("bench/proxy.py: nginx is missing (apt-get install nginx-light)", file=sys.stderr)
        return 1
    folder = tempfile.mkdtemp(prefix="proxy-bench-")
    upstream, upstream_port = start_upstream(folder)
    try:
        sink = start_sink() if args.stream else None
        chosen = only(servers(folder, upstream_port, args.direct, sink), args.only)
        if args.stream:
            stream(chosen, args.gib, folder)
        else:
            results = compare(chosen, ROOT, args.rounds, args.seconds, args.connections)
            report(results)
    finally:
        os.killpg(upstream.pid, 15)
        upstream.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
