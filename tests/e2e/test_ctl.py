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

from conftest import BIN, ROOT, http, stop_all, wait_for

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
    assert [(p["policy"], p["action"], p["matched"]) for p in wp["policies"]] == [
        ("server/reviews-get-only", "ALLOW", False)]
    assert x["request"]["method"] == "POST"
    assert (x["verdict"], x["httpStatus"]) == ("deny", 403)


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


# ---- explain at a waypoint: pkg/l7's own decisions ----------------------------------------------

L7 = os.path.join(CTL, "l7.json")  # test_waypoint.py's mesh in 10.82.0.0/24, plus policies


def l7_policies(doc):
    """The policies of the L7 cases (testdata/ctl/l7.json has them applied): deny-admin gets a
    second rule, an ALLOW policy with three rules (principal, GET/HEAD, header x-user: bob), and an
    L4 policy at the destination ztunnels that allows only the waypoint's identity."""
    for p in doc["l7Policies"]:
        if p["metadata"]["name"] == "deny-admin":
            p["spec"]["rules"] = [{"to": [{"operation": {"paths": ["/secret", "/secret/*"]}}]},
                                  {"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]
    doc["l7Policies"].append({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow-read", "namespace": "server"},
        "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "echo"}],
                 "action": "ALLOW",
                 "rules": [{"from": [{"source": {
                     "principals": ["cluster.local/ns/other/sa/other"]}}]},
                     {"to": [{"operation": {"methods": ["GET", "HEAD"]}}]},
                     {"when": [{"key": "request.headers[x-user]", "values": ["bob"]}]}]}})
    doc["policies"] = [{"name": "only-waypoint", "namespace": "server", "scope": "Namespace",
                        "action": "Allow", "rules": [[[{"principals": [
                            {"Exact": "cluster.local/ns/server/sa/waypoint"}]}]]]}]
    return doc


# (method, path, headers, verdict, HTTP status, route "ns/name#rule", deciding L7 policy
#  "ns/name#rule", backends)
L7_CASES = [
    ("GET", "/app/x", [], "allow", 200, "server/echo#2", "server/allow-read#1",
     ["server/echo.server.svc.cluster.local"]),
    ("GET", "/admin/x", [], "deny", 403, None, "server/deny-admin#1", []),
    ("GET", "/app/../admin", [], "deny", 403, None, "server/deny-admin#1", []),
    ("GET", "/v2/items?x=1", [], "allow", 200, "server/echo#0", "server/allow-read#1",
     ["server/echo-v2.server.svc.cluster.local"]),
    ("GET", "/nowhere", [], "not-found", 404, None, "server/allow-read#1", []),
    ("POST", "/app/p", [], "deny", 403, None, None, []),
    ("POST", "/app/p", ["x-user=bob"], "allow", 200, "server/echo#2", "server/allow-read#2",
     ["server/echo.server.svc.cluster.local"]),
    ("GET", "/old/page", [], "redirect", 301, "server/echo#3", "server/allow-read#1", []),
    ("GET", "/split", [], "allow", 200, "server/echo#6", "server/allow-read#1",
     ["server/echo.server.svc.cluster.local", "server/echo-v2.server.svc.cluster.local"]),
]


def explain_l7(cfg, to, method, path, headers, *extra, cwd=None):
    args = ["explain", "--config", cfg, "--from", "client", "--to", to, "--method", method,
            "--path", path]
    for h in headers:
        args += ["--header", h]
    return ctl(*args, *extra, cwd=cwd)


def l7_summary(x):
    """(verdict, status, route, deciding L7 policy, backends) of an explanation."""
    wp = [p for p in x["enforcement"] if p["point"] == "waypoint"][0]
    rt, az = wp.get("route") or {}, wp.get("authz") or {}
    route = f"{rt['name']}#{rt['rule']}" if rt.get("matched") else None
    pol = (f"{az['decidingPolicy']}#{az['decidingRule']}" if az.get("decidingPolicy")
           else None)
    return (x["verdict"], x["httpStatus"], route, pol,
            [b["service"] for b in wp.get("backends", [])])


@pytest.mark.parametrize("case", L7_CASES, ids=lambda c: f"{c[0]} {c[1]} {c[2]}")
def test_explain_l7_cases(case):
    method, path, headers, verdict, status, route, policy, backends = case
    r = explain_l7(L7, "echo.server.svc.cluster.local:80", method, path, headers, "-o", "json")
    assert r.returncode == (0 if verdict in ("allow", "redirect") else 5), r.stderr
    x = json.loads(r.stdout)
    assert l7_summary(x) == (verdict, status, route, policy, backends)
    wp = x["enforcement"][0]
    assert wp["point"] == "waypoint" and wp["peerIdentity"].endswith("/sa/client")
    # every applicable L7 policy has its own verdict; the deciding one agrees with authz
    trace = {p["policy"]: p for p in wp["policies"]}
    assert set(trace) == {"server/deny-admin", "server/allow-read"}
    if policy:
        name, rule = policy.split("#")
        assert trace[name]["matched"] is True and trace[name]["rule"] == int(rule)
    if status == 200:
        # then the destination ztunnel of every endpoint, with the waypoint as the peer
        l4 = [p for p in x["enforcement"] if p["point"] == "destination ztunnel"]
        assert l4 and all(p["peerIdentity"].endswith("/sa/waypoint") for p in l4)
        assert all(p["decidingPolicy"] == "server/only-waypoint" for p in l4)


def test_explain_l7_weights_and_l4_after_the_waypoint(tmp_path):
    x = json.loads(explain_l7(L7, "10.96.82.10:80", "GET", "/split", [], "-o", "json").stdout)
    wp = x["enforcement"][0]
    assert [(b["weight"], b["share"]) for b in wp["backends"]] == [(1, "1/4"), (3, "3/4")]
    assert wp["request"]["host"] == "10.96.82.10"
    # the destination ztunnel denies the waypoint's identity: the waypoint answers 503
    with open(L7) as f:
        doc = json.load(f)
    doc["policies"] = [{"name": "deny-waypoint", "namespace": "server", "scope": "Namespace",
                        "action": "Deny", "rules": [[[{"principals": [
                            {"Exact": "cluster.local/ns/server/sa/waypoint"}]}]]]}]
    p = tmp_path / "m.json"
    p.write_text(json.dumps(doc))
    r = explain_l7(str(p), "10.96.82.10:80", "GET", "/app/x", [], "-o", "json")
    x = json.loads(r.stdout)
    assert r.returncode == 5 and (x["verdict"], x["httpStatus"]) == ("deny", 503)
    assert x["enforcement"][-1]["reason"] == "denied by policy server/deny-waypoint rule 0"
    # path normalization as the waypoint's flags: an escaped slash rejected is a 400
    r = explain_l7(L7, "10.96.82.10:80", "GET", "/app%2Fx", [], "--reject-escaped-slashes",
                   "-o", "json")
    x = json.loads(r.stdout)
    assert r.returncode == 5 and (x["verdict"], x["httpStatus"]) == ("fail", 400)
    r = explain_l7(L7, "10.96.82.10:80", "GET", "/", [], "--path-normalization", "SOMETIMES")
    assert r.returncode == 2
    # workload-addressed traffic through the waypoint (waypointFor all in l7.json)
    x = json.loads(explain_l7(L7, "10.82.0.4:8080", "GET", "/", [], "-o", "json").stdout)
    assert (x["verdict"], x["httpStatus"]) == ("allow", 200), x["verdictReason"]
    assert x["enforcement"][-1]["workload"] == "server/server2"
    # a waypoint for services only, named by a workload: the document does not load (the
    # waypoint would refuse the tunnel with 400)
    doc["workloads"][1]["waypointFor"] = "service"
    doc["policies"] = []
    p.write_text(json.dumps(doc))
    r = explain_l7(str(p), "10.82.0.4:8080", "GET", "/", [], "-o", "json")
    assert r.returncode == 1 and "mesh config is invalid" in r.stderr, r
    assert ".workloads[3].waypoint.destination" in r.stderr and "waypointFor" in r.stderr


@pytest.mark.parametrize("name,method,path,headers", [
    ("explain-l7-allow", "GET", "/app/x", []),
    ("explain-l7-deny", "GET", "/admin/x", []),
    ("explain-l7-header", "POST", "/app/p", ["x-user=bob"]),
    ("explain-l7-v2", "GET", "/v2/items?x=1", []),
    ("explain-l7-split", "GET", "/split", []),
    ("explain-l7-404", "GET", "/nowhere", []),
    ("explain-l7-redirect", "GET", "/old/page", []),
])
def test_explain_l7_golden(name, method, path, headers):
    to = "echo.server.svc.cluster.local:80"
    r = explain_l7("l7.json", to, method, path, headers, cwd=CTL)
    golden(f"{name}.golden", r.stdout + f"exit: {r.returncode}\n")
    r = explain_l7("l7.json", to, method, path, headers, "-o", "json", cwd=CTL)
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


def test_status_against_the_ca_config(server, procs, tmp_path):
    """`status --ca`: the current config is the ETag the CA serves on /v1/config now. Ztunnel A
    follows the CA, ztunnel B a copy of the file: after a change at the CA, B is STALE until its
    copy catches up. The admin dump of the CA stays as a fallback."""
    cadir = str(tmp_path / "ca")
    subprocess.run([BIN, "ca", "init", "--trust-domain", "cluster.local", "--dir", cadir],
                   check=True, capture_output=True)
    mesh, copy = str(tmp_path / "mesh.json"), str(tmp_path / "copy.json")
    with open(os.path.join(CONFIG, "good", "localhost.json")) as f:
        doc = json.load(f)

    def write(path, d):
        with open(path + ".tmp", "w") as f:
            json.dump(d, f)
        os.rename(path + ".tmp", path)
    write(mesh, doc)
    write(copy, doc)
    tok = subprocess.run([BIN, "ca", "token", "add", "--dir", cadir, "--node", "node-a"],
                         capture_output=True, text=True, check=True).stdout.strip()
    tokfile = tmp_path / "token"
    tokfile.write_text(tok + "\n")
    os.chmod(tokfile, 0o600)
    port, ca_admin, ca_ready = free_port(), free_port(), free_port()
    procs(["ca", "serve", "--dir", cadir, "--mesh-config", mesh, "--listen",
           f"127.0.0.1:{port}", "--ip", "127.0.0.1", "--admin", f"127.0.0.1:{ca_admin}",
           "--metrics", f"127.0.0.1:{free_port()}", "--ready", f"127.0.0.1:{ca_ready}"],
          name="ca")
    root = os.path.join(cadir, "root-cert.pem")
    ca_url = f"https://127.0.0.1:{port}"
    wait_for(lambda: http("GET", f"http://127.0.0.1:{ca_ready}/healthz/ready")[0] == 200,
             what="CA ready")

    def ztunnel(src, extra, name):
        return server("ztunnel", ["--mesh-config", src, "--ca-dir", cadir, "--socks5-port", "0",
                                  "--inbound-port", str(free_port()), "--outbound-port",
                                  str(free_port()), "--hbone-port", str(free_port())] + extra,
                      name=name)
    za = ztunnel(ca_url + "/v1/config", ["--ca-root", root, "--token-file", str(tokfile)], "za")
    zb = ztunnel(copy, [], "zb")
    a, b = f"127.0.0.1:{za.admin_port}", f"127.0.0.1:{zb.admin_port}"

    def status(*extra):
        r = ctl("status", "--admin", a, "--admin", b, *extra, "-o", "json")
        return r.returncode, {x["admin"]: x for x in json.loads(r.stdout)}, r.stderr

    last = []

    def synced(*extra):
        rc, rows, err = status("--ca", ca_url, "--ca-root", root, "--token-file", str(tokfile),
                               *extra)
        last[:] = [rows, err]
        return rc, rows[f"http://{a}"]["synced"], rows[f"http://{b}"]["synced"]

    def until(want, what):
        try:
            wait_for(lambda: synced() == want, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}: {last}\n{za.proc.logtext()[-2000:]}")

    until((0, "SYNCED", "SYNCED"), "both ztunnels in sync")
    rc, rows, _ = status("--ca", ca_url, "--ca-root", root, "--token-file", str(tokfile))
    row, copy_row = rows[f"http://{a}"], rows[f"http://{b}"]
    # A got the CA's ETag with the document; B's copy hashes like the CA's source file
    assert row["caEtagFrom"] == "ca /v1/config ETag"
    assert row["httpEtag"].strip('"') == row["caEtag"] == copy_row["etag"]
    # the table: one line per ztunnel, SYNCED
    r = ctl("status", "--admin", a, "--admin", b, "--ca", ca_url, "--ca-root", root,
            "--token-file", str(tokfile))
    rows_text = r.stdout.splitlines()[1:]
    assert r.returncode == 0 and [l.split()[4] for l in rows_text] == ["SYNCED"] * 2, r.stdout
    # the CA serves a new document: A follows it, B's copy is stale (exit 1)
    doc["policies"][0]["dryRun"] = True
    write(mesh, doc)
    until((1, "SYNCED", "STALE"), "A follows the CA, B is stale")
    r = ctl("status", "--admin", a, "--admin", b, "--ca", ca_url, "--ca-root", root,
            "--token-file", str(tokfile))
    by_name = {l.split()[0]: l.split()[4] for l in r.stdout.splitlines()[1:]}
    assert r.returncode == 1 and by_name == {a: "SYNCED", b: "STALE"}, r.stdout
    write(copy, doc)
    until((0, "SYNCED", "SYNCED"), "B's copy caught up")
    # no token: a clear error; an unreachable --ca falls back to --ca-admin
    rc, _, err = status("--ca", ca_url, "--ca-root", root)
    assert rc == 1 and "HTTP 401 (pass --token-file" in err, err
    dead = f"https://127.0.0.1:{free_port()}"
    rc, rows, err = status("--ca", dead, "--ca-root", root, "--ca-admin", f"127.0.0.1:{ca_admin}")
    assert rc == 0 and "using --ca-admin" in err, err
    assert rows[f"http://{b}"]["caEtagFrom"] == "ca admin /config_dump"
    assert rows[f"http://{b}"]["synced"] == "SYNCED"


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


# ---- explain at a waypoint agrees with the live waypoint ----------------------------------------
# The topology, mesh and processes are test_waypoint.py's (its mesh_env fixture: client ztunnel,
# `ambient waypoint`, server ztunnel and two backends in three netns of 10.84.0.0/24), with
# l7_policies() applied by a reload.

needs_waypoint = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("curl"),
    reason="needs root, nft and curl")

