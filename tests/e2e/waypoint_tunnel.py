"""Non-HTTP and tunnel backends for the waypoint end-to-end tests (no external libraries).

TCP PORT: an echo server that speaks first: it sends "hello <NAME>\\n", then echoes every
chunk it reads; when the client half-closes it sends "bye <NAME> <bytes received>\\n" and
closes (so a test sees that EOF crossed both ways).

UPGRADE PORT + 1: an HTTP/1.1 server that answers
  - GET with "Upgrade: websocket" -> 101 Switching Protocols (RFC 6455 handshake by hand:
    Sec-WebSocket-Accept), then echoes raw bytes as above (no websocket framing; "bye" on EOF);
  - CONNECT host:port -> 200, then the same echo;
  - anything else (and the path /plain, even with Upgrade) -> 200 with a small body, then
    closes.
Each connection is logged to stderr ("tunnel NAME: ...").

usage: waypoint_tunnel.py NAME IP PORT"""
import base64
import hashlib
import socket
import sys
import threading

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def log(name, msg):
    sys.stderr.write("tunnel %s: %s\n" % (name, msg))
    sys.stderr.flush()


def echo(name, c, rest=b""):
    total = len(rest)
    if rest:
        c.sendall(rest)
    while True:
        b = c.recv(65536)
        if not b:
            break
        total += len(b)
        c.sendall(b)
    c.sendall(b"bye %s %d\n" % (name.encode(), total))
    log(name, "echo done, %d bytes" % total)
    c.close()


def tcp_conn(name, c):
    try:
        c.sendall(b"hello %s\n" % name.encode())
        echo(name, c)
    except OSError as e:
        log(name, "tcp error %s" % e)


def http_conn(name, c):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = c.recv(65536)
            if not b:
                c.close()
                return
            buf += b
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        log(name, "seen %s %s upgrade=%s connection=%s" % (
            method, target, hdrs.get("upgrade", ""), hdrs.get("connection", "")))
        if method == "CONNECT":
            c.sendall(b"HTTP/1.1 200 OK\r\nx-tunnel: %s\r\n\r\n" % name.encode())
            echo(name, c, rest)
        elif hdrs.get("upgrade", "").lower() == "websocket" and target != "/plain":
            key = hdrs.get("sec-websocket-key", "").encode()
            acc = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            echo(name, c, rest)
        else:
            body = b"plain %s %s\n" % (method.encode(), target.encode())
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                      % len(body) + body)
            c.close()
    except OSError as e:
        log(name, "http error %s" % e)


def serve(name, ip, port, fn):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=fn, args=(name, c), daemon=True).start()


def main():
    name, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threading.Thread(target=serve, args=(name, ip, port + 1, http_conn), daemon=True).start()
    serve(name, ip, port, tcp_conn)


if __name__ == "__main__":
    main()
