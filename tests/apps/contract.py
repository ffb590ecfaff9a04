"""A WSGI application that exercises the PEP 3333 contract, for the gateway's tests.

Each route probes one rule; /closes reports how many times each iterable's close() ran,
keyed by the request's ?id=..., so tests can check "exactly once" from outside.
"""

import hashlib
import io
import json
import os
import sys
import threading
import time

CLOSES = {}
CALLS = {"count": 0}
LOCK = threading.Lock()
BARRIER = {}


def _query(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Tracked:
    """An iterable that counts close() calls under its request id."""

    def __init__(self, key, chunks, fail_at=None, delay=0.0):
        self.key = key
        self.chunks = chunks
        self.fail_at = fail_at
        self.delay = delay

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if self.fail_at is not None and index == self.fail_at:
                raise RuntimeError("failure while iterating")
            if self.delay:
                time.sleep(self.delay)
            yield chunk

    def close(self):
        with LOCK:
            CLOSES[self.key] = CLOSES.get(self.key, 0) + 1


def noise(n, seed=12345):
    """n bytes that do not compress: a 31-bit LCG's high bits (the tests compute the
    same sequence)."""
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


WRITERS = {}


def write_from_thread(q, start_response):
    """write() called from a producer thread while the returned iterable waits.

    The producer writes n chunks of `size` bytes (chunk i is the letter A+i%26). The
    iterable waits (bounded) until the producer has been stuck inside one write() for a
    while, which happens once the client stops reading, then yields its own chunk while
    that write() still waits, then waits for the producer to finish and yields b"end".
    /writer-state?id= reports progress, so the test knows when to start reading.
    """
    key = q["id"]
    n = int(q.get("n", "128"))
    size = int(q.get("size", "262144"))
    state = {"written": 0, "in_write_since": None, "yielding": False, "error": None}
    with LOCK:
        WRITERS[key] = state
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    done = threading.Event()

    def produce():
        try:
            for i in range(n):
                state["in_write_since"] = time.monotonic()
                write(bytes([65 + i % 26]) * size)
                state["in_write_since"] = None
                state["written"] += 1
        except BaseException as error:  # reported through /writer-state
            state["error"] = repr(error)
        finally:
            done.set()

    threading.Thread(target=produce, name="producer-" + key, daemon=True).start()

    class Waiting:
        def __iter__(self):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not done.is_set():
                since = state["in_write_since"]
                if since is not None and time.monotonic() - since > 0.3:
                    break
                time.sleep(0.01)
            state["yielding"] = True
            yield b"<iterable chunk>"
            done.wait(30)
            yield b"<end>"

        def close(self):
            with LOCK:
                CLOSES[key] = CLOSES.get(key, 0) + 1

    return Waiting()


def application(environ, start_response):
    with LOCK:
        CALLS["count"] += 1
    path = environ["PATH_INFO"]
    q = _query(environ)

    if path.startswith("/environ"):
        shown = {}
        for key, value in environ.items():
            if isinstance(value, (str, bool, int, tuple)):
                shown[key] = value
        shown["wsgi.version"] = list(environ["wsgi.version"])
        return _json(start_response, shown)

    if path == "/calls":
        return _json(start_response, CALLS)

    if path == "/closes":
        with LOCK:
            return _json(start_response, CLOSES)

    if path == "/pyinfo":
        return _json(start_response, {
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "executable": sys.executable,
            "version": sys.version.split()[0],
            "path": sys.path,
            "thread": threading.current_thread().name,
        })

    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"then ")
        return [b"returned"]

    if path == "/exc-info-before":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]

    if path == "/exc-info-after":
        def gen():
            yield b"first chunk"
            try:
                raise ValueError("too late")
            except ValueError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()

    if path == "/start-twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"unreachable"]

    if path == "/lazy-start":
        def gen():
            start_response("201 Created", [("Content-Type", "text/plain")])
            yield b""
            yield b"lazy"
        return gen()

    if path == "/no-start":
        return [b"forgot start_response"]

    if path == "/raise":
        raise RuntimeError("boom from the app")

    if path == "/raise-iter":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked(q.get("id", "raise-iter"), [b"a", b"b", b"c"], fail_at=1)

    if path == "/tracked":
        n = int(q.get("n", "3"))
        delay = float(q.get("delay", "0"))
        size = int(q.get("size", "1"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked(q["id"], [b"x" * size] * n, delay=delay)

    if path == "/not-bytes":
        start_response("200 OK", [])
        return ["a str, not bytes"]

    if path == "/hop-by-hop":
        start_response("200 OK", [("Connection", "close")])
        return [b"x"]

    if path == "/crlf-header":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"x"]

    if path == "/cl-more":
        start_response("200 OK", [("Content-Length", "10")])
        return [b"0123456789", b"ABCDEFGHIJ"]

    if path == "/cl-more-stream":
        def gen():
            yield b"01234"
            yield b"56789ABCDE"
        start_response("200 OK", [("Content-Length", "10")])
        return gen()

    if path == "/cl-less":
        start_response("200 OK", [("Content-Length", "20")])
        return [b"only ten b"]

    if path == "/cl-less-stream":
        def gen():
            yield b"only "
            yield b"ten b"
        start_response("200 OK", [("Content-Length", "20")])
        return gen()

    if path == "/status":
        code = q.get("code", "200")
        start_response(f"{code} Whatever", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return Tracked(q.get("id", "status-" + code), [b"some body"])

    if path == "/file":
        name = q["name"]
        f = open(name, "rb")
        if "seek" in q:
            f.seek(int(q["seek"]))
        headers = [("Content-Type", "application/octet-stream")]
        if "cl" in q:
            headers.append(("Content-Length", q["cl"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 4096)

    if path == "/filelike":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"from a BytesIO " * 3), 7)

    if path == "/input":
        # Reads the body in the way ?mode= says and reports what it saw.
        stream = environ["wsgi.input"]
        mode = q.get("mode", "read")
        if mode == "read":
            parts = [stream.read()]
        elif mode == "read-n":
            n = int(q.get("n", "5"))
            parts = []
            while True:
                chunk = stream.read(n)
                if not chunk:
                    break
                parts.append(chunk)
        elif mode == "readline":
            parts = []
            while True:
                line = stream.readline()
                if not line:
                    break
                parts.append(line)
        elif mode == "readline-n":
            n = int(q.get("n", "4"))
            parts = []
            while True:
                line = stream.readline(n)
                if not line:
                    break
                parts.append(line)
        elif mode == "readlines":
            parts = stream.readlines()
        elif mode == "iter":
            parts = list(stream)
        else:
            parts = []
        return _json(start_response, {
            "parts": [p.decode("latin-1") for p in parts],
            "eof": stream.read() == b"",
            "content_length": environ.get("CONTENT_LENGTH"),
        })

    if path == "/input-caught":
        # Reads the whole body; a body that cannot be read is answered by the app itself.
        try:
            body = environ["wsgi.input"].read()
        except OSError as error:
            return _json(start_response, {"caught": str(error)}, "422 Unprocessable Entity")
        return _json(start_response, {"body": body.decode("latin-1")})

    if path == "/padded-headers":
        # Header values with surrounding whitespace, as Beaker's session cookie has.
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Set-Cookie", " session=abc; Path=/"),
                                  ("X-Padded", "\t value \t")])
        return [b"padded"]

    if path == "/digest":
        stream = environ["wsgi.input"]
        h = hashlib.sha256()
        total = 0
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            h.update(chunk)
            total += len(chunk)
        return _json(start_response, {"sha256": h.hexdigest(), "bytes": total})

    if path == "/ignore-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"did not read"]

    if path == "/big-stream":
        n = int(q.get("n", "100"))
        size = int(q.get("size", "65536"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked(q.get("id", "big"), [bytes([i % 256]) * size for i in range(n)])

    if path == "/errors":
        environ["wsgi.errors"].write("a line for the error log\n")
        environ["wsgi.errors"].writelines(["second ", "line\n"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return [b"logged"]

    if path == "/barrier":
        # Passes only if `n` requests run at the same time on different threads.
        n = int(q.get("n", "4"))
        with LOCK:
            barrier = BARRIER.setdefault(q["id"], threading.Barrier(n, timeout=10))
        barrier.wait()
        return _json(start_response, {"thread": threading.current_thread().name})

    if path == "/sleep":
        time.sleep(float(q.get("s", "1")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]

    if path == "/effect":
        # A request with a side effect: appends its ?id= to the file ?log= as it starts,
        # then sleeps ?s= seconds, or waits (bounded) until the file ?until= exists.
        with LOCK:
            with open(q["log"], "a") as f:
                f.write(q["id"] + "\n")
        if "until" in q:
            deadline = time.time() + 20
            while not os.path.exists(q["until"]) and time.time() < deadline:
                time.sleep(0.01)
        else:
            time.sleep(float(q.get("s", "0")))
        return _json(start_response, {"id": q["id"]})

    if path == "/child-fds":
        # What a subprocess started without close_fds inherits from the worker.
        import subprocess
        listing = subprocess.run(["ls", "-l", "/proc/self/fd/"], close_fds=False,
                                 capture_output=True, text=True).stdout
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [listing.encode()]

    if path == "/pid":
        return _json(start_response, {"pid": os.getpid()})

    if path == "/process":
        # The process the app runs in: its working folder, a variable, a relative file.
        name = q.get("var", "")
        relative = q.get("file", "")
        content = None
        if relative:
            try:
                with open(relative) as handle:
                    content = handle.read()
            except OSError as error:
                content = f"error: {error}"
        return _json(start_response, {"cwd": os.getcwd(), "var": os.environ.get(name),
                                      "file": content})

    if path == "/print":
        # Output the app writes itself: print() and the logging module's default handler.
        import logging
        print("printed by the app")
        logging.getLogger("contract").warning("logged by the app")
        return _json(start_response, {"printed": True})

    if path == "/big":
        # A list of one 5000-byte chunk and no Content-Length: GET gets its length from
        # the server, and HEAD must carry the same headers.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x" * 5000]

    if path == "/big-gen":
        # The same body from a generator: a length nobody knows in advance.
        def gen():
            for _ in range(5):
                yield b"y" * 1000
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()

    if path == "/tiny-chunks":
        # n one-byte chunks of noise (see noise()), yielded as fast as Python can.
        n = int(q.get("n", "100000"))
        body = noise(n)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (body[i:i + 1] for i in range(n))

    if path == "/write-from-thread":
        return write_from_thread(q, start_response)

    if path == "/writer-state":
        with LOCK:
            return _json(start_response, WRITERS.get(q["id"], {}))

    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route: " + path.encode("latin-1")]


app = application


def create_app(greeting="factory"):
    """An application factory, for "module:create_app()" specs."""

    def factory_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [greeting.encode()]

    return factory_app


def _at_exit():
    marker = os.environ.get("GATEWAY_TEST_ATEXIT_FILE")
    if marker:
        with open(marker, "w") as f:
            f.write("atexit ran")


import atexit  # noqa: E402

atexit.register(_at_exit)


def stream_until_flag(environ, start_response):
    """Yields a first chunk, then waits (bounded) for the test to create a flag file
    before yielding the rest: the first chunk can only reach the client first if every
    layer on the way flushes it."""
    flag = environ["QUERY_STRING"].split("=", 1)[1]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def generate():
        yield b"first chunk " * 40
        deadline = time.time() + 20
        while not os.path.exists(flag) and time.time() < deadline:
            time.sleep(0.01)
        yield b"second chunk " * 40

    return generate()


def sse(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    return [b"data: " + b"x" * 2000 + b"\n\n"]


def text_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/sse"):
        return sse(environ, start_response)
    if path.startswith("/flush"):
        return stream_until_flag(environ, start_response)
    if path.startswith("/small"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"tiny"]
    body = ("lorem ipsum dolor sit amet " * 200).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


def paste_app_factory(global_conf, **local_conf):
    """PasteDeploy app factory for the contract app."""
    return application


def crash_app(environ, start_response):
    """/crash ends the worker process at once, as a segfault would; ?code=N exits with N
    (default 1)."""
    if environ["PATH_INFO"] == "/crash":
        os._exit(int(_query(environ).get("code", "1")))
    return application(environ, start_response)
