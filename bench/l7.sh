#!/bin/sh
# L7 benchmark (issue 7): HTTP requests for a 1 KiB file over four paths, three netns on one bridge
# (the layout of tests/e2e/test_waypoint.py), subnet 10.79.0.0/24, service VIPs 10.96.79.0/24:
#   C  client 10.79.0.1: load generators, client ztunnel (nft REDIRECT of the VIP to :15001),
#      haproxy-c and nginx-c
#   W  waypoint workload 10.79.0.5 (bridge owner): `ambient waypoint`
#   S  backend nginx; 10.79.0.2 is the mesh workload (its ztunnel), 10.79.0.3 is outside the
#      mesh (direct path, haproxy-s, nginx-s)
# Paths:
#   direct   client -> backend nginx 10.79.0.3:8080 (HTTP/1.1) / :8082 (h2c)
#   ambient  client -(REDIRECT)-> ztunnel :15001 =HBONE=> waypoint :15008 (HTTP/1.1 or h2 inside
#            the tunnel, L7) =HBONE=> ztunnel :15008 -> backend 10.79.0.2:8080
#   haproxy  client -> haproxy-c (mode http, h1 and h2c on one port) =mTLS=> haproxy-s (mode tcp,
#            TLS server) -> backend 127.0.0.1:8080
#   nginx    client -> nginx-c (proxy, h1 port and h2c port) =mTLS=> nginx-s (TLS server,
#            proxy) -> backend 127.0.0.1:8080
# Every TLS hop is TLS 1.2, ECDHE-ECDSA on P-256 with AES-128-GCM (forced for the peers; ambient
# offers AES-128-GCM first on AES-NI machines). Backend: nginx serving a 1024-byte file.
#
# Measures, per path:
#   - saturation: h2load -c H2_CONNS -m H2_STREAMS -D DURATION (HTTP/2) and
#     wrk -t1 -c WRK_CONNS -d DURATION (HTTP/1.1): requests/s, and the proxies' CPU seconds per
#     1,000 requests (user+sys of every proxy process of the path, /proc/PID/stat), median of REPS
#     runs with the order of the paths rotated;
#   - fixed rate, RATE requests/s for RATE_SECS seconds, REPS runs (medians): HTTP/2 with
#     h2load --rps over 10 connections (their timers fire together: bursts of 10), HTTP/1.1 with
#     rate.py (10 keep-alive connections, sends evenly spaced); p50/p99 from the per-request log
#     (the first 0.5 s left out), CPU per 1,000 requests, VmRSS/PSS of the proxies sampled mid-run;
#   - idle RSS after the first requests, and peak RSS (VmHWM) at the end;
#   - the wake-up floor: bench/floor.c (epoll_wait + read + send per request, no TLS, no
#     parsing) in S at 10.79.0.3:8090 under rate.py at RATE: its CPU per 1,000 requests is the
#     kernel's cost of one wake-up, which no proxy goes under. A request wakes ambient's proxies
#     6 times (3 processes, request and response), the peers' pairs 4 times.
# Prints ambient/peer ratios and the issue's targets. Needs root (netns). Every netns and process
# it makes is removed/stopped at exit, also on failure.
#
# Environment: AMBIENT (build/ambient), DURATION (5), REPS (3), RATE (1000), RATE_SECS (5),
# H2_CONNS (10), H2_STREAMS (10), WRK_CONNS (20), PERF=1 (perf record -g the two ztunnels and the
# waypoint during the first ambient HTTP/2 saturation and fixed-rate runs; reports in
# $T/perf-*.txt, use with BENCH_KEEP=1), BENCH_KEEP=1 keeps the temp dir.
# shellcheck disable=SC2154,SC2034 # tables read variables set with eval; lib.sh reads BENCH_ON_EXIT
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

AMBIENT=${AMBIENT:-build/ambient}
DURATION=${DURATION:-5}
REPS=${REPS:-3}
RATE=${RATE:-1000}
RATE_SECS=${RATE_SECS:-5}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
WRK_CONNS=${WRK_CONNS:-20}
PERF=${PERF:-}
PATHS="direct ambient haproxy nginx"

if [ "$(id -u)" != 0 ]; then
	say "l7: skipped (needs root for network namespaces)"
	exit 0
fi
for t in ip nft nginx haproxy h2load wrk openssl python3 curl musl-gcc; do
	command -v "$t" >/dev/null 2>&1 || die "$t not installed (run 'make deps' as root)"
done
[ -x "$AMBIENT" ] || die "$AMBIENT not built (run 'make')"

