"""The cni issue's end-to-end scenario: real node agents, real in-pod redirection rules and
shared-mode ztunnels, with unmodified apps that keep running throughout.

Two "nodes" (netns n1, n2), each running `ambient cni agent` and `ambient ztunnel --mode shared`.
Two workload netns joined by a veth pair: c (10.85.0.11, client, node n1) and s (10.85.0.12, an
HTTP server, node n2). A client loop in c makes a new connection every 20 ms to s:8080 for the
whole test and records every outcome (loop_client.py). Then:
  plain traffic -> enroll s, then c (`ambient cni add`): mTLS at once, identities in the access
  log, the app sees the client's own IP (at most the request in flight at the instant c's rules
  appear is reset) -> the agent killed and restarted:
  nothing fails -> ztunnel 1 restarted: the agent re-enrolls everything (requests fail only while
  no ztunnel runs) -> ztunnel 2 upgraded (new one alongside, then SIGTERM the old): nothing
  fails -> `ambient cni del` both: plain traffic again, no rules left (at most the one request
  in flight at that instant is cut, see docs/cni.md).
Needs root; every netns and process is cleaned up, processes stopped by PID."""
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import BIN, stop_all, wait_for
from test_ztunnel import NsProc, nsrun, write_atomic
from test_ztunnel_paths import veth

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl"),
    reason="needs root, nft and curl")

HERE = os.path.dirname(os.path.abspath(__file__))
LOOP = os.path.join(HERE, "loop_client.py")
C_ID = "spiffe://cluster.local/ns/demo/sa/client"
S_ID = "spiffe://cluster.local/ns/demo/sa/server"


def mesh():
    return {"workloads": [
        {"uid": "c-uid", "name": "c", "namespace": "demo", "serviceAccount": "client",
         "node": "n1", "workloadIps": ["10.85.0.11"], "protocol": "HBONE"},
        {"uid": "s-uid", "name": "s", "namespace": "demo", "serviceAccount": "server",
         "node": "n2", "workloadIps": ["10.85.0.12"], "protocol": "HBONE"},
    ]}


def outcomes(path):
    with open(path) as f:
        return [l.split(" ", 2) for l in f.read().splitlines() if l]


class Node:
    def __init__(self, name, ns, tmp, cadir, cfg):
        self.name, self.ns, self.tmp = name, ns, tmp
        self.zds = str(tmp / f"{name}-zds.sock")
        self.ctl = str(tmp / f"{name}-cni.sock")
        self.state = str(tmp / f"{name}-state.json")
        self.cadir, self.cfg = cadir, cfg
        self.agent = None
        self.zt = []
        self.gen = 0

    def start_agent(self):
        self.agent = NsProc(self.ns, [BIN, "cni", "agent", "--zds-socket", self.zds,
                                      "--control-socket", self.ctl, "--state-file", self.state],
                            str(self.tmp / f"{self.name}-agent-{uuid.uuid4().hex[:4]}.log"))
        wait_for(lambda: os.path.exists(self.ctl) or not self.agent.alive(), what="agent up")
        assert self.agent.alive(), self.agent.logtext()
        return self.agent

    def start_ztunnel(self):
        self.gen += 1
        port = 15000 + 100 * self.gen  # admin/metrics/ready of this generation, in the node netns
        p = NsProc(self.ns, [BIN, "ztunnel", "--mode", "shared", "--zds-socket", self.zds,
                             "--node", self.name, "--ca-dir", self.cadir, "--mesh-config", self.cfg,
                             "--admin", f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{port + 20}",
                             "--ready", f"127.0.0.1:{port + 21}"],
                   str(self.tmp / f"{self.name}-ztunnel-{self.gen}.log"))
        p.ready_port = port + 21
        self.zt.append(p)
        return p

    def ready(self, z):
        if not z.alive():
            raise AssertionError("ztunnel exited:\n" + z.logtext())
        r = nsrun(self.ns, "curl", "-s", f"http://127.0.0.1:{z.ready_port}/healthz/ready",
                  check=False, timeout=5)
        return r.stdout.strip() == b"ready"

    def cni(self, *args):
        r = nsrun(self.ns, BIN, "cni", *args, "--control-socket", self.ctl, check=False)
        assert r.returncode == 0, (args, r.stdout, r.stderr,
                                   self.agent.logtext()[-3000:] if self.agent else "")
        return r.stdout.decode()


def ruleset(ns):
    return nsrun(ns, "nft", "list", "ruleset").stdout.decode()


def inbound_mtls(z):
    return [l for l in z.logtext().splitlines() if "connection complete" in l
            and "direction=inbound" in l and C_ID in l and S_ID in l]


