"""Middleware and an app that record the order in which a request meets them.

Each layer appends its name to the X-Trail request header (seen by the layers below)
and to the X-Trail response header on the way back out, so a test can read the order
from outside.
"""

import os
import threading


def trail_app(environ, start_response):
    seen = environ.get("HTTP_X_TRAIL", "")
    body = (
        f"trail={seen}\n"
        f"marker={environ.get('trail.marker', '-')}\n"
        f"thread={threading.get_ident()}\n"
        f"outer_thread={environ.get('trail.outer_thread', '-')}\n"
        f"user={environ.get('REMOTE_USER', '-')}\n"
        f"local={getattr(LOCAL, 'value', '-')}\n"
        + "".join(f"{k[len('trail.wraps.'):]}_wraps={v}\n" for k, v in sorted(environ.items())
                  if k.startswith("trail.wraps."))
    ).encode() * int(environ.get("HTTP_X_REPEAT", "1"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Trail", "app")])
    return [body]


LOCAL = threading.local()


class Trail:
    """Appends `name` to the trail in both directions."""

    def __init__(self, app, name, mark=False):
        self.app = app
        self.name = name
        self.mark = mark

    def __call__(self, environ, start_response):
        # What this layer calls next: another Python layer, the app, or a native bridge.
        environ[f"trail.wraps.{self.name}"] = type(self.app).__name__
        previous = environ.get("HTTP_X_TRAIL")
        environ["HTTP_X_TRAIL"] = f"{previous},{self.name}" if previous else self.name
        if self.mark:
            # Objects put in the environ must reach the layers below unchanged, and
            # thread-locals set here must be visible below (same Python thread).
            environ["trail.marker"] = f"set-by-{self.name}"
            environ["trail.outer_thread"] = str(threading.get_ident())
            LOCAL.value = f"local-from-{self.name}"

        def trail_start_response(status, headers, exc_info=None):
            headers = [(k, f"{v},{self.name}" if k.lower() == "x-trail" else v) for k, v in headers]
            return start_response(status, headers, exc_info)

        return self.app(environ, trail_start_response)


def make_trail(app, name, mark=False):
    return Trail(app, name, mark)


def trail_filter_factory(global_conf, name, mark=False):
    return lambda app: Trail(app, name, mark)


def _conf_mark(name, global_conf):
    """`name:site:here`, here reduced to whether it is absolute and its last part."""
    here = global_conf.get("here", "")
    kind = "abs" if os.path.isabs(here) else "rel"
    return f"{name}:{global_conf.get('site', '-')}:{kind}-{os.path.basename(here)}"


def trail_global_filter_factory(global_conf, name):
    """PasteDeploy filter_factory whose trail name shows the global_conf it got."""
    return lambda app: Trail(app, _conf_mark(name, global_conf))


def trail_filter_app_factory(app, global_conf, name):
    """PasteDeploy filter_app_factory: called with the app and global_conf."""
    return Trail(app, _conf_mark(name, global_conf))
