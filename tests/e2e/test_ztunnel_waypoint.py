"""End-to-end waypoint routing (DESIGN.md §2, docs/ztunnel.md): the client ztunnel sends a
connection whose destination uses a waypoint over HBONE to the waypoint workload, with
`:authority` = the original destination and the waypoint's SPIFFE identity as the server's.

Two netns joined by a veth pair: A (client 10.77.0.1, its ztunnel, nft REDIRECT capture) and W
(10.78.0.2 the "waypoint" workload, 10.78.0.3 the "wpapp" workload with an HTTP server), where a
second ztunnel stands in for the waypoint: it serves both workloads. It is an L4 ztunnel, not an
L7 waypoint, so for a service VIP authority it answers the CONNECT with an error and logs why; for
a workload authority that it serves (wpapp) it forwards, so the bytes arrive. Needs root; every
netns and process is cleaned up, processes are stopped by PID."""
import os
import shutil
import subprocess

import pytest

from conftest import BIN, stop_all, wait_for
from test_ztunnel import CLIENT_ID, NsProc, ns_curl, nsrun, write_atomic

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl"),
    reason="needs root, nft and curl")

VIP = "10.96.0.10"
WP_HOST = "waypoint.server.svc.cluster.local"
WAYPOINT_ID = "spiffe://cluster.local/ns/server/sa/waypoint"
WPAPP_ID = "spiffe://cluster.local/ns/server/sa/wpapp"


def wl(uid, ip, sa, ns="server", **extra):
    d = {"uid": uid, "name": uid, "namespace": ns, "serviceAccount": sa,
         "workloadIps": [ip], "protocol": "HBONE"}
    d.update(extra)
    return d


def mesh():
    """Service echo (VIP 10.96.0.10:80 -> server 10.77.0.2:8080, not running anywhere) uses the
    waypoint service server/waypoint.server.svc.cluster.local (endpoint: waypoint 10.78.0.2,
    waypointFor all); workload wpapp 10.78.0.3 uses the address-form waypoint "/10.78.0.2"."""
    return {
        "workloads": [
            wl("client", "10.77.0.1", "client", ns="client"),
            wl("server", "10.77.0.2", "server",
               services={"server/echo.server.svc.cluster.local": {"80": 8080}}),
            wl("waypoint", "10.78.0.2", "waypoint", waypointFor="all",
               services={"server/" + WP_HOST: {"15008": 15008}}),
            wl("wpapp", "10.78.0.3", "wpapp", waypoint={"destination": "/10.78.0.2"}),
        ],
        "services": [
            {"name": "echo", "namespace": "server", "hostname": "echo.server.svc.cluster.local",
             "vips": [VIP], "ports": {"80": 8080},
             "waypoint": {"destination": "server/" + WP_HOST}},
            {"name": "waypoint", "namespace": "server", "hostname": WP_HOST,
             "vips": ["10.96.0.20"], "ports": {"15008": 15008}},
        ],
    }


