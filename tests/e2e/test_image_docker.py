"""The container image with a real docker engine: `make image` picks docker when a daemon answers,
and docs/quickstart.md's `docker run` block runs exactly as written (read from the markdown at
test time, so the doc cannot drift from what is tested).

The daemon is Debian's docker.io (dockerd 20.10, installed here if missing; `make deps` installs
it), started by the test and only for it:

- in a network namespace of its own (`ambdock-*`), with `--bridge=none --iptables=false
  --ip6tables=false`, so `--network host` containers see only that namespace and the root
  namespace's links and firewall are never touched;
- in a mount namespace of its own (`unshare -m --propagation private`) where /etc is an overlay
  (the host's /etc below, a test directory above: /etc/ambient, with a mesh config and a CA made
  by `ambient ca init`, and dockerd's /etc/docker/key.json land there, never in the host's /etc),
  and /run is a tmpfs (containerd's shim sockets) with /run/ztunnel bound to a test directory,
  where the test plays the node agent's ZDS socket. dockerd's overlay2 mounts live and die in
  that namespace: the host's mount table never shows them;
- with its own data-root, exec-root, socket, pidfile and config file under one temporary
  directory (never /var/run/docker.sock), and its containers in a cgroup parent of its own.

At the end (also on failure) the test removes its containers, stops exactly that dockerd by PID
(SIGTERM, then SIGKILL), kills by PID anything left in its namespace or its cgroups, and removes
the cgroups, the namespaces and the directory. A daemon that does not start fails the test with
its log; only when docker.io cannot be installed at all is the test skipped.

The block runs with `sh -e` and DOCKER_HOST set, as a non-root user allowed on the socket (uid
and gid 64987, the socket's group, as a member of the `docker` group would be), so that
`--user "$(id -u)"` means something. The client is the first `docker` on PATH, as for a reader:
on this machine /usr/local/bin/docker 28.2, which negotiates API 1.41 with the 20.10 daemon and
builds with the legacy builder (printing a deprecation notice; BuildKit would need buildx, which
Debian 12 does not package); Debian's /usr/bin/docker 20.10 works the same. The test checks: `docker
run --rm ambient:VERSION version` prints the version; `docker run ... ca init` writes the root's
files into ./ca/root, owned by the caller's uid; the ztunnel container (`docker run -d --user 0
--cap-add NET_ADMIN --cap-add SYS_ADMIN --network host ...`) runs, reads /etc/ambient, answers
503 "waiting for the workload snapshot from the node agent (ZDS)" on 15021 in the namespace and
logs that it retries /run/ztunnel/ztunnel.sock; then a scripted node agent (zds_agent.py) on that
socket sends the snapshot (ready: 200) and enrolls a workload namespace, in which the container's
ztunnel opens its listeners (so the two capabilities are enough); `docker rm -f` closes them.
Needs root."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import BIN, ROOT, wait_for
import zds_agent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, dockerd)")

NS_TOOLS = ("ip", "nsenter", "unshare", "setpriv", "curl", "ss")
CALLER = 64987  # a non-root uid and gid of no one else: the only one allowed on the socket
DOC = os.path.join(ROOT, "docs", "quickstart.md")
FENCE = "```sh covered-by:tests/e2e/test_image_docker.py"

# Runs inside the new mount namespace (and the test's network namespace), then becomes dockerd.
DOCKERD_SH = r'''set -e
T=$1
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/etc-upper,workdir=$T/etc-work" /etc
mount -t tmpfs -o mode=755 tmpfs /run
mkdir /run/ztunnel
mount --bind "$T/run-ztunnel" /run/ztunnel
exec "$3" --bridge=none --iptables=false --ip6tables=false \
    --data-root "$T/data" --exec-root "$T/exec" -H "unix://$T/docker.sock" -G "$4" \
    --pidfile "$T/docker.pid" --config-file "$T/daemon.json" --cgroup-parent "$2"
'''


def version():
    with open(os.path.join(ROOT, "VERSION")) as f:
        return f.read().strip()


def doc_block():
    """The quick start's docker block, as the reader sees it."""
    with open(DOC) as f:
        text = f.read()
    blocks = re.findall(r"^" + re.escape(FENCE) + r"\n(.*?)^```$", text, re.S | re.M)
    assert len(blocks) == 1, f"{DOC}: expected one block fenced {FENCE!r}, found {len(blocks)}"
    return blocks[0]


