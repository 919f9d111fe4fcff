#!/bin/sh
# Keeps every command the docs show exercised: runs the shell blocks marked for checking, and
# makes sure every other shell block says which test covers it.
#
#   sh scripts/doccheck.sh [FILE.md ...]        (default: README.md and docs/*.md)
#
# The opening fence of a block says what happens to it:
#
#   ```sh check                      run here (below)
#   ```sh covered-by:PATH            PATH (from the repository root, e.g. tests/e2e/test_cni.py)
#                                    must exist and mention the block's commands: for each command
#                                    line, `ambient` and its subcommand words ("ca token add"), or
#                                    any other program and its first word ("make demo", "ip netns");
#                                    plain shell utilities (cd, cp, curl, python3, ...) are skipped.
#                                    Also ```console / ```text covered-by:PATH (a `$ ` transcript,
#                                    a synopsis).
#   ```sh not-tested: WHY            nothing runs it (needs systemd, a docker daemon, the Debian
#                                    archive, ...); listed as "untested" with the reason, not a failure
#
# Any other ```sh / ```bash / ```shell / ```console block, and a plain ``` block holding a `$ `
# command line, fails ("unmarked"). Files in DOCCHECK_PENDING (a space-separated list; default none)
# only get a "todo" line for their unmarked blocks (for docs still being edited).
#
# The checked blocks of one file run in order, as a reader would type them, each with `sh -e`, in
# one fresh working directory and one fresh network namespace of their own (lo up, and a veth pair
# with 10.86.0.1/24 so the "host" has an address), with a private /tmp (a directory of the run,
# bind-mounted), `ambient` on PATH and also as ./build/ambient (AMBIENT_BIN, default
# build/ambient), and ./testdata, a copy of the repository's. A block fails on the first failing
# command or after DOCCHECK_TIMEOUT seconds (default 30). Afterwards every process left in the
# namespace is killed and the namespace and directory are removed (DOCCHECK_KEEP=1 keeps the
# directory, for debugging). Needs root. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
BIN=${AMBIENT_BIN:-$ROOT/build/ambient}
case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac
TIMEOUT=${DOCCHECK_TIMEOUT:-30}
PENDING=${DOCCHECK_PENDING-}
[ $# -gt 0 ] || set -- README.md docs/*.md

if [ "$(id -u)" != 0 ]; then
	echo "doccheck: needs root (network namespaces)"
	echo "0 passed, 1 failed"
	exit 1
fi
[ -x "$BIN" ] || { echo "doccheck: no binary at $BIN"; echo "0 passed, 1 failed"; exit 1; }

pass=0
fail=0
untested=0
todo=0
ns=""
work=""
finish_file() {
	if [ -n "$ns" ]; then
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] && kill $pids 2>/dev/null
		i=0
		while [ $i -lt 30 ] && [ -n "$(ip netns pids "$ns" 2>/dev/null)" ]; do sleep 0.1; i=$((i + 1)); done
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] && kill -9 $pids 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	fi
	if [ -n "$work" ]; then
		if [ "${DOCCHECK_KEEP:-0}" = 1 ]; then echo "  kept $work"; else rm -rf "$work"; fi
	fi
	ns=""
	work=""
}
trap 'finish_file' EXIT
trap 'finish_file; exit 130' INT TERM HUP

