"""What a newcomer runs first: `make demo` (scripts/demo.sh), the README's single-VM quick start,
the container image (Dockerfile) and the systemd units (deploy/systemd), and the doc-check script.

The demo runs non-interactively twice in a row (once through `make demo`), once interrupted
with SIGINT, once failing midway and once with only the systemd units' capabilities; each time no
namespace, process or host rule of it may remain. The README block runs exactly as written, in a
network namespace of the test's own. Needs root; everything is cleaned up, processes stopped by
PID."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN, ROOT, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

DEMO = os.path.join(ROOT, "scripts", "demo.sh")
DOCCHECK = os.path.join(ROOT, "scripts", "doccheck.sh")
DEMO_TOOLS = ("ip", "nft", "curl", "socat", "python3")


def host_state():
    """What the demo must leave exactly as it found it in the host's own network namespace."""
    def out(*a):
        return subprocess.run(a, capture_output=True, text=True).stdout
    return {"links": out("ip", "-o", "link", "show"), "addrs": out("ip", "-o", "addr", "show"),
            "rules": out("ip", "rule"), "routes": out("ip", "route", "show", "table", "all"),
            "nft": out("nft", "list", "ruleset")}


def demo_netns():
    return [l.split()[0] for l in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                 text=True).stdout.splitlines()
            if l.startswith("ambdemo-")]