def find_dockerd():
    for p in (shutil.which("dockerd"), "/usr/sbin/dockerd", "/usr/bin/dockerd"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def ensure_docker():
    """dockerd's path, installing Debian's docker.io if there is none; None if it cannot be."""
    d = find_dockerd()
    if d and shutil.which("docker"):
        return d, ""
    # --no-remove: docker.io conflicts with Docker's own packages (docker-ce, docker-ce-cli,
    # containerd.io); apt must fail rather than remove them.
    r = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y", "-qq",
                        "--no-remove", "--no-install-recommends", "docker.io"],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       capture_output=True, text=True, timeout=300)
    d = find_dockerd()
    if d and shutil.which("docker"):
        return d, ""
    return None, (r.stderr or r.stdout).strip()[-300:]


def host_docker_traces():
    """What a docker engine leaves on a host; none of it may appear because of this test."""
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout \
        if shutil.which("nft") else ""
    return {"/etc/ambient": os.path.exists("/etc/ambient"),
            "/etc/docker/key.json": os.path.exists("/etc/docker/key.json"),
            "/run/ztunnel": os.path.exists("/run/ztunnel"),
            "/run/containerd": os.path.exists("/run/containerd"),
            "/var/lib/docker": os.path.exists("/var/lib/docker"),
            "docker0 link": os.path.exists("/sys/class/net/docker0"),
            "DOCKER rules in the root netns": "DOCKER" in nft}


def cgroup_dirs(parent):
    """The test daemon's cgroup parent in every hierarchy (v1 controllers, or v2 at the top)."""
    tops = ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", c)
                                 for c in os.listdir("/sys/fs/cgroup")]
    return [os.path.join(t, parent) for t in tops if os.path.isdir(os.path.join(t, parent))]


def cgroup_pids(parent):
    pids = set()
    for top in cgroup_dirs(parent):
        for dirpath, _, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids.update(int(x) for x in f.read().split())
                except OSError:
                    pass
    return pids


