"""Shared-mode ztunnel (cni issue: "ambient ztunnel --mode shared connects to the node agent"),
driven by a scripted ZDS agent (zds_agent.py, the node agent's side of Istio's protocol written
independently in Python). Two workload netns joined by a veth pair: c (10.83.0.1) and s
(10.83.0.2). One ztunnel, in the root netns, serves both: for each Add it creates the
15001/15006/15008 and SOCKS5 listeners inside the workload's netns (setns there and back).
Traffic goes through SOCKS5 in c (no capture rules needed), over HBONE from c's netns to s's
15008, and to the app from s's netns keeping the client's IP (the in-pod return path is
installed in s with nft, as in test_ztunnel_srcip.py).

The full path with the real node agent and its redirection rules is in test_cni_shared.py.
Needs root; every netns and process is cleaned up, processes stopped by PID."""
import os
import shutil
import subprocess

import pytest

from conftest import BIN, Server, http, wait_for
from test_ztunnel import NsProc, nsrun, write_atomic
from test_ztunnel_paths import veth
from test_ztunnel_srcip import install_return_path
import zds_agent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl")
    or not shutil.which("ss"), reason="needs root, nft, curl and ss")

C_ID = "spiffe://cluster.local/ns/demo/sa/client"
S_ID = "spiffe://cluster.local/ns/demo/sa/server"


def mesh():
    return {"workloads": [
        {"uid": "c-uid", "name": "c", "namespace": "demo", "serviceAccount": "client",
         "workloadIps": ["10.83.0.1"], "protocol": "HBONE"},
        {"uid": "s-uid", "name": "s", "namespace": "demo", "serviceAccount": "server",
         "workloadIps": ["10.83.0.2"], "protocol": "HBONE"},
    ]}


def listeners(ns):
    """Local addresses of the TCP listeners in ns, e.g. ['*:15001', '127.0.0.1:15080', ...]."""
    out = nsrun(ns, "ss", "-Hltn").stdout.decode().splitlines()
    return sorted(l.split()[3] for l in out if l.strip())


def mesh_ports(ns):
    return [a for a in listeners(ns) if a.rsplit(":", 1)[1] in ("15001", "15006", "15008",
                                                                 "15080")]