def procs_mentioning(text):
    """PIDs of processes whose command line mentions text (the demo's own state directory)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def demo_env(tmp_path):
    env = dict(os.environ, DEMO_NONINTERACTIVE="1", AMBIENT_BIN=BIN,
               DEMO_DIR=str(tmp_path / "demo"), DEMO_SKIP_DEPS="1")
    return env


def assert_clean(tmp_path, before):
    assert demo_netns() == [], "demo namespaces left behind"
    assert procs_mentioning(str(tmp_path / "demo")) == [], "demo processes left behind"
    after = host_state()
    for k in before:
        assert after[k] == before[k], f"host {k} changed by the demo"


@pytest.mark.skipif(any(shutil.which(t) is None for t in DEMO_TOOLS),
                    reason="the demo needs " + ", ".join(DEMO_TOOLS))
def test_demo_runs_twice_and_leaves_nothing(tmp_path):
    before = host_state()
    # The first run through the Makefile target (what the README says), the second directly.
    for run, cmd in ((1, ["make", "-s", "demo"]), (2, ["sh", DEMO])):
        r = subprocess.run(cmd, cwd=ROOT, env=demo_env(tmp_path), capture_output=True, text=True,
                           timeout=60, start_new_session=True)
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"run {run}:\n{out}"
        # The narration's key lines, with what the access log and the policy really said.
        assert "== 1. Plain traffic" in out
        assert "ztunnel access-log lines so far: 0" in out
        assert ("mTLS: spiffe://cluster.local/ns/demo/sa/client -> "
                "spiffe://cluster.local/ns/demo/sa/web") in out, out
        assert "enrolled workload web" in out and "enrolled workload client" in out
        assert "batch denied: authorization: denied by policy demo/deny-batch rule 0" in out, out
        assert re.search(r"client allowed: \S+ HTTP 200", out), out
        ctl = subprocess.run([BIN, "ctl", "explain", "--help"], capture_output=True, text=True)
        if "not implemented" in ctl.stdout + ctl.stderr:
            assert "== 4." in out and "skipped: not in this build" in out
        else:
            assert "ctl explain: denied (exit 5)" in out, out
            assert "denied by policy demo/deny-batch" in out.split("== 4.")[1]
        wp = subprocess.run([BIN, "waypoint", "--help"], capture_output=True, text=True)
        step5 = out.split("== 5.")[1]
        if "not implemented" in wp.stdout + wp.stderr:
            assert "skipped: not in this build" in step5
        else:
            # The route rewrote /hello and added its header; the L7 policy denied the POST.
            assert "x-route: demo/web" in step5 and "hello from web" in step5, step5
            assert "GET /hello: 200, route demo/web#0; POST /hello: 403, policy demo/read-only#0" \
                in step5, step5
        assert "demo finished" in out
        # The apps really ran: the web server logged the client's requests by its own address.
        with open(tmp_path / "demo" / "web.log") as f:
            assert re.search(r"^10\.86\.0\.11 .*\"GET / HTTP/1\.1\" 200", f.read(), re.M)
        assert_clean(tmp_path, before)


@pytest.mark.skipif(any(shutil.which(t) is None for t in DEMO_TOOLS),
                    reason="the demo needs " + ", ".join(DEMO_TOOLS))
def test_demo_cleans_up_on_ctrl_c(tmp_path):
    before = host_state()
    log = open(tmp_path / "demo.out", "w")
    p = subprocess.Popen(["sh", DEMO], env=demo_env(tmp_path), stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Interrupt once the mesh is up and the workloads are enrolled.
        wait_for(lambda: "== 3." in open(tmp_path / "demo.out").read() or p.poll() is not None,
                 timeout=40, what="the demo to reach step 3")
        assert p.poll() is None, open(tmp_path / "demo.out").read()
        assert demo_netns(), "the demo's namespaces should exist while it runs"
        p.send_signal(signal.SIGINT)
        rc = p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()
    out = open(tmp_path / "demo.out").read()
    assert rc == 130, out
    assert "namespaces and processes removed" in out
    assert_clean(tmp_path, before)


@pytest.mark.skipif(any(shutil.which(t) is None for t in DEMO_TOOLS),
                    reason="the demo needs " + ", ".join(DEMO_TOOLS))
def test_demo_cleans_up_after_a_failure(tmp_path):
    """A step that fails midway (here every `cni add`) stops the demo with the reason, and the
    trap still removes everything it made."""
    before = host_state()
    wrap = tmp_path / "ambient-failing"
    wrap.write_text('#!/bin/sh\nif [ "$1 $2" = "cni add" ]; then echo "cni add: injected failure"'
                    f' >&2; exit 1; fi\nexec {BIN} "$@"\n')
    wrap.chmod(0o755)
    env = demo_env(tmp_path)
    env["AMBIENT_BIN"] = str(wrap)
    r = subprocess.run(["sh", DEMO], env=env, capture_output=True, text=True, timeout=60,
                       start_new_session=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "injected failure" in out and "== 3." not in out, out
    assert "demo stopped (exit 1): namespaces and processes removed" in out, out
    assert_clean(tmp_path, before)


def readme_block():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    sect = text.split("## Quick start on one VM", 1)[1]
    m = re.search(r"^```sh check\n(.*?)^```$", sect, re.S | re.M)
    assert m, "README: no checked block in the single-VM quick start"
    return m.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_readme_single_vm_quick_start(netns, tmp_path):
    """The README's block exactly as written, in a netns whose only address is 10.86.0.1."""
    ns = netns()
    subprocess.run(["ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                   check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", "10.86.0.1/24", "dev", "v0"], check=True)
    for d in ("v0", "v1"):
        subprocess.run(["ip", "-n", ns, "link", "set", d, "up"], check=True)
    block = readme_block()
    assert "ambient ztunnel --ca-dir ca --mesh-config mesh.json" in block
    work = tmp_path / "vm"
    (work / "bin").mkdir(parents=True)
    os.symlink(BIN, work / "bin" / "ambient")
    (work / "block.sh").write_text(block)
    env = dict(os.environ, PATH=f"{work / 'bin'}:{os.environ['PATH']}")
    try:
        # Output to a file: the processes the block leaves running inherit it.
        with open(work / "out", "wb") as out:
            rc = subprocess.run(["ip", "netns", "exec", ns, "sh", "-e", str(work / "block.sh")],
                                cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=30, stdin=subprocess.DEVNULL).returncode
        text = (work / "out").read_text()
        assert rc == 0, text
        assert "\n200\n" in text, text
        # The smallest config: one workload; the request crossed mTLS with its identity.
        mesh = (work / "mesh.json").read_text()
        assert '"workloadIps": ["10.86.0.1"]' in mesh

        def inbound():
            log = (work / "ztunnel.log").read_text()
            return [l for l in log.splitlines() if "connection complete" in l
                    and "direction=inbound" in l and 'error=""' in l]
        lines = wait_for(inbound, what="the inbound mTLS line in ztunnel.log")
        assert "src.identity=spiffe://cluster.local/ns/default/sa/default" in lines[0]
        assert "dst.identity=spiffe://cluster.local/ns/default/sa/default" in lines[0]
        assert "dst.hbone_addr=10.86.0.1:8080" in lines[0]
    finally:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.strip():
            time.sleep(0.05)


