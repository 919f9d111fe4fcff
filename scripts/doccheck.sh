#!/bin/sh
# Runs the shell blocks of the docs that are marked for checking, so the commands the docs show
# keep working. A block is checked when its opening fence is exactly "```sh check".
#
#   sh scripts/doccheck.sh [FILE.md ...]        (default: README.md and docs/*.md)
#
# The blocks of one file run in order, as a reader would type them, each with `sh -e`, in one
# fresh temporary directory and one fresh network namespace of their own (lo up, and a veth pair
# with 10.86.0.1/24 so the "host" has an address), with `ambient` on PATH (AMBIENT_BIN, default
# build/ambient). A block fails on the first failing command or after DOCCHECK_TIMEOUT seconds
# (default 30). Afterwards every process left in the namespace is killed and the namespace and
# directory are removed (DOCCHECK_KEEP=1 keeps the directory, for debugging). Needs root. Ends
# with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
BIN=${AMBIENT_BIN:-$ROOT/build/ambient}
case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac
TIMEOUT=${DOCCHECK_TIMEOUT:-30}
[ $# -gt 0 ] || set -- README.md docs/*.md

if [ "$(id -u)" != 0 ]; then
	echo "doccheck: needs root (network namespaces)"
	echo "0 passed, 1 failed"
	exit 1
fi
[ -x "$BIN" ] || { echo "doccheck: no binary at $BIN"; echo "0 passed, 1 failed"; exit 1; }

pass=0
fail=0
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

for f in "$@"; do
	[ -f "$f" ] || { echo "  $f: no such file"; fail=$((fail + 1)); continue; }
	grep -q '^```sh check$' "$f" || continue
	work=$(mktemp -d /tmp/doccheck.XXXXXX)
	ns=doccheck-$$-$(basename "$work" | cut -d. -f2)
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" link add v0 type veth peer name v1
	ip -n "$ns" addr add 10.86.0.1/24 dev v0
	ip -n "$ns" link set v0 up
	ip -n "$ns" link set v1 up
	mkdir -p "$work/.bin" "$work/run"
	ln -s "$BIN" "$work/.bin/ambient"
	# Split the file into one script per checked block, named by its first line number.
	awk -v dir="$work" '
		/^```sh check$/ { inb = 1; n++; start = NR + 1; out = sprintf("%s/block-%03d-%d.sh", dir, n, start); next }
		inb && /^```$/ { inb = 0; close(out); next }
		inb { print > out }
	' "$f"
	for b in "$work"/block-*.sh; do
		line=$(basename "$b" .sh | cut -d- -f3)
		(cd "$work/run" && PATH="$work/.bin:$PATH" HOME="$work/run" \
			timeout "$TIMEOUT" ip netns exec "$ns" sh -e "$b" >"$b.out" 2>&1 </dev/null)
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

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