@pytest.fixture
def wpnodes(netns, tmp_path):
    a, w = netns(), netns()
    va, vw = "wa" + a[-6:], "ww" + w[-6:]
    subprocess.run(["ip", "-n", a, "link", "add", va, "type", "veth", "peer", "name", vw,
                    "netns", w], check=True)
    for ns, dev, ips in ((a, va, ["10.77.0.1/24", "10.78.0.1/24"]),
                         (w, vw, ["10.78.0.2/24", "10.78.0.3/24"])):
        for ip in ips:
            subprocess.run(["ip", "-n", ns, "addr", "add", ip, "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    subprocess.run(["ip", "-n", w, "route", "add", "10.77.0.0/24", "via", "10.78.0.1"],
                   check=True)
    # A route for the VIP so connect() gets as far as the nft capture.
    subprocess.run(["ip", "-n", a, "route", "add", VIP + "/32", "dev", va], check=True)
    nftfile = tmp_path / "capture.nft"
    nftfile.write_text(
        "table ip t {\n chain out {\n  type nat hook output priority -100;\n"
        "  meta mark 1337 return\n"
        f"  ip daddr {VIP} tcp dport 80 redirect to :15001\n"
        "  ip daddr 10.78.0.3 tcp dport 8080 redirect to :15001\n"
        " }\n}\n")
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
    (www / "hello.txt").write_bytes(b"hello via the waypoint\n")

    started = []

    def zt(ns, name):
        p = NsProc(ns, [BIN, "ztunnel", "--mesh-config", path, "--ca-dir", cadir,
                        "--admin", "127.0.0.1:15000", "--metrics", "127.0.0.1:15020",
                        "--ready", "127.0.0.1:15021"], str(tmp_path / f"{name}.log"))
        started.append(p)
        return p

    def ready(ns, p):
        if not p.alive():
            raise AssertionError("exited:\n" + p.logtext())
        r = ns_curl(ns, "http://127.0.0.1:15021/healthz/ready", timeout=3)
        return r.returncode == 0 and r.stdout.strip() == b"ready"

    try:
        za, zw = zt(a, "ztunnel-a"), zt(w, "ztunnel-waypoint")
        app = NsProc(w, ["python3", "-m", "http.server", "8080", "--bind", "10.78.0.3",
                         "--directory", str(www)], str(tmp_path / "app.log"))
        started.append(app)
        wait_for(lambda: ready(a, za), what="ztunnel A ready")
        wait_for(lambda: ready(w, zw), what="waypoint ztunnel ready")
        wait_for(lambda: nsrun(w, "curl", "-s", "-o", "/dev/null", "http://10.78.0.3:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"a": a, "w": w, "za": za, "zw": zw}
    finally:
        stop_all(started, lambda p: "ztunnel" in os.path.basename(p.log_path))


def client_curl(ns, url, timeout=20):
    """curl from the client workload's address (A also has 10.78.0.1, on W's subnet)."""
    return nsrun(ns, "curl", "-sS", "--interface", "10.77.0.1", "--max-time", str(timeout), url,
                 check=False, timeout=timeout + 10)


def lines(z, *needles):
    return [l for l in z.logtext().splitlines() if all(n in l for n in needles)]


def test_ztunnel_service_vip_goes_to_waypoint(wpnodes):
    """VIP:80 of a service with a waypoint: HBONE to 10.78.0.2:15008 (not to the endpoint
    10.77.0.2), :authority 10.96.0.10:80, server identity the waypoint's. The stand-in waypoint
    (an L4 ztunnel) refuses the VIP authority as not served, naming the client's identity."""
    a, za, zw = wpnodes["a"], wpnodes["za"], wpnodes["zw"]
    r = client_curl(a, f"http://{VIP}/hello.txt", timeout=10)
    assert b"hello" not in r.stdout

    wait_for(lambda: lines(zw, f"authority {VIP}:80 is not a workload served here"),
             what="waypoint ztunnel refuses the VIP authority")
    got = lines(zw, f"{VIP}:80", "inbound")
    assert got and all(CLIENT_ID in l for l in got), zw.logtext()[-3000:]
    wait_for(lambda: lines(za, "outbound", f"{VIP}:80", "10.78.0.2:15008"),
             what="client ztunnel logs the waypoint as the HBONE peer")
    out = lines(za, "outbound", f"{VIP}:80")
    assert out and all(WAYPOINT_ID in l and "10.77.0.2" not in l for l in out), out
    assert all("upstream answered HBONE CONNECT with 400" in l for l in out), out


def test_ztunnel_workload_waypoint_forwards(wpnodes):
    """wpapp (10.78.0.3) uses the address-form waypoint 10.78.0.2: the client dials the waypoint's
    10.78.0.2:15008 (expecting its identity) with :authority 10.78.0.3:8080; the waypoint ztunnel
    also serves wpapp, so it forwards and the response comes back."""
    a, za, zw = wpnodes["a"], wpnodes["za"], wpnodes["zw"]
    r = client_curl(a, "http://10.78.0.3:8080/hello.txt")
    assert r.returncode == 0, (r.stderr, za.logtext()[-2000:], zw.logtext()[-2000:])
    assert r.stdout == b"hello via the waypoint\n"

    wait_for(lambda: lines(za, "connection complete", "outbound", "10.78.0.3:8080"),
             what="client access log")
    out = lines(za, "connection complete", "outbound", "10.78.0.3:8080")
    assert all("10.78.0.2:15008" in l and WAYPOINT_ID in l for l in out), out
    assert not lines(za, "10.78.0.3:15008"), "dialled the workload directly"
    wait_for(lambda: lines(zw, "connection complete", "inbound", "10.78.0.3:8080", CLIENT_ID),
             what="waypoint ztunnel inbound log with the authority and the client identity")
