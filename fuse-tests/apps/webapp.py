#!/usr/bin/env python3
"""A small real web application for the proxy and exec tests: an HTTP
server over one SQLite database in the litefs mount.

    webapp.py --db PATH --port N --name NODE [--marker FILE]

POST /rows        inserts a row (body: its text); answers "<id> <name>"
GET  /rows        answers "<count> <max id> <name>"
GET  /static/...  answers "static <name>" without touching the database
On SIGTERM it writes "stopped" to --marker (if given) and exits 0.
"""
import argparse, signal, sqlite3, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--db", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--name", required=True)
ap.add_argument("--marker")
args = ap.parse_args()


def connect():
    c = sqlite3.connect(args.db, timeout=5, isolation_level=None)
    return c


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/static/"):
            return self.reply(200, f"static {args.name}")
        if self.path != "/rows":
            return self.reply(404, "no such page")
        try:
            c = connect()
            try:
                n, m = c.execute("SELECT count(*), coalesce(max(id), 0) FROM rows").fetchone()
            except sqlite3.OperationalError as e:
                if "no such table" not in str(e):
                    raise
                n, m = 0, 0
            c.close()
            self.reply(200, f"{n} {m} {args.name}")
        except Exception as e:  # a real app would log it
            self.reply(500, f"error: {e}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(length).decode() if length else ""
        if self.path != "/rows":
            return self.reply(404, "no such page")
        try:
            c = connect()
            c.execute("CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, v TEXT)")
            cur = c.execute("INSERT INTO rows(v) VALUES (?)", (text,))
            rid = cur.lastrowid
            c.close()
            self.reply(200, f"{rid} {args.name}")
        except Exception as e:
            self.reply(500, f"error: {e}")

    def log_message(self, *a):
        pass


def stop(*_):
    if args.marker:
        with open(args.marker, "w") as f:
            f.write("stopped")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
