"""A Flask application served through the gateway in the tests."""

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def index():
    return "hello from flask"


@app.post("/json")
def echo_json():
    return jsonify(received=request.get_json(), remote=request.remote_addr)


@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(name=f.filename, size=len(data), field=request.form.get("note"))


@app.get("/stream")
def stream():
    def generate():
        for i in range(3):
            yield f"part {i}\n"
    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/cookie")
def cookie():
    response = jsonify(seen=request.cookies.get("visit"))
    response.set_cookie("visit", "yes")
    return response


@app.get("/missing")
def missing():
    return jsonify(error="nope"), 404


@app.get("/whoami")
def whoami():
    return jsonify(remote=request.remote_addr, scheme=request.scheme, host=request.host,
                   url=request.url)


@app.get("/beaker")
def beaker_visits():
    session = request.environ["beaker.session"]
    session["visits"] = session.get("visits", 0) + 1
    session.save()
    return jsonify(visits=session["visits"])


def make(global_conf, **local_conf):
    """PasteDeploy app factory."""
    return app
