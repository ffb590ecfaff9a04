"""An application whose worker dies shortly after it starts, every time."""

import os
import threading
import time


def _die_soon():
    time.sleep(0.3)
    os._exit(7)


threading.Thread(target=_die_soon, daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [])
    return [b"alive for now"]
