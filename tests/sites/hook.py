"""A webhook receiver for the observer tests: python3's http.server on 127.0.0.1 and a port the
OS picks (printed as `PORT <n>`); each POST is printed as one JSON line
`{"path", "event", "type", "body"}` and answered 204, except on /fail (500).

Run: python3 tests/sites/hook.py
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Deliveries arrive on several threads at once: one whole line each, never interleaved.
LOCK = threading.Lock()


class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        line = json.dumps({"path": self.path, "event": self.headers.get("X-Oct-Event"),
                           "type": self.headers.get("Content-Type"), "body": json.loads(body)})
        with LOCK:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
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
