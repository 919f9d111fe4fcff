"""Small TCP servers and clients for the ztunnel path tests (tests/e2e/test_ztunnel_paths.py).

Runs under any python3 (no third-party modules). Usage:
  ztunnel_tool.py serve READYFILE   servers on 0.0.0.0, ports below; writes "ready" to READYFILE
  ztunnel_tool.py upload IP SIZE SEED   sends SIZE deterministic bytes to IP:9001, shuts write,
                                   prints "<sha256> <server sha256> <server count>"
  ztunnel_tool.py download IP SIZE SEED      asks IP:9002 for SIZE bytes; prints "<sha256> <count>"
  ztunnel_tool.py halfclose IP               both half-close orders against IP:9003 / IP:9004
  ztunnel_tool.py whoami IP PORT [N]         N connections; prints each "peer local" answer
  ztunnel_tool.py hbone CERT KEY ROOT IP AUTHORITY SERVER_ID
                                             an independent HBONE client (ssl + python3-h2, so
                                             Debian's /usr/bin/python3): TLS 1.2, ALPN h2, client
                                             certificate, HTTP/2 CONNECT to IP:15008; sends
                                             "GET /hello.txt" over the tunnel; prints
                                             "status <code>" and then the app's answer, or
                                             "tls-error <reason>" when the handshake fails

Server ports:
  9001 sink      read to EOF, answer "<sha256> <count>\n", close
  9002 source    read "<size> <seed>\n", send size deterministic bytes, close
  9003 echo-late read to EOF (client half-closed), then send "got <count>\n" + 1 MiB, close
  9004 srv-first send 1 MiB then shutdown(SHUT_WR); read to EOF; log "srvfirst recv <count>"
  9005 whoami    answer "<peer ip> <local ip>\n", close
  9006 echo      echo everything until EOF
"""
import hashlib
import random
import socket
import sys
import threading

CHUNK = 1 << 20


def gen(size, seed):
    """Deterministic bytes, CHUNK at a time (random.Random.randbytes is fast)."""
    r = random.Random(seed)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield r.randbytes(n)
        left -= n


def read_all(c, h=None):
    n = 0
    while True:
        b = c.recv(CHUNK)
        if not b:
            return n
        n += len(b)
        if h is not None:
            h.update(b)


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def h_sink(c):
    h = hashlib.sha256()
    n = read_all(c, h)
    c.sendall(f"{h.hexdigest()} {n}\n".encode())
    log(f"sink {n}")


def h_source(c):
    line = b""
    while not line.endswith(b"\n"):
        b = c.recv(1)
        if not b:
            return
        line += b
    size, seed = line.split()
    for chunk in gen(int(size), int(seed)):
        c.sendall(chunk)


def h_echo_late(c):
    n = read_all(c)
    c.sendall(f"got {n}\n".encode())
    c.sendall(b"x" * CHUNK)
    log(f"echolate {n}")


def h_srv_first(c):
    c.sendall(b"y" * CHUNK)
    c.shutdown(socket.SHUT_WR)
    n = read_all(c)
    log(f"srvfirst recv {n}")


def h_whoami(c):
    c.sendall(f"{c.getpeername()[0]} {c.getsockname()[0]}\n".encode())


def h_echo(c):
    while True:
        b = c.recv(65536)
        if not b:
            return
        c.sendall(b)


HANDLERS = {9001: h_sink, 9002: h_source, 9003: h_echo_late, 9004: h_srv_first,
            9005: h_whoami, 9006: h_echo}


def serve(readyfile):
    def conn(fn, c):
        try:
            with c:
                fn(c)
        except OSError as e:
            log(f"error {fn.__name__}: {e}")

    def accept_loop(ls, fn):
        while True:
            c, _ = ls.accept()
            threading.Thread(target=conn, args=(fn, c), daemon=True).start()

    threads = []
    for port, fn in HANDLERS.items():
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(128)
        t = threading.Thread(target=accept_loop, args=(ls, fn), daemon=True)
        t.start()
        threads.append(t)
    with open(readyfile, "w") as f:
        f.write("ready\n")
    log("serving")
    for t in threads:
        t.join()


def connect(ip, port):
    return socket.create_connection((ip, port), timeout=60)


def upload(ip, size, seed):
    h = hashlib.sha256()
    with connect(ip, 9001) as s:
        for chunk in gen(size, seed):
            h.update(chunk)
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        resp = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            resp += b
    print(h.hexdigest(), resp.decode().strip())


def download(ip, size, seed):
    h = hashlib.sha256()
    with connect(ip, 9002) as s:
        s.sendall(f"{size} {seed}\n".encode())
        n = read_all(s, h)
    print(h.hexdigest(), n)


def halfclose(ip):
    # Client shuts its write side first; the server reads to EOF and then still sends.
    with connect(ip, 9003) as s:
        s.sendall(b"a" * 300000)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(CHUNK)
            if not b:
                break
            got += b
    head, _, rest = got.partition(b"\n")
    print("client-first", head.decode(), len(rest))
    # The server shuts its write side first; the client reads to EOF and then still sends.
    with connect(ip, 9004) as s:
        n = read_all(s)
        s.sendall(b"b" * 200000)
        s.shutdown(socket.SHUT_WR)
        tail = read_all(s)  # the server closes once it has read everything
    print("server-first", n, tail)


def whoami(ip, port, count=1):
    for _ in range(count):
        with connect(ip, port) as s:
            print(s.recv(4096).decode().strip())


def hbone(cert, key, root, ip, authority, server_id):
    import ssl

    import h2.config
    import h2.connection
    import h2.events

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # SPIFFE: the identity is checked on the URI SAN below
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(root)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((ip, 15008), timeout=20)
    try:
        s = ctx.wrap_socket(raw)
        # TLS 1.2: the server's refusal of our certificate arrives as an alert on the first read.
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False))
        h2c.initiate_connection()
        s.sendall(h2c.data_to_send())
        first = s.recv(65536)
    except (ssl.SSLError, ConnectionError) as e:
        print("tls-error", e)
        return
    if not first:
        print("tls-error closed by peer")
        return
    assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    uris = [v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "URI"]
    assert uris == [server_id], uris
    sid = h2c.get_next_available_stream_id()
    h2c.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)])
    h2c.send_data(sid, b"GET /hello.txt HTTP/1.0\r\nHost: x\r\n\r\n")
    s.sendall(h2c.data_to_send())
    body, status, done = b"", None, False
    data = first
    while not done:
        for ev in h2c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers)[b":status"].decode()
                print("status", status)
                if status != "200":
                    done = True
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset,
                                 h2.events.ConnectionTerminated)):
                done = True
        s.sendall(h2c.data_to_send())
        if not done:
            data = s.recv(65536)
            if not data:
                break
    print(body.decode(errors="replace"))
    s.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(args[0])
    elif cmd == "upload":
        upload(args[0], int(args[1]), int(args[2]))
    elif cmd == "download":
        download(args[0], int(args[1]), int(args[2]))
    elif cmd == "halfclose":
        halfclose(args[0])
    elif cmd == "whoami":
        whoami(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 1)
    elif cmd == "hbone":
        hbone(*args)
    else:
        sys.exit(f"unknown command {cmd}")
