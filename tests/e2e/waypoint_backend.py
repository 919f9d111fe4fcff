"""A backend for the waypoint end-to-end tests: answers every request with JSON naming itself,
the method, path and request headers it received (HTTP/1.1, keep-alive). Paths starting with
/slow are answered after 2 s; /app/big/<n> answers n bytes.

usage: waypoint_backend.py NAME IP PORT"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        if self.path.startswith("/slow"):
            time.sleep(2)
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
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body if len(body) < 65536 else "", "body_len": len(body)}
            out = (json.dumps(doc) + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.send_header("x-backend", self.server.name)
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, fmt, *args):
        sys.stderr.write("backend %s: %s\n" % (self.server.name, fmt % args))


def main():
    name, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ThreadingHTTPServer.request_queue_size = 1024  # h2load opens 100 streams at once
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((ip, port), Handler)
    srv.name = name
    srv.serve_forever()


if __name__ == "__main__":
    main()
