#!/bin/sh
# L4 data-plane benchmark: the same TCP traffic over four paths between a client netns and a server
# netns joined by a veth pair (like tests/e2e/test_ztunnel.py):
#   direct   client -> server
#   ambient  client -(nft REDIRECT)-> ztunnel :15001 =HBONE (mTLS + HTTP/2 CONNECT)=> ztunnel :15008 -> server
#   stunnel  client -> stunnel (client mode) =mTLS=> stunnel (server) -> server
#   haproxy  client -> haproxy (TCP mode) =mTLS=> haproxy (TCP mode) -> server
# All TLS is 1.2 with ECDHE-ECDSA on P-256 and AES-128-GCM (forced for stunnel and haproxy; ambient
# offers AES-128-GCM first on AES-NI machines). Measures single-stream iperf3 throughput, 1 KiB
# request/response latency (python ping-pong client at a fixed rate, socat echo server), idle RSS
# of each proxy pair and the proxies' CPU seconds per GiB moved. Prints ambient/peer ratios.
# Needs root (netns). Every netns and process it makes is removed/stopped at exit.
#
# Environment: AMBIENT (build/ambient), L4_SECS (iperf3 seconds, 5), REPS (3), PINGS (2000),
# PING_RATE (per second, 1000), BENCH_KEEP=1 keeps the temp dir.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

AMBIENT=${AMBIENT:-build/ambient}
L4_SECS=${L4_SECS:-5}
REPS=${REPS:-3}
PINGS=${PINGS:-2000}
PING_RATE=${PING_RATE:-1000}

if [ "$(id -u)" != 0 ]; then
	say "l4: skipped (needs root for network namespaces)"
	exit 0
fi
for t in ip nft iperf3 stunnel4 haproxy socat openssl python3 curl; do
	command -v "$t" >/dev/null 2>&1 || die "$t not installed (run 'make deps' as root)"
done
[ -x "$AMBIENT" ] || die "$AMBIENT not built (run 'make')"

bench_init
T=$BENCH_TMP
# Run a private copy, so a rebuild during the run neither changes nor orphans the ztunnels.
cp "$AMBIENT" "$T/ambient"
AMBIENT=$T/ambient
tag=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
C=ambl4c-$tag
S=ambl4s-$tag
BENCH_ON_EXIT='ip netns del "$C" 2>/dev/null; ip netns del "$S" 2>/dev/null'
ip netns add "$C"
ip netns add "$S"
ip -n "$C" link set lo up
ip -n "$S" link set lo up
ip -n "$C" link add "vc$tag" type veth peer name "vs$tag" netns "$S"
ip -n "$C" addr add 10.78.0.1/24 dev "vc$tag"
ip -n "$S" addr add 10.78.0.2/24 dev "vs$tag" # the mesh workload (ambient path)
ip -n "$S" addr add 10.78.0.3/24 dev "vs$tag" # outside the mesh (direct, stunnel, haproxy)
ip -n "$C" link set "vc$tag" up
ip -n "$S" link set "vs$tag" up
cat >"$T/capture.nft" <<'NFT'
table ip t {
 chain out {
  type nat hook output priority -100;
  meta mark 1337 return
  ip daddr 10.78.0.2 tcp dport { 5201, 7000 } redirect to :15001
 }
}
NFT
ip netns exec "$C" nft -f "$T/capture.nft"

# Peer certificates, ambient CA dir, mesh config and $ZT (bench/lib.sh).
l4_setup_pki 10.78.0

# ---- stunnel: two services per side (iperf3 5201, echo 7000).
cat >"$T/stunnel-c.conf" <<EOF
foreground = yes
pid =
client = yes
sslVersion = TLSv1.2
ciphers = $CIPHER
cert = $T/client.crt
key = $T/client.key
CAfile = $T/ca.pem
verifyChain = yes
[iperf]
accept = 127.0.0.1:15201
connect = 10.78.0.3:25201
[echo]
accept = 127.0.0.1:17000
connect = 10.78.0.3:27000
EOF
cat >"$T/stunnel-s.conf" <<EOF
foreground = yes
pid =
sslVersion = TLSv1.2
ciphers = $CIPHER
curves = prime256v1
cert = $T/server.crt
key = $T/server.key
CAfile = $T/ca.pem
verifyChain = yes
[iperf]
accept = 10.78.0.3:25201
connect = 127.0.0.1:5201
[echo]
accept = 10.78.0.3:27000
connect = 127.0.0.1:7000
EOF

# ---- haproxy: TCP mode both sides.
cat >"$T/haproxy-c.cfg" <<EOF
global
  ssl-default-server-ciphers $CIPHER
  ssl-default-server-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend iperf
  bind 127.0.0.1:35201
  default_backend iperf
