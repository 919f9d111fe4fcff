"""The benchmark scripts (`make bench`) run once each in a quick mode, and docs/benchmarks.md's
command blocks match what they run.

docs/benchmarks.md's shell blocks fenced ```sh covered-by:tests/e2e/test_bench_docs.py belong to
the script named in the nearest heading above them (`bench/ca.sh`, `bench/l4.sh`,
`bench/l4_conns.sh`, `bench/gcm.sh`, `bench/l7.sh`). For each script this test:

1. Runs it as `make bench` does (`AMBIENT=<binary> sh bench/X.sh`, the binary from AMBIENT_BIN as
   in conftest.py), with its own knobs turned down (QUICK below: runs of 1-2 s, one repetition,
   fewer connections) and TMPDIR in the test's temporary directory. Every step still happens:
   every peer starts, every path gets its checks (200s, 0 errors, processes alive, metrics
   counted: a failing check makes the script exit 1, and this test fail), and the tables and
   command lines are printed. Asserts exit 0, the result tables (by their header and one row per
   path), and that the script left no process, netns or temporary directory behind. No timing,
   figure or ratio is asserted: these are 1-second runs on a shared machine.
2. Checks every command line of the script's doc blocks against the commands the script printed
   that it ran (the indented lines under the script's "commands" header, on stdout or stderr).
3. Checks the other lines of the blocks: `make deps` (scripts/deps.sh installs the packages the
   comment names and every tool the scripts need), `make bench` (the Makefile's rule and
   bench/run.sh run the scripts in the documented order), `[sudo] VAR=... sh bench/X.sh` (X is the
   section's script, VAR one of its knobs) and `# knobs: NAME=VALUE ...` (each a knob of the
   script, with that default).

The matcher. A doc line is prepared: `\\`-continued lines are joined, a `# comment` is dropped,
`A ; B` is two commands, `sudo` is dropped, and `...same flags...` stands for the options (from
the first `--` token on) of the first `ambient` command line above it in the same block. A
printed line is prepared: the temporary directory's real path becomes `$T`; the binary passed as
AMBIENT becomes `build/ambient`; a netns name (`ambl4c-1a2b3c`: the scripts pick a random 6-hex
tag) becomes its role letter C, S or W; an absolute path to a python3 interpreter becomes
`python3`; a leading label (`ztunnels:`) and a trailing note in parentheses are dropped; `A; B` is
two commands; `<C|S>` and `{c,s}` alternatives are expanded. Then a doc command matches a printed
command when both have the same number of whitespace-separated tokens and each pair of tokens is
equal, except for two kinds of numbers in the doc token:

- a knob value: a number standing alone (a whole token, or after a flag letter as in `-d10s`,
  and not part of an address, a name or a path) that equals the default of a knob the quick run
  changed (or of a value the script computes from knobs: RATE/10, RATE*RATE_SECS) may be the
  quick value of such a knob instead (`-d10s` for `-d1s`);
- a random port (bench/ca.sh only, whose ports come from `free_port`): the number after
  `127.0.0.1:` or after `-port` may be any number, but the same doc port must be the same
  printed port on every line of the block, and different doc ports different printed ports (so
  the wrk URL's port is the one `ca serve --listen` was given).

Everything else (flags, paths, addresses, fixed ports, order of arguments) must be identical.
Comment lines are not checked. Every doc command must match at least one printed command; the
script may print more than the doc shows.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, ROOT

DOC = os.path.join(ROOT, "docs", "benchmarks.md")
FENCE = "```sh covered-by:tests/e2e/test_bench_docs.py"

# The quick mode of each script: its own knobs, turned down. Every value is still a full run of
# every step (see the module docstring). bench/l7.sh's fixed-rate runs must last more than 1 s:
# its h2load parser reads "finished in N.NNs", and h2load prints milliseconds below 1 s.
QUICK = {
    "ca": {"DURATION": "1", "REPS": "1", "WARMUP": "1"},
    "l4": {"L4_SECS": "1", "REPS": "1", "PINGS": "100"},
    "l4_conns": {"CONNS": "150", "SETTLE": "0"},
    "gcm": {"REPS": "1"},
    "l7": {"DURATION": "1", "REPS": "1", "RATE": "100", "RATE_SECS": "2"},
}
# Values the scripts print that they compute from knobs (bench/l7.sh: h2load --rps and -n).
DERIVED = {"l7": ["RATE // 10", "RATE * RATE_SECS"]}
# Scripts whose ports are picked at random (free_port) rather than fixed.
RANDOM_PORTS = {"ca"}
# The tools each script needs that are not in its own `for t in ...; command -v` check.
EXTRA_TOOLS = {"gcm": ["make", "musl-gcc"]}
# Debian package of each tool, as scripts/deps.sh installs it.
PACKAGE = {
    "wrk": "wrk", "cfssl": "golang-cfssl", "openssl": "openssl", "python3": "python3",
    "curl": "curl", "ip": "iproute2", "nft": "nftables", "iperf3": "iperf3",
    "stunnel4": "stunnel4", "haproxy": "haproxy", "socat": "socat", "nginx": "nginx-light",
    "h2load": "nghttp2-client", "make": "make", "musl-gcc": "musl-tools",
}
# The result tables each script prints (regular expressions, one per line, multiline mode).
TABLES = {
    "ca": [r"^peer +conns +certs/s +p50_ms +p99_ms", r"^ambient +8 +[\d.]+ ", r"^cfssl +8 +[\d.]+ ",
           r"^ambient +1 +[\d.]+ ", r"^cfssl +1 +[\d.]+ ", r"^peak RSS \(VmHWM",
           r"^server logs: ambient audit \d+ issued, 0 refused; cfssl \d+ signed",
           r"^TLS negotiated with openssl s_client: ambient TLSv1\.2"],
    "l4": [r"^path +Gbit/s\(med\) +p50 us +p99 us", r"^direct +[\d.]+ +\d+ +\d+ +- +-$"]
    + [rf"^{p} +[\d.]+ +\d+ +\d+ +\d+ +[\d.]+$" for p in ("ambient", "stunnel", "haproxy")]
    + [rf"^ambient / {p} " for p in ("direct", "stunnel", "haproxy")],
    "l4_conns": [rf"^{QUICK['l4_conns']['CONNS']} open idle connections per path",
                 rf"^path +idle before +{QUICK['l4_conns']['CONNS']} open"]
    + [rf"^{p} +\d+ \(\d+\+\d+\) +\d+ \(\d+\+\d+\) +\d+ \(\d+\+\d+\) +-?[\d.]+ +\d+\+\d+$"
       for p in ("ambient", "stunnel", "haproxy")]
    + [rf"^ambient / stunnel \(RSS with {QUICK['l4_conns']['CONNS']} open\): [\d.]+ +ambient / haproxy: [\d.]+$"],
    "gcm": [r"^record +op +bearssl MB/s +128-bit MB/s +256-bit MB/s"]
    + [rf"^{n} +{op} +\d+ +\d+ +\d+ +[\d.]+$" for n in (16384, 4096, 1400) for op in ("seal", "open")],
    "l7": [r"^saturation \(median of {REPS} runs of {DURATION}s\)".format(**QUICK["l7"]),
           r"^fixed rate {RATE} req/s, {RATE_SECS}s, median of {REPS} runs".format(**QUICK["l7"]),
           r"^ambient / peer \(saturation", r"^issue 7 targets"]
    + [rf"^{p} +\d+ +\d+ " for p in ("direct", "ambient", "haproxy", "nginx")]
    + [rf"^ambient / {p} " for p in ("direct", "haproxy", "nginx")]
    + [r"^ambient h2 CPU s per 1,000 requests, user\+sys", r"^ambient h1 CPU s per 1,000 requests"]
    + [r"^ambient {p} at {RATE} req/s, CPU s per 1,000 requests, user\+sys".format(p=p, **QUICK["l7"]) for p in ("h2", "h1")]
    + [r"^wake-up floor at {RATE} req/s \(bench/floor\.c.*: [\d.]+ s per 1,000 requests".format(**QUICK["l7"]),
       r"^  h1 at {RATE} req/s / the path floor: ambient [\d.]+ / [\d.]+ \(6 wake-ups\)".format(**QUICK["l7"])],
}
STDERR_LINES = {
    "l7": [r"^bench: l7: waypoint istio_requests_total\{response_code=\"200\"\} = \d+ \(>= \d+ timed"],
}
SCRIPTS = ["ca", "l4", "l4_conns", "gcm", "l7"]
NETNS = re.compile(r"\bamb[a-z0-9]*?([csw])-[0-9a-f]{6}\b")


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def script_knobs(name):
    """{NAME: default} from the script's `NAME=${NAME:-default}` lines."""
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=\$\{\1:-([^}]*)\}$", read(f"bench/{name}.sh"), re.M))


