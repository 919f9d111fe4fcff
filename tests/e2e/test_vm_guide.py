"""docs/vm.md on a host whose PID 1 is systemd: the guide's blocks run in a booted container.

docs/vm.md installs the mesh with the units of deploy/systemd: `install` of the binary and the
units, `useradd` of the CA's user, `systemctl enable --now` of ambient-ca, ambient-cni-agent and
ambient-ztunnel, then host mode with `ambient cni add --host`, `ambient cni list` and the ztunnel's
log read with `journalctl`. Those blocks are fenced `covered-by:tests/e2e/test_vm_guide.py`. This
test boots Debian 12 with systemd as PID 1 in `systemd-nspawn --boot` (a minbase rootfs made by
debootstrap from the machine's own Debian mirror, cached in build/vm-rootfs; the container runs on
a throwaway overlay, `--volatile=overlay`, so the cache stays clean), in a network namespace of
its own whose only address is 10.86.0.1 (the guide's CA host and node-a at once). The binary under
test and deploy/systemd are bind-mounted read-only where the guide expects a checkout
(/root/ambient/build/ambient, /root/ambient/deploy/systemd).

The blocks are read from docs/vm.md at run time and run verbatim, in order, in one `sh -e` as
root, starting in that checkout: every `sh check` block and every block covered by this file, up
to the section "Without systemd" (the by-hand commands, which scripts/doccheck.sh runs; they would
collide with the units' ports here). Then it checks what a user of the guide relies on: the three
units are active; the CA answers on 10.86.0.1:15012 with the root; the ztunnel says ready on 15021
and got the certificate of the enrolled host (vm-a's identity); `ambient cni list` shows vm-a; and
each unit's process runs as the unit's user (ambient-ca for the CA, root for the others) with
exactly the capabilities the unit declares (plus the guide's host-mode drop-in for the agent), no
new privileges and a seccomp filter. Afterwards the container is powered off (its nspawn process
killed by PID if it hangs) and the network namespace and the cgroups it used are removed.
"""
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import BIN, ROOT

DOC = os.path.join(ROOT, "docs", "vm.md")
ME = "tests/e2e/test_vm_guide.py"
ROOTFS = os.path.join(ROOT, "build", "vm-rootfs")
SUITE = "bookworm"
# What the guide's blocks call inside the "VM", besides a minbase system (passwd has useradd).
PACKAGES = ["systemd", "systemd-sysv", "dbus", "iproute2", "curl", "python3"]
STAMP = f"debootstrap --variant=minbase {SUITE} --include={','.join(PACKAGES)}\n"
CHECKOUT = "/root/ambient"  # where the guide's relative build/ambient and deploy/systemd live
IO = "/root/vmguide"  # the generated script and its progress marker, shared with the host
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GUIDE_TIMEOUT = 240
CAP_BITS = {"CAP_NET_ADMIN": 12, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21}
UNITS = ("ambient-ca", "ambient-cni-agent", "ambient-ztunnel")

TOOLS = ("debootstrap", "systemd-nspawn", "nsenter", "ip")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (debootstrap, systemd-nspawn, netns)"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason="needs debootstrap and systemd-container (scripts/deps.sh)"),
]


# ---- the guide's blocks -----------------------------------------------------------------------

def guide_blocks():
    """(line, kind, text) of each block this test runs, in order, and the number of blocks in the
    whole file that name this test (so none of them can sit where it is not run)."""
    blocks, covered_total, stop = [], 0, False
    with open(DOC) as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^## Without systemd", line):
            stop = True
        m = re.match(r"^```(.*)$", line)
        if not m:
            i += 1
            continue
        info = m.group(1).strip()
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        body = "\n".join(lines[i + 1:j])
        kind = None
        if info == "sh check":
            kind = "check"
        elif re.search(r"(^|\s)covered-by:" + re.escape(ME) + r"(\s|$)", info):
            kind = "covered"
            covered_total += 1
        if kind and not stop:
            blocks.append((i + 2, kind, body))
        i = j + 1
    return blocks, covered_total


def guide_script(blocks):
    out = ["# generated from docs/vm.md by " + ME, f"cd {CHECKOUT}"]
    for line, kind, body in blocks:
        out.append(f"echo {line} > {IO}/at; echo '### docs/vm.md:{line} ({kind})'")
        out.append(body)
    out.append(f"echo done > {IO}/at")
    return "\n".join(out) + "\n"


