"""End-to-end tests of pkg/redirect (in-pod traffic redirection over nf_tables/rtnetlink netlink).

Driven through the hidden REDIRECT_TOOL entry of the module's unit-test binary (the `ambient cni`
command is separate), against the real `nft` and `ip` tools and real traffic, in network
namespaces these tests create (amr-*) and always delete; addresses are 10.80.0.0/24 only.
"""
import os
import shutil
import socket
import subprocess
import textwrap
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.environ.get("REDIRECT_TEST_BIN", os.path.join(ROOT, "build", "san", "test", "redirect_test"))

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not shutil.which("nft") or not shutil.which("ip"), reason="needs nft and ip"),
    pytest.mark.skipif(not os.path.exists(TOOL), reason=f"{TOOL} not built (make SAN=1 unit)"),
]


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


def tool(cmd, ns, *flags):
    """Runs add|del|check|dry-run|has-ipv6 on the netns; returns (exit code, stdout, stderr)."""
    env = dict(os.environ, REDIRECT_TOOL=" ".join([cmd, f"/var/run/netns/{ns}", *flags]))
    p = subprocess.run([TOOL], env=env, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def netns():
    made = []

    def make(lo_up=True):
        name = f"amr-e{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", name)
        made.append(name)
        if lo_up:
            sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    yield make
    for name in made:
        sh("ip", "netns", "del", name, check=False)