def script_tools(name):
    m = re.search(r"^for t in ([^;]+); do\n\tcommand -v", read(f"bench/{name}.sh"), re.M)
    return (m.group(1).split() if m else []) + EXTRA_TOOLS.get(name, [])


def doc_blocks():
    """[(script, first line number, [lines])] of the blocks fenced for this test, in order."""
    blocks, script, cur, other = [], None, None, False
    for i, line in enumerate(read(DOC).splitlines(), 1):
        if cur is not None:
            if line.startswith("```"):
                blocks.append((script, cur[0], cur[1]))
                cur = None
            else:
                cur[1].append(line)
        elif other:
            other = not line.startswith("```")
        elif re.match(r"#{1,6} ", line):
            found = re.findall(r"`bench/(\w+)\.sh`", line)
            if found:
                script = found[-1]
        elif line.strip() == FENCE:
            assert script, f"docs/benchmarks.md:{i}: block under no heading naming a bench script"
            cur = (i + 1, [])
        elif line.startswith("```"):
            other = True
    return blocks


def logical_lines(lines):
    """Joins `\\` continuations; yields (comment, text) with comment True for `# ...` lines."""
    out, acc = [], ""
    for line in lines:
        if not acc and line.lstrip().startswith("#"):
            out.append((True, line.strip()))
            continue
        acc += line.strip()
        if acc.endswith("\\"):
            acc = acc[:-1].rstrip() + " "
            continue
        out.append((False, acc))
        acc = ""
    assert not acc, f"continuation at the end of a block: {acc}"
    return out