# ---- the cached rootfs ------------------------------------------------------------------------

def debian_mirror():
    """The URI the machine's apt uses for the Debian suite (not the security archive)."""
    d = "/etc/apt/sources.list.d"
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not name.endswith(".sources"):
            continue
        with open(os.path.join(d, name)) as f:
            for stanza in re.split(r"\n\s*\n", f.read()):
                fields = {}
                for ln in stanza.split("\n"):
                    if ln.startswith("#") or ":" not in ln:
                        continue
                    k, v = ln.split(":", 1)
                    fields[k.strip().lower()] = v.split()
                if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                        and "main" in fields.get("components", []) and fields.get("uris")):
                    return fields["uris"][0]
    if os.path.exists("/etc/apt/sources.list"):
        with open("/etc/apt/sources.list") as f:
            for ln in f:
                t = ln.split()
                # deb [options] URI SUITE COMPONENT...
                if t and t[0] == "deb":
                    t = [w for w in t[1:] if not w.startswith("[") and not w.endswith("]")]
                    if len(t) >= 3 and t[1] == SUITE and "main" in t[2:]:
                        return t[0]
    pytest.fail("no Debian mirror for " + SUITE + " in /etc/apt/sources.list.d/*.sources or "
                "/etc/apt/sources.list")


def ensure_rootfs():
    """build/vm-rootfs, made once by debootstrap (reused while its stamp matches)."""
    stamp = os.path.join(ROOTFS, ".ambient-vm-rootfs")
    if os.path.exists(stamp) and open(stamp).read() == STAMP:
        return False
    new = ROOTFS + ".new"
    shutil.rmtree(new, ignore_errors=True)
    env = dict(os.environ)
    # debootstrap takes a proxy from the environment only; apt may have one configured.
    r = subprocess.run(["apt-config", "shell", "P", "Acquire::http::Proxy"], capture_output=True, text=True)
    m = re.match(r"P='(.+)'$", r.stdout.strip())
    if m and "http_proxy" not in env:
        env["http_proxy"] = m.group(1)
    r = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                        SUITE, new, debian_mirror()],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, "debootstrap failed:\n" + (r.stdout + r.stderr)[-3000:]
    with open(os.path.join(new, ".ambient-vm-rootfs"), "w") as f:
        f.write(STAMP)
    shutil.rmtree(ROOTFS, ignore_errors=True)
    os.rename(new, ROOTFS)
    return True


# ---- cgroups: without systemd on the host, nspawn nests its cgroups under its own -------------

def cgroup_dirs(name):
    """A fresh cgroup per hierarchy nspawn uses (cgroup2, and v1 name=systemd on a hybrid host)
    under the current ones, so its payload/ and supervisor/ stay ours to remove."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for ln in f:
            left, right = ln.split(" - ", 1)
            mnt = left.split()[4]
            fstype, _, opts = right.split()[:3]
            if fstype == "cgroup2":
                mounts["0::"] = mnt
            elif fstype == "cgroup" and "name=systemd" in opts.split(","):
                mounts["name=systemd"] = mnt
    dirs = []
    with open("/proc/self/cgroup") as f:
        for ln in f:
            hid, ctrl, path = ln.rstrip("\n").split(":", 2)
            key = "0::" if hid == "0" and ctrl == "" else ctrl
            if key in mounts:
                d = os.path.join(mounts[key] + path, name)
                os.mkdir(d)
                dirs.append(d)
    return dirs


def remove_cgroups(dirs):
    for top in dirs:
        for d, _subdirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(d)
            except OSError:
                pass


# ---- the container ----------------------------------------------------------------------------

def find_leader(nspawn_pid):
    """The container's PID 1 seen from here: nspawn's child whose innermost pid is 1."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/status") as f:
                st = f.read()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", st, re.M)
        nspid = re.search(r"^NSpid:\s+(.*)$", st, re.M)
        if ppid and int(ppid.group(1)) == nspawn_pid and nspid and nspid.group(1).split()[-1] == "1":
            return int(p)
    return None


