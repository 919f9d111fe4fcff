"""Fixtures for end-to-end tests of the real ambient binary: processes, ports, namespaces.

Every test cleans up what it creates (processes by PID, network namespaces by name), even when it
fails. Traffic stays on loopback or inside namespaces the tests create.
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("AMBIENT_BIN", os.path.join(ROOT, "build", "ambient"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=15.0, what="condition"):
    """Polls cond() until it returns a truthy value; fails the test after a generous deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the server may not be up yet
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def http(method, url, body=None, headers=None, timeout=5):
    """Returns (status, headers, body bytes) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def raw_http(port, data, timeout=5):
    """Sends raw bytes to 127.0.0.1:port and returns everything read until close or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except socket.timeout:
            pass
        return b"".join(chunks)


class Proc:
    """A running ambient process with its log file; stopped by PID at teardown."""

    def __init__(self, args, tmp, name="ambient", env=None):
        self.log_path = os.path.join(tmp, f"{name}-{uuid.uuid4().hex[:6]}.log")
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen([BIN] + args, stdout=self.log, stderr=subprocess.STDOUT, env=e)

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


@pytest.fixture
def procs(tmp_path):
    started = []

    def start(args, name="ambient", env=None):
        p = Proc(args, str(tmp_path), name, env)
        started.append(p)
        return p

    yield start
    stop_all(started)


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def stop_all(procs, checked=lambda p: True, only_if_running=True):
    """Stops every process (SIGTERM, by PID) and fails the test if a `checked` one did not exit 0
    (only those still running at teardown when only_if_running) or if any log holds an
    ASan/LSan/UBSan report: a clean shutdown exits 0, and under the SAN build a leak or UB report
    also fails here."""
    problems = []
    for p in procs:
        was_running = p.alive()
        rc = p.stop()
        if checked(p) and (was_running or not only_if_running) and rc not in (0, None):
            problems.append(f"{p.log_path}: exit {rc} after SIGTERM")
        log = p.logtext()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                problems.append(f"{p.log_path}: {marker}\n{log[-3000:]}")
    assert not problems, "\n".join(problems)


class Server:
    """An ambient long-running subcommand with its admin/metrics/readiness ports on loopback."""

    def __init__(self, start, sub, extra, name):
        self.admin_port = free_port()
        self.metrics_port = free_port()
        self.ready_port = free_port()
        self.proc = start(
            [sub, "--admin", f"127.0.0.1:{self.admin_port}",
             "--metrics", f"127.0.0.1:{self.metrics_port}",
             "--ready", f"127.0.0.1:{self.ready_port}"] + extra, name=name)
        wait_for(self.admin_up, what=f"{name} admin port")

    def admin_up(self):
        if not self.proc.alive():
            raise AssertionError("process exited:\n" + self.proc.logtext())
        return http("GET", self.admin("/healthz/live"))[0] in (200, 404)

    def admin(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def config_dump(self):
        st, _, body = http("GET", self.admin("/config_dump"))
        assert st == 200, body
        return json.loads(body)


@pytest.fixture
def server(procs):
    def start(sub, extra, name="ambient"):
        return Server(procs, sub, extra, name)
    return start


@pytest.fixture
def netns():
    """Creates network namespaces with unique names and deletes them at teardown."""
    made = []

    def make():
        name = "amb-" + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for n in made:
        subprocess.run(["ip", "netns", "del", n], check=False)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "wp_flags(*args): extra command-line flags for the waypoint of test_waypoint's "
        "mesh_env")
