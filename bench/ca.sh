#!/bin/sh
# CA benchmark: certificates issued per second over HTTPS by `ambient ca serve` versus CloudFlare's
# cfssl (`cfssl serve`, Debian golang-cfssl), both with an ECDSA P-256 CA, driven by wrk with the
# same P-256 CSR on every request. Prints a table; fails loudly if a server does not issue, answers
# an error status under load, or dies. Loopback only. `make test` runs it once in a quick mode
# (tests/e2e/test_bench_docs.py: DURATION=1 REPS=1 WARMUP=1) and asserts no figure.
#
# Environment: AMBIENT (binary, build/ambient), DURATION (seconds per run, 10), REPS (3),
# CONNS ("8 1": wrk connection counts), WARMUP (seconds, 2), BENCH_KEEP=1 keeps the temp dir.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

AMBIENT=${AMBIENT:-build/ambient}
DURATION=${DURATION:-10}
REPS=${REPS:-3}
CONNS=${CONNS:-8 1}
WARMUP=${WARMUP:-2}
TD=cluster.local
APP=spiffe://$TD/ns/default/sa/app

for t in wrk cfssl openssl python3 curl; do
	command -v "$t" >/dev/null 2>&1 || die "$t not installed (run 'make deps' as root)"
done
[ -x "$AMBIENT" ] || die "$AMBIENT not built (run 'make')"
"$AMBIENT" ca serve --help 2>&1 | grep -q -- '--rate-limit' || die "$AMBIENT has no 'ca serve' with --rate-limit"

bench_init
T=$BENCH_TMP
q() { openssl "$@" >/dev/null 2>&1 || die "openssl $*"; }

# ---- the CSR every request carries: P-256 key, empty subject, one URI SAN (DESIGN §4).
q ecparam -name prime256v1 -genkey -noout -out "$T/w.key"
q req -new -key "$T/w.key" -subj / -addext "subjectAltName=URI:$APP" -out "$T/w.csr"

# ---- ambient: CA dir, node token, mesh config with the workload on node-a.
q_amb() { "$AMBIENT" "$@" 2>"$T/amb-cmd.err" || { cat "$T/amb-cmd.err" >&2; die "ambient $*"; }; }
q_amb ca init --trust-domain "$TD" --dir "$T/amb-ca" >/dev/null
AMB_TOKEN=$(q_amb ca token add --dir "$T/amb-ca" --node node-a)
cat >"$T/mesh.json" <<JSON
{"workloads":[{"uid":"w1","name":"app","namespace":"default","serviceAccount":"app",
 "workloadIps":["10.0.0.2"],"node":"node-a","services":{}}]}
JSON
python3 - "$T/w.csr" "$APP" >"$T/amb-body.json" <<'PY'
import json, sys
print(json.dumps({"csr": open(sys.argv[1]).read(), "identity": sys.argv[2], "ttlSeconds": 3600}))
PY

# ---- cfssl: its own P-256 root (CA:TRUE), a P-256 serving cert for 127.0.0.1 signed by it, and a
# default signing profile comparable to ambient's leaves (1 h, digitalSignature+keyEncipherment,
# serverAuth+clientAuth).
q ecparam -name prime256v1 -genkey -noout -out "$T/cf-ca.key"
q req -x509 -new -key "$T/cf-ca.key" -subj "/O=$TD/CN=cfssl bench root" -days 30 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out "$T/cf-ca.pem"
q ecparam -name prime256v1 -genkey -noout -out "$T/cf-tls.key"
q req -new -key "$T/cf-tls.key" -subj "/CN=127.0.0.1" -out "$T/cf-tls.csr"
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$T/cf-tls.ext"
q x509 -req -in "$T/cf-tls.csr" -CA "$T/cf-ca.pem" -CAkey "$T/cf-ca.key" -CAcreateserial \
	-days 30 -extfile "$T/cf-tls.ext" -out "$T/cf-tls.pem"
cat >"$T/cf-config.json" <<'JSON'
{"signing": {"default": {"expiry": "1h",
  "usages": ["digital signature", "key encipherment", "server auth", "client auth"]}}}
JSON
python3 - "$T/w.csr" >"$T/cf-body.json" <<'PY'
import json, sys
print(json.dumps({"certificate_request": open(sys.argv[1]).read()}))
PY

