"""The application tests/pip_install.sh serves from a pip-installed gateway.

The script copies this file into the virtualenv's site-packages and serves it from an
empty folder, so importing it at all proves the app runs with that site-packages. It
reports which Python serves it and from where.
"""

import json
import os
import sys


def application(environ, start_response):
    body = json.dumps({
        "version_info": list(sys.version_info[:3]),
        "prefix": sys.prefix,
        "executable": sys.executable,
        "module_file": __file__,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "handoff_variables": sorted(k for k in os.environ if k.startswith("WSGI_GATEWAY_")),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