def doc_commands(lines):
    """Splits a block into (how-to lines, knob comment text, recorded command token lists)."""
    howto, knobs, recorded, in_knobs, ambient_opts = [], "", [], False, None
    for comment, text in logical_lines(lines):
        if comment:
            in_knobs = text.startswith("# knobs:") or (in_knobs and re.match(r"#\s{2,}", text) is not None)
            if in_knobs:
                knobs += " " + text.lstrip("#").replace("knobs:", "", 1)
            continue
        in_knobs = False
        text = re.sub(r"\s+#.*$", "", text)
        for cmd in text.split(" ; "):
            toks = cmd.replace("...same flags...", "...same-flags...").split()
            if toks and toks[0] == "sudo":
                toks = toks[1:]
            first = next((t for t in toks if not re.match(r"[A-Za-z_]\w*=", t)), "")
            if first in ("make", "sh"):
                howto.append(toks)
                continue
            if "...same-flags..." in toks:
                assert ambient_opts, f"'...same flags...' with no ambient line above it: {cmd}"
                k = toks.index("...same-flags...")
                assert k == len(toks) - 1, f"'...same flags...' must end the line: {cmd}"
                toks = toks[:k] + ambient_opts
            elif any(t.endswith("/ambient") for t in toks) and ambient_opts is None:
                ambient_opts = toks[next(i for i, t in enumerate(toks) if t.startswith("--")):]
            recorded.append(toks)
    return howto, knobs, recorded


