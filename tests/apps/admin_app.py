"""A second application for the routing tests: it says who it is and where it is mounted."""

import json


def application(environ, start_response):
    body = json.dumps(
        {
            "app": "admin",
            "SCRIPT_NAME": environ["SCRIPT_NAME"],
            "PATH_INFO": environ["PATH_INFO"],
            "QUERY_STRING": environ["QUERY_STRING"],
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "HTTP_X_TRAIL": environ.get("HTTP_X_TRAIL", ""),
        },
        sort_keys=True,
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
