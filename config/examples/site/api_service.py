"""The example site's upstream: a tiny JSON service, standing in for an API written in
any language. The gateway proxies /api/... to it (see gateway.toml).

    python3 config/examples/site/api_service.py [PORT]    # default 8001
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ITEMS = [{"id": 1, "name": "teapot"}, {"id": 2, "name": "kettle"}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway pools its connections

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, {"ok": True})
        elif self.path.split("?")[0] == "/items":
            self.reply(200, {"items": ITEMS, "client": self.headers.get("X-Forwarded-For")})
        else:
            self.reply(404, {"error": "not found", "path": self.path})

    def reply(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8001
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"api_service listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()
