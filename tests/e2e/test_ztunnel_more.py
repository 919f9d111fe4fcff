"""More end-to-end ztunnel cases (docs/ztunnel.md, docs/identity.md):

- CA outage: both ztunnels get their certificates from `ambient ca serve` (HTTPS, in node B);
  with the CA stopped, cached certificates keep serving new connections, a workload added
  meanwhile has no certificate (its connections fail at once with the CA error; the log and
  /config_dump's `certificates` show the failed fetches and the backoff), and it
  recovers once the CA is back (same directory: same root and tokens).
- Interop: our client ztunnel tunnels through `nghttpx --http2-proxy` (TLS, client certificates
  verified, ALPN h2) standing in for the server ztunnel on 10.77.0.2:15008; nghttpx forwards the
  CONNECT as HTTP/1.1 CONNECT to a small python proxy that relays to the app.

Two netns "nodes" joined by a veth pair (A 10.77.0.1 and .6, B 10.77.0.2), nft REDIRECT capture in
A. Needs root. Every netns and process is cleaned up, even on failure; processes are stopped by
PID."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BIN, stop_all, wait_for
from test_ztunnel import CLIENT_ID, SERVER_ID, NsProc, ns_curl, nsrun, write_atomic

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl"),
    reason="needs root, nft and curl")

CLIENT2_ID = "spiffe://cluster.local/ns/client/sa/client2"
HELLO = b"hello through the mesh\n"


def wl(uid, ns, sa, ip, node):
    return {"uid": uid, "name": uid, "namespace": ns, "serviceAccount": sa,
            "workloadIps": [ip], "protocol": "HBONE", "node": node}


def mesh(client2=False):
    w = [wl("client", "client", "client", "10.77.0.1", "node-a"),
         wl("server", "server", "server", "10.77.0.2", "node-b")]
    if client2:
        w.append(wl("client2", "client", "client2", "10.77.0.6", "node-a"))
    return {"workloads": w, "policies": []}


def amb(*args):
    r = subprocess.run([BIN] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


@pytest.fixture
def env(netns, tmp_path):
    """Nodes A and B, capture in A, the app on 10.77.0.2:8080, a CA directory with node tokens
    and the mesh config. Yields a dict; `start(ns, name, args)` runs a process that is stopped at
    teardown (an ambient process must exit 0 and be free of sanitizer reports)."""
    a, b = netns(), netns()
    va, vb = "ma" + a[-6:], "mb" + b[-6:]
    subprocess.run(["ip", "-n", a, "link", "add", va, "type", "veth", "peer", "name", vb,
                    "netns", b], check=True)
    for ip in ("10.77.0.1/24", "10.77.0.6/24"):
        subprocess.run(["ip", "-n", a, "addr", "add", ip, "dev", va], check=True)
    subprocess.run(["ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", vb], check=True)
    subprocess.run(["ip", "-n", a, "link", "set", va, "up"], check=True)
    subprocess.run(["ip", "-n", b, "link", "set", vb, "up"], check=True)
    nftfile = tmp_path / "capture.nft"
    nftfile.write_text("table ip t {\n chain out {\n  type nat hook output priority -100;\n"
                       "  meta mark 1337 return\n"
                       "  ip daddr 10.77.0.2 tcp dport 8080 redirect to :15001\n }\n}\n")
    r = nsrun(a, "nft", "-f", str(nftfile), check=False)
    assert r.returncode == 0, r.stderr

    cadir = str(tmp_path / "ca")
    amb("ca", "init", "--trust-domain", "cluster.local", "--dir", cadir)
    tokens = {}
    for node in ("node-a", "node-b"):
        tokens[node] = str(tmp_path / f"{node}.token")
        tok = amb("ca", "token", "add", "--dir", cadir, "--node", node).strip()
        with open(tokens[node], "w") as f:
            f.write(tok + "\n")
        os.chmod(tokens[node], 0o600)
    path = str(tmp_path / "mesh.json")
    write_atomic(path, mesh())
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(HELLO)

    started, others = [], []

    def start(ns, name, args, ambient=True):
        p = NsProc(ns, args, str(tmp_path / f"{name}-{len(started)}.log"))
        started.append(p)
        if not ambient:
            others.append(p)
        return p

    app = start(b, "app", ["python3", "-m", "http.server", "8080", "--bind", "10.77.0.2",
                           "--directory", str(www)], ambient=False)
    try:
        wait_for(lambda: nsrun(b, "curl", "-s", "-o", "/dev/null", "http://10.77.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"a": a, "b": b, "cadir": cadir, "tokens": tokens, "path": path,
               "tmp": tmp_path, "start": start, "app": app}
    finally:
        stop_all(started, lambda p: p not in others)


def ready(ns, p, port=15021):
    if not p.alive():
        raise AssertionError("exited:\n" + p.logtext())
    r = ns_curl(ns, f"http://127.0.0.1:{port}/healthz/ready", timeout=3)
    return r.returncode == 0 and r.stdout.strip() == b"ready"


def ztunnel(env, ns, name, *source):
    return env["start"](ns, name, [
        BIN, "ztunnel", "--mesh-config", env["path"], "--admin", "127.0.0.1:15000",
        "--metrics", "127.0.0.1:15020", "--ready", "127.0.0.1:15021"] + list(source))


def get(ns, src=None, timeout=10):
    """curl http://10.77.0.2:8080/hello.txt from ns (captured), optionally from address src."""
    args = ["curl", "-sS", "--max-time", str(timeout)]
    if src:
        args += ["--interface", src]
    return nsrun(ns, *args, "http://10.77.0.2:8080/hello.txt", check=False,
                 timeout=timeout + 10)


