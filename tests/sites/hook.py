"""A webhook receiver for the observer tests: python3's http.server on 127.0.0.1 and a port the
OS picks (printed as `PORT <n>`); each POST is printed as one JSON line
`{"path", "event", "type", "body"}` and answered 204, except on /fail (500).

Run: python3 tests/sites/hook.py
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        print(json.dumps({"path": self.path, "event": self.headers.get("X-Oct-Event"),
                          "type": self.headers.get("Content-Type"), "body": json.loads(body)}), flush=True)
        self.send_response(500 if self.path == "/fail" else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