@pytest.fixture
def cluster(netns, tmp_path):
    n1, n2, c, s = netns(), netns(), netns(), netns()
    veth(c, s, ["10.85.0.11/24"], ["10.85.0.12/24"], "k")
    cadir = str(tmp_path / "ca")
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", cadir],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = str(tmp_path / "mesh.json")
    write_atomic(cfg, mesh())
    www = tmp_path / "www"
    www.mkdir()
    (www / "hi.txt").write_bytes(b"hello\n")
    node1 = Node("n1", n1, tmp_path, cadir, cfg)
    node2 = Node("n2", n2, tmp_path, cadir, cfg)
    out, stop = str(tmp_path / "loop.out"), str(tmp_path / "loop.stop")
    apps = []
    try:
        node1.start_agent()
        node2.start_agent()
        z1, z2 = node1.start_ztunnel(), node2.start_ztunnel()
        wait_for(lambda: node1.ready(z1) and node2.ready(z2), what="ztunnels ready")
        app = NsProc(s, ["python3", "-u", "-m", "http.server", "8080", "--bind", "10.85.0.12",
                         "--directory", str(www)], str(tmp_path / "app.log"))
        apps.append(app)
        wait_for(lambda: nsrun(s, "curl", "-s", "-o", "/dev/null", "http://10.85.0.12:8080/",
                               check=False).returncode == 0, what="app up")
        loop = NsProc(c, ["python3", "-u", LOOP, "10.85.0.12", "8080", "/hi.txt", out, stop],
                      str(tmp_path / "loop.log"))
        apps.append(loop)
        yield {"n1": node1, "n2": node2, "c": c, "s": s, "app": app, "out": out,
               "tmp": tmp_path}
    finally:
        open(stop, "w").close()
        for n in (node1, node2):
            # Un-enroll whatever is left so no rules outlive the test (the netns go anyway).
            for uid in ("c-uid", "s-uid"):
                if n.agent and n.agent.alive():
                    nsrun(n.ns, BIN, "cni", "del", "--workload", uid, "--control-socket", n.ctl,
                          check=False)
        procs = apps + [p for n in (node1, node2) for p in n.zt]
        procs += [n.agent for n in (node1, node2) if n.agent]
        stop_all(procs, lambda p: p not in apps)


def oks_since(out, i):
    return sum(1 for o in outcomes(out)[i:] if o[1] == "ok")


def fails_between(out, i, j=None):
    return [o for o in outcomes(out)[i:j] if o[1] != "ok"]


def test_enroll_restart_upgrade_unenroll(cluster):
    n1, n2, c, s, out = cluster["n1"], cluster["n2"], cluster["c"], cluster["s"], cluster["out"]
    z1, z2 = n1.zt[0], n2.zt[0]

    # Plain traffic first: the app sees the client directly, no ztunnel is involved.
    wait_for(lambda: oks_since(out, 0) >= 10, what="plain requests")
    assert "connection complete" not in z1.logtext() + z2.logtext()

    # Enroll the server, then the client: mTLS at once for the running loop.
    mark = len(outcomes(out))
    n2.cni("add", "--netns", f"/var/run/netns/{s}", "--workload", "pod-s-7f9", "--name", "s",
           "--namespace", "demo", "--service-account", "server")
    n1.cni("add", "--netns", f"/var/run/netns/{c}", "--workload", "c-uid")
    assert "table inet ambient" in ruleset(c) and "table inet ambient" in ruleset(s)
    wait_for(lambda: len(inbound_mtls(z2)) >= 5, what="mTLS with both identities (ztunnel 2)")
    assert any("direction=outbound" in l and C_ID in l and S_ID in l
               for l in z1.logtext().splitlines())
    # The app sees the client's own address through the mesh.
    wait_for(lambda: any(l.startswith("10.85.0.11 ") for l in
                         cluster["app"].logtext().splitlines()[-5:]), what="client IP at app")
    # At most the one request in flight when c's nat chains appear is reset (docs/cni.md).
    assert len(fails_between(out, mark)) <= 1, fails_between(out, mark)
    listing = n1.cni("list")
    assert "c-uid" in listing and f"/var/run/netns/{c}" in listing

    # The node agent dies and comes back: the ztunnel keeps serving and gets the replay.
    n1.agent.stop()
    mark = len(outcomes(out))
    n1.start_agent()
    wait_for(lambda: z1.logtext().count("workload snapshot applied") >= 2,
             what="replay to the running ztunnel after the agent's restart")
    n = len(inbound_mtls(z2))
    wait_for(lambda: len(inbound_mtls(z2)) >= n + 5, what="mesh traffic after agent restart")
    assert fails_between(out, mark) == []

    # ztunnel 1 restarts: while none runs, c's connections are refused; then the agent
    # re-enrolls c with the new one without any manual step.
    z1.stop()
    z1b = n1.start_ztunnel()
    wait_for(lambda: n1.ready(z1b), what="new ztunnel 1 ready (c re-enrolled)")
    wait_for(lambda: sum(1 for l in z1b.logtext().splitlines()
                         if "direction=outbound" in l and C_ID in l) >= 5,
             what="mesh traffic through the restarted ztunnel")
    mark = len(outcomes(out))

    # Upgrade ztunnel 2 (the server side) without a failed request.
    z2b = n2.start_ztunnel()
    wait_for(lambda: n2.ready(z2b), what="new ztunnel 2 ready alongside the old")
    assert z2.stop() == 0
    wait_for(lambda: len(inbound_mtls(z2b)) >= 20, what="mesh traffic through the new ztunnel 2")
    assert fails_between(out, mark) == []

    # Un-enroll: plain traffic again, no rules left, nothing fails.
    mark = len(outcomes(out))
    n1.cni("del", "--workload", "c-uid")
    n2.cni("del", "--workload", "pod-s-7f9")
    assert "ambient" not in ruleset(c) and "ambient" not in ruleset(s)
    for ns in (c, s):
        assert "lookup 100" not in nsrun(ns, "ip", "rule").stdout.decode()
        assert nsrun(ns, "ip", "route", "show", "table", "100").stdout.strip() == b""
    n = len(inbound_mtls(z2b))
    wait_for(lambda: oks_since(out, mark) >= 30, what="plain requests after un-enrolling")
    time.sleep(0.5)
    assert len(inbound_mtls(z2b)) <= n + 2  # at most what was in flight at the switch
    # A request in flight at the instant c's table goes can be cut: with the last nat chain of a
    # netns gone the kernel stops translating its existing REDIRECTed connections (docs/cni.md).
    assert len(fails_between(out, mark)) <= 1, fails_between(out, mark)