def ident_lines(z, msg, ident):
    """The ztunnel's log lines `msg` for one identity (pkg/identity logs every fetch outcome)."""
    return [l for l in z.logtext().splitlines() if msg in l and ident in l]


# ---- CA outage

def test_ca_outage_cached_certificates_serve_new_workload_recovers(env):
    a, b, cadir = env["a"], env["b"], env["cadir"]
    root = os.path.join(cadir, "root-cert.pem")

    def ca():
        p = env["start"](b, "ca", [
            BIN, "ca", "serve", "--dir", cadir, "--mesh-config", env["path"],
            "--listen", "10.77.0.2:15012", "--ip", "10.77.0.2", "--admin", "127.0.0.1:15100",
            "--metrics", "127.0.0.1:15120", "--ready", "127.0.0.1:15121"])
        wait_for(lambda: p.alive() and nsrun(
            a, "curl", "-s", "--cacert", root, "https://10.77.0.2:15012/v1/roots",
            check=False).returncode == 0, what="ca serve up (reachable from A)")
        return p

    ca1 = ca()
    za = ztunnel(env, a, "ztunnel-a", "--ca-url", "https://10.77.0.2:15012", "--ca-root", root,
                 "--token-file", env["tokens"]["node-a"], "--node", "node-a")
    zb = ztunnel(env, b, "ztunnel-b", "--ca-url", "https://10.77.0.2:15012", "--ca-root", root,
                 "--token-file", env["tokens"]["node-b"], "--node", "node-b")
    wait_for(lambda: ready(a, za), timeout=30, what="ztunnel A ready")
    wait_for(lambda: ready(b, zb), timeout=30, what="ztunnel B ready")

    r = get(a)
    assert r.returncode == 0 and r.stdout == HELLO, (r.stderr, za.logtext()[-2000:])
    wait_for(lambda: ident_lines(za, "certificate issued", CLIENT_ID), what="client cert")
    wait_for(lambda: ident_lines(zb, "certificate issued", SERVER_ID), what="server cert")

    # The CA goes away: cached certificates keep serving, for new connections too.
    ca1.stop()
    for _ in range(3):
        r = get(a)
        assert r.returncode == 0 and r.stdout == HELLO, (r.stderr, za.logtext()[-2000:])
    assert not ident_lines(za, "fetch failed", CLIENT_ID)

    # A new workload on node A (a second client address, a new identity) cannot get one.
    write_atomic(env["path"], mesh(client2=True))
    wait_for(lambda: len(ident_lines(za, "certificate fetch failed", CLIENT2_ID)) >= 2,
             timeout=60, what="client2's fetches failing with backoff")
    fail = ident_lines(za, "certificate fetch failed", CLIENT2_ID)
    assert "state=failed" in fail[0] and "attempt=1" in fail[0] and "retry_in_ms=" in fail[0], fail
    assert "attempt=2" in fail[1], fail
    r = get(a, src="10.77.0.6")
    assert r.returncode != 0 and HELLO not in r.stdout, (r.stdout, r.stderr)
    # /config_dump shows each identity's certificate state.
    def certs():
        out = nsrun(a, "curl", "-s", "http://127.0.0.1:15000/config_dump").stdout
        return {c["identity"]: c for c in json.loads(out)["certificates"]["identities"]}
    c = certs()
    assert c[CLIENT_ID]["state"] == "ready" and c[CLIENT_ID]["serialNumber"], c[CLIENT_ID]
    assert c[CLIENT2_ID]["state"] == "failed" and c[CLIENT2_ID]["consecutiveFailures"] >= 2
    assert "connection refused" in c[CLIENT2_ID]["lastError"], c[CLIENT2_ID]
    # It fails fast (no queueing behind the backoff) and the access log says why.
    wait_for(lambda: [l for l in ident_lines(za, "connection complete", CLIENT2_ID)
                      if "no valid certificate" in l and "connection refused" in l],
             what="client2's refused connection logged with the certificate failure")
    # The already-certified client is unaffected.
    r = get(a)
    assert r.returncode == 0 and r.stdout == HELLO, r.stderr

    # The CA comes back (same directory: same root and tokens); client2 recovers with backoff.
    ca()
    wait_for(lambda: ident_lines(za, "certificate issued", CLIENT2_ID), timeout=200,
             what="client2 certificate after the CA is back")
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(get(a, src="10.77.0.6")),
                 what="client2 traffic")
    assert r.stdout == HELLO, (r.stderr, za.logtext()[-2000:])
    wait_for(lambda: CLIENT2_ID in zb.logtext(), what="inbound log names client2's identity")