bench_init
T=$BENCH_TMP
# Run a private copy, so a rebuild during the run neither changes nor orphans the proxies.
cp "$AMBIENT" "$T/ambient"
AMBIENT=$T/ambient
tag=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
C=ambl7c-$tag
W=ambl7w-$tag
S=ambl7s-$tag
BENCH_ON_EXIT='ip netns del "$C" 2>/dev/null; ip netns del "$W" 2>/dev/null; ip netns del "$S" 2>/dev/null'
for ns in "$C" "$W" "$S"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip -n "$W" link add br0 type bridge
ip -n "$W" addr add 10.79.0.5/24 dev br0
ip -n "$W" link set br0 up
# veth NS NAME ADDRS...: a veth from NS into W's bridge, ADDRS on the NS end.
veth() {
	ns=$1
	dev=$2
	shift 2
	ip -n "$ns" link add "$dev" type veth peer name "b$dev" netns "$W"
	for a in "$@"; do ip -n "$ns" addr add "$a" dev "$dev"; done
	ip -n "$ns" link set "$dev" up
	ip -n "$W" link set "b$dev" master br0
	ip -n "$W" link set "b$dev" up
}
veth "$C" "c$tag" 10.79.0.1/24
veth "$S" "s$tag" 10.79.0.2/24 10.79.0.3/24
ip -n "$C" route add 10.96.79.0/24 dev "c$tag"
cat >"$T/capture.nft" <<'NFT'
table ip t {
 chain out {
  type nat hook output priority -100;
  meta mark 1337 return
  ip daddr 10.96.79.0/24 tcp dport 80 redirect to :15001
 }
}
NFT
ip netns exec "$C" nft -f "$T/capture.nft"

# ---- peer certificates: P-256 root, server leaf (IP 10.79.0.3, DNS server.l7.bench) and client
# leaf; the ambient CA dir.
q() { openssl "$@" >/dev/null 2>&1 || die "openssl $*"; }
q ecparam -name prime256v1 -genkey -noout -out "$T/ca.key"
q req -x509 -new -key "$T/ca.key" -subj "/CN=l7 bench root" -days 2 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
	-out "$T/ca.pem"
for who in server client; do
	q ecparam -name prime256v1 -genkey -noout -out "$T/$who.key"
	q req -new -key "$T/$who.key" -subj "/CN=$who" -out "$T/$who.csr"
	printf 'subjectAltName=IP:10.79.0.3,DNS:%s.l7.bench\nextendedKeyUsage=serverAuth,clientAuth\n' \
		"$who" >"$T/$who.ext"
	q x509 -req -in "$T/$who.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-days 2 -extfile "$T/$who.ext" -out "$T/$who.crt"
	cat "$T/$who.crt" "$T/$who.key" >"$T/$who.pem"
done
CIPHER=ECDHE-ECDSA-AES128-GCM-SHA256
musl-gcc -std=c11 -O2 -Wall -static -o "$T/floor" bench/floor.c || die "building bench/floor.c failed"
"$AMBIENT" ca init --trust-domain cluster.local --dir "$T/amb-ca" >/dev/null

# ---- mesh: service web (VIP 10.96.79.10:80 -> 8080) bound to the waypoint; no routes, no
# policies (the waypoint forwards every request as is, after parsing, authz and telemetry).
# The mesh config sits in a directory of its own: the processes watch the config's directory
# with inotify, so a busy log file next to it would wake their watchers on every log line.
WP_HOST=waypoint.bench.svc.cluster.local
mkdir "$T/mesh"
cat >"$T/mesh/mesh.json" <<JSON
{"workloads": [
 {"uid": "client", "name": "client", "namespace": "client", "serviceAccount": "client",
  "workloadIps": ["10.79.0.1"], "protocol": "HBONE"},
 {"uid": "waypoint", "name": "waypoint", "namespace": "bench", "serviceAccount": "waypoint",
  "workloadIps": ["10.79.0.5"], "protocol": "HBONE",
  "services": {"bench/$WP_HOST": {"15008": 15008}}},
 {"uid": "web", "name": "web", "namespace": "bench", "serviceAccount": "web",
  "workloadIps": ["10.79.0.2"], "protocol": "HBONE",
  "services": {"bench/web.bench.svc.cluster.local": {"80": 8080}}}],
 "services": [
 {"name": "web", "namespace": "bench", "hostname": "web.bench.svc.cluster.local",
  "vips": ["10.96.79.10"], "ports": {"80": 8080},
  "waypoint": {"destination": "bench/$WP_HOST"}},
 {"name": "waypoint", "namespace": "bench", "hostname": "$WP_HOST",
  "vips": ["10.96.79.20"], "ports": {"15008": 15008}}]}
JSON
COMMON="--mesh-config $T/mesh/mesh.json --ca-dir $T/amb-ca --admin 127.0.0.1:15000 --metrics 127.0.0.1:15020 --ready 127.0.0.1:15021 --log-level warn"
ZT="ztunnel $COMMON"
WPARGS="waypoint --workload waypoint $COMMON"

# ---- backend: nginx with a 1024-byte file, HTTP/1.1 on 8080 and h2c on 8082.
mkdir -p "$T/www"
head -c 1024 /dev/zero | tr '\0' x >"$T/www/1k"
# nginx_conf NAME WORKERS HTTP-BLOCK-BODY: a complete nginx.conf in $T/NAME.conf, everything it
# writes under $T.
nginx_conf() {
	mkdir -p "$T/$1.tmp"
	cat >"$T/$1.conf" <<EOF
daemon off;
master_process on;
worker_processes $2;
user root;
pid $T/$1.pid;
error_log $T/$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $T/$1.tmp/body;
  proxy_temp_path $T/$1.tmp/proxy;
  fastcgi_temp_path $T/$1.tmp/fastcgi;
  uwsgi_temp_path $T/$1.tmp/uwsgi;
  scgi_temp_path $T/$1.tmp/scgi;
$3
}
EOF
}
nginx_conf nginx-b 2 "  server {
    listen 8080 backlog=4096;
    listen 8082 http2 backlog=4096;
    root $T/www;
    default_type application/octet-stream;
  }"

