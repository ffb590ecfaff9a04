"""Python middleware for the proxy tests: counts visits in the Beaker session and tells
the layer below (an upstream, through the NativeBridge) in an `X-Visits` header."""


class Visits:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        session = environ["beaker.session"]
        session["visits"] = session.get("visits", 0) + 1
        session.save()
        environ["HTTP_X_VISITS"] = str(session["visits"])

        def tagged(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Seen-By", "python")], exc_info)

        return self.app(environ, tagged)


def factory(app, **options):
    return Visits(app)