def expand(cmd):
    """Expands `<A|B>` and `{a,b}` alternatives into every combination."""
    m = re.search(r"<([^<>|\s]+(?:\|[^<>|\s]+)+)>|\{([^{}\s]+(?:,[^{}\s]+)+)\}", cmd)
    if not m:
        return [cmd]
    alts = (m.group(1) or "").split("|") if m.group(1) else m.group(2).split(",")
    return [x for a in alts for x in expand(cmd[:m.start()] + a + cmd[m.end():])]


def printed_commands(out, tmpdir, ambient):
    """The command lines a script printed under its "commands" header, prepared for matching."""
    cmds, inside = [], False
    tdir = re.compile(re.escape(tmpdir.rstrip("/")) + r"/ambient-bench\.[A-Za-z0-9]+")
    for raw in out.splitlines():
        line = re.sub(r"^bench: ", "", raw)
        if re.match(r"^(\w+: )?commands\b", line):
            inside = True
            continue
        if not inside:
            continue
        if not line.startswith("  "):
            inside = False
            continue
        line = tdir.sub("$T", line.strip())
        line = re.sub(r"^[a-z][a-z ]*:\s+", "", line)
        line = re.sub(r"\s+\([^()]*\)$", "", line)
        for part in line.split(";"):
            for cmd in expand(part.strip()):
                toks = []
                for t in cmd.split():
                    if t == ambient:
                        t = "build/ambient"
                    elif re.fullmatch(r"/\S*/python3(\.\d+)?", t):
                        t = "python3"
                    toks.append(NETNS.sub(lambda m: m.group(1).upper(), t))
                if toks:
                    cmds.append(toks)
    return cmds


def knob_alternatives(name):
    """{doc number: {quick numbers}} for the knobs (and derived values) the quick run changes."""
    dflt = {k: v for k, v in script_knobs(name).items() if re.fullmatch(r"\d+", v)}
    quick = dict(dflt, **QUICK[name])
    exprs = [k for k in QUICK[name] if k in dflt] + DERIVED.get(name, [])
    alts = {}
    for e in exprs:
        d = str(eval(e, {}, {k: int(v) for k, v in dflt.items()}))  # noqa: S307 (constant table)
        q = str(eval(e, {}, {k: int(v) for k, v in quick.items()}))  # noqa: S307
        if d != q:
            alts.setdefault(d, set()).add(q)
    return alts


def token_match(doc, got, prev, alts, random_ports, ports):
    """Matches one doc token to one printed token; returns the port bindings it needs, or None."""
    pat, slots, pos = "", [], 0
    for m in re.finditer(r"\d+", doc):
        s, e, n = m.start(), m.end(), m.group()
        port = random_ports and ((doc[:s].endswith("127.0.0.1:")) or (prev == "-port" and (s, e) == (0, len(doc))))
        before, after = doc[:s], doc[e:]
        loose = not port and (before == "" or re.search(r"(^-[A-Za-z]+|[^\w.:])$", before)) and \
            (after in ("", "s") or re.match(r"[^\w.:]", after))
        if not port and not (loose and n in alts):
            continue
        pat += re.escape(doc[pos:s])
        if port:
            pat += r"(\d+)"
            slots.append(n)
        else:
            pat += "(?:" + "|".join(re.escape(x) for x in sorted({n} | alts[n])) + ")"
        pos = e
    pat += re.escape(doc[pos:])
    m = re.fullmatch(pat, got)
    if not m:
        return None
    need = dict(zip(slots, m.groups()))
    for d, g in need.items():
        if ports.get(d, g) != g or any(g == v and k != d for k, v in ports.items()):
            return None
    return need


def command_match(doc, got, alts, random_ports, ports):
    if len(doc) != len(got):
        return None
    need = {}
    for i, (d, g) in enumerate(zip(doc, got)):
        n = token_match(d, g, doc[i - 1] if i else "", alts, random_ports, dict(ports, **need))
        if n is None:
            return None
        need.update(n)
    return need


