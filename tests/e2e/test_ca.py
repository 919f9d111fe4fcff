"""`ambient ca`: init/token/issue offline, and `ca serve` over HTTPS with real clients (curl,
openssl, python ssl), node authorization, refusals, long-poll config delivery, restarts."""
import concurrent.futures
import http.client as httpclient
import json
import os
import ssl
import stat
import subprocess
import time

import pytest

from conftest import BIN, free_port, http, wait_for

TD = "cluster.local"
APP = f"spiffe://{TD}/ns/default/sa/app"


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def amb(*args):
    return run([BIN] + list(args))


def openssl(*args, **kw):
    r = run(["openssl"] + list(args), **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout


def mesh(node="node-a", ip="10.0.0.2"):
    return {"workloads": [{"uid": "w1", "name": "app", "namespace": "default",
                           "serviceAccount": "app", "workloadIps": [ip], "node": node,
                           "services": {}}]}


def make_csr(d, identity=APP, curve="prime256v1", name="w"):
    key, csr = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr")
    openssl("ecparam", "-name", curve, "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/", "-addext",
            f"subjectAltName=URI:{identity}", "-out", csr)
    return open(csr).read()


@pytest.fixture
def cadir(tmp_path):
    d = str(tmp_path / "ca")
    r = amb("ca", "init", "--trust-domain", TD, "--dir", d)
    assert r.returncode == 0, r.stderr
    return d


def test_ca_usage():
    r = amb("ca")
    assert r.returncode == 2 and "usage: ambient ca <command>" in r.stderr
    r = amb("ca", "frob")
    assert r.returncode == 2 and "unknown command 'frob'" in r.stderr
    r = amb("ca", "init", "--dir", "/nonexistent/x")
    assert r.returncode == 2 and "--trust-domain is required" in r.stderr
    r = amb("ca", "serve", "--mesh-config", "x.json")
    assert r.returncode == 2 and "--dir is required" in r.stderr


def test_init_layout_permissions_and_no_overwrite(cadir):
    for f in ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"):
        assert os.path.exists(os.path.join(cadir, f))
    assert stat.S_IMODE(os.stat(os.path.join(cadir, "ca-key.pem")).st_mode) == 0o600
    text = openssl("x509", "-in", os.path.join(cadir, "root-cert.pem"), "-noout", "-text")
    assert "CA:TRUE" in text and "Certificate Sign, CRL Sign" in text
    assert f"O = {TD}" in text and "prime256v1" in text
    before = open(os.path.join(cadir, "ca-key.pem")).read()
    r = amb("ca", "init", "--trust-domain", TD, "--dir", cadir)
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    assert open(os.path.join(cadir, "ca-key.pem")).read() == before
    r = amb("ca", "init", "--trust-domain", TD, "--dir", cadir, "--force")
    assert r.returncode == 0 and open(os.path.join(cadir, "ca-key.pem")).read() != before
    r = amb("ca", "init", "--trust-domain", "Bad_Domain!", "--dir", cadir + "2")
    assert r.returncode == 1 and "trust-domain" in r.stderr


def test_issue_offline_openssl_accepts(cadir, tmp_path):
    out = str(tmp_path / "out")
    r = amb("ca", "issue", "--dir", cadir, "--identity", APP, "--out", out, "--ttl", "1h")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(os.path.join(out, "key.pem")).st_mode) == 0o600
    openssl("verify", "-CAfile", f"{out}/root-cert.pem", "-untrusted", f"{out}/chain.pem",
            f"{out}/cert.pem")
    text = openssl("x509", "-in", f"{out}/cert.pem", "-noout", "-text")
    assert "X509v3 Subject Alternative Name: critical" in text and f"URI:{APP}" in text
    assert "X509v3 Key Usage: critical" in text and "Digital Signature" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text and "Subject Key Identifier" in text
    assert "Authority Key Identifier" in text
    assert openssl("x509", "-in", f"{out}/cert.pem", "-noout", "-subject").strip() == "subject="
    # The key matches the certificate.
    pub1 = openssl("pkey", "-in", f"{out}/key.pem", "-pubout")
    pub2 = openssl("x509", "-in", f"{out}/cert.pem", "-noout", "-pubkey")
    assert pub1 == pub2
    # Outside the trust domain: refused.
    r = amb("ca", "issue", "--dir", cadir, "--identity", "spiffe://other.td/ns/a/sa/b",
            "--out", out)
    assert r.returncode == 1 and "outside the trust domain" in r.stderr