def test_doccheck_runs_marked_blocks_and_reports_failures(tmp_path):
    """doccheck runs only the blocks marked `sh check`, in order, and fails on a failing one; a
    `covered-by:` block passes when the named test mentions its commands, a `not-tested:` block is
    listed, and any other shell block fails as unmarked."""
    good = tmp_path / "good.md"
    good.write_text("text\n```sh check\necho one > f\nambient version > v\n```\n"
                    "```sh not-tested: needs a second host\nexit 1\n```\n"
                    "```sh check\ngrep -q one f\ngrep -q ambient v\n"
                    "hostname -I | grep -q 10.86.0.1\necho tmp > /tmp/doccheck-private\n```\n"
                    "```console covered-by:tests/e2e/test_ctl.py\n$ ambient ctl check m.json\n"
                    "ambient ctl zorblax (output, not a command)\n```\n"
                    "```\nplain text, no commands\n```\n```json\n{}\n```\n")
    bad = tmp_path / "bad.md"
    bad.write_text("```sh check\ntrue\n```\n```sh check\nfalse\necho never\n```\n")
    env = dict(os.environ, AMBIENT_BIN=BIN)
    r = subprocess.run(["sh", DOCCHECK, str(good)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("3 passed, 0 failed"), r.stdout
    assert f"untested  {good}:7 (needs a second host)" in r.stdout, r.stdout
    assert f"ok    {good}:16 covered by tests/e2e/test_ctl.py (ctl check)" in r.stdout, r.stdout
    assert not os.path.exists("/tmp/doccheck-private")  # the blocks' /tmp is their own
    marks = tmp_path / "marks.md"
    marks.write_text("```bash\nambient version\n```\n```\n$ ambient version\n```\n"
                     "```sh covered-by:tests/e2e/nope.py\nambient ctl check\n```\n"
                     "```sh covered-by:tests/e2e/test_ctl.py\nambient ctl zorblax\n```\n")
    r = subprocess.run(["sh", DOCCHECK, str(marks)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and r.stdout.strip().endswith("0 passed, 4 failed"), r.stdout
    assert f"FAIL  {marks}:2 unmarked bash block" in r.stdout, r.stdout
    assert f"FAIL  {marks}:5 unmarked" in r.stdout, r.stdout
    assert "covered-by:tests/e2e/nope.py does not mention: (no such file)" in r.stdout, r.stdout
    assert "covered-by:tests/e2e/test_ctl.py does not mention: zorblax" in r.stdout, r.stdout
    r = subprocess.run(["sh", DOCCHECK, str(bad)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0, r.stdout
    assert f"FAIL  {bad}:5 (exit 1)" in r.stdout and r.stdout.strip().endswith("1 passed, 1 failed")
    assert not [l for l in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True).stdout.splitlines()
                if l.startswith("doccheck-")]


# ---------------------------------------------------------------------------------------------
# The container image: built from the Dockerfile by `make image` without any daemon (buildah),
# pushed to an OCI layout, checked file by file, and run with runc from an OCI bundle (umoci).

IMAGE_TOOLS = ("buildah", "umoci", "runc")


def image_tools():
    """Installs buildah, umoci and runc from Debian if missing; returns a reason to skip or None."""
    if all(shutil.which(t) for t in IMAGE_TOOLS):
        return None
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *IMAGE_TOOLS],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not all(shutil.which(t) for t in IMAGE_TOOLS):
        return ("no container runtime could be installed (apt-get install buildah umoci runc "
                f"failed: {(r.stderr or r.stdout).strip()[-300:]})")
    return None


def is_static(path):
    r = subprocess.run(["readelf", "-l", path], capture_output=True, text=True)
    return r.returncode == 0 and "INTERP" not in r.stdout


def oci_blob(layout, digest):
    return os.path.join(layout, "blobs", *digest.split(":", 1))


def layer_entries(path, media_type):
    import tarfile
    mode = "r:gz" if media_type.endswith("gzip") else "r:"
    with tarfile.open(path, mode) as t:
        return {m.name.lstrip("./").rstrip("/"): m for m in t.getmembers()
                if m.name.lstrip("./").rstrip("/")}


def runc_run(bundle, cid, args, mounts=()):
    import json
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    cfg["mounts"] = [m for m in cfg["mounts"] if m.get("type") != "bind"] + list(mounts)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    try:
        return subprocess.run(["runc", "run", "--bundle", bundle, cid], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)


def test_image_from_scratch_holds_only_the_binary_and_runs(tmp_path):
    import json
    import uuid
    if not is_static(BIN):
        pytest.skip(f"the image ships the static release binary; {BIN} is not static")
    why = image_tools()
    if why:
        pytest.skip(why)
    tag = "localhost/ambient-test:" + uuid.uuid4().hex[:8]
    layout = str(tmp_path / "oci")
    try:
        r = subprocess.run(["make", "-s", "image", f"IMAGE={tag}", f"IMAGE_BIN={BIN}",
                            "IMAGE_BUILDER=buildah"], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run(["buildah", "push", "-q", tag, f"oci:{layout}:test"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["buildah", "rmi", tag], capture_output=True)

    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    mdesc = index["manifests"][0]
    with open(oci_blob(layout, mdesc["digest"])) as f:
        manifest = json.load(f)
    with open(oci_blob(layout, manifest["config"]["digest"])) as f:
        config = json.load(f)
    # Size: everything a registry would store for this image, and the unpacked layer.
    total = mdesc["size"] + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
    assert total < 4 * 1024 * 1024, total
    assert len(manifest["layers"]) == 1, manifest["layers"]
    layer = manifest["layers"][0]
    entries = layer_entries(oci_blob(layout, layer["digest"]), layer["mediaType"])
    files = {n: m for n, m in entries.items() if not m.isdir()}
    dirs = {n for n, m in entries.items() if m.isdir()}
    # Exactly the binary and its links (and the directories that hold them).
    links = ("ztunnel", "waypoint", "cni", "ca", "ctl")
    assert set(files) == {"usr/local/bin/ambient"} | {f"usr/local/bin/{l}" for l in links}, files
    assert dirs <= {"usr", "usr/local", "usr/local/bin"}, dirs
    assert files["usr/local/bin/ambient"].isfile()
    assert files["usr/local/bin/ambient"].size == os.path.getsize(BIN)
    assert sum(m.size for m in files.values()) < 4 * 1024 * 1024
    for l in links:
        assert files[f"usr/local/bin/{l}"].issym() and files[f"usr/local/bin/{l}"].linkname == "ambient"
    # OCI labels, non-root user, entrypoint.
    c = config["config"]
    assert c["User"] == "65532:65532"
    assert c["Entrypoint"] == ["/usr/local/bin/ambient"]
    labels = c["Labels"]
    assert labels["org.opencontainers.image.title"] == "ambient"
    with open(os.path.join(ROOT, "VERSION")) as f:
        assert labels["org.opencontainers.image.version"] == f.read().strip()
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")
    assert labels["org.opencontainers.image.description"]

    # Run it: an OCI bundle from the layout (umoci), started by runc as the image's user.
    bundle = str(tmp_path / "bundle")
    r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:test", bundle],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cid = "ambient-test-" + uuid.uuid4().hex[:8]
    r = runc_run(bundle, cid, ["/usr/local/bin/ambient", "version"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ambient ") and "build: release" in r.stdout, r.stdout
    cadir = tmp_path / "ca"
    cadir.mkdir()
    os.chown(cadir, 65532, 65532)
    mount = {"destination": "/ca", "type": "bind", "source": str(cadir), "options": ["rbind", "rw"]}
    r = runc_run(bundle, cid, ["/usr/local/bin/ambient", "ca", "init", "--trust-domain",
                               "cluster.local", "--dir", "/ca/root"], [mount])
    assert r.returncode == 0, r.stdout + r.stderr
    root = cadir / "root"
    assert sorted(os.listdir(root)) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem",
                                        "root-cert.pem"]
    assert os.stat(root / "ca-key.pem").st_uid == 65532  # written by the non-root user
    assert (os.stat(root / "ca-key.pem").st_mode & 0o777) == 0o600
    r = subprocess.run(["openssl", "x509", "-in", str(root / "root-cert.pem"), "-noout",
                        "-subject"], capture_output=True, text=True)
    assert "cluster.local" in r.stdout, r.stdout + r.stderr
    # A subcommand link dispatches by its own name.
    r = runc_run(bundle, cid, ["/usr/local/bin/ca", "--help"])
    assert "ca" in (r.stdout + r.stderr) and "init" in (r.stdout + r.stderr), r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# systemd units: systemd-analyze verify (syntax, known keys, the binary exists) and its offline
# security score, the capability sets the docs promise, and the demo's whole scenario run with
# exactly the ztunnel/agent bounding set (NET_ADMIN + SYS_ADMIN) to show it is enough.

UNITS = os.path.join(ROOT, "deploy", "systemd")
CAPS = {"ambient-ca.service": set(), "ambient-cni-agent.service": {"CAP_NET_ADMIN", "CAP_SYS_ADMIN"},
        "ambient-ztunnel.service": {"CAP_NET_ADMIN", "CAP_SYS_ADMIN"},
        "ambient-waypoint.service": {"CAP_NET_ADMIN"}}


def unit_keys(path):
    keys = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                keys.setdefault(k, []).append(v)
    return keys


def test_units_declare_minimal_capabilities_and_hardening():
    assert sorted(os.listdir(UNITS)) == sorted(CAPS)
    for name, caps in CAPS.items():
        k = unit_keys(os.path.join(UNITS, name))
        assert set(" ".join(k["CapabilityBoundingSet"]).split()) == caps, name
        assert set(" ".join(k["AmbientCapabilities"]).split()) == caps, name
        for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                          ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                          ("RestrictSUIDSGID", "yes"), ("MemoryDenyWriteExecute", "yes"),
                          ("SystemCallArchitectures", "native"), ("UMask", "0077")):
            assert k.get(key) == [want], (name, key)
        fams = set(" ".join(k["RestrictAddressFamilies"]).split())
        assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= fams, name
        # Netlink (nf_tables, routes) and netns switching only where redirection happens.
        needs_ns = "CAP_SYS_ADMIN" in caps
        assert ("AF_NETLINK" in fams) == needs_ns, name
        assert k["RestrictNamespaces"] == (["net"] if needs_ns else ["yes"]), name
        assert k["ExecStart"][0].startswith("/usr/local/bin/ambient "), name
    # State and sockets are where the docs and the ztunnel's defaults say.
    agent = unit_keys(os.path.join(UNITS, "ambient-cni-agent.service"))
    assert "--zds-socket /run/ztunnel/ztunnel.sock" in agent["ExecStart"][0]
    assert agent["RuntimeDirectory"] == ["ztunnel ambient"] and agent["StateDirectory"] == ["ambient"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (systemd)")
def test_units_pass_systemd_analyze(tmp_path):
    for name in CAPS:
        with open(os.path.join(UNITS, name)) as f:
            text = f.read().replace("/usr/local/bin/ambient", BIN)
        (tmp_path / name).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / n) for n in CAPS]],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    # verify only warns (exit 0) about unknown keys; any message at all is a failure here.
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    for name in CAPS:
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(tmp_path / name)],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        assert m, r.stdout + r.stderr
        # "OK" in systemd's scale is < 4.0; the root units with two capabilities score 3.0.
        assert float(m.group(1)) <= 3.0, (name, m.group(1))


@pytest.mark.skipif(any(shutil.which(t) is None for t in DEMO_TOOLS + ("setpriv",)),
                    reason="needs setpriv and the demo's tools")
def test_demo_with_only_the_units_capabilities(tmp_path):
    """Every ambient process of the demo runs with the ztunnel/agent units' bounding set."""
    capfile = tmp_path / "caps"
    wrap = tmp_path / "ambient-capped"
    wrap.write_text("#!/bin/sh\nexec setpriv --bounding-set=-all,+net_admin,+sys_admin "
                    f"--inh-caps=-all --no-new-privs -- sh -c 'grep CapBnd /proc/self/status "
                    f">> {capfile}; exec \"$0\" \"$@\"' {BIN} \"$@\"\n")
    wrap.chmod(0o755)
    env = demo_env(tmp_path)
    env["AMBIENT_BIN"] = str(wrap)
    r = subprocess.run(["sh", DEMO], env=env, capture_output=True, text=True, timeout=60,
                       start_new_session=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "mTLS: spiffe://cluster.local/ns/demo/sa/client" in out
    assert "denied by policy demo/deny-batch" in out
    caps = set(capfile.read_text().split("\n")) - {""}
    assert caps == {"CapBnd:\t0000000000201000"}, caps  # NET_ADMIN (12) + SYS_ADMIN (21)
