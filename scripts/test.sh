#!/bin/sh
# `make test`: builds both flavours, runs every module's unit tests (ASan/UBSan), replays the fuzz
# corpora, then the end-to-end tests of the real static binary. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
log=build/test-logs
mkdir -p "$log"

make -s -j"$jobs" all >"$log/build.txt" 2>&1 || { cat "$log/build.txt"; echo "build failed"; exit 1; }
make -s -j"$jobs" SAN=1 all unit replay >"$log/build-san.txt" 2>&1 || { cat "$log/build-san.txt"; echo "SAN build failed"; exit 1; }

total_pass=0
total_fail=0
add() { total_pass=$((total_pass + $1)); total_fail=$((total_fail + $2)); }

echo "== unit tests (ASan+UBSan)"
for t in build/san/test/*_test; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	out=$(ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$t" 2>"$log/$name.err")
	rc=$?
	line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
	p=$(echo "$line" | awk '{print $1}')
	f=$(echo "$line" | awk '{print $3}')
	[ -n "$p" ] || { p=0; f=1; }
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi  # a crash or sanitizer report after the summary
	printf '  %-20s %s\n' "$name" "${line:-crashed (rc=$rc)}"
	[ "$f" != 0 ] && sed 's/^/    /' "$log/$name.err" | tail -40
	add "$p" "$f"
done

echo "== fuzz corpus replay (ASan+UBSan)"
for r in build/san/fuzz/*_replay; do
	[ -x "$r" ] || continue
	name=$(basename "$r" _replay)
	corpus=testdata/fuzz/$name
	if [ ! -d "$corpus" ]; then
		echo "  $name: no corpus at $corpus"
		add 0 1
		continue
	fi
	if "$r" "$corpus" >"$log/$name.replay" 2>&1; then
		printf '  %-20s %s\n' "$name" "$(tail -1 "$log/$name.replay")"
		add 1 0
	else
		printf '  %-20s FAILED\n' "$name"
		tail -40 "$log/$name.replay" | sed 's/^/    /'
		add 0 1
	fi
done

# Runs pytest with a JUnit report and adds its counts (a run that executed nothing is a failure).
pytest_counted() { # name, pytest args...
	name=$1; shift
	/usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$log/$name.xml" "$@" \
		>"$log/$name.txt" 2>&1
	tail -30 "$log/$name.txt" | grep -vE '^$' | sed 's/^/  /'
	x="$log/$name.xml"
	t=$(grep -o 'tests="[0-9]*"' "$x" 2>/dev/null | head -1 | tr -dc 0-9)
	fl=$(grep -o 'failures="[0-9]*"' "$x" 2>/dev/null | head -1 | tr -dc 0-9)
	er=$(grep -o 'errors="[0-9]*"' "$x" 2>/dev/null | head -1 | tr -dc 0-9)
	sk=$(grep -o 'skipped="[0-9]*"' "$x" 2>/dev/null | head -1 | tr -dc 0-9)
	t=${t:-0}; fl=${fl:-0}; er=${er:-0}; sk=${sk:-0}
	[ "$t" = 0 ] && fl=$((fl + 1))
	add $((t - fl - er - sk)) $((fl + er))
}

echo "== end-to-end tests"
if [ "$(id -u)" != 0 ]; then
	echo "  end-to-end tests need root (network namespaces)"
	add 0 1
else
	pytest_counted e2e tests/e2e
	echo "== end-to-end tests of the ASan/UBSan binary (runtime scenarios)"
	export AMBIENT_BIN="$PWD/build/san/ambient"
	pytest_counted e2e-san tests/e2e/test_server.py tests/e2e/test_ca.py tests/e2e/test_ztunnel.py \
		tests/e2e/test_ztunnel_paths.py tests/e2e/test_ztunnel_features.py tests/e2e/test_ztunnel_waypoint.py \
		tests/e2e/test_ztunnel_more.py tests/e2e/test_ztunnel_srcip.py tests/e2e/test_ztunnel_shared.py \
		tests/e2e/test_cni.py tests/e2e/test_cni_shared.py tests/e2e/test_waypoint.py
	unset AMBIENT_BIN
fi

echo "== doc check (blocks marked \`sh check\` in README.md and docs/, scripts/doccheck.sh)"
if [ "$(id -u)" != 0 ]; then
	echo "  the doc check needs root (network namespaces)"
	add 0 1
else
	sh scripts/doccheck.sh >"$log/doccheck.txt" 2>&1
	grep -v '^  ok ' "$log/doccheck.txt" | tail -60 | sed 's/^/  /'
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log/doccheck.txt" | tail -1)
	p=$(echo "$line" | awk '{print $1}')
	f=$(echo "$line" | awk '{print $3}')
	[ -n "$p" ] || { p=0; f=1; }
	add "$p" "$f"
fi

echo
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
