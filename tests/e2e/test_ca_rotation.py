"""Root CA rotation without an outage (docs/ca.md "Rotating the root"): the issued chain ends with
a bundle of every root in root-cert.pem, and workloads trust that bundle, so while both roots are
listed a workload signed under the old root and one signed under the new root accept each other.

Two netns "nodes" A (10.77.0.1) and B (10.77.0.2) joined by a veth pair, a dedicated ztunnel in
each signing locally from its own copy of the CA directory (--ca-dir), and traffic A -> B over
SOCKS5 and HBONE. Phases: old root only -> both roots listed (restart both) -> B switches to the
new signer -> A switches too and the old root is dropped. A control case shows the abrupt switch
(no overlap) failing, so the test can tell the difference. Needs root; everything is cleaned up.
"""
import os
import shutil
import subprocess

import pytest

from conftest import BIN, stop_all, wait_for
from test_ztunnel import NsProc, nsrun, write_atomic
from test_ztunnel_paths import veth

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("curl"),
                                reason="needs root and curl")


def mesh():
    return {"workloads": [
        {"uid": "a", "name": "a", "namespace": "shop", "serviceAccount": "a",
         "workloadIps": ["10.77.0.1"], "protocol": "HBONE"},
        {"uid": "b", "name": "b", "namespace": "shop", "serviceAccount": "b",
         "workloadIps": ["10.77.0.2"], "protocol": "HBONE"},
    ]}


def ca_init(path):
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def read(path):
    with open(path) as f:
        return f.read()


def signer(dst, src):
    """Makes dst sign with src's CA (keeps dst's root-cert.pem)."""
    for f in ("ca-cert.pem", "ca-key.pem", "cert-chain.pem"):
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))


@pytest.fixture
def rot(netns, tmp_path):
    a, b = netns(), netns()
    veth(a, b, ["10.77.0.1/24"], ["10.77.0.2/24"], "r")
    old, new = str(tmp_path / "ca-old"), str(tmp_path / "ca-new")
    ca_init(old)
    ca_init(new)
    ca_a, ca_b = str(tmp_path / "ca-a"), str(tmp_path / "ca-b")
    shutil.copytree(old, ca_a)
    shutil.copytree(old, ca_b)
    cfg = str(tmp_path / "mesh.json")
    write_atomic(cfg, mesh())
    www = tmp_path / "www"
    www.mkdir()
    (www / "hi.txt").write_bytes(b"hi\n")
    procs = []
    state = {"gen": 0}

    def ztunnel(ns, cadir):
        state["gen"] += 1
        p = NsProc(ns, [BIN, "ztunnel", "--ca-dir", cadir, "--mesh-config", cfg,
                        "--admin", "127.0.0.1:15000", "--metrics", "127.0.0.1:15020",
                        "--ready", "127.0.0.1:15021"],
                   str(tmp_path / f"zt-{ns[-4:]}-{state['gen']}.log"))
        procs.append(p)
        wait_for(lambda: nsrun(ns, "curl", "-s", "http://127.0.0.1:15021/healthz/ready",
                               check=False).stdout.strip() == b"ready" or not p.alive(),
                 what="ztunnel ready")
        assert p.alive(), p.logtext()
        return p

    app = NsProc(b, ["python3", "-m", "http.server", "8080", "--bind", "10.77.0.2",
                     "--directory", str(www)], str(tmp_path / "app.log"))
    try:
        wait_for(lambda: nsrun(b, "curl", "-s", "-o", "/dev/null", "http://10.77.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"a": a, "b": b, "old": old, "new": new, "ca_a": ca_a, "ca_b": ca_b,
               "ztunnel": ztunnel}
    finally:
        app.stop()
        stop_all(procs)


def get(ns):
    return nsrun(ns, "curl", "-s", "--max-time", "10", "--socks5", "127.0.0.1:15080",
                 "http://10.77.0.2:8080/hi.txt", check=False, timeout=20)


def test_root_rotation_keeps_traffic_flowing(rot):
    a, b, old, new, ca_a, ca_b = (rot[k] for k in ("a", "b", "old", "new", "ca_a", "ca_b"))
    both = read(os.path.join(old, "root-cert.pem")) + read(os.path.join(new, "root-cert.pem"))

    za, zb = rot["ztunnel"](a, ca_a), rot["ztunnel"](b, ca_b)
    assert get(a).stdout == b"hi\n"

    # 1. Both roots listed everywhere; restart both: their chains now end with both roots.
    for d in (ca_a, ca_b):
        with open(os.path.join(d, "root-cert.pem"), "w") as f:
            f.write(both)
    za.stop()
    zb.stop()
    za, zb = rot["ztunnel"](a, ca_a), rot["ztunnel"](b, ca_b)
    assert get(a).stdout == b"hi\n"

    # 2. B signs with the new CA; A still holds a certificate under the old root.
    signer(ca_b, new)
    zb.stop()
    zb = rot["ztunnel"](b, ca_b)
    r = get(a)
    assert r.stdout == b"hi\n", (r.stderr, za.logtext()[-1500:], zb.logtext()[-1500:])

    # 3. A moves too and the old root is dropped.
    signer(ca_a, new)
    for d in (ca_a, ca_b):
        shutil.copy(os.path.join(new, "root-cert.pem"), os.path.join(d, "root-cert.pem"))
    za.stop()
    zb.stop()
    za, zb = rot["ztunnel"](a, ca_a), rot["ztunnel"](b, ca_b)
    assert get(a).stdout == b"hi\n"


def test_abrupt_root_switch_breaks_until_both_move(rot):
    """The control: without the overlap, a new-root peer and an old-root peer refuse each other."""
    a, b, new, ca_a, ca_b = (rot[k] for k in ("a", "b", "new", "ca_a", "ca_b"))
    za = rot["ztunnel"](a, ca_a)
    signer(ca_b, new)
    shutil.copy(os.path.join(new, "root-cert.pem"), os.path.join(ca_b, "root-cert.pem"))
    zb = rot["ztunnel"](b, ca_b)
    r = get(a)
    assert r.stdout != b"hi\n"
    wait_for(lambda: "unknown" in (za.logtext() + zb.logtext()).lower()
             or "not trusted" in (za.logtext() + zb.logtext()).lower(),
             what="a refusal naming the untrusted certificate")
