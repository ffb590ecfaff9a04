"""The admin app: plain WSGI, on its own host (admin.localhost)."""

import json


def application(environ, start_response):
    body = json.dumps(
        {"app": "admin", "user": environ.get("REMOTE_USER"), "path": environ["PATH_INFO"]}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
