"""End-to-end tests of `ambient cni`: the node agent (against a fake ztunnel speaking ZDS), the
add|del|list|check CLI, host mode's SSH guard and the CNI plugin protocol.

Every workload netns is created here (`amc-*`) and removed at teardown; sockets and the state file
live under the test's tmp_path, never at the /var/run defaults.
"""
import json
import os
import signal
import socket
import stat
import subprocess
import uuid

import pytest

from conftest import BIN, Proc, stop_all, wait_for
from zds_fake import FakeZtunnel


@pytest.fixture
def nsmaker(netns):
    """Namespaces from conftest's fixture (created and deleted there)."""
    return netns


def nspath(name):
    return f"/var/run/netns/{name}"


def ruleset(name):
    return subprocess.run(["ip", "netns", "exec", name, "nft", "list", "ruleset"],
                          capture_output=True, text=True, check=True).stdout


def has_rules(name):
    return "table inet ambient" in ruleset(name)


class Agent:
    def __init__(self, tmp, procs):
        self.tmp = str(tmp)
        self.zds = os.path.join(self.tmp, "zds.sock")
        self.ctl = os.path.join(self.tmp, "cni.sock")
        self.state = os.path.join(self.tmp, "state", "cni-state.json")
        self.procs = procs
        self.proc = None
        self.fakes = []

    def start(self, extra=()):
        self.proc = Proc(["cni", "agent", "--zds-socket", self.zds, "--control-socket", self.ctl,
                          "--state-file", self.state, "--log-level", "debug"] + list(extra),
                         self.tmp, "cni-agent")
        self.procs.append(self.proc)

        def up():
            if not self.proc.alive():
                raise AssertionError("agent exited:\n" + self.proc.logtext())
            return os.path.exists(self.ctl) and os.path.exists(self.zds)
        wait_for(up, what="cni agent sockets")
        return self

    def ztunnel(self, **kw):
        z = FakeZtunnel(self.zds, **kw).start()
        self.fakes.append(z)
        wait_for(lambda: "SnapshotSent" in z.types(), what="snapshot to the fake ztunnel")
        return z

    def cli(self, *args, env=None, check=None, ns=None):
        e = dict(os.environ)
        e.pop("SSH_CONNECTION", None)
        e.update(env or {})
        cmd = [BIN, "cni"] + list(args)
        if args and args[0] != "agent":
            cmd += ["--control-socket", self.ctl]
        if ns:
            cmd = ["ip", "netns", "exec", ns] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=60)
        if check is not None:
            assert r.returncode == check, (r.returncode, r.stdout, r.stderr)
        return r

    def list(self):
        r = self.cli("list", "-o", "json", check=0)
        return json.loads(r.stdout)

    def saved(self):
        with open(self.state) as f:
            return json.load(f)


@pytest.fixture
def agent(tmp_path):
    started = []
    a = Agent(tmp_path, started)
    yield a
    for z in a.fakes:
        z.close()
    stop_all(started)


