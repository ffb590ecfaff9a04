"""The site: a small Flask app, served at / by the gateway."""

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def home():
    return (
        "<!doctype html><link rel=stylesheet href=/static/site.css>"
        "<h1>Welcome</h1><p>Served by Flask behind wsgi-gateway.</p>"
    )


@app.route("/posts/<int:year>/<slug>")
def post(year, slug):
    return {"year": year, "slug": slug, "script_root": request.script_root}