@pytest.fixture
def shared(netns, tmp_path, procs):
    c, s, spare = netns(), netns(), netns()
    veth(c, s, ["10.83.0.1/24"], ["10.83.0.2/24"], "z")
    install_return_path(s, tmp_path)
    cadir = str(tmp_path / "ca")
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", cadir],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = str(tmp_path / "mesh.json")
    write_atomic(cfg, mesh())
    www = tmp_path / "www"
    www.mkdir()
    (www / "hi.txt").write_bytes(b"hello over HBONE\n")
    sock = str(tmp_path / "zds.sock")
    agent = zds_agent.Agent(sock)
    app = NsProc(s, ["python3", "-u", "-m", "http.server", "8080", "--bind", "10.83.0.2",
                     "--directory", str(www)], str(tmp_path / "app.log"))
    try:
        zt = Server(procs, "ztunnel", ["--mode", "shared", "--zds-socket", sock,
                                         "--ca-dir", cadir, "--mesh-config", cfg,
                                         "--socks5-port", "15080"], "ztunnel")
        wait_for(lambda: nsrun(s, "curl", "-s", "-o", "/dev/null", "http://10.83.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"c": c, "s": s, "spare": spare, "zt": zt, "agent": agent, "app": app,
               "tmp": tmp_path}
    finally:
        agent.close()
        app.stop()


def ready(zt):
    st, _, body = http("GET", f"http://127.0.0.1:{zt.ready_port}/healthz/ready")
    return st, body.decode()


def enrolled(zt):
    return {w["uid"]: w for w in zt.config_dump()["proxy"]["enrolledWorkloads"]}


def socks_get(ns, url="http://10.83.0.2:8080/hi.txt", timeout=10):
    return nsrun(ns, "curl", "-s", "--max-time", str(timeout), "--socks5", "127.0.0.1:15080",
                 url, check=False, timeout=timeout + 5)


def test_shared_mode_enroll_serve_remove(shared):
    zt, agent, c, s = shared["zt"], shared["agent"], shared["c"], shared["s"]

    # Not ready until the node agent's snapshot arrived.
    st, body = ready(zt)
    assert st == 503 and "snapshot" in body, body
    agent.accept()
    assert agent.send(zds_agent.snapshot_sent()) == ""
    wait_for(lambda: ready(zt)[0] == 200, what="ready after an empty snapshot")

    # Add: c by uid, s by namespace + service account + name (another uid, as a pod's).
    assert agent.add_netns("c-uid", c) == ""
    assert agent.add_netns("pod-7f3a", s, name="s", namespace="demo", sa="server") == ""
    # Listeners inside each workload's netns: one SO_REUSEPORT socket per worker (2).
    for ns in (c, s):
        got = mesh_ports(ns)
        for port in ("15001", "15006", "15008"):
            assert sum(1 for a in got if a.endswith(":" + port)) == 2, got
        assert sum(1 for a in got if a == "127.0.0.1:15080") == 2, got
    assert mesh_ports(shared["spare"]) == []
    ew = enrolled(zt)
    assert ew["c-uid"]["state"] == "ready" and ew["c-uid"]["workload"] == "c-uid"
    assert ew["pod-7f3a"]["state"] == "ready" and ew["pod-7f3a"]["workload"] == "s-uid"
    assert ready(zt)[0] == 200

    # Traffic: SOCKS5 in c -> HBONE from c's netns -> s's 15008 -> the app from s's netns.
    r = socks_get(c)
    assert r.returncode == 0 and r.stdout == b"hello over HBONE\n", r
    log = zt.proc.logtext()
    wait_for(lambda: any("connection complete" in l and "direction=inbound" in l and C_ID in l
                         and S_ID in l for l in zt.proc.logtext().splitlines()),
             what="inbound access log with both identities")
    # The app saw the client's own address (transparent connect inside s's netns).
    wait_for(lambda: any(l.startswith("10.83.0.1 ") and "/hi.txt" in l
                         for l in shared["app"].logtext().splitlines()),
             what="app log with the client's address")
    assert "original source bind failed" not in log

    # Protocol errors are refused with a reason, and the ztunnel keeps serving.
    assert "Keep" in agent.send(zds_agent.keep("c-uid"))  # Keep after SnapshotSent
    fd = os.open(f"/var/run/netns/{c}", os.O_RDONLY)
    try:
        assert "fd" in agent.send(zds_agent.delete("c-uid"), fd)  # an fd with Del
    finally:
        os.close(fd)
    assert "fd" in agent.send(zds_agent.add("x-uid", "x", "demo", "x"))  # Add without an fd
    assert agent.send(b"\x0a\x05\x0a") != ""  # truncated
    assert agent.send(zds_agent.snapshot_sent()) != ""  # a second SnapshotSent
    r = socks_get(c)
    assert r.returncode == 0 and r.stdout == b"hello over HBONE\n", r

    # An Add the mesh config does not know stays pending, and the ztunnel is not ready.
    assert agent.add_netns("ghost", shared["spare"], name="ghost", namespace="demo") == ""
    st, body = ready(zt)
    assert st == 503 and "ghost" in body and "pending" in body, body
    assert enrolled(zt)["ghost"]["state"] == "pending"
    assert agent.send(zds_agent.delete("ghost")) == ""
    wait_for(lambda: ready(zt)[0] == 200, what="ready again once the pending one is gone")
    wait_for(lambda: mesh_ports(shared["spare"]) == [], what="ghost's listeners closed")

    # Del closes the workload's listeners; its traffic no longer goes through the mesh.
    assert agent.send(zds_agent.delete("pod-7f3a")) == ""
    wait_for(lambda: mesh_ports(s) == [], what="s's listeners closed")
    assert "pod-7f3a" not in enrolled(zt)
    r = socks_get(c, timeout=5)
    assert r.stdout != b"hello over HBONE\n"
    assert agent.send(zds_agent.delete("pod-7f3a")) == ""  # Del is idempotent


def test_shared_mode_reconnect_snapshot_and_new_netns(shared):
    zt, agent, c, s = shared["zt"], shared["agent"], shared["c"], shared["s"]
    spare = shared["spare"]
    agent.accept()
    assert agent.add_netns("c-uid", c) == ""
    assert agent.add_netns("s-uid", s) == ""
    assert agent.send(zds_agent.snapshot_sent()) == ""
    ino_c = enrolled(zt)["c-uid"]["netnsInode"]

    # The agent restarts: the ztunnel reconnects; the replay names only c, so s is removed.
    agent.conn.close()
    agent.conn = None
    agent.accept()
    assert agent.add_netns("c-uid", c) == ""  # same netns: kept as is
    assert agent.send(zds_agent.snapshot_sent()) == ""
    wait_for(lambda: mesh_ports(s) == [], what="s (not replayed) removed")
    ew = enrolled(zt)
    assert list(ew) == ["c-uid"] and ew["c-uid"]["netnsInode"] == ino_c
    assert "not in the node agent's snapshot" in zt.proc.logtext()

    # The same uid behind a new netns (a recreated sandbox) replaces the old proxy.
    assert agent.add_netns("c-uid", spare) == ""
    wait_for(lambda: mesh_ports(c) == [], what="old netns's listeners closed")
    assert len(mesh_ports(spare)) == 8
    assert enrolled(zt)["c-uid"]["netnsInode"] != ino_c
    assert "a new network namespace for the same uid" in zt.proc.logtext()


LOOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop_client.py")


def outcomes(path):
    with open(path) as f:
        return [l.split(" ", 2) for l in f.read().splitlines() if l]


def test_shared_mode_upgrade_without_a_failed_connection(shared, procs):
    """A second ztunnel binds the same listeners (SO_REUSEPORT) and gets the snapshot; the old
    one drains on SIGTERM (listeners closed with tcp_migrate_req, GOAWAY on its HBONE
    connections); a client looping new connections through it all sees no failure."""
    zt, agent, c, s, tmp = shared["zt"], shared["agent"], shared["c"], shared["s"], shared["tmp"]
    agent.accept()
    assert agent.add_netns("c-uid", c) == ""
    assert agent.add_netns("s-uid", s) == ""
    assert agent.send(zds_agent.snapshot_sent()) == ""
    wait_for(lambda: ready(zt)[0] == 200, what="old ztunnel ready")

    out, stop = str(tmp / "loop.out"), str(tmp / "loop.stop")
    loop = NsProc(c, ["python3", "-u", LOOP, "10.83.0.2", "8080", "/hi.txt", out, stop,
                      "--socks5", "15080", "--interval", "10"], str(tmp / "loop.log"))
    try:
        wait_for(lambda: sum(1 for o in outcomes(out) if o[1] == "ok") >= 20,
                 what="requests flowing through the old ztunnel")
        new = Server(procs, "ztunnel", ["--mode", "shared", "--zds-socket", agent.path,
                                        "--ca-dir", str(tmp / "ca"),
                                        "--mesh-config", str(tmp / "mesh.json"),
                                        "--socks5-port", "15080"], "ztunnel-new")
        agent.accept()  # the new ztunnel's connection: the agent serves the latest one
        assert agent.add_netns("c-uid", c) == ""
        assert agent.add_netns("s-uid", s) == ""
        assert agent.send(zds_agent.snapshot_sent()) == ""
        wait_for(lambda: ready(new)[0] == 200, what="new ztunnel ready")
        assert sum(1 for a in mesh_ports(c) if a.endswith(":15001")) == 4  # 2 workers each
        before = len(outcomes(out))
        assert zt.proc.stop() == 0  # SIGTERM: drain, then exit 0
        wait_for(lambda: len(outcomes(out)) >= before + 100, timeout=30,
                 what="requests after the old ztunnel left")
        assert sum(1 for a in mesh_ports(c) if a.endswith(":15001")) == 2
    finally:
        open(stop, "w").close()
        loop.p.wait(20)
        loop.stop()
    res = outcomes(out)
    fails = [o for o in res if o[1] != "ok"]
    assert not fails, fails[:5]
    assert all(o[2] == "200" for o in res)
    # The new ztunnel carried traffic after the switch.
    assert "connection complete" in new.proc.logtext()
