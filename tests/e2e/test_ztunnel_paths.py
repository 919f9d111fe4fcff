"""End-to-end ztunnel traffic paths (docs/ztunnel.md): large transfers, half-close, service VIPs,
passthrough, TCP destinations, 15006 inbound plaintext, refused peers, an independent HBONE client
(python ssl + h2) and config reloads under an open connection.

Two netns "nodes" joined by a veth pair (A 10.77.0.1, B 10.77.0.2-.5), one ztunnel each, nft
REDIRECT capture in A. Needs root. Every netns and process is cleaned up, even on failure;
processes are stopped by PID. The helper servers/clients are in ztunnel_tool.py."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, stop_all, wait_for
from test_ztunnel import CLIENT_ID, SERVER_ID, NsProc, ns_curl, nsrun, write_atomic

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl")
    or not shutil.which("openssl"),
    reason="needs root, nft, curl and openssl")

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "ztunnel_tool.py")
SYS_PY = "/usr/bin/python3"  # Debian's python: the one that has python3-h2 (toolchain.md §8)
SAN = os.sep + "san" + os.sep in BIN
VIP = "10.96.0.10"
SVC = "server/echo.server.svc.cluster.local"
SERVER2_ID = "spiffe://cluster.local/ns/server/sa/server2"


def wl(uid, ip, sa, proto="HBONE", ns="server", **extra):
    d = {"uid": uid, "name": uid, "namespace": ns, "serviceAccount": sa,
         "workloadIps": [ip], "protocol": proto}
    d.update(extra)
    return d


def mesh(policies=(), server2_status="Healthy", extra_workloads=()):
    """client 10.77.0.1 (A); in B: server 10.77.0.2 and server2 10.77.0.3 (both HBONE endpoints
    of the service VIP 10.96.0.10:80 -> 9005), plain 10.77.0.5 (protocol TCP); 10.77.0.4 is in
    B but not in the mesh."""
    svc = {SVC: {"80": 9005}}
    return {
        "workloads": [
            wl("client", "10.77.0.1", "client", ns="client"),
            wl("server", "10.77.0.2", "server", services=svc),
            wl("server2", "10.77.0.3", "server2", services=svc, status=server2_status),
            wl("plain", "10.77.0.5", "plain", proto="TCP"),
        ] + list(extra_workloads),
        "services": [{"name": "echo", "namespace": "server",
                      "hostname": "echo.server.svc.cluster.local",
                      "vips": [VIP], "ports": {"80": 9005}}],
        "policies": list(policies),
    }


def py(ns, *args, timeout=120, python="python3"):
    r = nsrun(ns, python, TOOL, *args, check=False, timeout=timeout)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout.decode()


def veth(a, b, ips_a, ips_b, tag):
    va, vb = tag + "a" + a[-5:], tag + "b" + b[-5:]
    subprocess.run(["ip", "-n", a, "link", "add", va, "type", "veth", "peer", "name", vb,
                    "netns", b], check=True)
    for ns, dev, ips in ((a, va, ips_a), (b, vb, ips_b)):
        for ip in ips:
            subprocess.run(["ip", "-n", ns, "addr", "add", ip, "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    return va, vb


def nft(ns, text, path):
    with open(path, "w") as f:
        f.write(text + "\n")
    r = nsrun(ns, "nft", "-f", path, check=False)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def paths(netns, tmp_path):
    a, b = netns(), netns()
    va, _ = veth(a, b, ["10.77.0.1/24"],
                 ["10.77.0.2/24", "10.77.0.3/24", "10.77.0.4/24", "10.77.0.5/24"], "p")
    subprocess.run(["ip", "-n", a, "route", "add", "10.96.0.0/16", "dev", va], check=True)
    nft(a, "table ip t {\n chain out {\n  type nat hook output priority -100;\n"
           "  meta mark 1337 return\n"
           "  ip daddr 10.77.0.0/24 tcp dport { 8080, 9001-9006 } redirect to :15001\n"
           f"  ip daddr {VIP} tcp dport 80 redirect to :15001\n }}\n}}",
        str(tmp_path / "capture.nft"))

    cadir = str(tmp_path / "ca")
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", cadir],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    path = str(tmp_path / "mesh.json")
    write_atomic(path, mesh())
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(b"hello through the mesh\n")

    started = []

    def zt(ns, name, *extra):
        p = NsProc(ns, [BIN, "ztunnel", "--mesh-config", path, "--ca-dir", cadir,
                        "--admin", "127.0.0.1:15000", "--metrics", "127.0.0.1:15020",
                        "--ready", "127.0.0.1:15021"] + list(extra),
                   str(tmp_path / f"{name}.log"))
        started.append(p)
        return p

    za, zb = zt(a, "ztunnel-a"), zt(b, "ztunnel-b")
    ready_file = str(tmp_path / "tool.ready")
    tool = NsProc(b, ["python3", "-u", TOOL, "serve", ready_file], str(tmp_path / "tool.log"))
    app = NsProc(b, ["python3", "-m", "http.server", "8080", "--bind", "10.77.0.2",
                     "--directory", str(www)], str(tmp_path / "app.log"))
    apps = [tool, app]
    started += apps

    def ready(ns, p):
        if not p.alive():
            raise AssertionError("exited:\n" + p.logtext())
        r = ns_curl(ns, "http://127.0.0.1:15021/healthz/ready", timeout=3)
        return r.returncode == 0 and r.stdout.strip() == b"ready"

    try:
        wait_for(lambda: ready(a, za), what="ztunnel A ready")
        wait_for(lambda: ready(b, zb), what="ztunnel B ready")
        wait_for(lambda: os.path.exists(ready_file), what="tool servers up")
        wait_for(lambda: nsrun(b, "curl", "-s", "-o", "/dev/null", "http://10.77.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"a": a, "b": b, "za": za, "zb": zb, "path": path, "cadir": cadir,
               "tmp": tmp_path, "tool": tool, "zt": zt, "started": started}
    finally:
        stop_all(started, lambda p: p not in apps)


def reload(n, doc, proc):
    before = proc.logtext().count("proxy: config applied")
    write_atomic(n["path"], doc)
    wait_for(lambda: proc.logtext().count("proxy: config applied") > before,
             what="config reloaded")


def completes(z, needle):
    return [l for l in z.logtext().splitlines() if "connection complete" in l and needle in l]


# ---- large transfers

def test_large_transfer_sha256_both_ends(paths):
    """Upload and download through HBONE, compared by sha256 at both ends. 1 GiB each way with
    the release binary; the SAN build (AMBIENT_BIN=build/san/ambient) is several times slower,
    so there the size is 64 MiB to keep the run short."""
    a, za, zb = paths["a"], paths["za"], paths["zb"]
    size = (64 << 20) if SAN else (1 << 30)
    out = py(a, "upload", "10.77.0.2", str(size), "7", timeout=600).split()
    assert out[0] == out[1] and out[2] == str(size), out
    out = py(a, "download", "10.77.0.2", str(size), "11", timeout=600).split()
    want = hashlib.sha256()
    for chunk in _gen(size, 11):
        want.update(chunk)
    assert out == [want.hexdigest(), str(size)]
    wait_for(lambda: any(f"bytes_sent={size}" in l or f'"bytes_sent":{size}' in l
                         for l in completes(zb, "inbound")),
             what="inbound access log with the byte count")
    assert completes(za, "outbound")


def _gen(size, seed):
    sys.path.insert(0, HERE)
    import ztunnel_tool
    return ztunnel_tool.gen(size, seed)


# ---- what the app sees

def test_app_sees_node_address_without_preserve_source(paths):
    """Default (no --preserve-source): the inbound ztunnel connects to the app with an ordinary
    connect, so the app sees the destination node's own address, not the client's."""
    peer, local = py(paths["a"], "whoami", "10.77.0.2", "9005").split()
    assert local == "10.77.0.2"
    assert peer == "10.77.0.2", peer  # the kernel's source for a local connect to 10.77.0.2
    # The ztunnel still records who the client was.
    wait_for(lambda: any("10.77.0.1" in l and CLIENT_ID in l
                         for l in completes(paths["zb"], "inbound")),
             what="inbound log with the client's address and identity")


# ---- half-close

def test_half_close_both_directions(paths):
    out = py(paths["a"], "halfclose", "10.77.0.2").splitlines()
    # client shut write first: the server saw all 300000 bytes and EOF, then still sent 1 MiB
    assert out[0] == "client-first got 300000 %d" % (1 << 20), out
    # server shut write first: the client read 1 MiB and EOF, then still sent 200000 bytes
    assert out[1] == "server-first %d 0" % (1 << 20), out
    wait_for(lambda: "srvfirst recv 200000" in paths["tool"].logtext(),
             what="server received the client's bytes after its own half-close")
    assert "echolate 300000" in paths["tool"].logtext()


# ---- service VIP

def spread(ns, n):
    """n connections to the VIP; how many each endpoint (the server's local address) got."""
    seen = {}
    for line in py(ns, "whoami", VIP, "80", str(n)).splitlines():
        local = line.split()[1]
        seen[local] = seen.get(local, 0) + 1
    return seen


def test_service_vip_spreads_and_skips_unhealthy(paths):
    a, zb = paths["a"], paths["zb"]
    seen = spread(a, 40)
    assert set(seen) == {"10.77.0.2", "10.77.0.3"}, seen
    # Both went through HBONE with the right per-endpoint identity.
    wait_for(lambda: any(SERVER2_ID in l for l in completes(paths["za"], "outbound")),
             what="outbound log naming server2's identity")

    reload(paths, mesh(server2_status="Unhealthy"), paths["za"])
    seen = spread(a, 30)
    assert seen == {"10.77.0.2": 30}, seen


# ---- destinations that are not HBONE

def test_unknown_destination_passes_through(paths):
    """10.77.0.4 is not in the mesh config: connected directly, so the server sees A's address."""
    before = len(completes(paths["zb"], "inbound"))
    peer, local = py(paths["a"], "whoami", "10.77.0.4", "9005").split()
    assert (peer, local) == ("10.77.0.1", "10.77.0.4")
    wait_for(lambda: any("10.77.0.4:9005" in l for l in completes(paths["za"], "outbound")),
             what="outbound access log for the passthrough")
    assert len(completes(paths["zb"], "inbound")) == before  # never reached B's ztunnel


def test_tcp_protocol_destination_connected_directly(paths):
    before = len(completes(paths["zb"], "inbound"))
    peer, local = py(paths["a"], "whoami", "10.77.0.5", "9005").split()
    assert (peer, local) == ("10.77.0.1", "10.77.0.5")
    line = wait_for(lambda: [l for l in completes(paths["za"], "outbound")
                             if "10.77.0.5:9005" in l], what="outbound access log")[0]
    assert "plain" in line  # the destination workload is known
    assert len(completes(paths["zb"], "inbound")) == before


# ---- 15006 inbound plaintext

def test_inbound_plaintext_15006(paths, netns):
    """A client in a third netns C (no ztunnel) reaches 10.77.0.2:8080 in B, where nft redirects
    it to B's ztunnel on 15006: relayed without policies; refused by an ALLOW policy that needs
    a principal, since plaintext carries no identity. HBONE from A still passes that policy."""
    b, zb, tmp = paths["b"], paths["zb"], paths["tmp"]
    c = netns()
    veth(c, b, ["10.77.1.1/24"], ["10.77.1.2/24"], "q")
    subprocess.run(["ip", "-n", c, "route", "add", "10.77.0.0/24", "via", "10.77.1.2"],
                   check=True)
    nft(b, "table ip cap {\n chain pre {\n  type nat hook prerouting priority -100;\n"
           "  meta mark 1337 return\n"
           "  ip saddr 10.77.1.0/24 ip daddr 10.77.0.2 tcp dport { 8080, 9005 }"
           " redirect to :15006\n }\n}", str(tmp / "inbound.nft"))

    peer, local = py(c, "whoami", "10.77.0.2", "9005").split()
    assert local == "10.77.0.2"
    r = ns_curl(c, "http://10.77.0.2:8080/hello.txt")
    assert r.returncode == 0 and r.stdout == b"hello through the mesh\n", r
    wait_for(lambda: any("10.77.1.1" in l for l in completes(zb, "inbound")),
             what="inbound plaintext access log")

    allow = {"name": "allow-client", "namespace": "server", "scope": "Namespace",
             "action": "Allow",
             "rules": [[[{"principals": [{"Exact": "cluster.local/ns/client/sa/client"}]}]]]}
    reload(paths, mesh([allow]), zb)
    r = ns_curl(c, "http://10.77.0.2:8080/hello.txt", timeout=10)
    assert r.returncode != 0 or b"hello" not in r.stdout, r
    wait_for(lambda: "server/allow-client" in zb.logtext() or "allow" in "".join(
        l for l in completes(zb, "10.77.1.1") if "error=" in l and "error= " not in l),
        what="denial logged")
    # The mesh client with its identity is still allowed.
    r = ns_curl(paths["a"], "http://10.77.0.2:8080/hello.txt")
    assert r.returncode == 0 and r.stdout == b"hello through the mesh\n", r


# ---- refused peers and an independent HBONE client

def issue(cadir, identity, out, *extra):
    r = subprocess.run([BIN, "ca", "issue", "--dir", cadir, "--identity", identity,
                        "--out", out] + list(extra), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def hbone(n, certdir, root=None, authority="10.77.0.2:8080"):
    return py(n["a"], "hbone", f"{certdir}/chain.pem" if os.path.exists(f"{certdir}/chain.pem")
              else f"{certdir}/cert.pem", f"{certdir}/key.pem",
              root or os.path.join(n["cadir"], "root-cert.pem"), "10.77.0.2", authority,
              SERVER_ID, python=SYS_PY)


def h2_available():
    return subprocess.run([SYS_PY, "-c", "import h2"], capture_output=True).returncode == 0


needs_h2 = pytest.mark.skipif(not h2_available(), reason="needs python3-h2 for /usr/bin/python3")


@needs_h2
def test_independent_hbone_client(paths):
    """python ssl + h2 (not our code) with a certificate from `ambient ca issue`."""
    d = issue(paths["cadir"], CLIENT_ID, str(paths["tmp"] / "pyclient"))
    out = hbone(paths, d)
    assert out.startswith("status 200\n"), out
    assert "hello through the mesh" in out, out
    wait_for(lambda: any(CLIENT_ID in l and "10.77.0.2:8080" in l
                         for l in completes(paths["zb"], "inbound")),
             what="inbound log for the python client")


@needs_h2
def test_refuses_certificate_from_another_root(paths):
    other = str(paths["tmp"] / "other-ca")
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", other],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = issue(other, CLIENT_ID, str(paths["tmp"] / "other-root"))
    _assert_refused(paths, d, "ALERT_UNKNOWN_CA", "unknown CA")


@needs_h2
def test_refuses_certificate_from_another_trust_domain(paths):
    """Same root, but the leaf names spiffe://other.local/...: not our trust domain."""
    d = issue(paths["cadir"], "spiffe://other.local/ns/client/sa/client",
              str(paths["tmp"] / "other-td"), "--trust-domain", "other.local")
    _assert_refused(paths, d, "ALERT_BAD_CERTIFICATE", "wrong trust domain (want cluster.local)")


@needs_h2
def test_refuses_expired_certificate(paths):
    """An openssl-made leaf signed by the test CA whose validity ended in 2021."""
    tmp, cadir = paths["tmp"], paths["cadir"]
    d = tmp / "expired"
    d.mkdir()
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(f"""[ca]
default_ca = c
[c]
dir = {d}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
certificate = {cadir}/ca-cert.pem
private_key = {cadir}/ca-key.pem
default_md = sha256
policy = p
copy_extensions = none
unique_subject = no
[p]
organizationName = optional
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = critical,URI:{CLIENT_ID}
""")

    def ossl(*args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True)
        assert r.returncode == 0, (args, r.stderr)

    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(d / "key.pem"))
    ossl("req", "-new", "-key", str(d / "key.pem"), "-subj", "/O=cluster.local",
         "-out", str(d / "req.csr"))
    ossl("ca", "-batch", "-config", str(d / "ca.cnf"), "-extensions", "ext",
         "-startdate", "210101000000Z", "-enddate", "210102000000Z",
         "-in", str(d / "req.csr"), "-out", str(d / "cert.pem"), "-notext")
    text = subprocess.run(["openssl", "x509", "-in", str(d / "cert.pem"), "-noout", "-enddate"],
                          capture_output=True, text=True).stdout
    assert "2021" in text, text
    _assert_refused(paths, str(d), "ALERT_CERTIFICATE_EXPIRED", "certificate expired")


def _assert_refused(n, certdir, alert, reason):
    """The server ztunnel refuses the handshake with a TLS alert and logs the reason; no CONNECT,
    nothing reaches the app."""
    before = len(completes(n["zb"], "inbound"))
    refusals = n["zb"].logtext().count("hbone handshake refused")
    out = hbone(n, certdir)
    assert out.startswith("tls-error") and alert in out, out
    assert "hello" not in out
    wait_for(lambda: n["zb"].logtext().count("hbone handshake refused") > refusals,
             what="the refusal in the server log")
    line = [l for l in n["zb"].logtext().splitlines() if "hbone handshake refused" in l][-1]
    assert "src.addr=10.77.0.1:" in line and reason in line, line
    # A good client right after still works, so the refusal was about this peer only.
    d = issue(n["cadir"], CLIENT_ID, str(n["tmp"] / "good"))
    assert hbone(n, d).startswith("status 200\n")
    wait_for(lambda: len(completes(n["zb"], "inbound")) == before + 1,
             what="exactly one inbound connection (the good one)")


# ---- config reload under an open connection

def test_reload_keeps_open_connection(paths):
    """An unrelated change (a new workload elsewhere) does not touch an open allowed connection."""
    a, zb = paths["a"], paths["zb"]
    script = (
        "import socket,sys,time\n"
        "s=socket.create_connection(('10.77.0.2',9006),timeout=60)\n"
        "s.sendall(b'one\\n'); assert s.recv(100)==b'one\\n'\n"
        "print('open',flush=True)\n"
        "sys.stdin.readline()\n"
        "s.sendall(b'two\\n'); assert s.recv(100)==b'two\\n'\n"
        "print('still open',flush=True)\n")
    p = subprocess.Popen(["ip", "netns", "exec", a, "python3", "-c", script],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"open\n", p.stderr.read() if p.poll() is not None else ""
        extra = wl("elsewhere", "10.99.0.9", "elsewhere", ns="other")
        reload(paths, mesh(extra_workloads=[extra]), zb)
        reload(paths, mesh(extra_workloads=[extra, wl("more", "10.99.0.10", "more",
                                                        ns="other")]), paths["za"])
        p.stdin.write(b"go\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"still open\n", p.stderr.read()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