backend iperf
  server s 10.78.0.3:45201 ssl crt $T/client.pem ca-file $T/ca.pem verify required
frontend echo
  bind 127.0.0.1:37000
  default_backend echo
backend echo
  server s 10.78.0.3:47000 ssl crt $T/client.pem ca-file $T/ca.pem verify required
EOF
cat >"$T/haproxy-s.cfg" <<EOF
global
  ssl-default-bind-ciphers $CIPHER
  ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend iperf
  bind 10.78.0.3:45201 ssl crt $T/server.pem ca-file $T/ca.pem verify required curves P-256
  default_backend iperf
backend iperf
  server s 127.0.0.1:5201
frontend echo
  bind 10.78.0.3:47000 ssl crt $T/server.pem ca-file $T/ca.pem verify required curves P-256
  default_backend echo
backend echo
  server s 127.0.0.1:7000
EOF

# ---- start everything: servers in S, proxies on both sides.
bench_start_ns iperf3-s "$S" iperf3 -s -p 5201
IPERF_PID=$BENCH_LAST_PID
bench_start_ns echo-s "$S" socat TCP-LISTEN:7000,fork,reuseaddr PIPE
ECHO_PID=$BENCH_LAST_PID
# shellcheck disable=SC2086
bench_start_ns ztunnel-c "$C" "$AMBIENT" $ZT
AMB_C=$BENCH_LAST_PID
# shellcheck disable=SC2086
bench_start_ns ztunnel-s "$S" "$AMBIENT" $ZT
AMB_S=$BENCH_LAST_PID
bench_start_ns stunnel-c "$C" stunnel4 "$T/stunnel-c.conf"
ST_C=$BENCH_LAST_PID
bench_start_ns stunnel-s "$S" stunnel4 "$T/stunnel-s.conf"
ST_S=$BENCH_LAST_PID
bench_start_ns haproxy-c "$C" haproxy -db -f "$T/haproxy-c.cfg"
HA_C=$BENCH_LAST_PID
bench_start_ns haproxy-s "$S" haproxy -db -f "$T/haproxy-s.cfg"
HA_S=$BENCH_LAST_PID

ready() { # NS URL
	ip netns exec "$1" curl -s --max-time 2 "$2" 2>/dev/null | grep -q ready
}
i=0
until ready "$C" http://127.0.0.1:15021/healthz/ready && ready "$S" http://127.0.0.1:15021/healthz/ready; do
	i=$((i + 1))
	[ $i -lt 150 ] || { bench_alive "$AMB_C" ztunnel-c; bench_alive "$AMB_S" ztunnel-s; die "ztunnels not ready"; }
	sleep 0.1
done

# path NAME -> "host port pids" for iperf3 and for echo
path_host() {
	case $1 in
	direct) echo 10.78.0.3 ;; ambient) echo 10.78.0.2 ;; *) echo 127.0.0.1 ;;
	esac
}
path_port() { # NAME SERVICE(iperf|echo)
	case $1/$2 in
	direct/iperf | ambient/iperf) echo 5201 ;; direct/echo | ambient/echo) echo 7000 ;;
	stunnel/iperf) echo 15201 ;; stunnel/echo) echo 17000 ;;
	haproxy/iperf) echo 35201 ;; haproxy/echo) echo 37000 ;;
	esac
}
path_pids() {
	case $1 in
	direct) echo "" ;; ambient) echo "$AMB_C $AMB_S" ;;
	stunnel) echo "$ST_C $ST_S" ;; haproxy) echo "$HA_C $HA_S" ;;
	esac
}
check_alive() {
	for pn in "$IPERF_PID:iperf3-s" "$ECHO_PID:echo-s" "$AMB_C:ztunnel-c" "$AMB_S:ztunnel-s" \
		"$ST_C:stunnel-c" "$ST_S:stunnel-s" "$HA_C:haproxy-c" "$HA_S:haproxy-s"; do
		bench_alive "${pn%%:*}" "${pn#*:}"
	done
}
cpu_ms() { # PIDS...: total CPU ms
	tot=0
	for p in "$@"; do tot=$((tot + $(proc_cpu_ms "$p"))); done
	echo $tot
}
rss_kb() {
	tot=0
	for p in "$@"; do tot=$((tot + $(proc_field "$p" VmRSS))); done
	echo $tot
}

# The ping-pong client: PINGS exchanges of 1 KiB on one connection at PING_RATE per second;
# prints p50 and p99 in microseconds. Its own overhead shows in the direct row.
cat >"$T/pingpong.py" <<'PY'
import socket, sys, time
host, port, n, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * 1024
lat = []
t0 = time.perf_counter()
for i in range(n + 100):
    due = t0 + i / rate
    d = due - time.perf_counter()
    if d > 0:
        time.sleep(d)
    a = time.perf_counter()
    s.sendall(msg)
    got = 0
    while got < len(msg):
        b = s.recv(65536)
        if not b:
            sys.exit("echo closed")
        got += len(b)
    if i >= 100:  # the first 100 are warm-up
        lat.append(time.perf_counter() - a)