from test_waypoint import VIP as WP_VIP, mesh as wp_mesh, mesh_env, reload as wp_reload  # noqa: E402,F401,E501
from test_waypoint import curl as wp_curl, diag as wp_diag, logs as wp_logs, split as wp_split  # noqa: E402,E501

# (method, path, curl headers, explain's verdict, HTTP status, route (the echo HTTPRoute's rule
#  matching that PathPrefix), L7 policy named in the access log, backend that answers); every
#  path is unique so its access-log line is too
L7_LIVE = [
    ("GET", "/app/live1", [], "allow", 200, "/app", None, "server1"),
    ("GET", "/admin/live2", [], "deny", 403, None, "server/deny-admin#1", None),
    ("GET", "/v2/live3", [], "allow", 200, "/v2", None, "server2"),
    ("GET", "/live4", [], "not-found", 404, None, None, None),
    ("POST", "/app/live5", [], "deny", 403, None, None, None),
    ("POST", "/app/live6", ["x-user: bob"], "allow", 200, "/app", None, "server1"),
    ("GET", "/old/live7", [], "redirect", 301, "/old", None, None),
]


def echo_rule(doc, prefix):
    """"server/echo#N": the rule of test_waypoint.py's echo route with that PathPrefix match
    (looked up, so rules added to that mesh do not break this test)."""
    (route,) = [r for r in doc["routes"] if r["metadata"]["name"] == "echo"]
    for i, rule in enumerate(route["spec"]["rules"]):
        for m in rule.get("matches", []):
            if m.get("path") == {"type": "PathPrefix", "value": prefix}:
                return f"server/echo#{i}"
    raise AssertionError(f"no rule for {prefix}")