def test_plugin_intermediate_chain(tmp_path):
    d = str(tmp_path)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/root.key")
    openssl("req", "-x509", "-new", "-key", f"{d}/root.key", "-subj", "/O=cluster.local/CN=root",
            "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign", "-out", f"{d}/root.pem")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/int.key")
    openssl("req", "-new", "-key", f"{d}/int.key", "-subj", "/O=cluster.local/CN=intermediate",
            "-out", f"{d}/int.csr")
    with open(f"{d}/ext.cnf", "w") as f:
        f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-in", f"{d}/int.csr", "-CA", f"{d}/root.pem", "-CAkey",
            f"{d}/root.key", "-CAcreateserial", "-days", "20", "-extfile", f"{d}/ext.cnf",
            "-out", f"{d}/int.pem")
    cacerts = tmp_path / "cacerts"
    cacerts.mkdir()
    (cacerts / "ca-cert.pem").write_text(open(f"{d}/int.pem").read())
    (cacerts / "ca-key.pem").write_text(open(f"{d}/int.key").read())
    os.chmod(cacerts / "ca-key.pem", 0o600)
    (cacerts / "cert-chain.pem").write_text(open(f"{d}/int.pem").read() +
                                            open(f"{d}/root.pem").read())
    (cacerts / "root-cert.pem").write_text(open(f"{d}/root.pem").read())
    out = str(tmp_path / "out")
    r = amb("ca", "issue", "--dir", str(cacerts), "--identity", APP, "--out", out)
    assert r.returncode == 0, r.stderr
    openssl("verify", "-CAfile", f"{out}/root-cert.pem", "-untrusted", f"{out}/chain.pem",
            f"{out}/cert.pem")
    assert open(f"{out}/chain.pem").read().count("BEGIN CERTIFICATE") == 2  # leaf + int
    # A world-readable key is refused with the fix spelled out.
    os.chmod(cacerts / "ca-key.pem", 0o644)
    r = amb("ca", "issue", "--dir", str(cacerts), "--identity", APP, "--out", out)
    assert r.returncode == 1 and "chmod 600" in r.stderr


def test_tokens_add_list_revoke(cadir):
    r = amb("ca", "token", "add", "--dir", cadir, "--node", "node-a")
    assert r.returncode == 0
    tok = r.stdout.strip()
    assert tok.startswith("amb1.") and len(tok) == 48
    stored = open(os.path.join(cadir, "tokens.json")).read()
    assert tok not in stored and tok[5:] not in stored
    assert stat.S_IMODE(os.stat(os.path.join(cadir, "tokens.json")).st_mode) == 0o600
    r = amb("ca", "token", "list", "--dir", cadir)
    assert "node-a" in r.stdout and tok not in r.stdout
    r = amb("ca", "token", "revoke", "--dir", cadir, "--node", "node-a")
    assert r.returncode == 0 and "revoked 1 token" in r.stdout
    r = amb("ca", "token", "revoke", "--dir", cadir, "--node", "node-a")
    assert r.returncode == 1


class CA:
    def __init__(self, procs, cadir, meshfile, extra=(), name="ca"):
        self.port = free_port()
        self.admin_port = free_port()
        self.cadir = cadir
        self.proc = procs(["ca", "serve", "--dir", cadir, "--mesh-config", meshfile,
                           "--listen", f"127.0.0.1:{self.port}", "--ip", "127.0.0.1",
                           "--dns", "ca.test", "--admin", f"127.0.0.1:{self.admin_port}",
                           "--metrics", f"127.0.0.1:{free_port()}",
                           "--ready", f"127.0.0.1:{free_port()}"] + list(extra), name=name)
        self.ctx = ssl.create_default_context(cafile=os.path.join(cadir, "root-cert.pem"))
        wait_for(lambda: self.alive_check() and self.request("GET", "/v1/roots")[0] == 200,
                 what="ca serve up")

    def alive_check(self):
        if not self.proc.alive():
            raise AssertionError("ca exited:\n" + self.proc.logtext())
        return True

    def request(self, method, path, body=None, token=None, headers=None, timeout=10):
        c = httpclient.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                        timeout=timeout)
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def sign(self, token, csr, identity=APP, ttl=None):
        req = {"csr": csr, "identity": identity}
        if ttl is not None:
            req["ttlSeconds"] = ttl
        return self.request("POST", "/v1/certificates", json.dumps(req).encode(), token)


@pytest.fixture
def ca_env(cadir, tmp_path, procs):
    meshfile = str(tmp_path / "mesh.json")
    with open(meshfile, "w") as f:
        json.dump(mesh(), f)
    tok = amb("ca", "token", "add", "--dir", cadir, "--node", "node-a").stdout.strip()
    other = amb("ca", "token", "add", "--dir", cadir, "--node", "node-b").stdout.strip()
    return cadir, meshfile, tok, other, procs