def nft_ruleset(ns):
    return sh("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout


def dry_run(ns, *flags):
    rc, out, err = tool("dry-run", ns, *flags)
    assert rc == 0, err
    table = "".join(l for l in out.splitlines(keepends=True) if not l.startswith("# "))
    comments = [l[2:] for l in out.splitlines() if l.startswith("# ")]
    return table, comments


def ip_rules(ns, v="-4"):
    return [l for l in sh("ip", v, "-n", ns, "rule").stdout.splitlines() if "lookup 100" in l]


def routes100(ns, v="-4"):
    return sh("ip", v, "-n", ns, "route", "show", "table", "100", check=False).stdout.strip()


OPTION_SETS = [
    [],
    ["dns", "exclude=22", "exclude=2222"],
    ["ipv6", "dns"],
    ["bypass", "ipv6"],
]


@pytest.mark.parametrize("flags", OPTION_SETS, ids=lambda f: "+".join(f) or "default")
def test_add_matches_dry_run_and_is_idempotent(netns, flags):
    ns = netns()
    want, comments = dry_run(ns, *flags)
    for _ in range(2):  # a second add replaces the table and keeps one rule/route
        rc, _, err = tool("add", ns, *flags)
        assert rc == 0, err
        assert nft_ruleset(ns) == want
        assert ip_rules(ns) == ["32764:\tfrom all fwmark 0x111/0xfff lookup 100"]
        assert routes100(ns) == "local default dev lo scope host"
        if "ipv6" in flags:
            assert ip_rules(ns, "-6") == ["32764:\tfrom all fwmark 0x111/0xfff lookup 100"]
            assert routes100(ns, "-6").startswith("local default dev lo")
        rc, _, err = tool("check", ns, *flags)
        assert rc == 0, err
    assert comments[0] == "ip rule add fwmark 0x111/0xfff pref 32764 lookup 100"
    assert comments[1] == "ip route add local 0.0.0.0/0 dev lo table 100"
    assert len(comments) == (4 if "ipv6" in flags else 2)


def test_del_removes_everything(netns):
    ns = netns()
    assert tool("add", ns, "ipv6", "dns")[0] == 0
    rc, _, err = tool("del", ns)
    assert rc == 0, err
    assert nft_ruleset(ns) == ""
    assert ip_rules(ns) == [] and ip_rules(ns, "-6") == []
    assert routes100(ns) == "" and "local" not in routes100(ns, "-6")
    assert tool("del", ns)[0] == 0  # idempotent
    rc, _, err = tool("check", ns)
    assert rc == 1 and "table inet ambient: missing" in err


def last_handle(ns, chain):
    out = sh("ip", "netns", "exec", ns, "nft", "-a", "list", "chain", "inet", "ambient", chain).stdout
    return [l.rsplit("# handle ", 1)[1] for l in out.splitlines() if "# handle" in l and "chain" not in l][-1]


def test_check_reports_drift(netns):
    ns = netns()
    assert tool("add", ns)[0] == 0
    assert tool("check", ns) == (0, "", "")
    h = last_handle(ns, "output-nat")
    sh("ip", "netns", "exec", ns, "nft", "delete", "rule", "inet", "ambient", "output-nat", "handle", h)
    rc, _, err = tool("check", ns)
    assert rc == 1
    assert "chain output-nat: 3 rules, expected 4" in err
    sh("ip", "netns", "exec", ns, "nft", "flush", "chain", "inet", "ambient", "prerouting-nat")
    sh("ip", "-n", ns, "route", "del", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
    rc, _, err = tool("check", ns)
    assert rc == 1
    assert "chain prerouting-nat: 0 rules, expected 2" in err
    assert "ip route local 0.0.0.0/0 dev lo table 100: missing" in err
    # Options that differ from what is installed are drift too.
    assert tool("add", ns)[0] == 0
    rc, _, err = tool("check", ns, "dns")
    assert rc == 1 and "chain output-nat: 4 rules, expected 6" in err


def test_failed_batch_leaves_nothing(netns):
    ns = netns()
    rc, _, err = tool("add", ns, "break=3")  # the 3rd rule carries an unknown expression
    assert rc == 1
    assert "nf_tables batch: chain prerouting-nat rule 1: " in err
    assert nft_ruleset(ns) == ""
    assert ip_rules(ns) == [] and routes100(ns) == ""


def test_failed_route_rolls_back(netns):
    ns = netns(lo_up=False)  # the IPv6 local route needs lo up: that step fails
    rc, _, err = tool("add", ns, "ipv6")
    assert rc == 1
    assert "ip -6 route add local ::/0 dev lo table 100: " in err
    assert nft_ruleset(ns) == ""
    assert ip_rules(ns) == [] and ip_rules(ns, "-6") == [] and routes100(ns) == ""


def test_has_ipv6(netns):
    assert tool("has-ipv6", netns())[0] == 0
    assert tool("has-ipv6", netns(lo_up=False))[0] == 1


LISTENER = textwrap.dedent(
    """
    import socket, struct, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8); s.settimeout(10)
    print("ready", flush=True)
    c, peer = s.accept()
    try:
        raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
        port, ip = struct.unpack("!2xH4s8x", raw)
        print("%s:%d" % (socket.inet_ntoa(ip), port), flush=True)
    except OSError:
        print("direct", flush=True)
    c.sendall(b"hi"); c.close()
    """
)


def listen(ns, port):
    p = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", LISTENER, str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def connect(ns, addr, port, mark=0):
    code = (f"import socket; s=socket.socket(); "
            f"s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, {mark}) if {mark} else None; "
            f"s.settimeout(5); s.connect(('{addr}', {port})); print(s.recv(2).decode())")
    return sh("ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code, check=False)


def test_traffic_is_redirected(netns):
    a, b = netns(), netns()
    sh("ip", "-n", a, "link", "add", "amrA", "type", "veth", "peer", "name", "amrB", "netns", b)
    sh("ip", "-n", a, "addr", "add", "10.80.0.1/24", "dev", "amrA")
    sh("ip", "-n", b, "addr", "add", "10.80.0.2/24", "dev", "amrB")
    sh("ip", "-n", a, "link", "set", "amrA", "up")
    sh("ip", "-n", b, "link", "set", "amrB", "up")
    assert tool("add", a)[0] == 0
    procs = []
    try:
        # Outbound: A -> 10.80.0.2:80 arrives at A's 15001, original destination intact.
        procs.append(listen(a, 15001))
        r = connect(a, "10.80.0.2", 80)
        assert r.stdout.strip() == "hi", r.stderr
        assert procs[-1].communicate(timeout=10)[0].strip() == "10.80.0.2:80"
        # Inbound: B -> 10.80.0.1:8080 arrives at A's 15006.
        procs.append(listen(a, 15006))
        r = connect(b, "10.80.0.1", 8080)
        assert r.stdout.strip() == "hi", r.stderr
        assert procs[-1].communicate(timeout=10)[0].strip() == "10.80.0.1:8080"
        # ztunnel's mark (0x539) is never redirected: it reaches B's own port 80.
        procs.append(listen(b, 80))
        r = connect(a, "10.80.0.2", 80, mark=0x539)
        assert r.stdout.strip() == "hi", r.stderr
        assert procs[-1].communicate(timeout=10)[0].strip() in ("direct", "10.80.0.2:80")
        # After del the plain connection goes straight to B.
        assert tool("del", a)[0] == 0
        procs.append(listen(b, 80))
        r = connect(a, "10.80.0.2", 80)
        assert r.stdout.strip() == "hi", r.stderr
        procs[-1].communicate(timeout=10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
