"""A small shop site for the scripting tests: links, a GET search form, a login form with a CSRF
token tied to a cookie, a session cookie, redirects and a redirect loop. python3's own
http.server, HTTP/1.1 with keep-alive, on 127.0.0.1 and a port the OS picks; it prints
`PORT <n>` once it listens. `GET /stats` answers how many times each `METHOD /path` was asked.

Run: python3 tests/sites/shop.py
"""
import html
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATS = {}
LOCK = threading.Lock()

PAGE = "<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


class Shop(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def cookies(self):
        jar = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            if "=" in part:
                k, v = part.split("=", 1)
                jar[k.strip()] = v.strip()
        return jar

    def answer(self, status, title="", body="", headers=(), raw=None):
        data = raw if raw is not None else PAGE.format(title=title, body=body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json" if raw is not None else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def count(self, path):
        with LOCK:
            key = "%s %s" % (self.command, path)
            STATS[key] = STATS.get(key, 0) + 1

    def do_GET(self):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path != "/stats":
            self.count(path)
        if path == "/":
            self.answer(200, "Shop", '<a class="nav" href="/login">Log in</a>'
                        '<a class="product" href="products/1">One</a>'
                        '<a class="product" href="products/2">Two</a>')
        elif path.startswith("/products/"):
            n = html.escape(path.rsplit("/", 1)[1])
            self.answer(200, "Product " + n, '<h1>Product %s</h1><a class="back" href="../">Back</a>'
                        '<form class="search" action="../search"><input name="q" value="">'
                        '<input type="submit" value="Search"></form>' % n)
        elif path == "/search":
            q = html.escape(" ".join(query.get("q", [])))
            self.answer(200, "Search", "<h1>Results for %s</h1>" % q)
        elif path == "/login":
            token = secrets.token_hex(8)
            self.answer(200, "Log in", '<form id="login" method="post">'
                        '<input type="hidden" name="csrf" value="%s">'
                        '<input name="user"><input type="password" name="password">'
                        '<input type="checkbox" name="remember" value="yes" checked>'
                        '<select name="lang"><option value="en">English<option value="fr" selected>French</select>'
                        '<input type="submit" name="go" value="Log in"></form>' % token,
                        headers=[("Set-Cookie", "csrf=%s; Path=/" % token)])
        elif path == "/account":
            user = self.cookies().get("session")
            if user:
                self.answer(200, "Account", '<h1 id="hello">Hello %s</h1><a id="logout" href="/logout">Log out</a>'
                            % html.escape(user))
            else:
                self.answer(302, headers=[("Location", "/login")])
        elif path == "/logout":
            self.answer(302, headers=[("Location", "/"), ("Set-Cookie", "session=; Path=/; Max-Age=0")])
        elif path == "/loop":
            self.answer(302, headers=[("Location", "/loop")])
        elif path == "/stats":
            with LOCK:
                data = json.dumps(STATS).encode()
            self.answer(200, raw=data)
        else:
            self.answer(404, "Not found", "no %s here" % html.escape(path))

    def do_POST(self):
        path = urlsplit(self.path).path
        self.count(path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        form = parse_qs(raw, keep_blank_values=True)
        one = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        if path == "/login":
            why = []
            if not one("csrf") or one("csrf") != self.cookies().get("csrf"):
                why.append("bad csrf")
            if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                why.append("content type %r" % self.headers.get("Content-Type"))
            if one("password") != "secret" or not one("user"):
                why.append("bad login")
            if one("remember") != "yes" or one("lang") != "fr" or "go" in form:
                why.append("fields %r" % sorted(form))
            if why:
                self.answer(403, "Refused", html.escape(", ".join(why)))
            else:
                self.answer(303, headers=[("Location", "/account"), ("Set-Cookie", "session=%s; Path=/" % one("user"))])
        elif path == "/echo":
            self.answer(200, raw=json.dumps({"type": self.headers.get("Content-Type"), "body": raw}).encode())
        else:
            self.answer(404, "Not found")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
