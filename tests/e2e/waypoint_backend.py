"""A backend for the waypoint end-to-end tests: answers every request with JSON naming itself,
the method, path and request headers it received (HTTP/1.1, keep-alive). Paths starting with
/slow are answered after 2 s; .../stall/<s>/... read nothing, the body included, for s seconds
first; /app/big/<n> answers n bytes; .../flaky/<key>/<n> answers 503 to
the first n requests for <key>, then 200; .../hits/<key> tells how many requests .../flaky/<key>/
got; after .../dropnext/... the next request on the same connection is dropped unanswered (the
connection closes). With STATUS every request is answered with that status. Each request is logged to stderr as
"seen METHOD PATH host=HOST from=CLIENT_IP".

usage: waypoint_backend.py NAME IP PORT [STATUS]"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, head=False):
        if getattr(self, "drop_next", False):
            # Like a server whose keep-alive timeout fired as the request arrived: the
            # connection closes without an answer.
            sys.stderr.write("backend %s: dropped %s %s\n" % (self.server.name, self.command,
                                                              self.path))
            sys.stderr.flush()
            self.close_connection = True
            return
        self.drop_next = "dropnext" in self.path.split("/")
        sys.stderr.write("backend %s: seen %s %s host=%s from=%s\n" % (
            self.server.name, self.command, self.path, self.headers.get("host", ""),
            self.client_address[0]))
        sys.stderr.flush()
        status, hits = self.server.status, None
        parts = self.path.split("?")[0].split("/")
        if "flaky" in parts and len(parts) >= parts.index("flaky") + 3:
            i = parts.index("flaky")
            key, n = parts[i + 1], int(parts[i + 2])
            with self.server.lock:
                hits = self.server.hits[key] = self.server.hits.get(key, 0) + 1
            if hits <= n:
                status = 503
        elif "hits" in parts and len(parts) >= parts.index("hits") + 2:
            with self.server.lock:
                hits = self.server.hits.get(parts[parts.index("hits") + 1], 0)
        if self.path.startswith("/slow"):
            time.sleep(2)
        elif "stall" in parts and len(parts) > parts.index("stall") + 1:
            time.sleep(float(parts[parts.index("stall") + 1]))
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    break
                body += chunk
            body = body.decode(errors="replace")
        else:
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n).decode(errors="replace") if n else ""
        if self.path.startswith("/app/big/"):  # /app/big/<bytes>: a large response
            out = b"x" * int(self.path.rsplit("/", 1)[1])
        else:
            doc = {"server": self.server.name, "method": self.command, "path": self.path,
                   "hits": hits,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body if len(body) < 65536 else "", "body_len": len(body)}
            out = (json.dumps(doc) + "\n").encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.send_header("x-backend", self.server.name)
        self.end_headers()
        if not head:
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def do_HEAD(self):  # the GET's head, content-length included, and no body
        self._answer(head=True)

    def log_message(self, fmt, *args):
        sys.stderr.write("backend %s: %s\n" % (self.server.name, fmt % args))


def main():
    name, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ThreadingHTTPServer.request_queue_size = 1024  # h2load opens 100 streams at once
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((ip, port), Handler)
    srv.name = name
    srv.status = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    srv.hits, srv.lock = {}, threading.Lock()
    srv.serve_forever()


if __name__ == "__main__":
    main()
