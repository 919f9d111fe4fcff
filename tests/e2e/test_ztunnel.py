"""End-to-end data plane: two netns "nodes" joined by a veth pair, one ztunnel in each, outbound
capture with nft in the client's netns, HBONE (mTLS + HTTP/2 CONNECT) between the nodes, L4
authorization on the receiving side. Needs root; every netns and process is cleaned up."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import BIN, stop_all, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl"),
    reason="needs root, nft and curl")

CLIENT_ID = "spiffe://cluster.local/ns/client/sa/client"
SERVER_ID = "spiffe://cluster.local/ns/server/sa/server"


def mesh(policies=()):
    return {
        "workloads": [
            {"uid": "client", "name": "client", "namespace": "client",
             "serviceAccount": "client", "workloadIps": ["10.77.0.1"], "protocol": "HBONE"},
            {"uid": "server", "name": "server", "namespace": "server",
             "serviceAccount": "server", "workloadIps": ["10.77.0.2"], "protocol": "HBONE"},
        ],
        "policies": list(policies),
    }


def write_atomic(path, doc):
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)


class NsProc:
    """A process inside a netns (ip netns exec execs it: the PID is the process's own)."""

    def __init__(self, ns, args, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(["ip", "netns", "exec", ns] + args, stdout=self.log,
                                  stderr=subprocess.STDOUT)

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


def nsrun(ns, *args, check=True, timeout=30):
    return subprocess.run(["ip", "netns", "exec", ns] + list(args), capture_output=True,
                          check=check, timeout=timeout)


def ns_curl(ns, url, out=None, timeout=20):
    args = ["curl", "-sS", "--max-time", str(timeout)]
    if out:
        args += ["-o", out]
    return nsrun(ns, *args, url, check=False, timeout=timeout + 10)


@pytest.fixture
def nodes(netns, tmp_path):
    """Two netns joined by a veth pair; ztunnels in both; an HTTP server in B."""
    a, b = netns(), netns()
    va, vb = "za" + a[-6:], "zb" + b[-6:]
    subprocess.run(["ip", "-n", a, "link", "add", va, "type", "veth", "peer", "name", vb,
                    "netns", b], check=True)
    subprocess.run(["ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", va], check=True)
    subprocess.run(["ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", vb], check=True)
    subprocess.run(["ip", "-n", a, "link", "set", va, "up"], check=True)
    subprocess.run(["ip", "-n", b, "link", "set", vb, "up"], check=True)
    nft = ("table ip t {\n chain out {\n  type nat hook output priority -100;\n"
           "  meta mark 1337 return\n  ip daddr 10.77.0.2 tcp dport 8080 redirect to :15001\n"
           " }\n}")
    nftfile = tmp_path / "capture.nft"
    nftfile.write_text(nft + "\n")
    r = nsrun(a, "nft", "-f", str(nftfile), check=False)
    assert r.returncode == 0, r.stderr

    cadir = str(tmp_path / "ca")
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", cadir],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    path = str(tmp_path / "mesh.json")
    write_atomic(path, mesh())

    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(b"hello through the mesh\n")
    (www / "big.bin").write_bytes(os.urandom(3 << 20 | 12345))

    started = []

    def zt(ns, name):
        p = NsProc(ns, [BIN, "ztunnel", "--mesh-config", path, "--ca-dir", cadir,
                        "--admin", "127.0.0.1:15000", "--metrics", "127.0.0.1:15020",
                        "--ready", "127.0.0.1:15021"], str(tmp_path / f"{name}.log"))
        started.append(p)
        return p

    za, zb = zt(a, "ztunnel-a"), zt(b, "ztunnel-b")
    app = NsProc(b, ["python3", "-m", "http.server", "8080", "--bind", "10.77.0.2",
                     "--directory", str(www)], str(tmp_path / "app.log"))
    started.append(app)

    def ready(ns, p):
        if not p.alive():
            raise AssertionError("exited:\n" + p.logtext())
        r = ns_curl(ns, "http://127.0.0.1:15021/healthz/ready", timeout=3)
        return r.returncode == 0 and r.stdout.strip() == b"ready"

    try:
        wait_for(lambda: ready(a, za), what="ztunnel A ready")
        wait_for(lambda: ready(b, zb), what="ztunnel B ready")
        wait_for(lambda: nsrun(b, "curl", "-s", "-o", "/dev/null", "http://10.77.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"a": a, "b": b, "za": za, "zb": zb, "path": path, "www": www}
    finally:
        stop_all(started, lambda p: p is not app)


def test_ztunnel_hbone_end_to_end(nodes, tmp_path):
    a, b, za, zb = nodes["a"], nodes["b"], nodes["za"], nodes["zb"]

    r = ns_curl(a, "http://10.77.0.2:8080/hello.txt")
    assert r.returncode == 0, (r.stderr, za.logtext()[-2000:], zb.logtext()[-2000:])
    assert r.stdout == b"hello through the mesh\n"

    out = str(tmp_path / "got.bin")
    r = ns_curl(a, "http://10.77.0.2:8080/big.bin", out=out)
    assert r.returncode == 0, (r.stderr, zb.logtext()[-2000:])
    want = hashlib.sha256((nodes["www"] / "big.bin").read_bytes()).hexdigest()
    with open(out, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want

    # Both sides log the connection; the server side names the client's SPIFFE identity.
    wait_for(lambda: "connection complete" in zb.logtext() and CLIENT_ID in zb.logtext(),
             what="inbound access log with the client identity")
    wait_for(lambda: "connection complete" in za.logtext() and "outbound" in za.logtext(),
             what="outbound access log")
    assert SERVER_ID in za.logtext()

    m = nsrun(b, "curl", "-s", "http://127.0.0.1:15020/metrics").stdout.decode()
    line = [l for l in m.splitlines() if l.startswith("istio_tcp_connections_opened_total{")]
    assert line and 'reporter="destination"' in line[0], m
    assert f'source_principal="{CLIENT_ID}"' in line[0]
    assert 'connection_security_policy="mutual_tls"' in line[0]
    assert "istio_tcp_received_bytes_total{" in m and "istio_tcp_sent_bytes_total{" in m
    m = nsrun(a, "curl", "-s", "http://127.0.0.1:15020/metrics").stdout.decode()
    assert 'istio_tcp_connections_closed_total{' in m and 'reporter="source"' in m


def test_ztunnel_deny_policy(nodes):
    a, zb = nodes["a"], nodes["zb"]
    assert ns_curl(a, "http://10.77.0.2:8080/hello.txt").returncode == 0

    deny = {"name": "deny-client", "namespace": "server", "scope": "Namespace",
            "action": "Deny",
            "rules": [[[{"principals": [{"Exact": "cluster.local/ns/client/sa/client"}]}]]]}
    write_atomic(nodes["path"], mesh([deny]))
    wait_for(lambda: zb.logtext().count("proxy: config applied") >= 2, what="B reloads")

    r = ns_curl(a, "http://10.77.0.2:8080/hello.txt", timeout=10)
    assert r.returncode != 0 or b"hello" not in r.stdout
    wait_for(lambda: "server/deny-client" in zb.logtext(), what="denial names the policy")