# One line per fenced block that matters, tab-separated:
#   LINE  check
#   LINE  covered  PATH  WORD...      (the command words the file must mention)
#   LINE  untested WHY
#   LINE  unmarked INFO
blocks() {
	awk '
	function skip(c) {
		return c ~ /^(cd|mkdir|cp|mv|rm|ln|install|chmod|chown|echo|printf|cat|tee|touch|grep|sed|awk|head|tail|sort|wc|cut|tr|sleep|until|while|if|then|else|fi|for|do|done|export|set|test|true|false|kill|wait|curl|wget|python3|python|socat|nc|openssl|hostname|id|env|sudo|runuser|exec|time|timeout)$/
	}
	function words(line,   n, t, i, c, w, k) {
		n = split(line, t, /[ \t]+/)
		i = 1
		while (i <= n && (t[i] == "" || t[i] == "sudo" || t[i] ~ /^[A-Za-z_][A-Za-z0-9_]*=/)) i++
		if (i > n) return ""
		c = t[i]; sub(/.*\//, "", c)
		if (c == "ambient") {
			w = ""
			for (k = i + 1; k <= n && k <= i + 3 && t[k] ~ /^[a-z][a-z0-9-]*$/; k++) w = w " " t[k]
			return w
		}
		if (c !~ /^[a-z][a-z0-9._-]*$/ || skip(c)) return ""
		w = " " c
		if (i + 1 <= n && t[i + 1] ~ /^[a-z][a-z0-9-]*$/) w = w " " t[i + 1]
		return w
	}
	!inb && /^```/ {
		info = $0; sub(/^```[ \t]*/, "", info); sub(/[ \t]+$/, "", info)
		lang = info; sub(/[ \t].*/, "", lang)
		inb = 1; start = NR + 1; ws = ""; prompt = 0; cont = 0
		kind = ""
		if (info == "sh check") kind = "check"
		else if (info ~ /(^|[ \t])covered-by:[^ \t]/) {
			kind = "covered"; path = info; sub(/.*covered-by:/, "", path); sub(/[ \t].*/, "", path)
		} else if (info ~ /(^|[ \t])not-tested:/) {
			kind = "untested"; why = info; sub(/.*not-tested:[ \t]*/, "", why)
		} else if (lang ~ /^(sh|bash|shell|console|zsh)$/) kind = "unmarked"
		next
	}
	inb && /^```[ \t]*$/ {
		inb = 0
		if (kind == "" && prompt) kind = "unmarked"
		if (kind == "check") print start "\tcheck"
		else if (kind == "covered") print start "\tcovered\t" path "\t" ws
		else if (kind == "untested") print start "\tuntested\t" why
		else if (kind == "unmarked") print start "\tunmarked\t" (info == "" ? "(no info string, `$ ` lines)" : info)
		next
	}
	inb {
		line = $0
		was = cont; cont = (line ~ /\\$/)
		if (line ~ /^\$ /) { prompt = 1; sub(/^\$ /, "", line) }
		else if (lang == "console") next          # output of a transcript
		if (was || line ~ /^[ \t]/ || line ~ /^[ \t]*#/) next
		w = words(line)
		if (w != "" && index(ws " ", w " ") == 0) ws = ws w
	}
	' "$1"
}

tab=$(printf '\t')
for f in "$@"; do
	[ -f "$f" ] || { echo "  $f: no such file"; fail=$((fail + 1)); continue; }
	pending=0
	for p in $PENDING; do [ "$p" = "$f" ] && pending=1; done
	list=$(blocks "$f")
	while IFS="$tab" read -r line kind a b; do
		case "$kind" in
		covered)
			missing=""
			if [ ! -f "$ROOT/$a" ]; then
				missing=" (no such file)"
			else
				for w in $b; do grep -qiw -e "$w" "$ROOT/$a" || missing="$missing $w"; done
			fi
			if [ -z "$missing" ]; then
				printf '  ok    %s:%s covered by %s (%s)\n' "$f" "$line" "$a" "${b# }"
				pass=$((pass + 1))
			else
				printf '  FAIL  %s:%s covered-by:%s does not mention:%s\n' "$f" "$line" "$a" "$missing"
				fail=$((fail + 1))
			fi ;;
		untested)
			printf '  untested  %s:%s (%s)\n' "$f" "$line" "$a"
			untested=$((untested + 1)) ;;
		unmarked)
			if [ "$pending" = 1 ]; then
				printf '  todo  %s:%s unmarked %s block (file in DOCCHECK_PENDING)\n' "$f" "$line" "$a"
				todo=$((todo + 1))
			else
				printf '  FAIL  %s:%s unmarked %s block: mark it "sh check", "covered-by:TEST" or "not-tested: WHY"\n' "$f" "$line" "$a"
				fail=$((fail + 1))
			fi ;;
		esac
	done <<EOF
$list
EOF
	printf '%s\n' "$list" | grep -q "${tab}check\$" || continue

	work=$(mktemp -d /var/tmp/doccheck.XXXXXX)
	ns=doccheck-$$-$(basename "$work" | cut -d. -f2)
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" link add v0 type veth peer name v1
	ip -n "$ns" addr add 10.86.0.1/24 dev v0
	ip -n "$ns" link set v0 up
	ip -n "$ns" link set v1 up
	mkdir -p "$work/.bin" "$work/run/build" "$work/tmp"
	chmod 1777 "$work/tmp"
	cp "$BIN" "$work/.bin/ambient"
	ln -s "$work/.bin/ambient" "$work/run/build/ambient"
	# A copy, not a link: the checkout may itself live under /tmp, which the blocks see private.
	cp -R "$ROOT/testdata" "$work/run/testdata"
	# Split the file into one script per checked block, named by its first line number.
	awk -v dir="$work" '
		/^```sh check$/ { inb = 1; n++; start = NR + 1; out = sprintf("%s/block-%03d-%d.sh", dir, n, start); next }
		inb && /^```$/ { inb = 0; close(out); next }
		inb { print > out }
	' "$f"
	for b in "$work"/block-*.sh; do
		line=$(basename "$b" .sh | cut -d- -f3)
		PATH="$work/.bin:$PATH" HOME="$work/run" timeout "$TIMEOUT" \
			ip netns exec "$ns" unshare -m --propagation private \
			sh -c 'mount --bind "$1" /tmp && cd "$2" && exec sh -e "$3"' doccheck \
			"$work/tmp" "$work/run" "$b" >"$b.out" 2>&1 </dev/null
		rc=$?
		if [ "$rc" = 0 ]; then
			printf '  ok    %s:%s\n' "$f" "$line"
			pass=$((pass + 1))
		else
			[ "$rc" = 124 ] && why="timed out after ${TIMEOUT}s" || why="exit $rc"
			printf '  FAIL  %s:%s (%s)\n' "$f" "$line" "$why"
			sed 's/^/        /' "$b" | head -n 40
			echo "      output:"
			tail -n 30 "$b.out" | sed 's/^/        /'
			fail=$((fail + 1))
			break  # later blocks of this file build on this one
		fi
	done
	finish_file
done

[ "$untested" = 0 ] || echo "doccheck: $untested block(s) marked not-tested (listed above)"
[ "$todo" = 0 ] || echo "doccheck: $todo unmarked block(s) in DOCCHECK_PENDING files (listed above)"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
