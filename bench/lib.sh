# Helpers shared by the benchmark scripts (POSIX sh, sourced). Servers run in the background on
# loopback; their PIDs are recorded and exactly those PIDs are stopped on exit, even on failure.
# Temporary files live under one mktemp directory that is removed on exit.

BENCH_PIDS=""  # "pid:exe" words
BENCH_TMP=""

die() {
	echo "bench: FAIL: $*" >&2
	exit 1
}

say() {
	echo "bench: $*" >&2
}

# is_ours PID EXE: PID is still the process started from EXE (also when EXE was replaced on disk
# since, e.g. by a rebuild: the kernel then shows "EXE (deleted)").
is_ours() {
	case "$(readlink "/proc/$1/exe" 2>/dev/null)" in
	"$2" | "$2 (deleted)") return 0 ;;
	esac
	return 1
}

bench_cleanup() {
	rc=$?
	set +e # a server stopped by SIGTERM makes `wait` return 143; cleanup must go on regardless
	trap - EXIT INT TERM HUP
	for pe in $BENCH_PIDS; do
		pid=${pe%%:*}
		exe=${pe#*:}
		# Signal only if the PID is still the process we started (not reaped and reused).
		if is_ours "$pid" "$exe"; then
			kill -TERM "$pid" 2>/dev/null
		fi
	done
	for pe in $BENCH_PIDS; do
		pid=${pe%%:*}
		exe=${pe#*:}
		i=0
		while is_ours "$pid" "$exe" && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if is_ours "$pid" "$exe"; then
			say "pid $pid ($exe) did not exit 10 s after SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null || true
	done
	# Extra cleanup after the processes are gone (e.g. deleting network namespaces).
	if [ -n "${BENCH_ON_EXIT:-}" ]; then
		eval "$BENCH_ON_EXIT"
	fi
	if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
		if [ -n "${BENCH_KEEP:-}" ]; then
			say "keeping $BENCH_TMP (BENCH_KEEP set)"
		else
			rm -rf "$BENCH_TMP"
		fi
	fi
	exit "$rc"
}

bench_init() {
	BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ambient-bench.XXXXXX") || die "mktemp failed"
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
}

# bench_cmd ARGS...: records a command line the script runs, for bench_print_cmds.
bench_cmd() {
	echo "$*" >>"$BENCH_TMP/commands.txt"
}

# bench_run ARGS...: runs a command in the foreground (redirections apply) and records it.
bench_run() {
	bench_cmd "$@"
	"$@"
}

# bench_bg ARGS...: starts a command in the background (redirections apply), records it and sets
# BENCH_BG_PID to its PID (the caller waits for it).
bench_bg() {
	bench_cmd "$@"
	"$@" &
	# shellcheck disable=SC2034 # read by the caller
	BENCH_BG_PID=$!
}

# bench_print_cmds: prints every recorded command line once, in the order first run, with the
# temporary directory written $T (tests/e2e/test_bench_docs.py matches docs/benchmarks.md to it).
bench_print_cmds() {
	echo "commands (\$T = temporary directory, removed at exit):"
	awk '!seen[$0]++' "$BENCH_TMP/commands.txt" | sed "s#$BENCH_TMP#\$T#g; s/^/  /"
}

# bench_start NAME EXE ARGS...: starts EXE in the background (stdout+stderr to $BENCH_TMP/NAME.log)
# and sets BENCH_LAST_PID.
bench_start() {
	name=$1
	shift
	exe=$(readlink -f "$(command -v "$1")") || die "$1: not found"
	bench_cmd "$@"
	"$@" >"$BENCH_TMP/$name.log" 2>&1 &
	BENCH_LAST_PID=$!
	BENCH_PIDS="$BENCH_PIDS $BENCH_LAST_PID:$exe"
}

# bench_start_ns NAME NETNS EXE ARGS...: like bench_start, inside a network namespace. `ip netns
# exec` execs EXE in place, so the recorded PID is EXE's own.
bench_start_ns() {
	name=$1
	ns=$2
	shift 2
	exe=$(readlink -f "$(command -v "$1")") || die "$1: not found"
	bench_cmd ip netns exec "$ns" "$@"
	ip netns exec "$ns" "$@" >"$BENCH_TMP/$name.log" 2>&1 &
	BENCH_LAST_PID=$!
	BENCH_PIDS="$BENCH_PIDS $BENCH_LAST_PID:$exe"
}

# bench_alive PID NAME: fails loudly (with the server's log tail) if the process has gone.
bench_alive() {
	if ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; then
		bench_log_tail "$2"
		die "$2 (pid $1) is no longer running"
	fi
}

# bench_log_tail NAME: the last lines of a server's log, without its routine per-request lines.
bench_log_tail() {
	echo "---- last lines of $1's log (per-request lines left out):" >&2
	grep -v -e 'event=issued' -e '\[INFO\]' "$BENCH_TMP/$1.log" | tail -30 >&2
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_tcp PORT: waits up to 15 s for a listener on 127.0.0.1:PORT.
wait_tcp() {
	i=0
	while [ $i -lt 150 ]; do
		if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# proc_field PID FIELD: a field of /proc/PID/status in kB (VmHWM, VmRSS).
proc_field() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# proc_cpu_ms PID: user+system CPU time of the process (all threads) in milliseconds.
proc_cpu_ms() {
	hz=$(getconf CLK_TCK)
	sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%d\n", ($12 + $13) * 1000 / hz }'
}

# median: the median of the numbers on stdin (one per line).
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# kv LINE KEY: the value of KEY=value in a RESULT line.
kv() {
	echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'
}

# L4 benchmarks' shared set-up in $T for subnet $1 (e.g. 10.78.0): client .1 and server .2 are
# mesh workloads, .3 is the server address outside the mesh. Writes the stunnel/haproxy P-256
# root and client/server leaves ($T/{ca,server,client}.{pem,crt,key}), sets CIPHER, creates the
# ambient CA dir $T/amb-ca and $T/mesh.json, and sets ZT to the ztunnel arguments.
l4_setup_pki() {
	net=$1
	q() { openssl "$@" >/dev/null 2>&1 || die "openssl $*"; }
	q ecparam -name prime256v1 -genkey -noout -out "$T/ca.key"
	q req -x509 -new -key "$T/ca.key" -subj "/CN=l4 bench root" -days 2 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
		-out "$T/ca.pem"
	for who in server client; do
		q ecparam -name prime256v1 -genkey -noout -out "$T/$who.key"
		q req -new -key "$T/$who.key" -subj "/CN=$who" -out "$T/$who.csr"
		printf 'subjectAltName=IP:%s.3\nextendedKeyUsage=serverAuth,clientAuth\n' "$net" \
			>"$T/$who.ext"
		q x509 -req -in "$T/$who.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
			-days 2 -extfile "$T/$who.ext" -out "$T/$who.crt"
		cat "$T/$who.crt" "$T/$who.key" >"$T/$who.pem"
	done
	CIPHER=ECDHE-ECDSA-AES128-GCM-SHA256
	"$AMBIENT" ca init --trust-domain cluster.local --dir "$T/amb-ca" >/dev/null
	cat >"$T/mesh.json" <<JSON
{"workloads": [
 {"uid": "client", "name": "client", "namespace": "client", "serviceAccount": "client",
  "workloadIps": ["$net.1"], "protocol": "HBONE"},
 {"uid": "server", "name": "server", "namespace": "server", "serviceAccount": "server",
  "workloadIps": ["$net.2"], "protocol": "HBONE"}]}
JSON
	ZT="ztunnel --mesh-config $T/mesh.json --ca-dir $T/amb-ca --admin 127.0.0.1:15000 --metrics 127.0.0.1:15020 --ready 127.0.0.1:15021 --log-level warn"
}