def test_serve_issues_chain_that_verifies_curl(ca_env, tmp_path):
    cadir, meshfile, tok, _, procs = ca_env
    ca = CA(procs, cadir, meshfile)
    csr = make_csr(str(tmp_path))
    body = tmp_path / "req.json"
    body.write_text(json.dumps({"csr": csr, "identity": APP}))
    r = run(["curl", "-sS", "--cacert", f"{cadir}/root-cert.pem",
             f"https://127.0.0.1:{ca.port}/v1/certificates", "-H", f"Authorization: Bearer {tok}",
             "--data-binary", f"@{body}"])
    assert r.returncode == 0, r.stderr
    resp = json.loads(r.stdout)
    chain = resp["certChain"]
    assert len(chain) == 2 and resp["ttlSeconds"] == 86400 and resp["warnings"] == []
    (tmp_path / "leaf.pem").write_text(chain[0])
    (tmp_path / "root.pem").write_text(chain[-1])
    openssl("verify", "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "leaf.pem"))
    text = openssl("x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-text")
    assert f"URI:{APP}" in text
    # The serving certificate carries the CA's own identity and the DNS/IP SANs asked for.
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{ca.port}", "-tls1_2",
             "-CAfile", f"{cadir}/root-cert.pem", "-verify_return_error", "-showcerts"],
            input="")
    assert "Verify return code: 0 (ok)" in r.stdout, r.stdout + r.stderr
    # Audit line.
    wait_for(lambda: "event=issued node=node-a identity=" + APP in ca.proc.logtext(),
             what="audit line")
    # TLS 1.3 only clients are refused (TLS 1.2 server).
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{ca.port}", "-tls1_3"], input="")
    assert "Cipher is (NONE)" in r.stdout or r.returncode != 0


def test_serve_refusals(ca_env, tmp_path):
    cadir, meshfile, tok, other, procs = ca_env
    ca = CA(procs, cadir, meshfile, ["--rate-limit", "1", "--rate-burst", "100"])
    csr = make_csr(str(tmp_path))
    st, _, body = ca.sign(None, csr)
    assert st == 401 and b"missing Authorization" in body
    st, _, body = ca.sign("amb1.not-a-token", csr)
    assert st == 401 and b"unknown or revoked token" in body
    st, _, body = ca.request("POST", "/v1/certificates", b"{not json", tok)
    assert st == 400 and b"body" in body
    st, _, body = ca.request("POST", "/v1/certificates", b'{"csr": 1, "identity": "x"}', tok)
    assert st == 400 and b".csr: want a string" in body
    st, _, body = ca.request("POST", "/v1/certificates",
                             json.dumps({"csr": csr, "identity": APP, "extra": 1}).encode(), tok)
    assert st == 400 and b"unknown field" in body
    st, _, body = ca.sign(tok, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                               "-----END CERTIFICATE REQUEST-----\n")
    assert st == 400 and b"csr:" in body
    # A CSR whose signature does not verify.
    lines = csr.splitlines()
    mid = len(lines) // 2
    bad = list(lines)
    bad[mid] = bad[mid][:10] + ("A" if bad[mid][10] != "A" else "B") + bad[mid][11:]
    st, _, body = ca.sign(tok, "\n".join(bad) + "\n")
    assert st == 400, body
    # A P-384 CSR is refused.
    st, _, body = ca.sign(tok, make_csr(str(tmp_path), curve="secp384r1", name="p384"))
    assert st == 400 and b"P-256" in body, body
    # Identity not on the caller's node, and outside the trust domain.
    st, _, body = ca.sign(other, csr)
    assert st == 403 and b"node node-b runs no workload" in body
    st, _, body = ca.sign(tok, csr, identity="spiffe://evil.td/ns/default/sa/app")
    assert st == 403 and b"outside the trust domain" in body
    st, _, body = ca.sign(tok, csr, identity="not a spiffe id")
    assert st == 400 and b"identity" in body
    # The SAN comes from the requested identity, never from the CSR.
    st, _, body = ca.sign(tok, make_csr(str(tmp_path), identity="spiffe://cluster.local/ns/x/sa/y",
                                        name="other"))
    assert st == 200, body
    leaf = json.loads(body)["certChain"][0]
    (tmp_path / "l.pem").write_text(leaf)
    text = openssl("x509", "-in", str(tmp_path / "l.pem"), "-noout", "-text")
    assert f"URI:{APP}" in text and "ns/x/sa/y" not in text
    # TTL over the maximum is clamped, and the response says so.
    st, _, body = ca.sign(tok, csr, ttl=100 * 86400)
    r = json.loads(body)
    assert st == 200 and r["ttlSeconds"] == 90 * 86400 and "clamped" in r["warnings"][0]
    # Over 64 KiB: 413.
    st, _, body = ca.request("POST", "/v1/certificates", b"{" + b" " * 70000 + b"}", tok)
    assert st == 413
    # Every refusal is audited.
    log = ca.proc.logtext()
    assert log.count("event=refused") >= 11
    assert "status=413" in log and "status=403" in log and "status=401" in log
    assert ca.proc.alive()


