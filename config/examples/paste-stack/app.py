"""The application of the paste-stack example: a page that counts visits in a Beaker
session. Served either by production.ini (PasteDeploy: TransLogger, gzipper, Beaker) or
by gateway.toml (native access log and compression, Beaker in Python)."""

PAGE = """<!doctype html>
<html><head><title>Visits</title></head>
<body>
<h1>Welcome back</h1>
<p>You have been here {visits} time(s).</p>
{filler}
</body></html>
"""

FILLER = "<p>" + "This paragraph pads the page so that compression has work to do. " * 8 + "</p>\n"


def application(environ, start_response):
    session = environ["beaker.session"]
    session["visits"] = session.get("visits", 0) + 1
    session.save()
    body = PAGE.format(visits=session["visits"], filler=FILLER * 10).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


def make_app(global_conf, **local_conf):
    """PasteDeploy app factory."""
    return application