def check_knob_comment(name, text):
    knobs = script_knobs(name)
    pairs = re.findall(r"\b([A-Z][A-Z0-9_]*)=(\"[^\"]*\"|\S+)", text)
    assert pairs, f"{name}: empty '# knobs:' line"
    for k, v in pairs:
        v = v.strip('"')
        if k == "BENCH_KEEP":
            assert "BENCH_KEEP" in read("bench/lib.sh")
            continue
        assert k in knobs, f"docs/benchmarks.md lists knob {k}, bench/{name}.sh has no {k}=${{{k}:-...}}"
        if knobs[k] != "":  # an empty default is a switch; the doc shows how to turn it on
            assert v == knobs[k], f"docs/benchmarks.md: {k}={v}, bench/{name}.sh's default is {knobs[k]!r}"
    documented = {k for k, _ in pairs}
    missing = set(knobs) - documented - {"AMBIENT"}
    assert not missing, f"bench/{name}.sh knobs missing from docs/benchmarks.md's '# knobs:' line: {missing}"


def deps_packages():
    m = re.search(r'^PKGS="([^"]*)"', read("scripts/deps.sh"), re.M)
    assert m, "scripts/deps.sh: no PKGS=\"...\" list"
    return set(m.group(1).replace("\\", " ").split())


def check_howto(name, toks, comment_text):
    words = [t for t in toks if not re.match(r"[A-Za-z_]\w*=", t)]
    env = dict(t.split("=", 1) for t in toks if re.match(r"[A-Za-z_]\w*=", t))
    if words == ["make", "deps"]:
        pkgs = deps_packages()
        m = re.search(r"installs ([^()]*)", comment_text)
        named = [w.strip() for w in m.group(1).split(",")] if m else []
        for p in named:
            assert p in pkgs, f"docs/benchmarks.md says make deps installs {p}; scripts/deps.sh does not"
        for s in SCRIPTS:
            for t in script_tools(s):
                assert t in PACKAGE, f"bench/{s}.sh needs {t}: add its Debian package to PACKAGE here"
                assert PACKAGE[t] in pkgs, f"bench/{s}.sh needs {t}; scripts/deps.sh does not install {PACKAGE[t]}"
        return
    if words == ["make", "bench"]:
        mk = read("Makefile")
        assert re.search(r"^bench: \$\(OUT\)/ambient\n\tAMBIENT=\$\(OUT\)/ambient sh bench/run.sh$", mk, re.M), \
            "Makefile: the bench rule no longer builds $(OUT)/ambient and runs AMBIENT=$(OUT)/ambient sh bench/run.sh"
        runs = re.findall(r"^sh bench/(\w+)\.sh$", read("bench/run.sh"), re.M)
        assert runs == ["ca", "l4", "l4_conns", "l7"], f"bench/run.sh runs {runs}"
        return
    assert words[:1] == ["sh"] and len(words) == 2, f"unexpected how-to line: {' '.join(toks)}"
    assert words[1] == f"bench/{name}.sh", f"{' '.join(toks)} under bench/{name}.sh's heading"
    knobs = script_knobs(name)
    for k, v in env.items():
        if k == "AMBIENT":
            assert v == "build/ambient"
        else:
            assert k in knobs, f"{' '.join(toks)}: bench/{name}.sh has no knob {k}"


@pytest.fixture(scope="module")
def blocks():
    b = doc_blocks()
    assert sorted({s for s, _, _ in b}) == sorted(SCRIPTS), \
        f"docs/benchmarks.md: blocks covered by this test for {sorted({s for s, _, _ in b})}, expected {SCRIPTS}"
    return b


def test_doc_how_to_lines(blocks):
    """make deps / make bench / sh bench/X.sh lines and the knob lists, without running anything."""
    seen = set()
    for name, start, lines in blocks:
        howto, knobs, _ = doc_commands(lines)
        if knobs:
            check_knob_comment(name, knobs)
        comments = {}
        for comment, text in logical_lines(lines):
            if not comment:
                m = re.match(r"(.*?)\s+#(.*)$", text)
                if m:
                    comments[m.group(1).strip()] = m.group(2)
        for toks in howto:
            text = " ".join(toks)
            check_howto(name, toks, next((c for k, c in comments.items() if k.endswith(text)), ""))
            seen.add(text)
    assert {"make deps", "make bench"} <= seen


