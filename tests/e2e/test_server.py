"""The long-running runtime through `ambient ztunnel`: config loading and watching (file and HTTP),
--check-config, the admin, metrics and readiness ports, logging, shutdown."""
import glob
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN, ROOT, free_port, http, raw_http, wait_for

GOOD = os.path.join(ROOT, "testdata", "config", "good")
BAD = os.path.join(ROOT, "testdata", "config", "bad")


def doc(workload_ip="10.0.0.2", name="app"):
    return {
        "workloads": [{
            "uid": f"cluster1//v1/Pod/default/{name}", "name": name, "namespace": "default",
            "serviceAccount": name, "workloadIps": [workload_ip], "protocol": "HBONE",
            "node": "node-a", "services": {"default/app.default.svc.cluster.local": {"80": 8080}},
        }],
        "services": [{
            "name": "app", "namespace": "default", "hostname": "app.default.svc.cluster.local",
            "vips": ["/10.96.0.20"], "ports": {"80": 8080},
        }],
    }


INVALID = {"workloads": [{"uid": "w1", "namespace": "default", "workloadIps": ["10.0.0.300"],
                          "services": {}}]}
INVALID_PATH = ".workloads[0].workloadIps[0]"


def write_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    os.rename(tmp, path)


def cfg(srv):
    return srv.config_dump()["config"]


