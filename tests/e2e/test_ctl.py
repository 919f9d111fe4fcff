"""`ambient ctl`: golden output of check/explain/describe over fixed mesh configs, the findings
over testdata/config/bad/*, certificate inspection, clear errors, the live verbs against a running
ztunnel, and explain cross-checked with real traffic through two ztunnels (needs root).

Set UPDATE_GOLDEN=1 to rewrite testdata/ctl/**/*.golden after an intended output change."""
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid

import pytest

from conftest import BIN, ROOT, stop_all, wait_for

CTL = os.path.join(ROOT, "testdata", "ctl")
CONFIG = os.path.join(ROOT, "testdata", "config")
MESH = os.path.join(CTL, "mesh.json")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def ctl(*args, cwd=None, stdin=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([BIN, "ctl"] + list(args), capture_output=True, text=True, cwd=cwd,
                          input=stdin, env=e, timeout=60)


def golden(name, text):
    path = os.path.join(CTL, name)
    if UPDATE or not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        if not UPDATE:
            pytest.fail(f"golden file {name} was missing and has been written; re-run")
    with open(path) as f:
        want = f.read()
    assert text == want, f"output differs from {name} (UPDATE_GOLDEN=1 rewrites it)"


# ---- check -------------------------------------------------------------------------------------

CHECK_CASES = sorted(glob.glob(os.path.join(CTL, "check", "*.json")) +
                     glob.glob(os.path.join(CONFIG, "good", "*.json")))


@pytest.mark.parametrize("path", CHECK_CASES, ids=os.path.basename)
def test_check_golden(path):
    r = ctl("check", os.path.basename(path), cwd=os.path.dirname(path))
    kind = "config-" if "/testdata/config/" in path else ""
    base = os.path.splitext(os.path.basename(path))[0]
    golden(f"check/{kind}{base}.golden", r.stdout + f"exit: {r.returncode}\n")
    assert r.stderr == ""


def test_check_exit_codes():
    assert ctl("check", os.path.join(CONFIG, "good", "minimal.json")).returncode == 0
    assert ctl("check", os.path.join(CTL, "check", "never.json")).returncode == 3
    assert ctl("check", os.path.join(CONFIG, "bad", "enums.json")).returncode == 4
    r = ctl("check", "/nonexistent/mesh.json")
    assert r.returncode == 1
    assert r.stderr.strip() == ("ctl check: cannot read /nonexistent/mesh.json: "
                                "No such file or directory")
    assert ctl("check").returncode == 2


@pytest.mark.parametrize("err", sorted(glob.glob(os.path.join(CONFIG, "bad", "*.err"))),
                         ids=os.path.basename)
def test_check_reports_every_loader_error(err):
    """Every expected error of testdata/config/bad/X.err is a finding, with its path."""
    src = err[:-4] + ".json"
    r = ctl("check", "-o", "json", src)
    assert r.returncode == 4, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    got = {f"{f['path']}: {f['message']}" for f in doc["findings"] if f["level"] == "Error"}
    prefix = os.path.basename(src)
    with open(err) as f:
        for line in f.read().splitlines():
            if not line.strip():
                continue
            assert line.startswith(prefix)
            rest = line[len(prefix):]
            rest = rest[2:] if rest.startswith(": ") else rest[1:]
            # Findings may add a hint after the loader's text; regex error texts differ
            # between C libraries, so those are compared up to the library's own words.
            if "invalid regular expression" in rest:
                rest = rest.split("invalid regular expression")[0]
                assert any(g.startswith(rest) for g in got), (rest, got)
                continue
            assert any(g == rest or g.startswith(rest + " (") for g in got), (rest, got)
    assert doc["errors"] >= 1 and doc["loaded"] is False


def test_check_json_golden():
    r = ctl("check", "-o", "json", "shadow.json", cwd=os.path.join(CTL, "check"))
    golden("check/shadow.json.golden", r.stdout)
    doc = json.loads(r.stdout)
    assert {f["code"] for f in doc["findings"]} == {"ShadowedAllow"}
    assert r.returncode == 3


# ---- explain -----------------------------------------------------------------------------------

# (from, to, verdict, deciding policy at the (last) destination ztunnel, rule, waypoint used)
EXPLAIN_CASES = [
    ("client", "web.server.svc.cluster.local:80", "allow", "server/allow-client", 1, False),
    ("client/client", "10.82.0.2:8080", "allow", "server/allow-client", 1, False),
    ("legacy", "web.server.svc.cluster.local:80", "deny", "server/deny-legacy", 0, False),
    ("10.82.0.3", "10.82.0.7:8080", "deny", "server/deny-legacy", 0, False),
    ("10.9.9.9", "10.82.0.2:8080", "deny", None, None, False),
    ("client", "reviews.server.svc.cluster.local:9080", "allow", "server/reviews-from-waypoint",
     0, True),
    ("client", "10.82.0.6:9080", "deny", None, None, False),
    ("client", "db.data.svc.cluster.local:5432", "allow", None, None, False),
    ("client", "192.0.2.7:443", "allow", None, None, False),
]


@pytest.mark.parametrize("case", EXPLAIN_CASES, ids=lambda c: f"{c[0]}->{c[1]}")
def test_explain_cases(case):
    src, dst, verdict, policy, rule, via_wp = case
    r = ctl("explain", "--config", MESH, "--from", src, "--to", dst, "-o", "json")
    assert r.returncode == (0 if verdict == "allow" else 5), r.stderr
    x = json.loads(r.stdout)
    assert x["verdict"] == verdict
    assert x["route"]["waypoint"]["used"] is via_wp
    points = [p for p in x["enforcement"] if p["point"] == "destination ztunnel"]
    if policy:
        assert points[-1]["decidingPolicy"] == policy
        assert points[-1]["decidingRule"] == rule
        assert f"policy {policy} rule {rule}" in x["verdictReason"]
        # the per-policy trace agrees with authz_check's decision
        trace = {p["policy"]: p for p in points[-1]["policies"]}
        assert trace[policy]["matched"] is True and trace[policy]["rule"] == rule


def test_explain_lists_every_endpoint_and_waypoint_identity():
    r = ctl("explain", "--config", MESH, "--from", "client", "--to",
            "web.server.svc.cluster.local:80", "-o", "json")
    x = json.loads(r.stdout)
    eps = {e["workload"]: e for e in x["endpoints"]["candidates"]}
    assert set(eps) == {"server/server", "server/server-2", "server/server-3"}
    assert eps["server/server"]["eligible"] and eps["server/server"]["weight"] == 3
    assert not eps["server/server-2"]["eligible"]
    assert "weighted random" in x["endpoints"]["selection"]
    assert x["expectedServerIdentities"] == ["spiffe://cluster.local/ns/server/sa/server"]
    r = ctl("explain", "--config", MESH, "--from", "client", "--to",
            "reviews.server.svc.cluster.local:9080", "--method", "POST", "--path", "/x", "-o",
            "json")
    x = json.loads(r.stdout)
    assert x["expectedServerIdentities"] == ["spiffe://cluster.local/ns/server/sa/waypoint"]
    wp = [p for p in x["enforcement"] if p["point"] == "waypoint"][0]
    assert wp["l7Policies"] == [{"policy": "server/reviews-get-only", "action": "ALLOW"}]
    assert x["request"]["method"] == "POST"


def test_explain_depends_on_the_endpoint(tmp_path):
    """One endpoint allows, another denies: the verdict says it depends on the pick."""
    with open(MESH) as f:
        doc = json.load(f)
    for w in doc["workloads"]:
        if w["uid"] == "server-3":
            w["authorizationPolicies"] = []
    p = tmp_path / "m.json"
    p.write_text(json.dumps(doc))
    r = ctl("explain", "--config", str(p), "--from", "10.9.9.9", "--to",
            "web.server.svc.cluster.local:80", "-o", "json")
    assert r.returncode == 5
    x = json.loads(r.stdout)
    assert x["verdict"] == "depends"
    by = {e["workload"]: e["verdict"] for e in x["enforcement"]}
    assert by == {"server/server": "deny", "server/server-3": "allow"}


@pytest.mark.parametrize("name,src,dst", [
    ("explain-web", "client", "web.server.svc.cluster.local:80"),
    ("explain-legacy", "legacy", "10.82.0.2:8080"),
    ("explain-waypoint", "client", "reviews.server.svc.cluster.local:9080"),
    ("explain-tcp", "client", "db.data.svc.cluster.local:5432"),
])
def test_explain_golden(name, src, dst):
    r = ctl("explain", "--config", "mesh.json", "--from", src, "--to", dst, cwd=CTL)
    golden(f"{name}.golden", r.stdout + f"exit: {r.returncode}\n")
    r = ctl("explain", "--config", "mesh.json", "--from", src, "--to", dst, "-o", "json",
            cwd=CTL)
    golden(f"{name}.json.golden", r.stdout)


def test_explain_errors():
    r = ctl("explain", "--config", MESH, "--from", "nobody", "--to", "10.82.0.2:80")
    assert r.returncode == 2 and 'no workload "nobody"' in r.stderr
    r = ctl("explain", "--config", MESH, "--from", "client", "--to", "nowhere.example:80")
    assert r.returncode == 2 and "no service hostname or workload" in r.stderr
    r = ctl("explain", "--config", MESH, "--from", "client", "--to", "10.82.0.2")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    r = ctl("explain", "--config", os.path.join(CONFIG, "bad", "enums.json"), "--from", "a",
            "--to", "1.2.3.4:5")
    assert r.returncode == 1 and "ctl check" in r.stderr


# ---- describe ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,name", [("workload", "server/server"),
                                       ("workload", "reviews"),
                                       ("service", "web.server.svc.cluster.local"),
                                       ("service", "server/reviews")])
