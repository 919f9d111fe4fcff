"""End-to-end source-IP preservation (ztunnel issue: "Inbound HBONE delivers to the app keeping
the client's source IP (IP_TRANSPARENT bind) where possible ... The server sees the client's real
IP"). docs/ztunnel.md, `--preserve-source`.

Same two-netns setup as test_ztunnel_paths.py: A (client 10.77.0.1) and B (server 10.77.0.2)
joined by a veth pair, one ztunnel each, nft REDIRECT capture in A. ztunnel B runs with
--preserve-source, so it connects to the app from 10.77.0.1 (IP_TRANSPARENT, SO_MARK 1337). The
app's replies to 10.77.0.1 must come back to the ztunnel instead of leaving on the veth; in B we
install the in-pod return path istio-cni uses (reference ztunnel-and-cni.md §7.2), in nft form:

    table inet srcip {
      chain pre { type filter hook prerouting priority mangle;
                  meta mark & 0xfff == 0x539 ct mark set 0x111 }      # ztunnel's packets via lo
      chain out { type route hook output priority mangle;
                  ct mark & 0xfff == 0x111 meta mark set ct mark }    # app's replies: restore
    }
    ip rule add fwmark 0x111/0xfff pref 32764 lookup 100
    ip route add local 0.0.0.0/0 dev lo table 100

Without them the app's SYN-ACK goes out to A, which resets it; the ztunnel's connect times out
(PROXY_CONNECT_TIMEOUT_MS, 10 s) and the client's connection is closed: there is no fallback to an
ordinary connect in that case (the fallback is only for a failed transparent bind).

Needs root. Every netns and process is cleaned up, even on failure; processes are stopped by PID.
"""
import hashlib
import os
import shutil
import subprocess
import time

import pytest

from conftest import BIN, stop_all, wait_for
from test_ztunnel import CLIENT_ID, NsProc, ns_curl, nsrun, write_atomic
from test_ztunnel_paths import SAN, TOOL, mesh, nft, py, veth
import ztunnel_tool

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl"),
    reason="needs root, nft and curl")

CLIENT_IP = "10.77.0.1"
RETURN_PATH_NFT = """table inet srcip {
 chain pre {
  type filter hook prerouting priority mangle;
  meta mark & 0xfff == 0x539 ct mark set 0x111
 }
 chain out {
  type route hook output priority mangle;
  ct mark & 0xfff == 0x111 meta mark set ct mark
 }
}"""


def install_return_path(ns, tmp):
    nft(ns, RETURN_PATH_NFT, str(tmp / "return-path.nft"))
    nsrun(ns, "ip", "rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100")
    nsrun(ns, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")


@pytest.fixture
def srcip(netns, tmp_path):
    a, b = netns(), netns()
    veth(a, b, ["10.77.0.1/24"], ["10.77.0.2/24", "10.77.0.3/24", "10.77.0.4/24",
                                  "10.77.0.5/24"], "s")
    nft(a, "table ip t {\n chain out {\n  type nat hook output priority -100;\n"
           "  meta mark 1337 return\n"
           "  ip daddr 10.77.0.0/24 tcp dport { 8080, 9001-9006 } redirect to :15001\n }\n}",
        str(tmp_path / "capture.nft"))

    cadir = str(tmp_path / "ca")
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", cadir],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    path = str(tmp_path / "mesh.json")
    write_atomic(path, mesh())
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(b"hello from the real client address\n")

    started, apps = [], []

    def zt(ns, name, *extra):
        p = NsProc(ns, [BIN, "ztunnel", "--mesh-config", path, "--ca-dir", cadir,
                        "--admin", "127.0.0.1:15000", "--metrics", "127.0.0.1:15020",
                        "--ready", "127.0.0.1:15021"] + list(extra),
                   str(tmp_path / f"{name}.log"))
        started.append(p)
        return p

    def ready(ns, p):
        if not p.alive():
            raise AssertionError("exited:\n" + p.logtext())
        r = ns_curl(ns, "http://127.0.0.1:15021/healthz/ready", timeout=3)
        return r.returncode == 0 and r.stdout.strip() == b"ready"

    try:
        za, zb = zt(a, "ztunnel-a"), zt(b, "ztunnel-b", "--preserve-source")
        ready_file = str(tmp_path / "tool.ready")
        apps.append(NsProc(b, ["python3", "-u", TOOL, "serve", ready_file],
                           str(tmp_path / "tool.log")))
        app = NsProc(b, ["python3", "-u", "-m", "http.server", "8080", "--bind", "10.77.0.2",
                         "--directory", str(www)], str(tmp_path / "app.log"))
        apps.append(app)
        started += apps
        wait_for(lambda: ready(a, za), what="ztunnel A ready")
        wait_for(lambda: ready(b, zb), what="ztunnel B ready")
        wait_for(lambda: os.path.exists(ready_file), what="tool servers up")
        wait_for(lambda: nsrun(b, "curl", "-s", "-o", "/dev/null", "http://10.77.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"a": a, "b": b, "za": za, "zb": zb, "app": app, "tmp": tmp_path}
    finally:
        stop_all(started, lambda p: p not in apps)


def inbound_completes(zb):
    return [l for l in zb.logtext().splitlines() if "connection complete" in l and "inbound" in l]


def test_app_sees_client_ip_with_preserve_source_and_return_routing(srcip):
    a, b, zb, app = srcip["a"], srcip["b"], srcip["zb"], srcip["app"]

    # Without the return path: no fallback, the ztunnel's transparent connect never completes
    # (the SYN-ACK to 10.77.0.1 leaves on the veth and A resets it) and the client gets nothing.
    t0 = time.monotonic()
    r = nsrun(a, "python3", TOOL, "whoami", "10.77.0.2", "9005", check=False, timeout=60)
    took = time.monotonic() - t0
    assert r.stdout.strip() == b"", r.stdout
    assert took >= 8, took  # the 10 s connect timeout, not an early refusal or fallback
    assert "original source bind failed" not in zb.logtext()
    wait_for(lambda: any("connect to the application: timed out" in l
                         for l in inbound_completes(zb)),
             what="inbound access log with the connect timeout")

    install_return_path(b, srcip["tmp"])

    # The app sees the client's real address; its local address is its own.
    assert py(a, "whoami", "10.77.0.2", "9005", "3").split() == [CLIENT_IP, "10.77.0.2"] * 3

    # An HTTP app logs the client's address, and the response arrives intact.
    out = str(srcip["tmp"] / "hello.out")
    r = ns_curl(a, "http://10.77.0.2:8080/hello.txt", out=out, timeout=20)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f:
        assert f.read() == b"hello from the real client address\n"
    wait_for(lambda: any(l.startswith(CLIENT_IP + " ") and "GET /hello.txt" in l
                         for l in app.logtext().splitlines()),
             what="app access log with the client's address")

    # Bulk both ways over a preserved-source connection (sha256 compared at both ends).
    size = (4 << 20) if SAN else (64 << 20)
    up = py(a, "upload", "10.77.0.2", str(size), "3").split()
    assert up[0] == up[1] and up[2] == str(size), up
    down = py(a, "download", "10.77.0.2", str(size), "5").split()
    want = hashlib.sha256()
    for chunk in ztunnel_tool.gen(size, 5):
        want.update(chunk)
    assert down == [want.hexdigest(), str(size)], down

    # The ztunnel logged the client and its identity, and never fell back.
    wait_for(lambda: any(CLIENT_IP in l and CLIENT_ID in l for l in inbound_completes(zb)),
             what="inbound access log with the client's address and identity")
    assert "original source bind failed" not in zb.logtext()