def proc_state(pid):
    """The state letter of a process (R, S, Z, ...), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def netns_pids(ns):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


class Docker:
    """A private dockerd (Docker(path_of_dockerd)); .run("ps") talks to it and nothing else."""

    def __init__(self, dockerd):
        self.dockerd = dockerd
        self.dir = tempfile.mkdtemp(prefix="ambdock.", dir="/var/tmp")  # short: socket paths
        os.chmod(self.dir, 0o711)  # the caller reaches its socket and work directory
        self.name = "ambdock-" + uuid.uuid4().hex[:8]  # the netns and the cgroup parent
        self.sock = os.path.join(self.dir, "docker.sock")
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock)
        self.env.pop("DOCKER_CONTEXT", None)
        self.proc = None
        self.ns_made = False
        self.log_path = os.path.join(self.dir, "dockerd.log")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def prepare(self, mesh):
        """/etc/ambient as the container will see it: the mesh config and a CA directory."""
        for d in ("data", "exec", "etc-upper/ambient", "etc-work", "run-ztunnel"):
            os.makedirs(self.path(d))
        with open(self.path("daemon.json"), "w") as f:
            f.write("{}\n")  # not /etc/docker/daemon.json, whatever the host has there
        with open(self.path("etc-upper/ambient/mesh.json"), "w") as f:
            json.dump(mesh, f)
        r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir",
                            self.path("etc-upper/ambient/ca")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    def start(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.ns_made = True
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        # nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup mounts dockerd
        # needs. nsenter, unshare and sh all exec, so the PID is dockerd's own.
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.name}", "unshare", "-m", "--propagation",
                 "private", "sh", "-c", DOCKERD_SH, "dockerd-ns", self.dir, self.name,
                 self.dockerd, str(CALLER)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            r = self.run("info", "--format", "{{.DockerRootDir}}", check=False, timeout=10)
            if r.returncode == 0:
                assert r.stdout.strip() == self.path("data"), r.stdout  # our daemon answers
                with open(self.path("docker.pid")) as f:
                    assert int(f.read()) == self.proc.pid
                return
            time.sleep(0.2)
        pytest.fail(f"the test's dockerd did not start ({self.dockerd}, exit "
                    f"{self.proc.poll()}); its log:\n{self.log()[-3000:]}")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def run(self, *args, check=True, timeout=60):
        r = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)}: {r.stdout}{r.stderr}"
        return r

    def logs(self, cid):
        r = self.run("logs", cid)
        return r.stdout + r.stderr

    def stop(self):
        """Removes the containers, stops dockerd by PID, then whatever is left of it; returns
        the problems found (leftovers), an empty list when all went well."""
        problems = []
        ours = netns_pids(self.name) if self.ns_made else set()  # dockerd, containerd, shims
        if self.proc and self.proc.poll() is None:
            r = self.run("ps", "-aq", check=False, timeout=30)
            if r.returncode == 0 and r.stdout.split():
                self.run("rm", "-f", *r.stdout.split(), check=False, timeout=60)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                problems.append("dockerd ignored SIGTERM for 20 s")
                self.proc.kill()
                self.proc.wait()
        # containerd, its shims and the containers: in the namespace or in the cgroups.
        left = netns_pids(self.name) if self.ns_made else set()
        left |= cgroup_pids(self.name)
        if left:
            problems.append(f"processes left after dockerd stopped: {sorted(left)}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                    (netns_pids(self.name) if self.ns_made else set()) | cgroup_pids(self.name)):
                time.sleep(0.1)
        # The shims were reparented to PID 1 (they daemonize): wait until it reaped them, so
        # nothing of the daemon's is left even as a zombie; one still alive is a leftover.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in ours):
            time.sleep(0.05)
        alive = [p for p in ours if proc_state(p) not in (None, "Z")]
        if alive:
            problems.append(f"processes of the daemon still alive: {alive}")
        for top in cgroup_dirs(self.name):
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    problems.append(f"cgroup {dirpath}: {e}")
        if self.ns_made:
            subprocess.run(["ip", "netns", "del", self.name], check=False)
        self.last_log = self.log()
        with open("/proc/self/mounts") as f:
            mounts = [l for l in f if self.dir in l]
        if mounts:
            problems.append("mounts left in the host's table: " + "".join(mounts))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            problems.append(f"could not remove {self.dir}")
        return problems


@pytest.fixture
def docker_engine():
    if any(shutil.which(t) is None for t in NS_TOOLS):
        pytest.skip("needs " + ", ".join(NS_TOOLS))
    dockerd, why = ensure_docker()
    if not dockerd:
        pytest.skip(f"no docker engine: apt-get install docker.io failed: {why}")
    before = host_docker_traces()
    d = Docker(dockerd)
    try:
        yield d
    finally:
        problems = d.stop()
        after = host_docker_traces()
        problems += [f"host changed: {k} {before[k]} -> {after[k]}" for k in before
                     if after[k] != before[k]]
        assert not problems, "\n".join(problems) + "\ndockerd log:\n" + d.last_log[-2000:]


def ready(ns):
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "--max-time", "5", "-w",
                        "\n%{http_code}", "http://127.0.0.1:15021/healthz/ready"],
                       capture_output=True, text=True, timeout=15)
    body, _, code = r.stdout.rpartition("\n")
    return code, body


def mesh_listeners(ns):
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn"], capture_output=True,
                         text=True, timeout=15).stdout
    return sorted(l.split()[3] for l in out.splitlines()
                  if l.strip() and l.split()[3].rsplit(":", 1)[1] in ("15001", "15006", "15008",
                                                                      "15080"))


def test_quickstart_docker_block_against_a_private_dockerd(docker_engine, netns):
    d = docker_engine
    if subprocess.run(["readelf", "-l", BIN], capture_output=True, text=True).stdout.find(
            "INTERP") >= 0:
        pytest.skip(f"the image ships the static release binary; {BIN} is not static")
    v = version()
    block = doc_block()
    # The doc's tag is the one `make image` gives, and the block is the one this test describes.
    tags = re.findall(r"\bambient:(\d[\w.-]*)", block)
    assert tags and set(tags) == {v}, (tags, v)
    for want in ("docker run --rm", "version", "ca init", "docker run -d --user 0",
                 "--network host", "-v /etc/ambient:/etc/ambient:ro",
                 "-v /run/ztunnel:/run/ztunnel", "ztunnel --mode shared", "--node node-a"):
        assert want in block, want

    wl = netns()  # a workload's network namespace, for the node agent to enroll
    d.prepare({"workloads": [{"uid": "w-uid", "name": "w", "namespace": "demo",
                              "serviceAccount": "web", "node": "node-a",
                              "workloadIps": ["10.87.0.2"], "protocol": "HBONE"}]})
    d.start()

    # `make image` with no IMAGE_BUILDER picks docker since a daemon answers (DOCKER_HOST).
    # IMAGE_BIN as an absolute path: an existing file, never a make target to rebuild.
    r = subprocess.run(["make", "-s", "image", f"IMAGE_BIN={BIN}"], cwd=ROOT, env=d.env,
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "buildah" not in out, out
    cfg = json.loads(d.run("image", "inspect", f"ambient:{v}").stdout)[0]["Config"]
    assert cfg["Labels"]["org.opencontainers.image.version"] == v
    assert cfg["Labels"]["org.opencontainers.image.title"] == "ambient"
    assert cfg["User"] == "65532:65532" and cfg["Entrypoint"] == ["/usr/local/bin/ambient"]

    # The block, verbatim, as a non-root user allowed on the socket, in an empty directory.
    work = d.path("work")
    os.mkdir(work)
    os.chown(work, CALLER, CALLER)
    script = d.path("block.sh")
    with open(script, "w") as f:
        f.write(block)
    env = dict(d.env, HOME=work)
    # Before the block: nothing of the test's daemon is visible in the host's mount table.
    with open("/proc/self/mounts") as f:
        assert d.dir not in f.read()
    r = subprocess.run(["setpriv", f"--reuid={CALLER}", f"--regid={CALLER}", "--clear-groups",
                        "--", "sh", "-e", script], cwd=work, env=env, capture_output=True,
                       text=True, timeout=90, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"the block failed (exit {r.returncode}):\n{out}"
    lines = r.stdout.splitlines()
    assert lines[0] == f"ambient {v}", out  # `docker run --rm ambient:VERSION version`
    assert "build: release" in r.stdout, out
    assert "created a self-signed root for trust domain cluster.local in /ca/root" in out, out
    cid = lines[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", cid), out  # `docker run -d` prints the container's ID

    # ca init ran as the caller: ./ca/root holds the root, every file the caller's.
    root = os.path.join(work, "ca", "root")
    assert sorted(os.listdir(root)) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem",
                                        "root-cert.pem"]
    for n in [""] + os.listdir(root):
        assert os.stat(os.path.join(root, n)).st_uid == CALLER, n
    assert os.stat(os.path.join(root, "ca-key.pem")).st_mode & 0o777 == 0o600
    with open(os.path.join(root, "root-cert.pem")) as f:
        assert "BEGIN CERTIFICATE" in f.read()

    # The ztunnel container: running, as root with the two capabilities, on the host's network.
    info = json.loads(d.run("inspect", cid).stdout)[0]
    assert info["State"]["Running"], info["State"]
    assert info["Config"]["User"] == "0"
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert sorted(c.replace("CAP_", "") for c in info["HostConfig"]["CapAdd"]) == \
        ["NET_ADMIN", "SYS_ADMIN"]
    # The host network is the test's namespace: readiness answers there, waiting for the agent.
    wait_for(lambda: ready(d.name)[0] not in ("", "000"), timeout=20,
             what="the container's readiness port in the test's namespace")
    code, body = ready(d.name)
    assert code == "503" and "waiting for the workload snapshot from the node agent (ZDS)" \
        in body, (code, body)
    wait_for(lambda: "cannot reach the node agent" in d.logs(cid),
             what="the ZDS retry line in the container's log")
    logs = d.logs(cid)
    assert 'msg="mesh config applied" source=/etc/ambient/mesh.json' in logs, logs
    assert f"msg=started component=ztunnel version={v}" in logs, logs
    assert 'retrying" path=/run/ztunnel/ztunnel.sock' in logs, logs

    # The node agent's side of /run/ztunnel: the snapshot makes it ready, an Add enrolls a
    # workload namespace in which the container's ztunnel opens its listeners (setns: SYS_ADMIN).
    agent = zds_agent.Agent(d.path("run-ztunnel", "ztunnel.sock"))
    try:
        agent.accept(timeout=30)  # the ztunnel retries with a backoff of at most a few seconds
        assert agent.send(zds_agent.snapshot_sent()) == ""
        wait_for(lambda: ready(d.name)[0] == "200", what="ready after the snapshot")
        assert agent.add_netns("w-uid", wl) == ""
        got = mesh_listeners(wl)
        for port in ("15001", "15006", "15008"):
            assert any(a.endswith(":" + port) for a in got), got
        assert "127.0.0.1:15080" in got, got
        logs = d.logs(cid)
        assert "workload enrolled" in logs and "uid=w-uid" in logs, logs
        assert "identity=spiffe://cluster.local/ns/demo/sa/web" in logs, logs
    finally:
        agent.close()

    # docker rm -f stops it: the workload's listeners close with it.
    d.run("rm", "-f", cid)
    assert d.run("ps", "-aq").stdout.strip() == ""
    wait_for(lambda: mesh_listeners(wl) == [], what="the listeners to close")
