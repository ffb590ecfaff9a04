"""Apps and filters for tests/convert.rs: each PasteDeploy .ini here is served as it is
(`paste = ...`) and as `wsgi-gateway convert` rewrote it, and the answers compared."""

import crypt
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def make_echo(global_conf, greeting="hello", **local_conf):
    """An app that says what it was configured with and where it was mounted."""
    settings = dict(local_conf)

    def echo(environ, start_response):
        if environ["PATH_INFO"].startswith("/missing"):
            body = b"no such page\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        body = json.dumps({
            "greeting": greeting,
            "settings": settings,
            "script_name": environ["SCRIPT_NAME"],
            "path_info": environ["PATH_INFO"],
            "query": environ.get("QUERY_STRING", ""),
            "user": environ.get("REMOTE_USER"),
            # Padding, so that compression has something to do.
            "padding": "lorem ipsum " * 40,
        }, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return echo


class Stamp:
    """Adds `header: value` to every response; `value` may come from global_conf."""

    def __init__(self, app, header, value):
        self.app = app
        self.header = header
        self.value = value

    def __call__(self, environ, start_response):
        def stamped(status, headers, exc_info=None):
            return start_response(status, headers + [(self.header, self.value)], exc_info)

        return self.app(environ, stamped)


def stamp_filter_factory(global_conf, header, value="", global_key=None):
    """paste.filter_factory: `global_key` names a global_conf entry to stamp instead."""
    if global_key:
        value = global_conf[global_key]
    return lambda app: Stamp(app, header, value)


def stamp_filter_app_factory(app, global_conf, header, value=""):
    """paste.filter_app_factory form of the same filter."""
    return Stamp(app, header, f"{value}; here={os.path.basename(global_conf['here'])}")


def check_htpasswd(environ, username, password):
    """A Paste auth_basic authfunc: the users of the htpasswd file next to this module."""
    with open(os.path.join(HERE, "htpasswd")) as users:
        for line in users:
            name, _, hashed = line.strip().partition(":")
            if name == username:
                return crypt.crypt(password, hashed) == hashed
    return False