def test_check_config_good():
    for path in sorted(glob.glob(os.path.join(GOOD, "*.json"))):
        r = subprocess.run([BIN, "ztunnel", "--mesh-config", path, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (path, r.stderr)
        assert "mesh config ok" in r.stdout


def test_check_config_prints_every_error_with_path():
    bad = sorted(glob.glob(os.path.join(BAD, "*.json")))
    assert bad, "no bad configs in testdata/config/bad"
    for path in bad:
        with open(path[:-5] + ".err") as f:
            want = [l for l in f.read().splitlines() if l.strip()]
        r = subprocess.run([BIN, "ztunnel", "--mesh-config", path, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, (path, r.stdout, r.stderr)
        for line in want:
            assert line in r.stderr, (path, line, r.stderr)
        assert f"({len(want)} error" in r.stderr, (path, r.stderr)


def test_check_config_many_errors_at_once(tmp_path):
    p = tmp_path / "mesh.json"
    p.write_text(json.dumps({
        "workloads": [{"uid": "a", "namespace": "ns", "workloadIps": ["1.2.3.999"], "services": {},
                       "protocol": "QUIC"}],
        "services": [{"name": "s", "namespace": "ns", "hostname": "s.ns", "vips": [],
                      "ports": {"70000": 80}}],
    }))
    r = subprocess.run([BIN, "ztunnel", "--mesh-config", str(p), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "mesh.json: .workloads[0].workloadIps[0]" in r.stderr
    assert "mesh.json: .workloads[0].protocol" in r.stderr
    assert ".services[0].ports" in r.stderr and "70000" in r.stderr


def test_bad_flags_are_usage_errors():
    r = subprocess.run([BIN, "ztunnel", "--no-such-flag"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown flag '--no-such-flag'" in r.stderr
    r = subprocess.run([BIN, "ztunnel"], capture_output=True, text=True)
    assert r.returncode == 2 and "--mesh-config" in r.stderr
    r = subprocess.run([BIN, "ztunnel", "--mesh-config", "ftp://x/y"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and 'unsupported scheme "ftp"' in r.stderr
    r = subprocess.run([BIN, "ztunnel", "--mesh-config", "x.json", "--workers", "many"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--workers" in r.stderr


def test_env_fallback_for_flags(tmp_path):
    p = tmp_path / "mesh.json"
    p.write_text(json.dumps(doc()))
    env = dict(os.environ, AMBIENT_MESH_CONFIG=str(p), AMBIENT_CHECK_CONFIG="true")
    r = subprocess.run([BIN, "ztunnel"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "mesh config ok" in r.stdout


def test_file_source_reload_keep_last_good_and_recover(tmp_path, server):
    path = str(tmp_path / "mesh.json")
    write_atomic(path, doc("10.0.0.2"))
    srv = server("ztunnel", ["--mesh-config", path])
    c = wait_for(lambda: cfg(srv)["version"] == 1 and cfg(srv), what="first load")
    assert c["ok"] and c["lastError"] is None and c["reloadErrors"] == 0
    etag1 = c["etag"]
    assert "10.0.0.2" in json.dumps(c["snapshot"])

    # An atomic rename over the file is seen.
    write_atomic(path, doc("10.0.0.3"))
    c = wait_for(lambda: cfg(srv)["version"] == 2 and cfg(srv), what="reload after rename")
    assert c["etag"] != etag1 and "10.0.0.3" in json.dumps(c["snapshot"])

    # An in-place rewrite is seen too.
    with open(path, "w") as f:
        f.write(json.dumps(doc("10.0.0.4")))
    c = wait_for(lambda: cfg(srv)["version"] == 3 and cfg(srv), what="reload after rewrite")
    good_etag = c["etag"]

    # Invalid: the last good snapshot stays; the error with its JSON path is visible.
    write_atomic(path, INVALID)
    c = wait_for(lambda: cfg(srv)["reloadErrors"] >= 1 and cfg(srv), what="reload error")
    assert c["version"] == 3 and c["etag"] == good_etag and not c["ok"]
    assert "10.0.0.4" in json.dumps(c["snapshot"])
    assert any(INVALID_PATH in l for l in c["lastError"]), c["lastError"]
    wait_for(lambda: INVALID_PATH in srv.proc.logtext(), what="error in the log")
    st, _, body = http("GET", f"http://127.0.0.1:{srv.ready_port}/healthz/ready")
    assert st == 503  # no certificate source: the data plane is off, and it says why
    assert b"data plane off: no certificate source" in body

    # Fixed: recovers with a new version.
    write_atomic(path, doc("10.0.0.5"))
    c = wait_for(lambda: cfg(srv)["version"] == 4 and cfg(srv), what="recovery")
    assert c["ok"] and "10.0.0.5" in json.dumps(c["snapshot"])
    assert srv.proc.alive()


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp;
  scgi_temp_path {d}/tmp;
  types {{ application/json json; }}
  server {{
    listen 127.0.0.1:{port};
    root {d}/www;
    etag on;
  }}
}}
"""


@pytest.fixture
def nginx(tmp_path):
    d = tmp_path / "nginx"
    (d / "www").mkdir(parents=True)
    (d / "tmp").mkdir()
    port = free_port()
    (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port))
    p = subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: http("GET", f"http://127.0.0.1:{port}/")[0] in (403, 404),
                 what="nginx up")
        yield port, d
    finally:
        p.terminate()
        p.wait(10)


def test_http_source_etag_reload_keep_last_good_and_recover(nginx, server):
    port, d = nginx
    path = str(d / "www" / "mesh.json")
    write_atomic(path, doc("10.0.1.2"))
    url = f"http://127.0.0.1:{port}/mesh.json"
    srv = server("ztunnel", ["--mesh-config", url, "--poll-interval", "200ms"])
    c = wait_for(lambda: cfg(srv)["version"] == 1 and cfg(srv), what="first load")
    assert c["kind"] == "http" and c["httpEtag"], c

    # Polls are conditional: nginx answers 304 while the document is unchanged.
    wait_for(lambda: " 304 " in (d / "access.log").read_text(), what="a 304 from nginx")
    assert cfg(srv)["version"] == 1

    time.sleep(1.1)  # nginx's ETag has one-second mtime resolution
    write_atomic(path, doc("10.0.1.3"))
    c = wait_for(lambda: cfg(srv)["version"] == 2 and cfg(srv), what="reload over http")
    assert "10.0.1.3" in json.dumps(c["snapshot"])
    good = c["etag"]

    time.sleep(1.1)
    write_atomic(path, INVALID)
    c = wait_for(lambda: cfg(srv)["reloadErrors"] >= 1 and cfg(srv), what="reload error")
    assert c["version"] == 2 and c["etag"] == good
    assert any(INVALID_PATH in l for l in c["lastError"]), c["lastError"]
    wait_for(lambda: INVALID_PATH in srv.proc.logtext(), what="error in the log")

    time.sleep(1.1)
    write_atomic(path, doc("10.0.1.4"))
    c = wait_for(lambda: cfg(srv)["version"] == 3 and cfg(srv), what="recovery over http")
    assert c["ok"] and "10.0.1.4" in json.dumps(c["snapshot"])

    # The server going away is an error that keeps the snapshot, not a crash.
    os.unlink(path)
    wait_for(lambda: cfg(srv)["reloadErrors"] >= 2, what="404 counted as an error")
    assert cfg(srv)["version"] == 3 and srv.proc.alive()


def test_metrics_pass_promtool(tmp_path, server):
    path = str(tmp_path / "mesh.json")
    write_atomic(path, doc())
    srv = server("ztunnel", ["--mesh-config", path])
    wait_for(lambda: cfg(srv)["version"] == 1, what="first load")
    write_atomic(path, INVALID)
    wait_for(lambda: cfg(srv)["reloadErrors"] >= 1, what="reload error")
    st, hdrs, body = http("GET", f"http://127.0.0.1:{srv.metrics_port}/metrics")
    assert st == 200
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "ambient_config_reload_errors_total 1" in text
    assert 'istio_build{component="ztunnel",tag="' in text
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == b"" and r.stderr.strip() == b"", r.stdout + r.stderr


def test_admin_rejects_bad_http_and_keeps_serving(tmp_path, server):
    path = str(tmp_path / "mesh.json")
    write_atomic(path, doc())
    srv = server("ztunnel", ["--mesh-config", path])
    port = srv.admin_port
    cases = [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
        (b"GET /config_dump HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) +
         b"\r\n", b"431"),
        (b"POST /logging?level=debug HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
         b"413"),
        (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", b"505"),
    ]
    for req, want in cases:
        resp = raw_http(port, req)
        assert resp.startswith(b"HTTP/1.1 " + want), (req[:60], resp[:200])
        st, _, _ = http("GET", srv.admin("/config_dump"))
        assert st == 200, "admin stopped serving after a bad request"
    # Unknown path and wrong method.
    assert http("GET", srv.admin("/nope"))[0] == 404
    st, hdrs, _ = http("GET", srv.admin("/quitquitquit"))
    assert st == 405 and "POST" in hdrs.get("allow", "")
    # Keep-alive with pipelining: two requests in one write, two answers in order.
    resp = raw_http(port, b"GET /logging HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /healthz/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp.count(b"HTTP/1.1 200") == 2 and resp.index(b"level:") < resp.index(b"live")
    assert srv.proc.alive()


def test_logging_level_changes_at_runtime(tmp_path, server):
    path = str(tmp_path / "mesh.json")
    write_atomic(path, doc())
    srv = server("ztunnel", ["--mesh-config", path, "--log-format", "json"])
    assert http("GET", srv.admin("/logging"))[2] == b"level: info\n"
    st, _, body = http("POST", srv.admin("/logging?level=debug"), body=b"")
    assert st == 200 and body == b"level: debug\n"
    assert http("GET", srv.admin("/logging"))[2] == b"level: debug\n"
    st, _, body = http("POST", srv.admin("/logging?level=loud"), body=b"")
    assert st == 400 and b"loud" in body
    assert srv.config_dump()["settings"]["logLevel"] == "debug"
    # --log-format json: every line is one JSON object.
    wait_for(lambda: "log level changed" in srv.proc.logtext(), what="level change logged")
    for line in srv.proc.logtext().splitlines():
        j = json.loads(line)
        assert {"time", "level", "msg"} <= set(j)


def test_quitquitquit_and_sigterm_exit_cleanly(tmp_path, server):
    path = str(tmp_path / "mesh.json")
    write_atomic(path, doc())
    srv = server("ztunnel", ["--mesh-config", path])
    st, _, body = http("POST", srv.admin("/quitquitquit"), body=b"")
    assert st == 200
    assert srv.proc.p.wait(15) == 0
    assert "draining" in srv.proc.logtext()

    srv2 = server("ztunnel", ["--mesh-config", path])
    srv2.proc.p.send_signal(signal.SIGTERM)
    assert srv2.proc.p.wait(15) == 0


def test_address_in_use_is_a_clear_error(tmp_path, server, procs):
    path = str(tmp_path / "mesh.json")
    write_atomic(path, doc())
    srv = server("ztunnel", ["--mesh-config", path])
    p = procs(["ztunnel", "--mesh-config", path, "--admin", f"127.0.0.1:{srv.admin_port}",
               "--metrics", f"127.0.0.1:{free_port()}", "--ready", f"127.0.0.1:{free_port()}"])
    assert p.p.wait(15) == 1
    assert f"127.0.0.1:{srv.admin_port}" in p.logtext() and "in use" in p.logtext()