def test_describe_golden(kind, name):
    r = ctl("describe", kind, name, "--config", "mesh.json", cwd=CTL)
    assert r.returncode == 0, r.stderr
    golden(f"describe-{kind}-{name.replace('/', '_')}.golden", r.stdout)


def test_describe_warns_about_bypass(tmp_path):
    with open(MESH) as f:
        doc = json.load(f)
    # reviews without its "only from the waypoint" policy: direct connections are accepted
    for w in doc["workloads"]:
        if w["uid"] == "reviews":
            w["authorizationPolicies"] = []
    p = tmp_path / "m.json"
    p.write_text(json.dumps(doc))
    x = json.loads(ctl("describe", "service", "server/reviews", "--config", str(p), "-o",
                       "json").stdout)
    assert any("bypass" in w for w in x["warnings"])
    x = json.loads(ctl("describe", "service", "server/reviews", "--config", MESH, "-o",
                       "json").stdout)
    assert x["warnings"] == []


# ---- certificates ------------------------------------------------------------------------------

@pytest.fixture
def certs(tmp_path):
    ca = str(tmp_path / "ca")
    r = subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", ca],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = str(tmp_path / "leaf")
    r = subprocess.run([BIN, "ca", "issue", "--dir", ca, "--identity",
                        "spiffe://cluster.local/ns/default/sa/app", "--out", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    other = str(tmp_path / "other")
    subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", other],
                   check=True, capture_output=True)
    return {"ca": ca, "leaf": out, "other": other}


def test_cert_inspect(certs):
    root = os.path.join(certs["ca"], "root-cert.pem")
    r = ctl("cert", "inspect", os.path.join(certs["leaf"], "chain.pem"), "--root", root)
    assert r.returncode == 0, r.stderr
    assert "SPIFFE ID:   spiffe://cluster.local/ns/default/sa/app" in r.stdout
    assert "Issuer:      O=cluster.local" in r.stdout
    assert "ECDSA P-256" in r.stdout
    assert "OK: valid X.509-SVID chain to the root" in r.stdout
    r = ctl("cert", "inspect", os.path.join(certs["leaf"], "chain.pem"), "--root",
            os.path.join(certs["other"], "root-cert.pem"), "-o", "json")
    assert r.returncode == 1
    x = json.loads(r.stdout)
    assert x["verification"]["ok"] is False and "unknown root" in x["verification"]["reason"]
    assert x["certificates"][0]["type"] == "Leaf"
    assert x["certificates"][0]["timeLeft"].startswith("2") or "h" in x["certificates"][0]["timeLeft"]


def test_cert_inspect_stdin_never_shows_keys(certs):
    with open(os.path.join(certs["leaf"], "key.pem")) as f:
        key = f.read()
    with open(os.path.join(certs["leaf"], "cert.pem")) as f:
        cert = f.read()
    r = ctl("cert", "inspect", "-", stdin=key + cert)
    assert r.returncode == 0, r.stderr
    body = key.split("-----")[2].strip().splitlines()[0]
    assert body not in r.stdout and "PRIVATE" not in r.stdout
    assert "private keys are never shown" in r.stdout


def test_cert_inspect_expired_at_a_given_time(certs):
    r = ctl("cert", "inspect", os.path.join(certs["leaf"], "cert.pem"), "--root",
            os.path.join(certs["ca"], "root-cert.pem"), "-o", "json",
            env={"AMBIENT_CTL_NOW": "2099-01-01T00:00:00Z"})
    x = json.loads(r.stdout)
    assert r.returncode == 1
    assert x["certificates"][0]["timeLeft"].startswith("expired")
    assert x["certificates"][0]["validNow"] is False


def test_cert_inspect_bad_input(tmp_path):
    r = ctl("cert", "inspect", "/nonexistent.pem")
    assert r.returncode == 1
    assert r.stderr.strip() == "ctl cert inspect: cannot read /nonexistent.pem: No such file or directory"
    p = tmp_path / "junk.pem"
    p.write_text("hello\n")
    r = ctl("cert", "inspect", str(p))
    assert r.returncode == 1 and "junk.pem: PEM: no BEGIN line found" in r.stderr


# ---- usage, help, errors -----------------------------------------------------------------------

VERBS = ["check", "explain", "describe", "cert", "workloads", "services", "policies", "certs",
         "connections", "config", "log", "status", "bug-report"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_example(verb):
    r = ctl(verb, "--help")
    assert r.returncode == 0
    assert "usage:" in r.stdout and "example" in r.stdout


def test_unknown_verb_and_no_verb():
    r = ctl("frobnicate")
    assert r.returncode == 2 and "unknown verb 'frobnicate'" in r.stderr
    assert ctl().returncode == 2


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("verb", ["workloads", "services", "policies", "certs", "connections",
                                  "config", "log"])
def test_unreachable_admin_is_one_clear_line(verb):
    port = free_port()
    r = ctl(verb, "--admin", f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert r.stderr == (f"ctl {verb}: cannot reach admin at http://127.0.0.1:{port}: connection "
                        "refused (is the process running? pass --admin URL)\n")


def test_bad_admin_url():
    r = ctl("workloads", "--admin", "http://[::1")
    assert r.returncode == 1 and r.stderr.startswith("ctl workloads: bad admin URL")
    r = ctl("check", "http://[::1/mesh.json")
    assert r.returncode == 1 and "bad URL" in r.stderr


# ---- live state --------------------------------------------------------------------------------

APP_UID = "cluster1//v1/Pod/default/app"


@pytest.fixture
def live(server, tmp_path):
    ca = str(tmp_path / "ca")
    subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", ca],
                   check=True, capture_output=True)
    mesh = str(tmp_path / "mesh.json")
    shutil.copy(os.path.join(CONFIG, "good", "localhost.json"), mesh)
    ports = [str(free_port()) for _ in range(3)]
    zt = server("ztunnel", ["--mesh-config", mesh, "--ca-dir", ca, "--workload", APP_UID,
                            "--inbound-port", ports[0], "--outbound-port", ports[1],
                            "--hbone-port", ports[2], "--socks5-port", "0", "--workers", "1"],
                name="ztunnel")
    admin = f"127.0.0.1:{zt.admin_port}"
    wait_for(lambda: ctl("status", "--admin", admin).returncode == 0, what="ztunnel ready")
    # readiness does not wait for the workload certificate: tests below look at it
    wait_for(lambda: " Available " in ctl("certs", "--admin", admin).stdout, what="cert issued")
    return {"zt": zt, "admin": admin, "mesh": mesh, "tmp": tmp_path}


def test_live_tables_golden(live):
    a = live["admin"]
    for verb in ("workloads", "services", "policies"):
        r = ctl(verb, "--admin", a)
        assert r.returncode == 0, r.stderr
        golden(f"live-{verb}.golden", r.stdout)
    r = ctl("workloads", "--admin", a, "--name", "app")
    assert r.stdout.splitlines()[1:] == [l for l in ctl("workloads", "--admin", a)
                                         .stdout.splitlines() if " app " in l]
    r = ctl("workloads", "--admin", a, "--namespace", "nope")
    assert r.stdout.splitlines() == ["NAMESPACE  POD NAME  ADDRESS  NODE  WAYPOINT  PROTOCOL"]
    r = ctl("workloads", "--admin", a, "-o", "json")
    assert [w["uid"] for w in json.loads(r.stdout)] == [APP_UID,
                                                        "cluster1//v1/Pod/default/waypoint"]


def test_live_certs_connections_config(live):
    a = live["admin"]
    wait_for(lambda: " Available " in ctl("certs", "--admin", a).stdout, what="cert issued")
    r = ctl("certs", "--admin", a)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["CERTIFICATE", "NAME", "TYPE", "STATUS", "VALID", "CERT",
                                "SERIAL", "NUMBER", "NOT", "AFTER", "NOT", "BEFORE"]
    row = lines[1].split()
    assert row[:4] == ["spiffe://cluster.local/ns/default/sa/app", "Leaf", "Available", "true"]
    x = json.loads(ctl("certs", "--admin", a, "-o", "json").stdout)
    assert x[0]["valid"] is True and len(x[0]["serialNumber"]) == 32
    r = ctl("connections", "--admin", a)
    assert r.stdout.split() == ["WORKLOAD", "DIRECTION", "LOCAL", "REMOTE", "REMOTE", "TARGET",
                                "PROTOCOL"]
    d = json.loads(ctl("config", "--admin", a).stdout)
    assert d["settings"]["component"] == "ztunnel"


def test_live_log_level(live):
    a = live["admin"]
    assert ctl("log", "--admin", a).stdout == "level: info\n"
    assert ctl("log", "debug", "--admin", a).stdout == "level: debug\n"
    assert ctl("log", "--admin", a).stdout == "level: debug\n"
    r = ctl("log", "loud", "--admin", a)
    assert r.returncode == 2 and "unknown level" in r.stderr


def test_live_status(live, tmp_path):
    a = live["admin"]
    dead = f"127.0.0.1:{free_port()}"
    inv = tmp_path / "inventory"
    inv.write_text(f"# nodes\n{a}\n\n{dead}\n")
    r = ctl("status", "--inventory", str(inv), "-o", "json")
    assert r.returncode == 1
    rows = {x["admin"]: x for x in json.loads(r.stdout)}
    up = rows[f"http://{a}"]
    assert up["component"] == "ztunnel" and up["ready"] == "READY"
    assert up["configVersion"] == 1 and len(up["etag"]) == 16
    assert up["certExpiry"].startswith("23h") or up["certExpiry"].startswith("24h")
    assert rows[f"http://{dead}"]["reachable"] is False
    # the CA's etag as the reference: a ztunnel with the same document is in sync
    r = ctl("status", "--admin", a, "--ca-admin", a)
    assert r.returncode == 0 and " SYNCED " in r.stdout
    # a bad document: the last error shows, the old snapshot stays
    with open(live["mesh"], "w") as f:
        f.write("{\"workloads\": [}")
    wait_for(lambda: "config: " in ctl("status", "--admin", a).stdout, what="config error shown")
    r = ctl("status", "--admin", a)
    assert "invalid JSON" in r.stdout and r.returncode == 1


def test_live_bug_report(live, tmp_path):
    out = str(tmp_path / "report.tar.gz")
    dead = f"127.0.0.1:{free_port()}"
    r = ctl("bug-report", "--admin", live["admin"], "--admin", dead, "--out", out)
    assert r.returncode == 1  # one component was unreachable
    assert "1 of 2 components reached" in r.stdout
    with tarfile.open(out, "r:gz") as t:
        names = t.getnames()
        contents = {n: t.extractfile(n).read() for n in names}
    assert "ambient-bug-report/README.txt" in names
    assert any(n.endswith("/config_dump.json") for n in names)
    assert any(n.endswith("/metrics.txt") for n in names)
    for n, b in contents.items():
        assert b"PRIVATE KEY" not in b, n
    with open(os.path.join(live["tmp"], "ca", "ca-key.pem"), "rb") as f:
        key_line = f.read().split(b"\n")[1]
    assert all(key_line not in b for b in contents.values())
    dump = [b for n, b in contents.items() if n.endswith("config_dump.json")][0]
    assert json.loads(dump)["settings"]["component"] == "ztunnel"
    assert b"cannot reach admin" in contents["ambient-bug-report/README.txt"]


def test_live_with_a_ca(server, procs, tmp_path):
    """A CA serving the config and a ztunnel following it: status compares the etags, certs
    lists the CA's certificates, check/explain read the config from the CA with a token, and the
    bug report holds neither the token nor a key."""
    import ssl
    cadir = str(tmp_path / "ca")
    subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", cadir],
                   check=True, capture_output=True)
    mesh = str(tmp_path / "mesh.json")
    shutil.copy(os.path.join(CONFIG, "good", "localhost.json"), mesh)
    tok = subprocess.run([BIN, "ca", "token", "add", "--dir", cadir, "--node", "node-a"],
                         capture_output=True, text=True, check=True).stdout.strip()
    tokfile = tmp_path / "token"
    tokfile.write_text(tok + "\n")
    os.chmod(tokfile, 0o600)
    port, ca_admin = free_port(), free_port()
    ca = procs(["ca", "serve", "--dir", cadir, "--mesh-config", mesh, "--listen",
                f"127.0.0.1:{port}", "--ip", "127.0.0.1", "--admin", f"127.0.0.1:{ca_admin}",
                "--metrics", f"127.0.0.1:{free_port()}", "--ready",
                f"127.0.0.1:{free_port()}"], name="ca")
    root = os.path.join(cadir, "root-cert.pem")
    url = f"https://127.0.0.1:{port}/v1/config"
    zt = server("ztunnel", ["--mesh-config", url, "--ca-root", root, "--token-file",
                            str(tokfile), "--socks5-port", "0", "--inbound-port",
                            str(free_port()), "--outbound-port", str(free_port()),
                            "--hbone-port", str(free_port())], name="ztunnel")
    za, caa = f"127.0.0.1:{zt.admin_port}", f"127.0.0.1:{ca_admin}"
    assert ca.alive(), ca.logtext()
    wait_for(lambda: " SYNCED " in ctl("status", "--admin", za, "--ca-admin", caa).stdout,
             what="ztunnel in sync with the CA")
    r = ctl("certs", "--admin", caa, "-o", "json")
    assert r.returncode == 0, r.stderr
    types = sorted(c["type"] for c in json.loads(r.stdout))
    assert types == ["CA", "Leaf"]
    r = ctl("check", url, "--ca-root", root, "--token-file", str(tokfile))
    assert r.returncode == 0 and "no problems found" in r.stdout, r.stdout + r.stderr
    r = ctl("check", url)
    assert r.returncode == 1 and "--ca-root" in r.stderr
    r = ctl("check", url, "--ca-root", root)
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    r = ctl("explain", "--config", url, "--ca-root", root, "--token-file", str(tokfile),
            "--from", "default/waypoint", "--to", "10.0.0.2:8080")
    assert "denied: allow policies exist, but none allowed" in r.stdout and r.returncode == 5
    out = str(tmp_path / "r.tar.gz")
    r = ctl("bug-report", "--admin", za, "--admin", caa, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    with tarfile.open(out, "r:gz") as t:
        blobs = [t.extractfile(m).read() for m in t.getmembers()]
    assert len(blobs) >= 11
    assert all(tok.encode() not in b and b"PRIVATE KEY" not in b for b in blobs)


# ---- explain agrees with the live data plane ----------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("curl"),
                                reason="needs root and curl")

CLIENT = {"uid": "client", "name": "client", "namespace": "client", "serviceAccount": "client",
          "workloadIps": ["10.82.0.1"], "protocol": "HBONE"}
SERVER = {"uid": "server", "name": "server", "namespace": "server", "serviceAccount": "server",
          "workloadIps": ["10.82.0.2"], "protocol": "HBONE",
          "services": {"server/web.server.svc.cluster.local": {"80": 8080}}}
WEB = {"name": "web", "namespace": "server", "hostname": "web.server.svc.cluster.local",
       "vips": ["/10.96.82.1"], "ports": {"80": 8080}}
CLIENT_P = "cluster.local/ns/client/sa/client"

# (name, policies, explain's expected verdict and reason)
LIVE_CASES = [
    ("no-policy", [], "allow", "allowed: no ALLOW policies"),
    ("deny-client", [{"name": "deny-client", "namespace": "server", "scope": "Namespace",
                      "action": "Deny", "rules": [[[{"principals": [{"Exact": CLIENT_P}]}]]]}],
     "deny", "denied by policy server/deny-client rule 0"),
    ("allow-other", [{"name": "allow-other", "namespace": "server", "scope": "Namespace",
                      "action": "Allow",
                      "rules": [[[{"principals": [{"Exact": "cluster.local/ns/x/sa/y"}]}]]]}],
     "deny", "denied: allow policies exist, but none allowed"),
    ("allow-client-rule-1", [{"name": "allow-client", "namespace": "server",
                              "scope": "Namespace", "action": "Allow",
                              "rules": [[[{"destinationPorts": [9999]}]],
                                        [[{"principals": [{"Exact": CLIENT_P}]}]]]}],
     "allow", "allowed by policy server/allow-client rule 1"),
    ("deny-port", [{"name": "deny-port", "namespace": "server", "scope": "Global",
                    "action": "Deny", "rules": [[[{"destinationPorts": [8080]}]]]}],
     "deny", "denied by policy server/deny-port rule 0"),
]


def nsrun(ns, *args, check=True, timeout=30):
    return subprocess.run(["ip", "netns", "exec", ns] + list(args), capture_output=True,
                          check=check, timeout=timeout)


class NsProc:
    def __init__(self, ns, args, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(["ip", "netns", "exec", ns] + args, stdout=self.log,
                                  stderr=subprocess.STDOUT)

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


@pytest.fixture
def two_nodes(tmp_path):
    """Netns amt-a (client, 10.82.0.1) and amt-b (server, 10.82.0.2), a ztunnel in each, an HTTP
    app on 10.82.0.2:8080. The client reaches the server through its ztunnel's SOCKS5 port."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"amt-a{tag}", f"amt-b{tag}"
    made, started = [], []
    try:
        for n in (a, b):
            subprocess.run(["ip", "netns", "add", n], check=True)
            made.append(n)
            subprocess.run(["ip", "-n", n, "link", "set", "lo", "up"], check=True)
        va, vb = f"ta{tag}", f"tb{tag}"
        subprocess.run(["ip", "-n", a, "link", "add", va, "type", "veth", "peer", "name", vb,
                        "netns", b], check=True)
        subprocess.run(["ip", "-n", a, "addr", "add", "10.82.0.1/24", "dev", va], check=True)
        subprocess.run(["ip", "-n", b, "addr", "add", "10.82.0.2/24", "dev", vb], check=True)
        subprocess.run(["ip", "-n", a, "link", "set", va, "up"], check=True)
        subprocess.run(["ip", "-n", b, "link", "set", vb, "up"], check=True)
        ca = str(tmp_path / "ca")
        subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", ca],
                       check=True, capture_output=True)
        mesh = str(tmp_path / "mesh.json")
        write_mesh(mesh, [])
        www = tmp_path / "www"
        www.mkdir()
        (www / "hello.txt").write_text("hello\n")
        procs = {}
        for n, name in ((a, "za"), (b, "zb")):
            p = NsProc(n, [BIN, "ztunnel", "--mesh-config", mesh, "--ca-dir", ca, "--admin",
                           "127.0.0.1:15000", "--metrics", "127.0.0.1:15020", "--ready",
                           "127.0.0.1:15021", "--workers", "1"], str(tmp_path / f"{name}.log"))
            started.append(p)
            procs[name] = p
        app = NsProc(b, ["python3", "-m", "http.server", "8080", "--bind", "10.82.0.2",
                         "--directory", str(www)], str(tmp_path / "app.log"))
        started.append(app)
        for n, name in ((a, "za"), (b, "zb")):
            def ready(n=n, p=procs[name]):
                if not p.alive():
                    raise AssertionError(p.logtext())
                r = nsrun(n, "curl", "-s", "http://127.0.0.1:15021/healthz/ready", check=False)
                return r.stdout.strip() == b"ready"
            wait_for(ready, what=f"{name} ready")
        wait_for(lambda: nsrun(b, "curl", "-s", "-o", "/dev/null", "http://10.82.0.2:8080/",
                               check=False).returncode == 0, what="app up")
        yield {"a": a, "b": b, "mesh": mesh, "zb": procs["zb"]}
    finally:
        stop_all(reversed(started), lambda p: p.p.args[4:5] == [BIN], only_if_running=False)
        for n in made:
            subprocess.run(["ip", "netns", "del", n], check=False)


def write_mesh(path, policies):
    doc = {"workloads": [CLIENT, SERVER], "services": [WEB], "policies": policies}
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)


@needs_root
def test_explain_agrees_with_live_ztunnels(two_nodes):
    n = two_nodes
    for name, policies, verdict, reason in LIVE_CASES:
        write_mesh(n["mesh"], policies)
        assert json.loads(ctl("check", "-o", "json", n["mesh"]).stdout)["errors"] == 0
        want = expected_etag(n["mesh"])
        for ns in (n["a"], n["b"]):
            wait_for(lambda ns=ns: live_etag(ns) == want, what=f"{name}: reload")
        # by workload IP and by service VIP (the ztunnel picks the endpoint)
        for to, url in (("10.82.0.2:8080", "http://10.82.0.2:8080/hello.txt"),
                        ("web.server.svc.cluster.local:80", "http://10.96.82.1:80/hello.txt")):
            r = ctl("explain", "--config", n["mesh"], "--from", "client", "--to", to, "-o",
                    "json")
            x = json.loads(r.stdout)
            point = x["enforcement"][-1]
            assert (x["verdict"], point["reason"]) == (verdict, reason), (name, to)
            mark = len(n["zb"].logtext())
            c = nsrun(n["a"], "curl", "-sS", "--max-time", "10", "--socks5", "127.0.0.1:15080",
                      url, check=False)
            allowed = c.returncode == 0 and c.stdout == b"hello\n"
            assert allowed == (x["verdict"] == "allow"), (name, to, x["verdictReason"],
                                                          c.stderr)
            if not allowed:
                # the destination ztunnel logs the same reason, naming the same policy and rule
                wait_for(lambda: point["reason"] in n["zb"].logtext()[mark:],
                         what=f"{name}: '{point['reason']}' in the server ztunnel's log")


def live_etag(ns):
    r = nsrun(ns, BIN, "ctl", "status", "--admin", "127.0.0.1:15000", "-o", "json", check=False)
    try:
        return json.loads(r.stdout)[0]["etag"]
    except (ValueError, IndexError, KeyError):
        return None


def expected_etag(mesh):
    """The etag a fresh load of the document gets: ask a throwaway `--check-config` run."""
    r = subprocess.run([BIN, "ztunnel", "--check-config", "--mesh-config", mesh],
                       capture_output=True, text=True)
    return r.stdout.rsplit("(etag ", 1)[1].rstrip(")\n")