def wait_applied(env, version):
    for p in ("za", "zb"):
        wait_for(lambda p=p: wp_logs(env[p], "mesh config applied", f"version={version}"),
                 what=f"{p} applies config version {version}")


@needs_waypoint
def test_explain_l7_agrees_with_live_waypoint(mesh_env):
    env = mesh_env
    doc = l7_policies(wp_mesh())
    wp_reload(env, doc, 2)
    wait_applied(env, 2)
    # the live verbs read the waypoint's admin API like a ztunnel's
    r = nsrun(env["w"], BIN, "ctl", "status", "--admin", "127.0.0.1:15000", "-o", "json",
              check=False)
    (row,) = json.loads(r.stdout)
    assert (row["component"], row["ready"], row["configVersion"]) == ("waypoint", "READY", 2), r
    r = nsrun(env["w"], BIN, "ctl", "certs", "--admin", "127.0.0.1:15000", check=False)
    row = r.stdout.decode().splitlines()[1].split()
    assert row[:3] == ["spiffe://cluster.local/ns/server/sa/waypoint", "Leaf", "Available"], r
    r = nsrun(env["w"], BIN, "ctl", "workloads", "--admin", "127.0.0.1:15000", "--name",
              "server2", check=False)
    assert r.stdout.decode().splitlines()[1].split()[:5] == [
        "server", "server2", "10.84.0.4", "-", "/10.84.0.2"], r
    to = f"{WP_VIP}:80"
    for method, path, hdrs, verdict, status, prefix, policy, backend in L7_LIVE:
        route = echo_rule(doc, prefix) if prefix else None
        r = explain_l7(env["path"], to, method, path, [h.replace(": ", "=") for h in hdrs],
                       "-o", "json")
        x = json.loads(r.stdout)
        got = l7_summary(x)
        assert (got[0], got[1], got[2]) == (verdict, status, route), (path, got)
        if policy:
            assert got[3] == policy, (path, got)
        extra = ["-X", method]
        for h in hdrs:
            extra += ["-H", h]
        c = wp_curl(env, f"http://{WP_VIP}{path}", *extra)
        st, _, body = wp_split(c.stdout)
        assert st == status, (path, x["verdictReason"], c.stdout, wp_diag(env))
        if backend:
            assert json.loads(body)["server"] == backend, (path, body)
        # the waypoint's access log names the same route and policy
        wait_for(lambda path=path: wp_logs(env["wp"], "request complete", f"path={path}"),
                 what=f"access log for {path}")
        line = wp_logs(env["wp"], "request complete", f"path={path}")[0]
        assert f"status={status}" in line and f"method={method}" in line, line
        assert (f"route={route}" in line) if route else ("route=server/" not in line), line
        assert (f"policy={policy}" in line) if policy else ("policy=server/" not in line), line

    # server2 names the waypoint for its own address and the waypoint takes workload traffic
    # too (waypointFor all; a service-only waypoint named by a workload does not load): explain
    # and the live waypoint agree that the workload authority is forwarded
    x = json.loads(explain_l7(env["path"], "10.84.0.4:8080", "GET", "/w", [], "-o", "json").stdout)
    assert (x["verdict"], x["httpStatus"]) == ("allow", 200), x["verdictReason"]
    assert x["enforcement"][-1]["workload"] == "server/server2"
    c = nsrun(env["a"], "curl", "-sS", "--max-time", "10", "http://10.84.0.4:8080/w",
              check=False, timeout=20)
    assert c.returncode == 0 and json.loads(c.stdout)["server"] == "server2", (c, wp_diag(env))
    wait_for(lambda: wp_logs(env["wp"], "request complete", "path=/w"),
             what="the waypoint forwards the workload authority")

    # L4 at the destination ztunnel, which sees the waypoint's identity: a DENY of that
    # identity makes the waypoint answer 503, and ztunnel B logs the policy explain names.
    doc["policies"] = [{"name": "deny-waypoint", "namespace": "server", "scope": "Namespace",
                        "action": "Deny", "rules": [[[{"principals": [
                            {"Exact": "cluster.local/ns/server/sa/waypoint"}]}]]]}]
    wp_reload(env, doc, 3)
    wait_applied(env, 3)
    x = json.loads(explain_l7(env["path"], to, "GET", "/app/live8", [], "-o", "json").stdout)
    reason = x["enforcement"][-1]["reason"]
    assert (x["verdict"], x["httpStatus"]) == ("deny", 503), x["verdictReason"]
    assert reason == "denied by policy server/deny-waypoint rule 0"
    st, _, _ = wp_split(wp_curl(env, f"http://{WP_VIP}/app/live8").stdout)
    assert st == 503, wp_diag(env)
    wait_for(lambda: wp_logs(env["zb"], reason, "spiffe://cluster.local/ns/server/sa/waypoint"),
             what="ztunnel B logs the denying policy with the waypoint's identity")