def test_add_applies_rules_and_sends_netns_fd(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns = nsmaker()
    r = agent.cli("add", "--netns", nspath(ns), "--workload", "uid-1", "--name", "app",
                  "--namespace", "default", "--service-account", "sa1", check=0)
    assert "enrolled workload uid-1" in r.stdout
    assert has_rules(ns)
    adds = zt.got("Add", "uid-1")
    assert len(adds) == 1
    assert adds[0]["nfds"] == 1
    assert adds[0]["inode"] == os.stat(nspath(ns)).st_ino
    assert (adds[0]["name"], adds[0]["namespace"], adds[0]["serviceAccount"]) == \
        ("app", "default", "sa1")
    st = agent.saved()
    assert [w["uid"] for w in st["workloads"]] == ["uid-1"]
    assert st["workloads"][0]["netns"] == nspath(ns)
    assert st["workloads"][0]["netnsInode"] == os.stat(nspath(ns)).st_ino
    assert stat.S_IMODE(os.stat(agent.state).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(agent.ctl).st_mode) == 0o600
    # Adding again is idempotent: one entry, rules still there.
    agent.cli("add", "--netns", nspath(ns), "--workload", "uid-1", check=0)
    assert len(agent.list()) == 1 and has_rules(ns)


def test_dry_run_matches_the_applied_ruleset(agent, nsmaker):
    agent.start()
    agent.ztunnel()
    ns = nsmaker()
    dry = agent.cli("add", "--dry-run", "--netns", nspath(ns), check=0).stdout
    assert "table inet ambient" in dry
    agent.cli("add", "--netns", nspath(ns), "--workload", "uid-d", check=0)
    live = ruleset(ns)

    def table(text):  # exact whitespace is pkg/redirect's own test; here: same rules
        return [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
    assert table(dry) == table(live)


def test_add_without_ztunnel_fails_and_leaves_no_rules(agent, nsmaker):
    agent.start()
    ns = nsmaker()
    r = agent.cli("add", "--netns", nspath(ns), "--workload", "uid-1", check=1)
    assert "no ztunnel connection" in r.stderr
    assert not has_rules(ns)
    assert agent.list() == []


def test_nack_rolls_back(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel(nack={"uid-bad": "listener bind failed: address in use"})
    ns = nsmaker()
    r = agent.cli("add", "--netns", nspath(ns), "--workload", "uid-bad", check=1)
    assert "listener bind failed: address in use" in r.stderr
    assert not has_rules(ns)
    assert agent.list() == []
    assert zt.got("Add", "uid-bad")
    # The connection is still usable after a nack.
    ns2 = nsmaker()
    agent.cli("add", "--netns", nspath(ns2), "--workload", "uid-ok", check=0)
    assert has_rules(ns2)


def test_ztunnel_that_never_acks_is_dropped(agent, nsmaker):
    agent.start(["--zds-timeout", "500ms"])
    z = FakeZtunnel(agent.zds, hang=True).start()
    agent.fakes.append(z)
    wait_for(lambda: "SnapshotSent" in z.types(), what="snapshot")
    assert z.closed.wait(10)
    assert "ztunnel disconnected" in agent.proc.logtext()
    ns = nsmaker()
    r = agent.cli("add", "--netns", nspath(ns), "--workload", "uid-1", check=1)
    assert "no ztunnel connection" in r.stderr
    assert not has_rules(ns)


def test_del_removes_rules_and_sends_del(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns = nsmaker()
    agent.cli("add", "--netns", nspath(ns), "--workload", "uid-1", check=0)
    assert has_rules(ns)
    r = agent.cli("del", "--workload", "uid-1", check=0)
    assert "removed workload uid-1" in r.stdout
    assert not has_rules(ns)
    assert zt.got("Del", "uid-1")
    assert agent.list() == [] and agent.saved()["workloads"] == []
    r = agent.cli("del", "--workload", "uid-1", check=0)
    assert "was not enrolled" in r.stdout


def test_list_and_check(agent, nsmaker):
    agent.start()
    agent.ztunnel()
    ns1, ns2 = nsmaker(), nsmaker()
    agent.cli("add", "--netns", nspath(ns1), "--workload", "uid-1", "--name", "web",
              "--namespace", "shop", "--service-account", "web-sa", check=0)
    agent.cli("add", "--netns", nspath(ns2), "--workload", "uid-2", check=0)
    out = agent.cli("list", check=0).stdout.splitlines()
    assert out[0].split()[:5] == ["UID", "NAMESPACE", "NAME", "SERVICE", "ACCOUNT"]
    row = [l for l in out if l.startswith("uid-1")][0].split()
    assert row[:5] == ["uid-1", "shop", "web", "web-sa", nspath(ns1)]
    assert agent.cli("check", check=0).stdout.count("ok ") == 2
    subprocess.run(["ip", "netns", "exec", ns2, "nft", "delete", "table", "inet", "ambient"],
                   check=True)
    r = agent.cli("check", check=1)
    assert "DRIFT  uid-2" in r.stdout and "1 of 2 workloads drifted" in r.stderr
    agent.cli("check", "--workload", "uid-1", check=0)
    agent.cli("check", "--workload", "uid-2", check=1)
    r = agent.cli("check", "--workload", "nope", check=1)
    assert "workload nope is not enrolled" in r.stderr


def test_agent_restart_replays_state(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns1, ns2, ns3 = nsmaker(), nsmaker(), nsmaker()
    for i, ns in enumerate((ns1, ns2, ns3), 1):
        agent.cli("add", "--netns", nspath(ns), "--workload", f"uid-{i}", "--name", f"w{i}",
                  check=0)
    assert agent.proc.stop() == 0
    assert zt.closed.wait(10)
    # Rules stay while the agent is down: workloads stay enrolled.
    assert has_rules(ns1) and has_rules(ns2)
    subprocess.run(["ip", "netns", "del", ns3], check=True)
    agent.start()
    zt2 = agent.ztunnel()
    assert zt2.types() == ["Add", "Add", "SnapshotSent"]
    adds = zt2.got("Add")
    assert [a["uid"] for a in adds] == ["uid-1", "uid-2"]
    assert adds[0]["inode"] == os.stat(nspath(ns1)).st_ino
    assert adds[1]["name"] == "w2"
    assert "dropping workload whose netns is gone" in agent.proc.logtext()
    assert [w["uid"] for w in agent.saved()["workloads"]] == ["uid-1", "uid-2"]


def test_agent_killed_hard_recovers(agent, nsmaker):
    agent.start()
    agent.ztunnel()
    ns = nsmaker()
    agent.cli("add", "--netns", nspath(ns), "--workload", "uid-k", check=0)
    agent.proc.stop(sig=signal.SIGKILL)
    # Stale sockets are left behind; the next agent replaces them and replays.
    assert os.path.exists(agent.ctl)
    agent.start()
    zt = agent.ztunnel()
    assert zt.types() == ["Add", "SnapshotSent"] and zt.got("Add", "uid-k")
    agent.cli("check", check=0)


def test_second_agent_on_the_same_socket_refuses(agent, tmp_path):
    agent.start()
    r = subprocess.run([BIN, "cni", "agent", "--zds-socket", str(tmp_path / "z2.sock"),
                        "--control-socket", agent.ctl, "--state-file", str(tmp_path / "s2")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"another cni agent is serving {agent.ctl}" in r.stderr
    agent.cli("list", check=0)


def test_new_ztunnel_connection_gets_snapshot_and_takes_over(agent, nsmaker):
    agent.start()
    old = agent.ztunnel()
    ns1, ns2, ns3 = nsmaker(), nsmaker(), nsmaker()
    agent.cli("add", "--netns", nspath(ns1), "--workload", "uid-1", check=0)
    new = agent.ztunnel()
    assert new.types() == ["Add", "SnapshotSent"]
    assert new.got("Add")[0]["inode"] == os.stat(nspath(ns1)).st_ino
    agent.cli("add", "--netns", nspath(ns2), "--workload", "uid-2", check=0)
    assert new.got("Add", "uid-2") and not old.got("Add", "uid-2")
    # The newest leaves: requests go to the one still connected.
    new.close()
    wait_for(lambda: "ztunnel disconnected" in agent.proc.logtext(), what="hangup noticed")
    agent.cli("add", "--netns", nspath(ns3), "--workload", "uid-3", check=0)
    assert old.got("Add", "uid-3")


def test_bad_state_file_refuses_to_start(agent, tmp_path):
    os.makedirs(os.path.dirname(agent.state))
    with open(agent.state, "w") as f:
        f.write('{"version": 1, "workloads": [{"uid": 5, "netns": "/x"}]}')
    p = Proc(["cni", "agent", "--zds-socket", agent.zds, "--control-socket", agent.ctl,
              "--state-file", agent.state], str(tmp_path), "bad")
    assert p.p.wait(10) == 1
    log = p.logtext()
    p.stop()
    assert f"{agent.state}: .workloads[0].uid: expected a string" in log
    with open(agent.state, "w") as f:
        f.write('{"workloads": [}')
    r = subprocess.run([BIN, "cni", "agent", "--zds-socket", agent.zds, "--control-socket",
                        agent.ctl, "--state-file", agent.state], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1 and f"{agent.state}:1:" in r.stderr and "invalid JSON" in r.stderr


def ctl(agent, raw):
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(30)
        s.connect(agent.ctl)
        s.send(raw if isinstance(raw, bytes) else json.dumps(raw).encode())
        return json.loads(s.recv(1 << 20))


def test_control_protocol(agent, nsmaker):
    agent.start()
    agent.ztunnel()
    ns = nsmaker()
    assert ctl(agent, {"op": "list"}) == {"ok": True, "ztunnelConnected": True, "workloads": []}
    r = ctl(agent, {"op": "add", "uid": "u1", "netns": nspath(ns), "namespace": "demo",
                    "excludeInboundPorts": [22]})
    assert r["ok"] is True and r["workload"]["uid"] == "u1"
    assert r["workload"]["excludeInboundPorts"] == [22]
    assert r["workload"]["netnsInode"] == os.stat(nspath(ns)).st_ino
    r = ctl(agent, {"op": "add", "uid": "u2", "netns": nspath(ns)})
    assert r == {"ok": False, "error": f"netns {nspath(ns)} is already enrolled as workload u1"}
    r = ctl(agent, {"op": "check"})
    assert r["workloads"] == [{"uid": "u1", "netns": nspath(ns), "ok": True}]
    for req, err in (
            (b"{", "request:1:2: invalid JSON"),
            ({"op": "frob"}, 'unknown op "frob"'),
            ({"uid": "x"}, 'expected an object with "op"'),
            ({"op": "del"}, ".uid: missing"),
            ({"op": "del", "uid": "x", "extra": 1}, 'unknown key "extra"'),
            ({"op": "add", "uid": 7, "netns": "/x"}, ".uid: expected a string, got number"),
            ({"op": "add", "uid": "x", "netns": "rel/path"}, "must be an absolute path"),
            ({"op": "add", "uid": "x", "netns": nspath(ns), "excludeInboundPorts": [0]},
             ".excludeInboundPorts[0]: expected a port 1..65535"),
            ({"op": "add", "uid": "x" * 300, "netns": nspath(ns)}, "longer than 253 bytes")):
        r = ctl(agent, req)
        assert r["ok"] is False and err in r["error"], (req, r)
    assert ctl(agent, {"op": "del", "uid": "u1"}) == {"ok": True, "removed": True}
    assert ctl(agent, {"op": "del", "uid": "u1"}) == {"ok": True, "removed": False}


def test_cli_errors(agent, nsmaker):
    r = agent.cli("list", check=1)
    assert f"cannot reach the cni agent at {agent.ctl}" in r.stderr
    assert "(is `ambient cni agent` running?)" in r.stderr
    agent.start()
    r = agent.cli("add", "--netns", "/var/run/netns/amc-does-not-exist", "--workload", "u",
                  check=1)
    assert "netns /var/run/netns/amc-does-not-exist: No such file or directory" in r.stderr
    r = agent.cli("add", "--netns", "/etc/hostname", "--workload", "u", check=1)
    assert "is not a network namespace" in r.stderr
    r = agent.cli("add", "--netns", nspath(nsmaker()), check=2)
    assert "--workload UID is required" in r.stderr
    r = agent.cli("add", "--workload", "u", check=2)
    assert "exactly one of --netns PATH, --pid PID or --host" in r.stderr
    r = agent.cli("add", "--pid", "abc", "--workload", "u", check=2)
    assert "--pid wants a process id" in r.stderr
    r = agent.cli("del", check=2)
    assert "--workload UID is required" in r.stderr


def test_add_by_pid(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns = nsmaker()
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
    try:
        wait_for(lambda: os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino ==
                 os.stat(nspath(ns)).st_ino, what="sleeper in its netns")
        agent.cli("add", "--pid", str(sleeper.pid), "--workload", "uid-p", check=0)
        assert has_rules(ns)
        assert zt.got("Add", "uid-p")[0]["inode"] == os.stat(nspath(ns)).st_ino
        assert agent.list()[0]["netns"] == f"/proc/{sleeper.pid}/ns/net"
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- host mode ---------------------------------------------------------------------------------

def test_host_mode_refuses_to_cut_ssh(agent):
    # The control socket does not exist, so nothing could be applied to this netns anyway.
    env = {"SSH_CONNECTION": "10.81.0.9 50022 10.81.0.1 2222"}
    r = agent.cli("add", "--host", "--workload", "vm-1", env=env, check=1)
    assert "inbound TCP port 2222 carries this SSH session" in r.stderr
    assert "--exclude-inbound-ports 2222" in r.stderr and "--force" in r.stderr
    r = agent.cli("add", "--host", "--dry-run", env=env, check=0)
    assert "table inet ambient" in r.stdout and "warning" in r.stderr
    r = agent.cli("add", "--host", "--dry-run", "--exclude-inbound-ports", "2222,22", env=env,
                  check=0)
    assert "2222" in r.stdout


def test_host_mode_inside_a_netns(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns = nsmaker()
    env = {"SSH_CONNECTION": "10.81.0.9 50022 10.81.0.1 2222"}
    r = agent.cli("add", "--host", "--workload", "vm-1", env=env, ns=ns, check=1)
    assert "port 2222" in r.stderr and not has_rules(ns)
    agent.cli("add", "--host", "--workload", "vm-1", "--exclude-inbound-ports", "2222",
              env=env, ns=ns, check=0)
    assert has_rules(ns)
    w = agent.list()[0]
    assert w["host"] is True and w["netns"] == nspath(ns)
    assert w["excludeInboundPorts"] == [2222]
    assert zt.got("Add", "vm-1")[0]["inode"] == os.stat(nspath(ns)).st_ino
    assert "2222" in ruleset(ns)
    agent.cli("check", check=0)
    agent.cli("del", "--workload", "vm-1", check=0)
    assert not has_rules(ns)


def test_host_mode_refuses_when_sshd_listens_on_22(agent, nsmaker):
    agent.start()
    agent.ztunnel()
    ns = nsmaker()
    sshd = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c",
                             "import socket,time\n"
                             "s=socket.socket(socket.AF_INET6); s.bind(('::', 22)); s.listen()\n"
                             "print('up', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert sshd.stdout.readline().strip() == "up"
        r = agent.cli("add", "--host", "--workload", "vm-3", ns=ns, check=1)
        assert "sshd listens on TCP port 22" in r.stderr
        assert "--exclude-inbound-ports 22" in r.stderr and not has_rules(ns)
        agent.cli("add", "--host", "--workload", "vm-3", "--exclude-inbound-ports", "22", ns=ns,
                  check=0)
        assert has_rules(ns)
    finally:
        sshd.kill()
        sshd.wait()


def test_host_mode_force(agent, nsmaker):
    agent.start()
    agent.ztunnel()
    ns = nsmaker()
    env = {"SSH_CONNECTION": "10.81.0.9 50022 10.81.0.1 2222"}
    agent.cli("add", "--host", "--workload", "vm-2", "--force", env=env, ns=ns, check=0)
    assert has_rules(ns)


# ---- CNI plugin --------------------------------------------------------------------------------

PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.81.0.5/24", "gateway": "10.81.0.1", "interface": 0}]}


def netconf(agent, labels=None, **kw):
    c = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "ambient",
         "controlSocket": agent.ctl, "prevResult": PREV}
    if labels is not None:
        c["args"] = {"cni": {"labels": [{"key": k, "value": v} for k, v in labels.items()]}}
    c.update(kw)
    return c


def plugin(command, conf, netns="", uid="pod-uid-1", extra_env=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
           "CNI_PATH": "/opt/cni/bin",
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;"
                       f"K8S_POD_UID={uid}"}
    env.update(extra_env or {})
    data = conf if isinstance(conf, (str, bytes)) else json.dumps(conf)
    r = subprocess.run([BIN, "cni"], input=data, capture_output=True, text=True, env=env,
                       timeout=60)
    out = json.loads(r.stdout) if r.stdout.strip() else None
    return r.returncode, out, r.stderr


def test_plugin_version(agent):
    rc, out, _ = plugin("VERSION", '{"cniVersion":"1.0.0"}')
    assert rc == 0
    assert out == {"cniVersion": "1.0.0",
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_plugin_add_check_del(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns = nsmaker()
    conf = netconf(agent, {"ambient.io/dataplane-mode": "ambient", "app": "web"})
    rc, out, err = plugin("ADD", conf, nspath(ns))
    assert rc == 0, err
    assert out == PREV
    assert has_rules(ns)
    add = zt.got("Add", "pod-uid-1")[0]
    assert (add["name"], add["namespace"], add["inode"]) == \
        ("web-0", "shop", os.stat(nspath(ns)).st_ino)
    rc, out, err = plugin("CHECK", conf, nspath(ns))
    assert rc == 0 and out is None, err
    subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "ambient"],
                   check=True)
    rc, out, _ = plugin("CHECK", conf, nspath(ns))
    assert rc != 0 and out["code"] == 999 and "table inet ambient" in out["details"]
    rc, out, err = plugin("DEL", conf, nspath(ns))
    assert rc == 0 and out is None, err
    assert zt.got("Del", "pod-uid-1") and agent.list() == []
    # DEL again, and with the netns gone: still fine.
    subprocess.run(["ip", "netns", "del", ns], check=True)
    rc, out, err = plugin("DEL", conf, nspath(ns))
    assert rc == 0, err


def test_plugin_del_after_netns_deleted(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns = nsmaker()
    conf = netconf(agent, enroll=True)
    assert plugin("ADD", conf, nspath(ns))[0] == 0
    subprocess.run(["ip", "netns", "del", ns], check=True)
    rc, out, err = plugin("DEL", conf, nspath(ns))
    assert rc == 0 and out is None, err
    assert zt.got("Del", "pod-uid-1") and agent.list() == []


def test_plugin_passes_non_ambient_pods_through(agent, nsmaker):
    agent.start()
    zt = agent.ztunnel()
    ns = nsmaker()
    for labels in ({"app": "web"}, {"ambient.io/dataplane-mode": "none"}, None):
        c = netconf(agent, labels, cniVersion="0.4.0")
        if labels and "ambient.io/dataplane-mode" in labels:
            c["enroll"] = True  # "none" wins over enroll
        rc, out, err = plugin("ADD", c, nspath(ns))
        assert rc == 0, err
        assert out == dict(PREV, cniVersion="0.4.0")
    assert not has_rules(ns) and not zt.got("Add")
    # istio.io's label works too; no uid in CNI_ARGS -> the container id.
    rc, out, err = plugin("ADD", netconf(agent, {"istio.io/dataplane-mode": "ambient"}),
                          nspath(ns), extra_env={"CNI_ARGS": "K8S_POD_NAME=x"})
    assert rc == 0, err
    assert zt.got("Add", "c0ffee") and has_rules(ns)


def test_plugin_errors(agent, nsmaker):
    ns = nsmaker()
    amb = {"ambient.io/dataplane-mode": "ambient"}
    rc, out, _ = plugin("ADD", "{not json", nspath(ns))
    assert rc != 0 and out["code"] == 6 and out["msg"] and "details" in out
    rc, out, _ = plugin("ADD", {"name": "n", "type": "ambient"}, nspath(ns))
    assert rc != 0 and out["code"] == 7 and "cniVersion" in out["details"]
    rc, out, _ = plugin("ADD", netconf(agent, amb, cniVersion="0.2.0"), nspath(ns))
    assert rc != 0 and out["code"] == 1
    rc, out, _ = plugin("ADD", netconf(agent, amb, type=5), nspath(ns))
    assert rc != 0 and out["code"] == 7 and ".type" in out["details"]
    rc, out, _ = plugin("ADD", netconf(agent, amb, enroll="yes"), nspath(ns))
    assert rc != 0 and out["code"] == 7
    rc, out, _ = plugin("ADD", netconf(agent, amb), nspath(ns), extra_env={"CNI_CONTAINERID": ""})
    assert rc != 0 and out["code"] == 4
    rc, out, _ = plugin("FROB", netconf(agent, amb), nspath(ns))
    assert rc != 0 and out["code"] == 4
    # Agent down: try again later.
    rc, out, _ = plugin("ADD", netconf(agent, amb), nspath(ns))
    assert rc != 0 and out["code"] == 11 and "cni agent" in out["details"]
    # Agent up, no ztunnel: try again later, nothing applied.
    agent.start()
    rc, out, _ = plugin("ADD", netconf(agent, amb), nspath(ns))
    assert rc != 0 and out["code"] == 11 and out["msg"] == "no ztunnel connection"
    assert not has_rules(ns)
    # DEL of something never enrolled, with the agent up or down.
    assert plugin("DEL", netconf(agent, amb), nspath(ns))[0] == 0
    assert agent.proc.stop() == 0
    assert plugin("DEL", netconf(agent, amb), nspath(ns))[0] == 0


def test_plugin_invoked_as_cni_symlink(tmp_path):
    # A runtime runs /opt/cni/bin/<type> with no arguments; a `cni` symlink routes by argv[0].
    link = tmp_path / "cni"
    link.symlink_to(BIN)
    r = subprocess.run([str(link)], input='{"cniVersion":"1.0.0"}', capture_output=True,
                       text=True, env={"CNI_COMMAND": "VERSION"}, timeout=10)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["supportedVersions"][-1] == "1.0.0"


def test_plugin_invoked_as_ambient_without_arguments():
    r = subprocess.run([BIN], input='{"cniVersion":"1.0.0"}', capture_output=True, text=True,
                       env={"CNI_COMMAND": "VERSION"}, timeout=10)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["cniVersion"] == "1.0.0"