# ---- start both servers (loopback only).
AMB_PORT=$(free_port)
AMB_CMD="$AMBIENT ca serve --dir $T/amb-ca --mesh-config $T/mesh.json --listen 127.0.0.1:$AMB_PORT --ip 127.0.0.1 --admin 127.0.0.1:$(free_port) --metrics 127.0.0.1:$(free_port) --ready 127.0.0.1:$(free_port) --rate-limit 1000000 --rate-burst 1000000"
# shellcheck disable=SC2086
bench_start ambient $AMB_CMD
AMB_PID=$BENCH_LAST_PID
CF_PORT=$(free_port)
CF_CMD="cfssl serve -address 127.0.0.1 -port $CF_PORT -ca $T/cf-ca.pem -ca-key $T/cf-ca.key -config $T/cf-config.json -tls-cert $T/cf-tls.pem -tls-key $T/cf-tls.key"
# shellcheck disable=SC2086
bench_start cfssl $CF_CMD
CF_PID=$BENCH_LAST_PID
wait_tcp "$AMB_PORT" || { bench_alive "$AMB_PID" ambient; die "ambient not listening on $AMB_PORT"; }
wait_tcp "$CF_PORT" || { bench_alive "$CF_PID" cfssl; die "cfssl not listening on $CF_PORT"; }
sleep 0.5
bench_alive "$AMB_PID" ambient
bench_alive "$CF_PID" cfssl
AMB_URL=https://127.0.0.1:$AMB_PORT/v1/certificates
CF_URL=https://127.0.0.1:$CF_PORT/api/v1/cfssl/sign

# ---- each server must issue before anything is timed: 200 and a chain that openssl verifies.
check_issue() { # NAME URL CAFILE BODY [TOKEN]
	set -- "$@" ""
	code=$(curl -sS -o "$T/$1-resp.json" -w '%{http_code}' --cacert "$3" \
		-H 'Content-Type: application/json' ${5:+-H "Authorization: Bearer $5"} \
		--data-binary "@$4" "$2") || die "$1: curl to $2 failed"
	[ "$code" = 200 ] || { cat "$T/$1-resp.json" >&2; die "$1: first issuance answered HTTP $code, not 200"; }
	python3 - "$1" "$T/$1-resp.json" "$T/$1" <<'PY' || die "$1: response carries no certificate chain"
import json, sys
name, resp, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
if name == "ambient":
    chain = resp["certChain"]
else:
    assert resp["success"] is True, resp
    chain = [resp["result"]["certificate"]]
assert chain and all("BEGIN CERTIFICATE" in c for c in chain), resp
open(out + "-leaf.pem", "w").write(chain[0])
open(out + "-chain.pem", "w").write("".join(c if c.endswith("\n") else c + "\n" for c in chain))
print(len(chain))
PY
}
AMB_CHAIN_LEN=$(check_issue ambient "$AMB_URL" "$T/amb-ca/root-cert.pem" "$T/amb-body.json" "$AMB_TOKEN")
CF_CHAIN_LEN=$(check_issue cfssl "$CF_URL" "$T/cf-ca.pem" "$T/cf-body.json")
openssl verify -CAfile "$T/amb-ca/root-cert.pem" -untrusted "$T/ambient-chain.pem" \
	"$T/ambient-leaf.pem" >/dev/null 2>&1 || die "ambient: issued leaf does not verify against its root"
openssl verify -CAfile "$T/cf-ca.pem" "$T/cfssl-leaf.pem" >/dev/null 2>&1 ||
	die "cfssl: issued leaf does not verify against its root"
leaf_info() {
	openssl x509 -in "$1" -noout -ext subjectAltName -text 2>/dev/null |
		awk '/Signature Algorithm/ && !s { s = $3 } /URI:|IP Address:|DNS:/ && !n { gsub(/^ +/, ""); n = $0 }
			END { printf "sig=%s san=%s", s, (n ? n : "(none)") }'
}
AMB_LEAF=$(leaf_info "$T/ambient-leaf.pem")
CF_LEAF=$(leaf_info "$T/cfssl-leaf.pem")
tls_of() {
	openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
		awk '/^New, / { p = $2 } /Cipher is / { c = $NF } END { printf "%s %s", p, c }'
}
AMB_TLS=$(tls_of "$AMB_PORT")
CF_TLS=$(tls_of "$CF_PORT")
RSS0_AMB=$(proc_field "$AMB_PID" VmRSS)
RSS0_CF=$(proc_field "$CF_PID" VmRSS)

