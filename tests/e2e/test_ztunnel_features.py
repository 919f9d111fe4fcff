"""End-to-end ztunnel features on two netns "nodes": HBONE connection pooling (one handshake for a
burst), SOCKS5 on 127.0.0.1:15080 by service hostname, the policy re-check of open connections,
/connections with live byte counters, --max-connections and drain of in-flight transfers. Needs
root; every netns and process is cleaned up (processes by PID)."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import BIN, stop_all, wait_for
from test_ztunnel import CLIENT_ID, NsProc, ns_curl, nsrun, write_atomic

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl"),
    reason="needs root, nft and curl")

SVC_HOST = "web.server.svc.cluster.local"

# A long-lived client: connects (captured to the mesh), then pings the echo app every 100 ms and
# prints "ok N" for each answer; prints "closed ..." and exits once the connection is gone.
PINGER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
n = 0
while True:
    try:
        s.sendall(b"ping\n")
        b = s.recv(64)
    except Exception as e:
        print("closed", repr(e), flush=True); break
    if not b:
        print("closed eof", flush=True); break
    n += 1
    print("ok", n, flush=True)
    time.sleep(0.1)
"""

ECHO = r"""
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(64)
def serve(c):
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def mesh(policies=()):
    svc_map = {f"server/{SVC_HOST}": {"80": 8080}}
    return {
        "workloads": [
            {"uid": "client", "name": "client", "namespace": "client",
             "serviceAccount": "client", "workloadIps": ["10.77.0.1"], "protocol": "HBONE"},
            {"uid": "server", "name": "server", "namespace": "server",
             "serviceAccount": "server", "workloadIps": ["10.77.0.2"], "protocol": "HBONE",
             "services": svc_map},
        ],
        "services": [
            {"name": "web", "namespace": "server", "hostname": SVC_HOST,
             "vips": ["/10.96.0.80"], "ports": {"80": 8080}},
        ],
        "policies": list(policies),
    }


DENY = {"name": "deny-client", "namespace": "server", "scope": "Namespace", "action": "Deny",
        "rules": [[[{"principals": [{"Exact": "cluster.local/ns/client/sa/client"}]}]]]}
UNRELATED = {"name": "other", "namespace": "elsewhere", "scope": "Namespace", "action": "Deny",
             "rules": [[[{"principals": [{"Exact": "cluster.local/ns/x/sa/y"}]}]]]}


def metric(ns, name):
    m = nsrun(ns, "curl", "-s", "http://127.0.0.1:15020/metrics").stdout.decode()
    total = 0
    found = False
    for line in m.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def connections(ns):
    r = nsrun(ns, "curl", "-s", "http://127.0.0.1:15000/connections")
    return json.loads(r.stdout)


@pytest.fixture
def make_nodes(netns, tmp_path):
    """A factory: two netns joined by a veth pair, ztunnels in both (extra flags per side), an
    HTTP app on 10.77.0.2:8080 and an echo app on 10.77.0.2:9090 in B."""
    started = []

    def make(extra_a=(), extra_b=()):
        a, b = netns(), netns()
        va, vb = "fa" + a[-6:], "fb" + b[-6:]
        subprocess.run(["ip", "-n", a, "link", "add", va, "type", "veth", "peer", "name", vb,
                        "netns", b], check=True)
        subprocess.run(["ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", va], check=True)
        subprocess.run(["ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", vb], check=True)
        subprocess.run(["ip", "-n", a, "link", "set", va, "up"], check=True)
        subprocess.run(["ip", "-n", b, "link", "set", vb, "up"], check=True)
        nft = ("table ip t {\n chain out {\n  type nat hook output priority -100;\n"
               "  meta mark 1337 return\n"
               "  ip daddr 10.77.0.2 tcp dport { 8080, 9090 } redirect to :15001\n"
               " }\n}")
        nftfile = tmp_path / "capture.nft"
        nftfile.write_text(nft + "\n")
        r = nsrun(a, "nft", "-f", str(nftfile), check=False)
        assert r.returncode == 0, r.stderr
        cadir = str(tmp_path / "ca")
        r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir",
                            cadir], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        path = str(tmp_path / "mesh.json")
        write_atomic(path, mesh())
        www = tmp_path / "www"
        www.mkdir()
        (www / "hello.txt").write_bytes(b"hello through the mesh\n")
        (www / "big.bin").write_bytes(os.urandom(3 << 20))

        def zt(ns, name, extra):
            p = NsProc(ns, [BIN, "ztunnel", "--mesh-config", path, "--ca-dir", cadir,
                            "--admin", "127.0.0.1:15000", "--metrics", "127.0.0.1:15020",
                            "--ready", "127.0.0.1:15021", "--workers", "1"] + list(extra),
                       str(tmp_path / f"{name}.log"))
            started.append(p)
            return p

        za, zb = zt(a, "ztunnel-a", extra_a), zt(b, "ztunnel-b", extra_b)
        app = NsProc(b, ["python3", "-m", "http.server", "8080", "--bind", "10.77.0.2",
                         "--directory", str(www)], str(tmp_path / "app.log"))
        started.append(app)
        echo = NsProc(b, [sys.executable, "-c", ECHO, "10.77.0.2", "9090"],
                      str(tmp_path / "echo.log"))
        started.append(echo)

        def ready(ns, p):
            if not p.alive():
                raise AssertionError("exited:\n" + p.logtext())
            r = ns_curl(ns, "http://127.0.0.1:15021/healthz/ready", timeout=3)
            return r.returncode == 0 and r.stdout.strip() == b"ready"

        wait_for(lambda: ready(a, za), what="ztunnel A ready")
        wait_for(lambda: ready(b, zb), what="ztunnel B ready")
        wait_for(lambda: nsrun(b, "curl", "-s", "-o", "/dev/null", "http://10.77.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        return {"a": a, "b": b, "za": za, "zb": zb, "path": path, "www": www,
                "tmp": tmp_path, "started": started}

    try:
        yield make
    finally:
        stop_all(reversed(started), lambda p: p.p.args[4:5] == [BIN], only_if_running=False)


def pinger(n, name):
    return NsProc(n["a"], [sys.executable, "-c", PINGER, "10.77.0.2", "9090"],
                  str(n["tmp"] / f"{name}.log"))


def oks(p):
    return p.logtext().count("ok ")


def test_pool_one_handshake_for_a_burst(make_nodes):
    n = make_nodes(extra_a=["--pool-idle-timeout", "1s"])
    a, b = n["a"], n["b"]
    assert metric(a, "ambient_pool_connections_opened_total") == 0
    results = [None] * 8

    def one(i):
        results[i] = ns_curl(a, "http://10.77.0.2:8080/hello.txt")

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r in results:
        assert r.returncode == 0 and r.stdout == b"hello through the mesh\n", r.stderr
    # One TLS handshake on each side for the whole burst.
    assert metric(a, "ambient_pool_connections_opened_total") == 1
    assert metric(b, "ambient_hbone_connections_accepted_total") == 1
    # Sequential requests reuse the pooled connection while it is not idle for 1 s.
    assert ns_curl(a, "http://10.77.0.2:8080/hello.txt").returncode == 0
    assert metric(a, "ambient_pool_connections_opened_total") == 1
    # Idle past --pool-idle-timeout: closed; the next request opens a new one.
    time.sleep(2.5)
    assert ns_curl(a, "http://10.77.0.2:8080/hello.txt").returncode == 0
    assert metric(a, "ambient_pool_connections_opened_total") == 2
    assert metric(b, "ambient_hbone_connections_accepted_total") == 2


def test_socks5_by_service_hostname(make_nodes):
    n = make_nodes()
    a, za, zb = n["a"], n["za"], n["zb"]
    r = nsrun(a, "curl", "-sS", "--max-time", "10", "--socks5-hostname", "127.0.0.1:15080",
              f"http://{SVC_HOST.upper()}:80/hello.txt", check=False)
    assert r.returncode == 0, (r.stderr, za.logtext()[-2000:])
    assert r.stdout == b"hello through the mesh\n"
    # Through HBONE: the server side saw the client's identity.
    wait_for(lambda: CLIENT_ID in zb.logtext(), what="inbound log with the client identity")
    # An IP literal works too (the endpoint address, HBONE as well).
    r = nsrun(a, "curl", "-sS", "--max-time", "10", "--socks5", "127.0.0.1:15080",
              "http://10.77.0.2:8080/hello.txt", check=False)
    assert r.returncode == 0 and r.stdout == b"hello through the mesh\n", r.stderr
    # A name outside the mesh is resolved with DNS (here /etc/hosts: localhost) and, being no
    # mesh address, passed through.
    app = NsProc(a, [sys.executable, "-m", "http.server", "9099", "--bind", "127.0.0.1",
                     "--directory", os.path.dirname(os.path.abspath(__file__))],
                 str(n["tmp"] / "local-app.log"))
    try:
        wait_for(lambda: nsrun(a, "curl", "-s", "-o", "/dev/null", "http://127.0.0.1:9099/",
                               check=False).returncode == 0, what="local app up")
        r = nsrun(a, "curl", "-sS", "--max-time", "10", "--socks5-hostname", "127.0.0.1:15080",
                  "http://localhost:9099/conftest.py", check=False)
        assert r.returncode == 0 and b"def wait_for" in r.stdout, (r.stderr, za.logtext()[-2000:])
    finally:
        app.stop()
    # A name neither in the mesh nor in DNS: host unreachable, logged.
    r = nsrun(a, "curl", "-sS", "--max-time", "10", "--socks5-hostname", "127.0.0.1:15080",
              "http://nope.invalid/", check=False)
    assert r.returncode != 0
    assert b"unreachable" in r.stderr.lower() or b"(4)" in r.stderr, r.stderr
    wait_for(lambda: "nope.invalid: not a mesh service, and DNS failed" in za.logtext(),
             what="the refusal is logged")


def test_policy_change_closes_denied_connections(make_nodes):
    n = make_nodes()
    zb = n["zb"]
    p = pinger(n, "pinger")
    try:
        wait_for(lambda: oks(p) >= 3, what="pinger running")
        # An unrelated change: the connection stays open.
        write_atomic(n["path"], mesh([UNRELATED]))
        wait_for(lambda: zb.logtext().count("proxy: config applied") >= 2, what="B reloads")
        k = oks(p)
        wait_for(lambda: oks(p) >= k + 5, what="pinger still running")
        assert "closed" not in p.logtext()
        # A DENY for the client: closed, with a log line naming the policy.
        write_atomic(n["path"], mesh([UNRELATED, DENY]))
        wait_for(lambda: "closed" in p.logtext(), what="the denied connection closes")
        log = zb.logtext()
        assert "connection closed due to policy change" in log
        line = [l for l in log.splitlines() if "connection closed due to policy change" in l]
        assert "server/deny-client" in line[0], line
    finally:
        p.stop()


def test_connections_endpoint_live_bytes(make_nodes):
    n = make_nodes()
    a, b = n["a"], n["b"]
    p = pinger(n, "pinger")
    try:
        wait_for(lambda: oks(p) >= 3, what="pinger running")
        cs = connections(b)
        inb = [c for c in cs if c["direction"] == "inbound" and c["dst"].endswith(":9090")]
        assert inb, cs
        c = inb[0]
        assert c["srcIdentity"] == CLIENT_ID and c["dstWorkload"] == "server/server"
        assert c["bytesSent"] > 0 and c["bytesReceived"] > 0 and c["ageMs"] >= 0
        out = [c for c in connections(a) if c["direction"] == "outbound"]
        assert out and out[0]["hboneAddress"] == "10.77.0.2:9090", out
        # Live: the counters move while the connection is open, and the metric follows.
        k = c["bytesSent"]
        wait_for(lambda: [x for x in connections(b) if x["dst"].endswith(":9090")][0]
                 ["bytesSent"] > k + 20, what="bytes grow")
        assert metric(b, "istio_tcp_received_bytes_total") >= k
    finally:
        p.stop()


def test_max_connections_refuses_cleanly(make_nodes):
    n = make_nodes(extra_a=["--max-connections", "2"])
    a = n["a"]
    ps = [pinger(n, f"pinger{i}") for i in range(2)]
    try:
        for p in ps:
            wait_for(lambda p=p: oks(p) >= 2, what="pinger running")
        r = ns_curl(a, "http://10.77.0.2:8080/hello.txt", timeout=5)
        assert r.returncode != 0
        assert metric(a, "ambient_connections_refused_total") >= 1
        m = nsrun(a, "curl", "-s", "http://127.0.0.1:15020/metrics").stdout.decode()
        assert 'ambient_connections_refused_total{reason="limit"}' in m
        k = oks(ps[0])
        wait_for(lambda: oks(ps[0]) > k + 2, what="the open ones go on")
    finally:
        for p in ps:
            p.stop()
    # Below the limit again: served.
    wait_for(lambda: ns_curl(a, "http://10.77.0.2:8080/hello.txt").returncode == 0,
             what="served again")


def test_drain_lets_an_inflight_transfer_finish(make_nodes):
    n = make_nodes(extra_a=["--drain-timeout", "30s"])
    a, za = n["a"], n["za"]
    out = str(n["tmp"] / "got.bin")
    curl = subprocess.Popen(["ip", "netns", "exec", a, "curl", "-sS", "--max-time", "60",
                             "--limit-rate", "1M", "-o", out,
                             "http://10.77.0.2:8080/big.bin"], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 256 << 10,
                 what="transfer under way")
        za.p.terminate()  # SIGTERM: drain
        wait_for(lambda: "draining" in za.logtext(), what="draining")
        # New connections are refused while the old one runs.
        r = ns_curl(a, "http://10.77.0.2:8080/hello.txt", timeout=3)
        assert r.returncode != 0
        assert curl.wait(60) == 0, curl.stderr.read()
        want = hashlib.sha256((n["www"] / "big.bin").read_bytes()).hexdigest()
        with open(out, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == want
        assert za.p.wait(30) == 0
        assert "drained" in za.logtext()
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