def test_serve_rate_limit(ca_env, tmp_path):
    cadir, meshfile, tok, _, procs = ca_env
    ca = CA(procs, cadir, meshfile, ["--rate-limit", "1", "--rate-burst", "2"])
    csr = make_csr(str(tmp_path))
    results = [ca.sign(tok, csr) for _ in range(4)]
    codes = [r[0] for r in results]
    assert codes[:2] == [200, 200] and 429 in codes[2:], codes
    st, hdrs, body = next(r for r in results if r[0] == 429)
    assert int(hdrs["retry-after"]) >= 1 and b"exceeded" in body
    assert 'reason="rate_limited"' in http("GET", f"http://127.0.0.1:{ca.admin_port}/metrics")[
        2].decode()


def test_serve_config_long_poll_and_restart(ca_env, tmp_path):
    cadir, meshfile, tok, _, procs = ca_env
    ca = CA(procs, cadir, meshfile)
    st, hdrs, body = ca.request("GET", "/v1/config", token=tok)
    assert st == 200 and hdrs["x-ambient-watch"] == "1"
    etag = hdrs["etag"]
    assert "10.0.0.2" in body.decode()
    assert ca.request("GET", "/v1/config")[0] == 401
    st, _, _ = ca.request("GET", "/v1/config", token=tok, headers={"If-None-Match": etag})
    assert st == 304
    # Many waiting clients are answered at once when the document changes.
    path = f"/v1/config?watch={etag.strip(chr(34))}&timeoutSeconds=30"
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(ca.request, "GET", path, None, tok, None, 40) for _ in range(6)]
        wait_for(lambda: json.loads(http("GET", f"http://127.0.0.1:{ca.admin_port}/config_dump")
                                    [2])["ca"]["configWatchers"] == 6, what="6 waiters")
        with open(meshfile + ".tmp", "w") as f:
            json.dump(mesh(ip="10.0.0.7"), f)
        os.rename(meshfile + ".tmp", meshfile)
        results = [f.result(timeout=30) for f in futs]
    for st, hdrs, body in results:
        assert st == 200 and "10.0.0.7" in body.decode() and hdrs["etag"] != etag
    # A long-poll that sees no change ends with 304 after its timeout.
    etag2 = results[0][1]["etag"].strip('"')
    st, _, _ = ca.request("GET", f"/v1/config?watch={etag2}&timeoutSeconds=1", token=tok)
    assert st == 304
    roots_before = ca.request("GET", "/v1/roots")[2]
    # Restart: the root and the tokens survive.
    assert ca.proc.stop() == 0
    ca2 = CA(procs, cadir, meshfile, name="ca2")
    assert ca2.request("GET", "/v1/roots")[2] == roots_before
    st, _, _ = ca2.sign(tok, make_csr(str(tmp_path)))
    assert st == 200


def test_ztunnel_follows_the_ca_config_over_https(ca_env, tmp_path, server):
    cadir, meshfile, tok, _, procs = ca_env
    ca = CA(procs, cadir, meshfile)
    tokfile = tmp_path / "token"
    tokfile.write_text(tok + "\n")
    os.chmod(tokfile, 0o600)
    zt = server("ztunnel", ["--mesh-config", f"https://127.0.0.1:{ca.port}/v1/config",
                            "--ca-root", f"{cadir}/root-cert.pem", "--token-file", str(tokfile)])
    c = wait_for(lambda: zt.config_dump()["config"]["version"] == 1 and zt.config_dump()["config"],
                 what="ztunnel loads config from the CA")
    assert c["kind"] == "https"
    wait_for(lambda: zt.config_dump()["config"]["longPoll"], what="long-poll in use")
    with open(meshfile + ".tmp", "w") as f:
        json.dump(mesh(ip="10.0.0.8"), f)
    os.rename(meshfile + ".tmp", meshfile)
    c = wait_for(lambda: zt.config_dump()["config"]["version"] == 2 and zt.config_dump()["config"],
                 what="change pushed by long-poll")
    assert "10.0.0.8" in json.dumps(c["snapshot"])
    assert tok not in zt.proc.logtext() and tok not in ca.proc.logtext()


def test_ca_metrics_pass_promtool(ca_env, tmp_path):
    cadir, meshfile, tok, _, procs = ca_env
    ca = CA(procs, cadir, meshfile)
    ca.sign(tok, make_csr(str(tmp_path)))
    ca.sign(None, "x")
    st, _, body = http("GET", f"http://127.0.0.1:{ca.admin_port}/metrics")
    text = body.decode()
    assert "ambient_ca_certificates_issued_total 1" in text
    assert 'ambient_ca_certificate_refusals_total{reason="unauthenticated"} 1' in text
    assert "ambient_ca_signing_duration_seconds_count 1" in text
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert r.returncode == 0 and r.stdout.strip() == b"", r.stdout + r.stderr