# ---- timed runs.
wrk_cmd() { # CONNS SECONDS URL
	echo "wrk -t1 -c$1 -d${2}s --timeout 5s -s bench/wrk_post.lua $3"
}
run_wrk() { # NAME PID CONNS SECONDS URL BODY TOKEN -> sets RES (RESULT line) and CPU_MS
	cpu0=$(proc_cpu_ms "$2")
	BENCH_BODY=$6 BENCH_TOKEN=$7 wrk -t1 -c"$3" -d"$4"s --timeout 5s -s bench/wrk_post.lua "$5" \
		>"$T/wrk-last.txt" 2>&1 || { cat "$T/wrk-last.txt" >&2; die "$1: wrk failed"; }
	bench_alive "$2" "$1"
	CPU_MS=$(($(proc_cpu_ms "$2") - cpu0))
	cat "$T/wrk-last.txt" >>"$T/wrk-all.txt"
	RES=$(grep '^RESULT ' "$T/wrk-last.txt") || { cat "$T/wrk-last.txt" >&2; die "$1: no RESULT from wrk"; }
	[ "$(kv "$RES" requests)" -gt 0 ] || die "$1: wrk completed no request"
	for e in status connect read write timeout; do
		n=$(kv "$RES" "$e")
		if [ "$n" != 0 ]; then
			cat "$T/wrk-last.txt" >&2
			bench_log_tail "$1"
			die "$1: wrk -c$3 counted $n $e errors (non-2xx responses are 'status')"
		fi
	done
}
one() { # NAME CONNS SECONDS
	case $1 in
	ambient) run_wrk ambient "$AMB_PID" "$2" "$3" "$AMB_URL" "$T/amb-body.json" "$AMB_TOKEN" ;;
	cfssl) run_wrk cfssl "$CF_PID" "$2" "$3" "$CF_URL" "$T/cf-body.json" "" ;;
	esac
}

say "warm-up: ${WARMUP}s per server"
one ambient 8 "$WARMUP"
one cfssl 8 "$WARMUP"

: >"$T/runs.txt"
for c in $CONNS; do
	r=1
	while [ "$r" -le "$REPS" ]; do
		# Alternate the peers, and which one goes first in each round (A B, B A, A B).
		if [ $((r % 2)) = 1 ]; then order="ambient cfssl"; else order="cfssl ambient"; fi
		for p in $order; do
			one "$p" "$c" "$DURATION"
			req=$(kv "$RES" requests)
			cpu_per=$(awk -v c="$CPU_MS" -v n="$req" 'BEGIN { printf "%.3f", c / n }')
			cores=$(awk -v c="$CPU_MS" -v d="$(kv "$RES" duration_us)" 'BEGIN { printf "%.2f", c * 1000 / d }')
			echo "$p $c $r $(kv "$RES" rps) $(kv "$RES" p50_us) $(kv "$RES" p99_us) $req $CPU_MS $cpu_per $cores" >>"$T/runs.txt"
			say "c=$c run $r $p: $(kv "$RES" rps) certs/s, p50 $(kv "$RES" p50_us) us, p99 $(kv "$RES" p99_us) us, server CPU ${cpu_per} ms/cert, ${cores} cores busy"
		done
		r=$((r + 1))
	done
done
bench_alive "$AMB_PID" ambient
bench_alive "$CF_PID" cfssl
HWM_AMB=$(proc_field "$AMB_PID" VmHWM)
HWM_CF=$(proc_field "$CF_PID" VmHWM)
# Every request was valid: the servers' own logs must show no refusal and at least as many
# issued certificates as wrk counted (wrk does not count responses still in flight at the end).
COUNTED=$(awk '{ n[$1] += $7 } END { print n["ambient"] + 0, n["cfssl"] + 0 }' "$T/runs.txt")
ISSUED_AMB=$(grep -c 'event=issued' "$T/ambient.log" || true)
REFUSED_AMB=$(grep -c 'event=refused' "$T/ambient.log" || true)
ISSUED_CF=$(grep -c 'signed certificate with serial number' "$T/cfssl.log" || true)
[ "$REFUSED_AMB" = 0 ] || { grep 'event=refused' "$T/ambient.log" | head >&2; die "ambient refused $REFUSED_AMB valid requests"; }
[ "$ISSUED_AMB" -ge "${COUNTED% *}" ] || die "ambient logged $ISSUED_AMB issued, fewer than the ${COUNTED% *} 200s wrk counted"
[ "$ISSUED_CF" -ge "${COUNTED#* }" ] || die "cfssl logged $ISSUED_CF signed, fewer than the ${COUNTED#* } 200s wrk counted"