SOCKS_HOLD = (
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', 15080))\n"
    "s.sendall(b'\\x05\\x01\\x00'); assert s.recv(2) == b'\\x05\\x00'\n"
    "s.sendall(b'\\x05\\x01\\x00\\x01' + socket.inet_aton('10.82.0.2') + (8080).to_bytes(2, 'big'))\n"
    "r = s.recv(10); assert r[1] == 0, r\n"
    "print('up', flush=True)\n"
    "sys.stdin.read()\n")


@needs_root
def test_connections_lists_a_long_lived_connection(two_nodes):
    """A client holds a connection open through its ztunnel (SOCKS5 -> HBONE): the client's
    ztunnel lists it outbound, the server's inbound, with the same endpoints."""
    n = two_nodes
    p = subprocess.Popen(["ip", "netns", "exec", n["a"], sys.executable, "-c", SOCKS_HOLD],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"up\n", p.stderr.read()

        def table(ns, *extra):
            r = nsrun(ns, BIN, "ctl", "connections", "--admin", "127.0.0.1:15000", *extra,
                      check=False)
            assert r.returncode == 0, r.stderr
            return r.stdout.decode()
        wait_for(lambda: len(table(n["a"]).splitlines()) > 1 and
                 len(table(n["b"]).splitlines()) > 1, what="both ztunnels list the connection")
        out_a, out_b = table(n["a"]), table(n["b"])
        assert out_a.splitlines()[0].split() == ["WORKLOAD", "DIRECTION", "LOCAL", "REMOTE",
                                                 "REMOTE", "TARGET", "PROTOCOL"]
        (row_a,) = [l.split() for l in out_a.splitlines()[1:]]
        (row_b,) = [l.split() for l in out_b.splitlines()[1:]]
        assert row_a[:2] == ["client/client", "outbound"], out_a
        assert row_a[3:5] == ["10.82.0.2:15008", "10.82.0.2:8080"], out_a
        assert row_b[:3] == ["server/server", "inbound", "10.82.0.2:8080"], out_b
        assert row_b[4] == "10.82.0.2:8080", out_b
        assert row_a[-1] == row_b[-1] == "HBONE"
        assert row_b[3].startswith("10.82.0.1:")
        ja = json.loads(table(n["a"], "-o", "json"))
        jb = json.loads(table(n["b"], "-o", "json"))
        assert len(ja) == len(jb) == 1 and ja[0]["direction"] == "outbound"
        # --name (namespace/name or name) and --namespace filter by the workload
        assert len(table(n["b"], "--name", "nobody").splitlines()) == 1
        assert table(n["b"], "--name", "server") == table(n["b"], "--name", "server/server")
        assert len(table(n["b"], "--name", "server").splitlines()) == 2
        assert len(table(n["a"], "-n", "client").splitlines()) == 2
        assert len(table(n["a"], "-n", "server").splitlines()) == 1
        r = nsrun(n["a"], BIN, "ctl", "connections", "--admin", "127.0.0.1:15000", "--node",
                  "x", check=False)
        assert r.returncode == 2 and b"--node does not apply" in r.stderr
    finally:
        p.stdin.close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_explain_l7_tcp_port(tmp_path):
    """A service port marked TCP (appProtocols): the waypoint relays bytes with L4-only
    authorization, as pkg/l7 decides it with l7_request.tcp (a DENY rule's HTTP-only fields are
    ignored, so a paths-only DENY denies every connection; an ALLOW rule with them never
    matches)."""
    with open(os.path.join(CTL, "l7.json")) as f:
        doc = json.load(f)
    for s in doc["services"]:
        if s["name"] == "echo":
            # Port 81 stays HTTP: HTTP fields on TCP-only targets are load errors.
            s["ports"]["81"] = 8080
            s["appProtocols"] = {"80": "TCP"}
    p = tmp_path / "tcp.json"
    p.write_text(json.dumps(doc))
    to = "echo.server.svc.cluster.local:80"
    x = json.loads(explain_l7(str(p), to, "GET", "/app/x", [], "-o", "json").stdout)
    wp = [e for e in x["enforcement"] if e["point"] == "waypoint"][0]
    assert wp["request"]["protocol"] == "TCP"
    assert x["verdict"] == "deny", x["verdictReason"]
    assert wp["authz"]["reason"].endswith("server/deny-admin rule 0"), wp["authz"]
    assert "route" not in wp
    # Without the DENY: the ALLOW policy's method rule cannot match a TCP connection.
    doc["l7Policies"] = [q for q in doc["l7Policies"] if q["metadata"]["name"] != "deny-admin"]
    p.write_text(json.dumps(doc))
    r = explain_l7(str(p), to, "GET", "/app/x", [], "-o", "json")
    x = json.loads(r.stdout)
    assert r.returncode == 5 and x["verdict"] == "deny", x["verdictReason"]
    # No L7 policy at all: relayed to the service itself.
    doc["l7Policies"] = []
    p.write_text(json.dumps(doc))
    r = explain_l7(str(p), to, "GET", "/app/x", [], "-o", "json")
    x = json.loads(r.stdout)
    assert r.returncode == 0 and x["verdict"] == "allow", x["verdictReason"]
    r = explain_l7(str(p), to, "GET", "/app/x", [])
    assert r.returncode == 0 and "TCP" in r.stdout, r.stdout