# ---- nghttpx as the HBONE server

CONNECT_PROXY = r'''
import socket, sys, threading
def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def handle(c):
    head = b""
    while b"\r\n\r\n" not in head:
        b = c.recv(4096)
        if not b:
            return c.close()
        head += b
    head, _, rest = head.partition(b"\r\n\r\n")
    method, target, _ = head.split(b"\r\n")[0].split(b" ", 2)
    print("request", method.decode(), target.decode(), flush=True)
    if method != b"CONNECT":
        return c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
    host, port = target.decode().rsplit(":", 1)
    u = socket.create_connection((host, int(port)), timeout=10)
    u.settimeout(None)
    c.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    if rest:
        u.sendall(rest)
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
    pump(c, u)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(64)
print("listening", flush=True)
while True:
    threading.Thread(target=handle, args=(ls.accept()[0],), daemon=True).start()
'''


@pytest.mark.skipif(not shutil.which("nghttpx"), reason="needs nghttpx")
def test_client_tunnels_through_nghttpx_http2_proxy(env):
    a, b, cadir, tmp = env["a"], env["b"], env["cadir"], env["tmp"]
    certs = str(tmp / "server-certs")
    amb("ca", "issue", "--dir", cadir, "--identity", SERVER_ID, "--out", certs)
    proxy_py = tmp / "connect_proxy.py"
    proxy_py.write_text(CONNECT_PROXY)
    proxy = env["start"](b, "connect-proxy", ["python3", "-u", str(proxy_py), "9100"],
                         ambient=False)
    wait_for(lambda: "listening" in proxy.logtext(), what="CONNECT proxy up")
    ngx = env["start"](b, "nghttpx", [
        "nghttpx", "--single-process", "--http2-proxy", "--frontend=10.77.0.2,15008",
        "--backend=127.0.0.1,9100", "--npn-list=h2", "--verify-client",
        f"--verify-client-cacert={os.path.join(certs, 'root-cert.pem')}", "--no-ocsp",
        "--tls-min-proto-version=TLSv1.2", f"--accesslog-file={tmp / 'nghttpx-access.log'}",
        os.path.join(certs, "key.pem"), os.path.join(certs, "chain.pem")], ambient=False)
    wait_for(lambda: ngx.alive() and nsrun(
        b, "python3", "-c", "import socket; socket.create_connection(('10.77.0.2', 15008), 2)",
        check=False).returncode == 0,
             what="nghttpx listening")

    za = ztunnel(env, a, "ztunnel-a", "--ca-dir", cadir)
    wait_for(lambda: ready(a, za), what="ztunnel A ready")

    for _ in range(2):  # the second one reuses the pooled HTTP/2 connection
        r = get(a)
        assert r.returncode == 0 and r.stdout == HELLO, (
            r.stderr, za.logtext()[-2000:], ngx.logtext()[-2000:], proxy.logtext()[-2000:])
    assert "request CONNECT 10.77.0.2:8080" in proxy.logtext()
    wait_for(lambda: "connection complete" in za.logtext() and SERVER_ID in za.logtext(),
             what="outbound access log naming the server identity")