lat.sort()
print(int(lat[len(lat) // 2] * 1e6), int(lat[int(len(lat) * 0.99)] * 1e6))
PY

# First, one exchange on every path: each must work before anything is timed.
for p in direct ambient stunnel haproxy; do
	ip netns exec "$C" python3 "$T/pingpong.py" "$(path_host $p)" "$(path_port $p echo)" 10 100 >/dev/null 2>"$T/check-$p.err" ||
		{ cat "$T/check-$p.err" >&2; check_alive; die "$p: the echo exchange through the path failed"; }
done
sleep 1

# Idle RSS (after one connection each, nothing open).
for p in ambient stunnel haproxy; do
	# shellcheck disable=SC2046
	eval "RSS_$p=$(rss_kb $(path_pids $p))"
done

for p in direct ambient stunnel haproxy; do
	: >"$T/tput-$p"
	: >"$T/cpu-$p"
done
r=1
while [ $r -le "$REPS" ]; do
	# rotate the order each rep
	case $((r % 2)) in 1) order="direct ambient stunnel haproxy" ;; *) order="haproxy stunnel ambient direct" ;; esac
	for p in $order; do
		# shellcheck disable=SC2046
		c0=$(cpu_ms $(path_pids $p))
		bench_run ip netns exec "$C" iperf3 -c "$(path_host $p)" -p "$(path_port $p iperf)" -t "$L4_SECS" -J >"$T/iperf-$p-$r.json" 2>&1 ||
			{ tail -20 "$T/iperf-$p-$r.json" >&2; check_alive; die "$p: iperf3 failed"; }
		# shellcheck disable=SC2046
		c1=$(cpu_ms $(path_pids $p))
		python3 - "$T/iperf-$p-$r.json" "$((c1 - c0))" >>"$T/tput-$p" 2>>"$T/cpu-$p" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["end"]["sum_received"]
print("%.3f" % (e["bits_per_second"] / 1e9))
sys.stderr.write("%.3f\n" % ((int(sys.argv[2]) / 1000) / (e["bytes"] / 2**30)))
PY
	done
	r=$((r + 1))
done
check_alive

for p in direct ambient stunnel haproxy; do
	bench_run ip netns exec "$C" python3 "$T/pingpong.py" "$(path_host $p)" "$(path_port $p echo)" "$PINGS" "$PING_RATE" >"$T/lat-$p" ||
		{ check_alive; die "$p: ping-pong failed"; }
done
check_alive

printf '\n%-8s %14s %10s %10s %14s %16s\n' path "Gbit/s(med)" "p50 us" "p99 us" "idle RSS KiB" "proxy CPU s/GiB"
for p in direct ambient stunnel haproxy; do
	tp=$(median <"$T/tput-$p")
	cpu=$(median <"$T/cpu-$p")
	set -- $(cat "$T/lat-$p")
	if [ $p = direct ]; then rss=-; cpu=-; else eval "rss=\$RSS_$p"; fi
	printf '%-8s %14s %10s %10s %14s %16s\n' "$p" "$tp" "$1" "$2" "$rss" "$cpu"
	eval "TP_$p=$tp P50_$p=$1 P99_$p=$2 CPU_$p=$cpu"
done
echo "throughput runs (Gbit/s): $(for p in direct ambient stunnel haproxy; do printf '%s=[%s] ' $p "$(tr '\n' ' ' <"$T/tput-$p" | sed 's/ $//')"; done)"

ratio() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2f" % (a / b) if b else "-")' "$1" "$2"; }
printf '\nambient / peer   %10s %8s %8s %10s %12s\n' throughput p50 p99 "idle RSS" "CPU/GiB"
for p in direct stunnel haproxy; do
	eval "tp=\$TP_$p p50=\$P50_$p p99=\$P99_$p cpu=\$CPU_$p"
	if [ $p = direct ]; then rr=-; rc=-; else eval "rr=\$(ratio \$RSS_ambient \$RSS_$p)"; rc=$(ratio "$CPU_ambient" "$cpu"); fi
	printf 'ambient / %-7s %10s %8s %8s %10s %12s\n' "$p" "$(ratio "$TP_ambient" "$tp")" \
		"$(ratio "$P50_ambient" "$p50")" "$(ratio "$P99_ambient" "$p99")" "$rr" "$rc"
done
echo
echo "TLS: 1.2, $CIPHER for stunnel and haproxy (ambient offers AES-128-GCM first on AES-NI machines)"
echo "netns: C = $C (client), S = $S (server)"
bench_print_cmds