# ---- report.
med() { # NAME CONNS COLUMN
	awk -v n="$1" -v c="$2" -v k="$3" '$1 == n && $2 == c { print $k }' "$T/runs.txt" | median
}
echo
echo "== CA issuance over HTTPS: ambient ca serve vs cfssl serve ($(nproc) cores; client and servers share them)"
echo "   ${DURATION}s per run, $REPS runs per peer and connection count, alternating; medians shown"
echo "   same CSR on every request (P-256 key, empty subject, URI SAN $APP); TTL 1 h"
echo
printf '%-8s %5s %10s %9s %9s %15s %9s %7s\n' peer conns certs/s p50_ms p99_ms "srv_CPU_ms/cert" srv_cores ratio
for c in $CONNS; do
	a=$(med ambient "$c" 4)
	b=$(med cfssl "$c" 4)
	for p in ambient cfssl; do
		rps=$(med "$p" "$c" 4)
		if [ "$p" = ambient ]; then ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }'); else ratio=""; fi
		printf '%-8s %5s %10.1f %9.2f %9.2f %15.3f %9.2f %7s\n' "$p" "$c" "$rps" \
			"$(awk -v v="$(med "$p" "$c" 5)" 'BEGIN { print v / 1000 }')" \
			"$(awk -v v="$(med "$p" "$c" 6)" 'BEGIN { print v / 1000 }')" \
			"$(med "$p" "$c" 9)" "$(med "$p" "$c" 10)" "$ratio"
	done
done
echo "(ratio = ambient certs/s / cfssl certs/s; srv_CPU = server user+sys CPU time / certificates;"
echo " srv_cores = server CPU seconds per wall-clock second, at most $(nproc) here)"
echo
echo "all runs (peer conns run certs/s p50_us p99_us requests srv_cpu_ms srv_cpu_ms/cert srv_cores):"
sed 's/^/  /' "$T/runs.txt"
echo
printf 'peak RSS (VmHWM over the whole benchmark): ambient %s kB, cfssl %s kB (after start-up and first issue: VmRSS %s kB, %s kB)\n' \
	"$HWM_AMB" "$HWM_CF" "$RSS0_AMB" "$RSS0_CF"
echo "server logs: ambient audit $ISSUED_AMB issued, $REFUSED_AMB refused; cfssl $ISSUED_CF signed (timed runs counted ${COUNTED% *} and ${COUNTED#* } responses; warm-up and the first check come on top)"
echo "TLS negotiated with openssl s_client: ambient $AMB_TLS; cfssl $CF_TLS"
echo "first issued leaf: ambient chain of $AMB_CHAIN_LEN, $AMB_LEAF"
echo "                   cfssl chain of $CF_CHAIN_LEN, $CF_LEAF"
echo "versions: $("$AMBIENT" version 2>&1 | paste -sd' ' -)"
echo "          cfssl $(cfssl version 2>&1 | awk '/^Version/ { v = $2 } /^Runtime/ { r = $2 } END { print v " (" r ")" }'), golang-cfssl $(dpkg-query -W -f='${Version}' golang-cfssl 2>/dev/null); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(openssl version)"
echo
echo "commands (\$T = temporary directory, removed at exit):"
echo "  $AMB_CMD" | sed "s#$T#\$T#g"
echo "  $CF_CMD" | sed "s#$T#\$T#g"
for c in $CONNS; do
	echo "  BENCH_BODY=\$T/amb-body.json BENCH_TOKEN=<node token> $(wrk_cmd "$c" "$DURATION" "https://127.0.0.1:$AMB_PORT/v1/certificates")"
	echo "  BENCH_BODY=\$T/cf-body.json $(wrk_cmd "$c" "$DURATION" "https://127.0.0.1:$CF_PORT/api/v1/cfssl/sign")"
done