# ---- haproxy pair: mode http on the client side (h1 and h2c, auto-detected, on one port),
# upstream HTTP/1.1 over mTLS with connections reused; mode tcp TLS server on the server side.
cat >"$T/haproxy-c.cfg" <<EOF
global
  maxconn 4000
  ssl-default-server-ciphers $CIPHER
  ssl-default-server-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend web
  bind 127.0.0.1:10080
  default_backend up
backend up
  server s 10.79.0.3:10443 ssl crt $T/client.pem ca-file $T/ca.pem verify required
EOF
cat >"$T/haproxy-s.cfg" <<EOF
global
  maxconn 4000
  ssl-default-bind-ciphers $CIPHER
  ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tls
  bind 10.79.0.3:10443 ssl crt $T/server.pem ca-file $T/ca.pem verify required curves P-256
  default_backend be
backend be
  server b 127.0.0.1:8080
EOF

# ---- nginx pair: reverse proxy (h1 port 20080, h2c port 20082) with mTLS upstream and upstream
# keep-alive; the server side is an nginx TLS server proxying to the backend (nginx-light has no
# stream module, so it is an HTTP proxy, not TCP like haproxy-s).
nginx_conf nginx-c 2 "  upstream up {
    server 10.79.0.3:20443;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:20080 backlog=4096;
    listen 127.0.0.1:20082 http2 backlog=4096;
    location / {
      proxy_pass https://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_ssl_certificate $T/client.crt;
      proxy_ssl_certificate_key $T/client.key;
      proxy_ssl_trusted_certificate $T/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name server.l7.bench;
      proxy_ssl_protocols TLSv1.2;
      proxy_ssl_ciphers $CIPHER;
      proxy_ssl_session_reuse on;
    }
  }"
nginx_conf nginx-s 2 "  upstream be {
    server 127.0.0.1:8080;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 10.79.0.3:20443 ssl backlog=4096;
    ssl_certificate $T/server.crt;
    ssl_certificate_key $T/server.key;
    ssl_client_certificate $T/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.2;
    ssl_ciphers $CIPHER;
    ssl_ecdh_curve prime256v1;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"

# ---- start everything.
for nn in nginx-b:"$S" nginx-c:"$C" nginx-s:"$S"; do
	n=${nn%%:*}
	ip netns exec "${nn#*:}" nginx -t -q -e "$T/$n.err" -c "$T/$n.conf" 2>"$T/$n.check" ||
		{ cat "$T/$n.check" >&2; die "$n: bad nginx config"; }
done
bench_start_ns nginx-b "$S" nginx -e "$T/nginx-b.err" -c "$T/nginx-b.conf"
NG_B=$BENCH_LAST_PID
# shellcheck disable=SC2086
bench_start_ns ztunnel-c "$C" "$AMBIENT" $ZT
AMB_C=$BENCH_LAST_PID
# shellcheck disable=SC2086
bench_start_ns ztunnel-s "$S" "$AMBIENT" $ZT
AMB_S=$BENCH_LAST_PID
# shellcheck disable=SC2086
bench_start_ns waypoint "$W" "$AMBIENT" $WPARGS
WP=$BENCH_LAST_PID
bench_start_ns haproxy-c "$C" haproxy -db -f "$T/haproxy-c.cfg"
HA_C=$BENCH_LAST_PID
bench_start_ns haproxy-s "$S" haproxy -db -f "$T/haproxy-s.cfg"
HA_S=$BENCH_LAST_PID
bench_start_ns nginx-c "$C" nginx -e "$T/nginx-c.err" -c "$T/nginx-c.conf"
NG_C=$BENCH_LAST_PID
bench_start_ns nginx-s "$S" nginx -e "$T/nginx-s.err" -c "$T/nginx-s.conf"
NG_S=$BENCH_LAST_PID
bench_start_ns floor "$S" "$T/floor" 10.79.0.3 8090
FLOOR=$BENCH_LAST_PID

check_alive() {
	for pn in "$NG_B:nginx-b" "$AMB_C:ztunnel-c" "$AMB_S:ztunnel-s" "$WP:waypoint" \
		"$HA_C:haproxy-c" "$HA_S:haproxy-s" "$NG_C:nginx-c" "$NG_S:nginx-s" "$FLOOR:floor"; do
		bench_alive "${pn%%:*}" "${pn#*:}"
	done
}
ready() { # NS URL
	ip netns exec "$1" curl -s --max-time 2 "$2" 2>/dev/null | grep -q ready
}
i=0
until ready "$C" http://127.0.0.1:15021/healthz/ready && ready "$S" http://127.0.0.1:15021/healthz/ready &&
	ready "$W" http://127.0.0.1:15021/healthz/ready; do
	i=$((i + 1))
	[ $i -lt 150 ] || { check_alive; die "ztunnels or waypoint not ready"; }
	sleep 0.1
done