def inside(leader, cmd, timeout=60):
    """Runs a shell command in all of the container's namespaces, with a clean environment."""
    return subprocess.run(["nsenter", "-t", str(leader), "-a", "env", "-i", "PATH=" + PATH,
                           "HOME=/root", "TERM=dumb", "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=timeout)


def caps_mask(names):
    m = 0
    for n in names:
        assert n in CAP_BITS, f"capability {n} not in this test's table"
        m |= 1 << CAP_BITS[n]
    return m


def unit_setting(text, key):
    vals = []
    for ln in text.split("\n"):
        ln = ln.strip()
        if ln.startswith(key + "="):
            vals.append(ln.split("=", 1)[1])
    return vals


@pytest.fixture
def vm(tmp_path):
    """Boots the cached rootfs; yields (leader pid, io dir, diagnostics); always tears it down."""
    tag = uuid.uuid4().hex[:8]
    name, ns = "vmguide-" + tag, "vmguide-" + tag
    io = tmp_path / "io"
    io.mkdir()
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    lock = open(os.path.join(ROOT, "build", "vm-rootfs.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time: the cache is built and used under it
    info = {}
    nspawn, cgroups, netns = None, [], False
    log = open(tmp_path / "nspawn.log", "wb")
    try:
        t0 = time.monotonic()
        info["rootfs_built"] = ensure_rootfs()
        info["rootfs_s"] = round(time.monotonic() - t0, 1)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        netns = True
        # As docs/vm.md's rehearsal: lo, and a veth pair so that 10.86.0.1/24 is on a link that
        # is up (10.86.0.22, node-b's workload, is routed there and never answers).
        for c in (["link", "set", "lo", "up"], ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                  ["addr", "add", "10.86.0.1/24", "dev", "v0"], ["link", "set", "v0", "up"],
                  ["link", "set", "v1", "up"]):
            subprocess.run(["ip", "-n", ns] + c, check=True)
        args = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
                "--volatile=overlay", "--directory=" + ROOTFS, "--machine=" + name,
                "--network-namespace-path=/run/netns/" + ns,
                # A network namespace of our own, so the units may have what they declare.
                "--capability=CAP_NET_ADMIN",
                f"--bind-ro={os.path.realpath(BIN)}:{CHECKOUT}/build/ambient",
                f"--bind-ro={os.path.join(ROOT, 'deploy', 'systemd')}:{CHECKOUT}/deploy/systemd",
                f"--bind={io}:{IO}"]
        pre = None
        if os.path.isdir("/run/systemd/system"):
            # The host runs systemd: give nspawn a delegated scope of its own (not exercised on
            # the project's CI machine, whose PID 1 is not systemd).
            args = ["systemd-run", "--scope", "--quiet", "-p", "Delegate=yes", "--unit=" + name] + args
        else:
            cgroups = cgroup_dirs(name)

            def pre():
                for d in cgroups:
                    with open(os.path.join(d, "cgroup.procs"), "w") as f:
                        f.write("0")
        t0 = time.monotonic()
        nspawn = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=pre)
        leader, state, deadline = None, "", time.monotonic() + 90
        while time.monotonic() < deadline and nspawn.poll() is None:
            leader = leader or find_leader(nspawn.pid)
            if leader:
                try:
                    state = inside(leader, "systemctl is-system-running --wait", timeout=60).stdout.strip()
                except subprocess.TimeoutExpired:
                    state = "timeout"
                if state in ("running", "degraded"):
                    break
            time.sleep(0.2)
        log.flush()
        assert state in ("running", "degraded"), \
            f"the container's systemd did not come up (state {state!r}, nspawn exit {nspawn.poll()}):\n" \
            + (tmp_path / "nspawn.log").read_text(errors="replace")[-3000:]
        info["boot_s"] = round(time.monotonic() - t0, 1)
        yield leader, io, info
    finally:
        if nspawn is not None and nspawn.poll() is None:
            leader = find_leader(nspawn.pid)
            if leader:
                try:
                    inside(leader, "systemctl poweroff", timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            try:
                nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container to halt
                try:
                    nspawn.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    if leader:
                        try:
                            os.kill(leader, signal.SIGKILL)  # ends every process of its pid ns
                        except ProcessLookupError:
                            pass
                    nspawn.kill()
                    nspawn.wait(timeout=15)
        log.close()
        if netns:
            subprocess.run(["ip", "netns", "del", ns])
        remove_cgroups(cgroups)
        lock.close()


def test_vm_guide_runs_under_systemd(vm, tmp_path):
    leader, io, info = vm
    blocks, covered_total = guide_blocks()
    covered = [b for b in blocks if b[1] == "covered"]
    # The blocks that need systemd all sit before "Without systemd", so all of them run here.
    assert len(covered) >= 3 and len(covered) == covered_total, (len(covered), covered_total)
    (io / "guide.sh").write_text(guide_script(blocks))
    out = tmp_path / "guide.out"

    t0 = time.monotonic()
    with open(out, "wb") as f:
        p = subprocess.Popen(["nsenter", "-t", str(leader), "-a", "env", "-i", "PATH=" + PATH,
                              "HOME=/root", "TERM=dumb", "sh", "-e", f"{IO}/guide.sh"],
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=GUIDE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = "timeout"
    info["guide_s"] = round(time.monotonic() - t0, 1)
    at = (io / "at").read_text().strip() if (io / "at").exists() else "?"
    if rc != 0 or at != "done":
        journal = inside(leader, "systemctl --no-pager status " + " ".join(UNITS) + "; journalctl "
                         "--no-pager -n 60 " + " ".join("-u " + u for u in UNITS)).stdout
        pytest.fail(f"docs/vm.md:{at}: the block starting there failed ({rc}):\n"
                    + out.read_text(errors="replace")[-4000:] + "\n--- units:\n" + journal[-5000:])

    # The three units are up.
    r = inside(leader, "systemctl is-active " + " ".join(UNITS))
    assert r.stdout.split() == ["active"] * 3, r.stdout + r.stderr
    # The CA answers on its port with the root the guide copied to the node.
    r = inside(leader, "curl -sf --cacert /etc/ambient/root-cert.pem https://10.86.0.1:15012/v1/roots")
    assert r.returncode == 0 and "BEGIN CERTIFICATE" in r.stdout, r.stdout + r.stderr
    # The ztunnel is ready, and got the host's certificate from the CA when the host was enrolled.
    r = inside(leader, "curl -sf http://127.0.0.1:15021/healthz/ready")
    assert r.returncode == 0, r.stdout + r.stderr
    r = inside(leader, "journalctl --no-pager -o cat -u ambient-ztunnel")
    assert re.search(r"certificate issued.*spiffe://cluster.local/ns/shop/sa/vm\b", r.stdout), r.stdout[-3000:]
    r = inside(leader, "ambient cni list")
    assert r.returncode == 0 and "vm-a" in r.stdout, r.stdout + r.stderr

    # Each unit's process runs as its unit says: user, capabilities, no new privileges, seccomp.
    uid_ca = inside(leader, "id -u ambient-ca").stdout.strip()
    assert uid_ca.isdigit() and uid_ca != "0", uid_ca
    dropins = inside(leader, "cat /etc/systemd/system/ambient-cni-agent.service.d/*.conf 2>/dev/null").stdout
    for unit in UNITS:
        with open(os.path.join(ROOT, "deploy", "systemd", unit + ".service")) as f:
            text = f.read()
        if unit == "ambient-cni-agent":
            text += "\n" + dropins
        user = (unit_setting(text, "User") or ["root"])[-1]
        want_uid = uid_ca if user == "ambient-ca" else "0"
        assert user in ("ambient-ca", "root"), (unit, user)
        want = caps_mask(" ".join(unit_setting(text, "CapabilityBoundingSet")).split())
        pid = inside(leader, f"systemctl show -P MainPID {unit}").stdout.strip()
        assert pid.isdigit() and pid != "0", (unit, pid)
        st = inside(leader, f"cat /proc/{pid}/status").stdout
        uids = re.search(r"^Uid:\s+(.*)$", st, re.M).group(1).split()
        assert set(uids) == {want_uid}, (unit, uids, want_uid)
        for key in ("CapBnd", "CapEff", "CapPrm"):
            got = int(re.search(rf"^{key}:\s+([0-9a-f]+)$", st, re.M).group(1), 16)
            assert got == want, (unit, key, hex(got), hex(want))
        assert re.search(r"^NoNewPrivs:\s+1$", st, re.M), (unit, st)
        assert re.search(r"^Seccomp:\s+2$", st, re.M), (unit, st)
    print(f"vm guide: rootfs {'built' if info['rootfs_built'] else 'cached'} in {info['rootfs_s']} s, "
          f"boot {info['boot_s']} s, guide {info['guide_s']} s")
