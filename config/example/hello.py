"""The example application served by config/gateway.toml. No dependencies.

Routes:
  /            a greeting (13 bytes: the benchmark body)
  /environ     the WSGI environ as seen by the application, as text
  /echo        the request body back (POST)
  /stream      a streamed response, one line at a time
"""

import time


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = b"Hello, World!"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [body]
    if path == "/environ":
        lines = "".join(f"{k} = {v!r}\n" for k, v in sorted(environ.items()))
        body = lines.encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream()
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def stream():
    for i in range(5):
        yield f"line {i}\n".encode()
        time.sleep(0.1)