def leftovers(tmpdir):
    """PIDs of processes whose command line or working directory mentions the temporary directory."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tmpdir in cmd:
            found.append(f"{pid}: {cmd}")
    return found


@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_script_quick(name, blocks, tmp_path):
    if os.geteuid() != 0 and name in ("l4", "l4_conns", "l7"):
        pytest.skip("needs root (network namespaces)")
    for t in script_tools(name):
        if shutil.which(t) is None:
            pytest.skip(f"{t} is not installed (scripts/deps.sh installs {PACKAGE.get(t, '?')}: run make deps)")
    if name == "gcm" and not os.path.exists(os.path.join(ROOT, "vendor/out/musl/lib/libbearssl.a")):
        pytest.skip("vendor/out/musl is not built (run make)")
    ambient = os.path.abspath(BIN)
    assert os.access(ambient, os.X_OK), f"no binary at {ambient}"
    for k in QUICK[name]:
        assert k in script_knobs(name), f"bench/{name}.sh has no knob {k}"
    tmpdir = str(tmp_path)
    env = dict(os.environ, AMBIENT=ambient, TMPDIR=tmpdir, **QUICK[name])
    for k in ("BENCH_KEEP", "PERF"):
        env.pop(k, None)
    if name == "gcm":
        env["OUT"] = os.path.join(tmpdir, "gcm-build")
    netns_before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    p = subprocess.Popen(["sh", f"bench/{name}.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=900)  # a hang guard, not a timing assertion
    except subprocess.TimeoutExpired:
        p.terminate()  # the script's trap stops exactly the processes it started
        out, err = p.communicate(timeout=120)
        pytest.fail(f"bench/{name}.sh still running after 900 s\n{out[-3000:]}\n{err[-3000:]}")
    report = f"bench/{name}.sh exit {p.returncode}\n--- stdout\n{out[-6000:]}\n--- stderr\n{err[-6000:]}"
    assert p.returncode == 0, report
    if name == "gcm" and "no AES-NI/PCLMUL on this CPU" in out:
        pytest.skip("no AES-NI/PCLMUL on this CPU: bench/gcm.sh has nothing to compare")
    for pat in TABLES[name]:
        assert re.search(pat, out, re.M), f"no line matching {pat!r}\n{report}"
    for pat in STDERR_LINES.get(name, []):
        assert re.search(pat, err, re.M), f"no stderr line matching {pat!r}\n{report}"

    # What the script started is gone: its temporary directory, its processes, its netns.
    assert not [f for f in os.listdir(tmpdir) if f.startswith("ambient-bench.")], "temporary directory left"
    assert not leftovers(tmpdir), f"processes left: {leftovers(tmpdir)}"
    for tag in set(re.findall(r"\bamb[a-z0-9]*?[csw]-([0-9a-f]{6})\b", out + err)):
        left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if n.endswith("-" + tag) and n not in netns_before]
        assert not left, f"netns left: {left}"

    # Every recorded command line of the doc is one the script printed that it ran.
    printed = printed_commands(out, tmpdir, ambient) + printed_commands(err, tmpdir, ambient)
    alts = knob_alternatives(name)
    checked = 0
    for _, start, lines in (b for b in blocks if b[0] == name):
        ports = {}
        for doc in doc_commands(lines)[2]:
            for got in printed:
                need = command_match(doc, got, alts, name in RANDOM_PORTS, ports)
                if need is not None:
                    ports.update(need)
                    break
            else:
                shown = "\n".join("  " + " ".join(c) for c in printed)
                pytest.fail(f"docs/benchmarks.md (block at line {start}): no command printed by "
                            f"bench/{name}.sh matches\n  {' '.join(doc)}\nprinted:\n{shown}")
            checked += 1
    if name != "gcm":
        assert checked, f"docs/benchmarks.md shows no command line of bench/{name}.sh"