path_url() { # PATH PROTO(h1|h2)
	case $1/$2 in
	direct/h1) echo http://10.79.0.3:8080/1k ;; direct/h2) echo http://10.79.0.3:8082/1k ;;
	ambient/*) echo http://10.96.79.10/1k ;;
	haproxy/*) echo http://127.0.0.1:10080/1k ;;
	floor/h1) echo http://10.79.0.3:8090/1k ;;
	nginx/h1) echo http://127.0.0.1:20080/1k ;; nginx/h2) echo http://127.0.0.1:20082/1k ;;
	esac
}
# nginx_pids MASTER: the master and its worker processes.
nginx_pids() {
	# shellcheck disable=SC2046
	echo "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null)
}
path_pids() {
	case $1 in
	direct) echo "" ;; ambient) echo "$AMB_C $WP $AMB_S" ;;
	haproxy) echo "$HA_C $HA_S" ;; nginx) echo "$(nginx_pids "$NG_C") $(nginx_pids "$NG_S")" ;;
	floor) echo "$FLOOR" ;;
	esac
}
cpu_ms() { # PIDS...: total CPU ms
	tot=0
	for p in "$@"; do tot=$((tot + $(proc_cpu_ms "$p"))); done
	echo $tot
}
mem_kb() { # FIELD PIDS...: sum of a /proc/PID/status field (VmRSS, VmHWM)
	f=$1
	shift
	tot=0
	for p in "$@"; do tot=$((tot + $(proc_field "$p" "$f"))); done
	echo $tot
}
us_sy() { # PIDS...: "user_ms sys_ms" of each
	hz=$(getconf CLK_TCK)
	for p in "$@"; do
		sed 's/^.*) //' "/proc/$p/stat" | awk -v hz="$hz" '{ printf "%d %d ", $12 * 1000 / hz, $13 * 1000 / hz }'
	done
}
pss_kb() { # PIDS...: sum of Pss (shared pages split between the processes that map them)
	tot=0
	for p in "$@"; do tot=$((tot + $(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup"))); done
	echo $tot
}

# First, one HTTP/1.1 and one h2c request on every path: 200 with the 1024-byte body, or fail.
for p in $PATHS; do
	for proto in h1 h2; do
		opt=--http1.1
		[ $proto = h1 ] || opt=--http2-prior-knowledge
		got=$(ip netns exec "$C" curl -sS $opt --max-time 5 -o /dev/null -w '%{http_code} %{size_download} %{http_version}' \
			"$(path_url $p $proto)" 2>"$T/check-$p-$proto.err") || true
		case $got in
		"200 1024 1.1" | "200 1024 2") ;;
		*)
			cat "$T/check-$p-$proto.err" >&2
			check_alive
			die "$p/$proto: expected '200 1024' from $(path_url $p $proto), got '$got'"
			;;
		esac
	done
done
got=$(ip netns exec "$C" curl -sS --http1.1 --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' \
	http://10.79.0.3:8090/1k 2>"$T/check-floor.err") || true
[ "$got" = "200 1024" ] || { cat "$T/check-floor.err" >&2; check_alive; die "floor: expected '200 1024', got '$got'"; }
sleep 1
for p in ambient haproxy nginx; do
	# shellcheck disable=SC2046
	eval "IDLE_$p=$(mem_kb VmRSS $(path_pids $p))"
done
# Idle CPU (ms over 2 s with no traffic): a busy loop or a fast timer would show here.
for p in ambient haproxy nginx; do
	# shellcheck disable=SC2046
	eval "I0_$p=$(cpu_ms $(path_pids $p))"
done
sleep 2
for p in ambient haproxy nginx; do
	# shellcheck disable=SC2046
	eval "IDLECPU_$p=\$((\$(cpu_ms \$(path_pids $p)) - I0_$p))"
done

cat >"$T/report.lua" <<'LUA'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_us=%d p99_us=%d status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), e.status, e.connect, e.read, e.write, e.timeout))
end
LUA

say "l7: commands (\$T is $T)"
say "  ztunnels:  ip netns exec <C|S> $AMBIENT $ZT"
say "  waypoint:  ip netns exec W $AMBIENT $WPARGS"
say "  haproxy -db -f \$T/haproxy-{c,s}.cfg; nginx -c \$T/nginx-{c,s,b}.conf ($CIPHER, TLS 1.2)"
say "  saturation: h2load -c $H2_CONNS -m $H2_STREAMS -D $DURATION URL;  wrk -t1 -c$WRK_CONNS -d${DURATION}s --timeout 5s -s \$T/report.lua URL"
say "  fixed rate: h2load -c 10 -m 1 --rps $((RATE / 10)) -n $((RATE * RATE_SECS)) --log-file F URL;  python3 \$T/rate.py URL $RATE $RATE_SECS 10 F"
say "  floor: ip netns exec $S \$T/floor 10.79.0.3 8090;  python3 \$T/rate.py http://10.79.0.3:8090/1k $RATE $RATE_SECS 10 F (the wake-up floor; \$T/floor: musl-gcc -std=c11 -O2 -Wall -static bench/floor.c)"

# h2load_check OUT WHAT: all requests done succeeded with 2xx, or fail; prints "done rps".
h2load_check() {
	python3 - "$1" "$2" <<'PY' || { tail -20 "$1" >&2; check_alive; die "$2: h2load failed"; }
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"finished in ([\d.]+)(?:ms|s), ([\d.]+) req/s", t)  # ms under 1 s
r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", t)
s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", t)
if not (m and r and s):
    sys.exit("%s: cannot parse h2load output" % sys.argv[2])
done, ok, failed, errored, tmo = (int(r.group(i)) for i in (3, 4, 5, 6, 7))
# with -D, a response finishing as the clock stops may be counted in 2xx but not in done
if failed or errored or tmo or ok != done or int(s.group(1)) < ok or done == 0 or \
        int(s.group(2)) + int(s.group(3)) + int(s.group(4)):
    sys.exit("%s: %d done, %d succeeded, %d failed, %d errored, %d timeout, %s 2xx" % (
        sys.argv[2], done, ok, failed, errored, tmo, s.group(1)))
print(done, m.group(2))
PY
}
# wrk_check OUT WHAT: no error of any kind, or fail; prints "requests rps".
wrk_check() {
	line=$(grep '^RESULT ' "$1") || { cat "$1" >&2; check_alive; die "$2: wrk failed"; }
	for k in status connect read write timeout; do
		[ "$(kv "$line" $k)" = 0 ] || { echo "$line" >&2; check_alive; die "$2: wrk counted $k errors"; }
	done
	echo "$(kv "$line" requests) $(kv "$line" rps)"
}

# ---- fixed rate: latency, CPU per 1,000 requests and RSS at RATE requests/s.
# HTTP/2: h2load --rps is per client: 10 clients, one request in flight each, and the clients'
# timers fire together, so every 10 ms the 10 requests leave at once (bursts of 10).
# HTTP/1.1: rate.py, 10 keep-alive connections (one thread each, TCP_NODELAY) with their send
# times interleaved, so one request leaves every 1/RATE s; latency from the moment the request is
# written to the last byte of the 1024-byte body. Its log has h2load's format.
cat >"$T/rate.py" <<'PY'
import socket, sys, threading, time
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
rate, secs, conns, logf = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: l7-rate\r\n\r\n" % (u.path, u.netloc)).encode()
n = int(rate * secs / conns)
rows, errs = [], []
def conn(k, t0):
    try:
        s = socket.create_connection((u.hostname, u.port or 80), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        for j in range(n):
            d = t0 + (k + j * conns) / rate - time.perf_counter()
            if d > 0:
                time.sleep(d)
            a = time.perf_counter()
            wall = time.time()
            s.sendall(req)
            while b"\r\n\r\n" not in buf:
                b = s.recv(65536)
                if not b:
                    raise EOFError("connection closed")
                buf += b
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            cl = [int(l.split(b":", 1)[1]) for l in lines[1:] if l.lower().startswith(b"content-length:")]
            if len(cl) != 1:
                raise ValueError("response without one Content-Length: %r" % head)
            while len(buf) < cl[0]:
                b = s.recv(65536)
                if not b:
                    raise EOFError("connection closed in the body")
                buf += b
            buf = buf[cl[0]:]
            rows.append("%d\t%d\t%d\n" % (wall * 1e6, status if cl[0] == 1024 else 0,
                                              (time.perf_counter() - a) * 1e6))
        s.close()
    except Exception as e:
        errs.append(repr(e))
t0 = time.perf_counter() + 0.2
th = [threading.Thread(target=conn, args=(k, t0)) for k in range(conns)]
for t in th:
    t.start()
for t in th:
    t.join()
el = time.perf_counter() - t0
if errs:
    sys.exit("rate.py: " + errs[0])
open(logf, "w").writelines(rows)
print(len(rows), "%.1f" % (len(rows) / el))
PY
cat >"$T/pct.py" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 3:
        rows.append((int(f[0]), int(f[1]), int(f[2])))
rows.sort()
t0 = rows[0][0]
lat = sorted(d for (t, st, d) in rows if t - t0 >= 500000)  # the first 0.5 s is warm-up
bad = sum(1 for r in rows if not 200 <= r[1] < 300)
if bad or not lat:
    sys.exit("%d non-2xx of %d" % (bad, len(rows)))
print(lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))])
PY
# perf_start NAME: with PERF set, `perf record -g` each ambient process for DURATION-1 s in the
# background (PERF_PIDS); perf_wait waits for them.
PERF_PIDS=
perf_start() {
	PERF_PIDS=
	[ -n "$PERF" ] || return 0
	for pn in "$AMB_C:ztunnel-c" "$WP:waypoint" "$AMB_S:ztunnel-s"; do
		perf record -q -g -p "${pn%%:*}" -o "$T/perf-$1-${pn#*:}.data" -- sleep $(($2 - 1)) >>"$T/perf.log" 2>&1 &
		PERF_PIDS="$PERF_PIDS $!"
	done
}
perf_wait() {
	for pp in $PERF_PIDS; do wait "$pp" || say "perf record failed: $(tail -3 "$T/perf.log")"; done
	PERF_PIDS=
}
for p in $PATHS; do
	for proto in h2 h1; do
		: >"$T/rate-$p-$proto"
	done
done
: >"$T/rate-floor-h1"
: >"$T/ratesplit-ambient-h2"
: >"$T/ratesplit-ambient-h1"
r=1
while [ "$r" -le "$REPS" ]; do
	# The wake-up floor (HTTP/1.1 only) runs with the paths, at the same rate and client.
	case $((r % 2)) in 1) order="direct ambient haproxy nginx floor" ;; *) order="floor nginx haproxy ambient direct" ;; esac
	for p in $order; do
		pids=$(path_pids $p)
		protos="h2 h1"
		[ $p != floor ] || protos=h1
		for proto in $protos; do
			# shellcheck disable=SC2086
			c0=$(cpu_ms $pids)
			[ $p != ambient ] || split0=$(us_sy "$AMB_C" "$WP" "$AMB_S")
			log=$T/rate-$p-$proto-$r.log
			if [ $proto = h2 ]; then
				ip netns exec "$C" h2load -c 10 -m 1 --rps $((RATE / 10)) -n $((RATE * RATE_SECS)) \
					--log-file "$log" "$(path_url $p h2)" >"$T/rate-$p-$proto-$r.out" 2>&1 &
			else
				ip netns exec "$C" python3 "$T/rate.py" "$(path_url $p h1)" "$RATE" "$RATE_SECS" 10 "$log" \
					>"$T/rate-$p-$proto-$r.out" 2>&1 &
			fi
			hp=$!
			[ $p != ambient ] || [ $proto != h2 ] || [ "$r" != 1 ] || perf_start rate "$RATE_SECS"
			if [ $proto = h2 ] && [ $p != direct ] && [ "$r" = 1 ]; then
				sleep $((RATE_SECS / 2)).5
				# shellcheck disable=SC2086
				eval "RRSS_$p=$(mem_kb VmRSS $pids) RPSS_$p=$(pss_kb $pids)"
			fi
			wait $hp || { tail -20 "$T/rate-$p-$proto-$r.out" >&2; check_alive; die "$p/$proto: fixed-rate h2load failed"; }
			perf_wait
			# shellcheck disable=SC2086
			c1=$(cpu_ms $pids)
			if [ $proto = h2 ]; then
				res=$(h2load_check "$T/rate-$p-$proto-$r.out" "$p/h2 fixed rate")
			else
				res=$(tail -1 "$T/rate-$p-$proto-$r.out")
			fi
			lat=$(python3 "$T/pct.py" "$log") || die "$p/$proto: fixed-rate run: $lat"
			# "p50_us p99_us cpu_ms requests rate"
			# shellcheck disable=SC2086
			set -- $res
			echo "$lat $((c1 - c0)) $1 $2" >>"$T/rate-$p-$proto"
			[ $p != ambient ] || echo "$split0 $(us_sy "$AMB_C" "$WP" "$AMB_S") $1" >>"$T/ratesplit-ambient-$proto"
		done
	done
	r=$((r + 1))
done
check_alive

# ---- saturation, REPS times, order rotated.
for p in $PATHS; do
	for proto in h2 h1; do
		: >"$T/sat-$p-$proto"
	done
	: >"$T/split-ambient-h2"
	: >"$T/split-ambient-h1"
done
# Warm-up: 1 s of each load per path.
for p in $PATHS; do
	ip netns exec "$C" h2load -c "$H2_CONNS" -m "$H2_STREAMS" -D 1 "$(path_url $p h2)" >/dev/null 2>&1 || true
	ip netns exec "$C" wrk -t1 -c"$WRK_CONNS" -d1s "$(path_url $p h1)" >/dev/null 2>&1 || true
done
r=1
while [ "$r" -le "$REPS" ]; do
	case $((r % 2)) in 1) order="direct ambient haproxy nginx" ;; *) order="nginx haproxy ambient direct" ;; esac
	for p in $order; do
		pids=$(path_pids $p)
		for proto in h2 h1; do
			# shellcheck disable=SC2086
			c0=$(cpu_ms $pids)
			[ $p != ambient ] || split0=$(us_sy "$AMB_C" "$WP" "$AMB_S")
			out=$T/sat-$p-$proto-$r.out
			if [ $proto = h2 ]; then
				[ $p != ambient ] || [ "$r" != 1 ] || perf_start sat "$DURATION"
				ip netns exec "$C" h2load -c "$H2_CONNS" -m "$H2_STREAMS" -D "$DURATION" "$(path_url $p h2)" >"$out" 2>&1 ||
					{ tail -20 "$out" >&2; check_alive; die "$p: h2load failed"; }
				perf_wait
				res=$(h2load_check "$out" "$p/h2")
			else
				ip netns exec "$C" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" --timeout 5s -s "$T/report.lua" "$(path_url $p h1)" >"$out" 2>&1 ||
					{ tail -20 "$out" >&2; check_alive; die "$p: wrk failed"; }
				res=$(wrk_check "$out" "$p/h1")
			fi
			# shellcheck disable=SC2086
			c1=$(cpu_ms $pids)
			set -- $res
			# "rps cpu_ms requests"
			echo "$2 $((c1 - c0)) $1" >>"$T/sat-$p-$proto"
			if [ $p = ambient ]; then
				echo "$split0 $(us_sy "$AMB_C" "$WP" "$AMB_S") $1" >>"$T/split-ambient-$proto"
			fi
		done
	done
	r=$((r + 1))
done
check_alive
for p in ambient haproxy nginx; do
	# shellcheck disable=SC2046
	eval "PEAK_$p=$(mem_kb VmHWM $(path_pids $p))"
done
# The ambient requests really went through the waypoint: its istio_requests_total (200s) must
# count at least the requests that h2load and wrk completed on the ambient path.
amb_total=$(cat "$T"/sat-ambient-h2 "$T"/sat-ambient-h1 | awk '{ s += $3 } END { print s }')
wp_total=$(ip netns exec "$W" curl -s --max-time 5 http://127.0.0.1:15020/metrics |
	awk '/^istio_requests_total\{/ && /response_code="200"/ { s += $NF } END { printf "%d\n", s }')
[ "$wp_total" -ge "$amb_total" ] || die "waypoint counted $wp_total requests with 200, h2load+wrk completed $amb_total on the ambient path"
say "l7: waypoint istio_requests_total{response_code=\"200\"} = $wp_total (>= $amb_total timed ambient requests)"

if [ -n "$PERF" ]; then
	for f in "$T"/perf-*.data; do
		[ -s "$f" ] || continue
		perf report -i "$f" --stdio --no-children --sort dso,symbol -g none 2>/dev/null |
			grep -v '^#' | grep '%' | head -60 >"${f%.data}.txt" || true
		say "l7: perf, top symbols of $(basename "${f%.data}") (all in ${f%.data}.txt):"
		head -15 "${f%.data}.txt" >&2
	done
fi

# ---- tables.
# med FILE COL: the median of column COL; cpu1k FILE: median of cpu_ms/requests (= CPU s per
# 1,000 requests); core FILE: median of requests per proxy CPU second.
med() { awk -v c="$2" '{ print $c }' "$1" | median; }
cpu1k() { awk '{ printf "%.4f\n", $2 / $3 }' "$1" | median | awk '{ printf "%.3f\n", $1 }'; }
core() { awk '{ if ($2 > 0) printf "%.0f\n", $3 / ($2 / 1000); else print 0 }' "$1" | median | awk '{ printf "%.0f\n", $1 }'; }
runs() { awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 }' "$1"; }

echo
echo "saturation (median of $REPS runs of ${DURATION}s): requests/s, proxy CPU s per 1,000 requests, requests/s per proxy core"
printf '%-8s %10s %10s %10s %10s %12s %12s   %s\n' path "h2 req/s" "h1 req/s" "h2 CPU/1k" "h1 CPU/1k" "h2 req/core" "h1 req/core" "runs h2 | h1 req/s"
for p in $PATHS; do
	h2=$(med "$T/sat-$p-h2" 1)
	h1=$(med "$T/sat-$p-h1" 1)
	if [ $p = direct ]; then
		c2=- c1=- k2=- k1=-
	else
		c2=$(cpu1k "$T/sat-$p-h2") c1=$(cpu1k "$T/sat-$p-h1") k2=$(core "$T/sat-$p-h2") k1=$(core "$T/sat-$p-h1")
	fi
	printf '%-8s %10.0f %10.0f %10s %10s %12s %12s   %s | %s\n' "$p" "$h2" "$h1" "$c2" "$c1" "$k2" "$k1" \
		"$(runs "$T/sat-$p-h2")" "$(runs "$T/sat-$p-h1")"
	eval "S2_$p=$h2 S1_$p=$h1 C2_$p=$c2 C1_$p=$c1 K2_$p=$k2 K1_$p=$k1"
done
for proto in h2 h1; do
	# split file: user0 sys0 (x3 processes), user1 sys1 (x3), requests
	awk '{ for (i = 1; i <= 6; i++) d[i] += $(i + 6) - $i; n += $13 }
	END { if (n) printf "ambient %s CPU s per 1,000 requests, user+sys (all runs): ztunnel-c %.3f+%.3f, waypoint %.3f+%.3f, ztunnel-s %.3f+%.3f\n", p, d[1] / n, d[2] / n, d[3] / n, d[4] / n, d[5] / n, d[6] / n }' \
		p=$proto "$T/split-ambient-$proto"
done

echo
echo "fixed rate $RATE req/s, ${RATE_SECS}s, median of $REPS runs (h2: h2load --rps, 10 connections, bursts of 10 every 10 ms; h1: rate.py, 10 connections, evenly spaced): latency us, proxy CPU s per 1,000 requests, RSS KiB"
printf '%-8s %7s %7s %7s %7s %9s %9s %7s %9s %9s %9s %9s %8s   %s\n' path "h2 p50" "h2 p99" "h1 p50" "h1 p99" "h2 CPU/1k" "h1 CPU/1k" "h2 rate" "RSS@rate" "PSS@rate" "idle RSS" "peak RSS" "idle CPU" "runs p99 h2 | h1"
ratecpu() { awk '{ printf "%.4f\n", $3 / $4 }' "$1" | median | awk '{ printf "%.3f\n", $1 }'; }
for p in $PATHS; do
	f2=$T/rate-$p-h2 f1=$T/rate-$p-h1
	set -- "$(med "$f2" 1)" "$(med "$f2" 2)" "$(med "$f1" 1)" "$(med "$f1" 2)"
	rr=$(med "$f2" 5)
	if [ $p = direct ]; then
		rc2=- rc1=- rs=- ps=- id=- pk=- ic=-
	else
		rc2=$(ratecpu "$f2") rc1=$(ratecpu "$f1")
		eval "rs=\$RRSS_$p ps=\$RPSS_$p id=\$IDLE_$p pk=\$PEAK_$p ic=\${IDLECPU_$p}ms/2s"
	fi
	printf '%-8s %7.0f %7.0f %7.0f %7.0f %9s %9s %7.0f %9s %9s %9s %9s %8s   %s | %s\n' "$p" "$1" "$2" "$3" "$4" "$rc2" "$rc1" "$rr" "$rs" "$ps" "$id" "$pk" "$ic" \
		"$(awk '{ printf "%s%d", (NR > 1 ? " " : ""), $2 }' "$f2")" "$(awk '{ printf "%s%d", (NR > 1 ? " " : ""), $2 }' "$f1")"
	eval "P50_${p}_h2=$1 P99_${p}_h2=$2 P50_${p}_h1=$3 P99_${p}_h1=$4 RCPU_${p}_h2=$rc2 RCPU_${p}_h1=$rc1"
done
echo "(RSS@rate/PSS@rate: sampled half-way through the first HTTP/2 fixed-rate run; peak RSS: sum of VmHWM at the end; nginx sums master + 2 workers per side)"
for proto in h2 h1; do
	awk '{ for (i = 1; i <= 6; i++) d[i] += $(i + 6) - $i; n += $13 }
	END { if (n) printf "ambient %s at %s req/s, CPU s per 1,000 requests, user+sys (all runs): ztunnel-c %.3f+%.3f, waypoint %.3f+%.3f, ztunnel-s %.3f+%.3f\n", p, r, d[1] / n, d[2] / n, d[3] / n, d[4] / n, d[5] / n, d[6] / n }' \
		p=$proto r="$RATE" "$T/ratesplit-ambient-$proto"
done
ratio() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2f" % (a / b) if b else "-")' "$1" "$2"; }
FLOOR1K=$(ratecpu "$T/rate-floor-h1")
# A path's floor: its proxies' wake-ups per request (each process once per direction) times one.
pfloor() { python3 -c 'import sys; print("%.3f" % (float(sys.argv[1]) * int(sys.argv[2])))' "$FLOOR1K" "$1"; }
printf 'wake-up floor at %s req/s (bench/floor.c, HTTP/1.1, rate.py): %s s per 1,000 requests for one wake-up (epoll_wait + read + send); p50 %.0f us\n' \
	"$RATE" "$FLOOR1K" "$(med "$T/rate-floor-h1" 1)"
printf '  h1 at %s req/s / the path floor: ambient %s / %s (6 wake-ups) = %s, haproxy %s / %s (4) = %s, nginx %s / %s (4) = %s\n' "$RATE" \
	"$RCPU_ambient_h1" "$(pfloor 6)" "$(ratio "$RCPU_ambient_h1" "$(pfloor 6)")" \
	"$RCPU_haproxy_h1" "$(pfloor 4)" "$(ratio "$RCPU_haproxy_h1" "$(pfloor 4)")" \
	"$RCPU_nginx_h1" "$(pfloor 4)" "$(ratio "$RCPU_nginx_h1" "$(pfloor 4)")"

echo
echo "ambient / peer (saturation req/s, req/s per proxy core, CPU per 1,000 requests; fixed-rate p50/p99; RSS at $RATE req/s)"
printf '%-18s %7s %7s %8s %8s %7s %7s %7s %7s %7s %7s %8s\n' "" "h2 rps" "h1 rps" "h2 /core" "h1 /core" "h2 CPU" "h1 CPU" "h2 p50" "h2 p99" "h1 p50" "h1 p99" "RSS@rate"
for p in direct haproxy nginx; do
	eval "s2=\$S2_$p s1=\$S1_$p"
	row="$(ratio "$S2_ambient" "$s2") $(ratio "$S1_ambient" "$s1")"
	if [ $p = direct ]; then
		row="$row - - - -"
	else
		eval "k2=\$K2_$p k1=\$K1_$p c2=\$C2_$p c1=\$C1_$p"
		row="$row $(ratio "$K2_ambient" "$k2") $(ratio "$K1_ambient" "$k1") $(ratio "$C2_ambient" "$c2") $(ratio "$C1_ambient" "$c1")"
	fi
	for x in P50_ P99_; do
		for proto in h2 h1; do
			eval "a=\$${x}ambient_$proto b=\$${x}${p}_$proto"
			row="$row $(ratio "$a" "$b")"
		done
	done
	if [ $p = direct ]; then row="$row -"; else eval "row=\"\$row \$(ratio \$RRSS_ambient \$RRSS_$p)\""; fi
	# shellcheck disable=SC2086
	set -- $row
	printf 'ambient / %-8s %7s %7s %8s %8s %7s %7s %7s %7s %7s %7s %8s\n' "$p" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$9" "$8" "${10}" "${11}"
done

echo
echo "issue 7 targets (ambient = ztunnel-c + waypoint + ztunnel-s):"
tgt() { python3 -c "import sys; print('met' if $1 else 'NOT met')"; }
printf '  req/s per core >= 1.2x haproxy:  h2 %sx, h1 %sx  -> h2 %s, h1 %s\n' \
	"$(ratio "$K2_ambient" "$K2_haproxy")" "$(ratio "$K1_ambient" "$K1_haproxy")" \
	"$(tgt "$K2_ambient >= 1.2 * $K2_haproxy")" "$(tgt "$K1_ambient >= 1.2 * $K1_haproxy")"
printf '  CPU <= 0.05 s per 1,000 requests: at %s req/s h2 %s, h1 %s (the wake-up floor of the path: %s); at saturation h2 %s, h1 %s -> %s\n' \
	"$RATE" "$RCPU_ambient_h2" "$RCPU_ambient_h1" "$(pfloor 6)" "$C2_ambient" "$C1_ambient" \
	"$(tgt "max($RCPU_ambient_h2, $RCPU_ambient_h1, $C2_ambient, $C1_ambient) <= 0.05")"
printf '  RSS <= 10 MiB at %s req/s: %s KiB (3 processes) -> %s\n' "$RATE" "$RRSS_ambient" "$(tgt "$RRSS_ambient <= 10240")"
