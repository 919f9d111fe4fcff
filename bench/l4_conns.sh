#!/bin/sh
# L4 memory with many open idle tunnels: CONNS (1,000) concurrent TCP connections held open and
# idle through each proxy pair between a client netns and a server netns joined by a veth pair
# (the same topology as bench/l4.sh):
#   ambient  client -(nft REDIRECT)-> ztunnel :15001 =HBONE (mTLS + HTTP/2 CONNECT)=> ztunnel :15008 -> echo
#   stunnel  client -> stunnel (client mode) =mTLS=> stunnel (server) -> echo
#   haproxy  client -> haproxy (TCP mode) =mTLS=> haproxy (TCP mode) -> echo
# The client (python, in the client netns) opens the connections one after the other, sends one
# byte on each and waits for its echo (so every tunnel is established end to end), then keeps them
# all open and idle. VmRSS of each proxy process is read before (idle, after one connection), with
# all CONNS open and idle for SETTLE seconds, and after they are closed. Before closing, every
# connection is used once more (one byte echoed) to check that none was dropped.
# Needs root (netns). Every netns and process it makes is removed/stopped at exit.
#
# Environment: AMBIENT (build/ambient), CONNS (1000), SETTLE (seconds, 2), BENCH_KEEP=1 keeps the
# temp dir.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

AMBIENT=${AMBIENT:-build/ambient}
CONNS=${CONNS:-1000}
SETTLE=${SETTLE:-2}

if [ "$(id -u)" != 0 ]; then
	say "l4_conns: skipped (needs root for network namespaces)"
	exit 0
fi
for t in ip nft stunnel4 haproxy openssl python3 curl; do
	command -v "$t" >/dev/null 2>&1 || die "$t not installed (run 'make deps' as root)"
done
[ -x "$AMBIENT" ] || die "$AMBIENT not built (run 'make')"
# Each connection is two sockets in every proxy (more in stunnel), and the client holds CONNS.
# (dash and bash both have ulimit -n.)
# shellcheck disable=SC3045
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
# shellcheck disable=SC3045
[ "$(ulimit -n)" -ge $((CONNS * 3 + 100)) ] || die "ulimit -n $(ulimit -n) is too low for CONNS=$CONNS"

bench_init
T=$BENCH_TMP
cp "$AMBIENT" "$T/ambient"
AMBIENT=$T/ambient
tag=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
C=ambcc-$tag
S=ambcs-$tag
# shellcheck disable=SC2034,SC2016 # evaluated by bench_cleanup
BENCH_ON_EXIT='ip netns del "$C" 2>/dev/null; ip netns del "$S" 2>/dev/null'
ip netns add "$C"
ip netns add "$S"
ip -n "$C" link set lo up
ip -n "$S" link set lo up
ip -n "$C" link add "wc$tag" type veth peer name "ws$tag" netns "$S"
ip -n "$C" addr add 10.79.0.1/24 dev "wc$tag"
ip -n "$S" addr add 10.79.0.2/24 dev "ws$tag" # the mesh workload (ambient path)
ip -n "$S" addr add 10.79.0.3/24 dev "ws$tag" # outside the mesh (stunnel, haproxy)
ip -n "$C" link set "wc$tag" up
ip -n "$S" link set "ws$tag" up
cat >"$T/capture.nft" <<'NFT'
table ip t {
 chain out {
  type nat hook output priority -100;
  meta mark 1337 return
  ip daddr 10.79.0.2 tcp dport 7000 redirect to :15001
 }
}
NFT
ip netns exec "$C" nft -f "$T/capture.nft"

# Peer certificates, ambient CA dir, mesh config and $ZT (bench/lib.sh).
l4_setup_pki 10.79.0

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
[echo]
accept = 127.0.0.1:17000
connect = 10.79.0.3:27000
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
[echo]
accept = 10.79.0.3:27000
connect = 127.0.0.1:7000
EOF
# Idle timeouts long enough for the measurement; maxconn above CONNS.
cat >"$T/haproxy-c.cfg" <<EOF
global
  maxconn $((CONNS * 2 + 100))
  ssl-default-server-ciphers $CIPHER
  ssl-default-server-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2
defaults
  mode tcp
  maxconn $((CONNS * 2 + 100))
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend echo
  bind 127.0.0.1:37000
  default_backend echo
backend echo
  server s 10.79.0.3:47000 ssl crt $T/client.pem ca-file $T/ca.pem verify required maxconn $((CONNS * 2))
EOF
cat >"$T/haproxy-s.cfg" <<EOF
global
  maxconn $((CONNS * 2 + 100))
  ssl-default-bind-ciphers $CIPHER
  ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2
defaults
  mode tcp
  maxconn $((CONNS * 2 + 100))
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend echo
  bind 10.79.0.3:47000 ssl crt $T/server.pem ca-file $T/ca.pem verify required curves P-256
  default_backend echo
backend echo
  server s 127.0.0.1:7000 maxconn $((CONNS * 2))
EOF

# An echo server that holds many connections in one process (asyncio), on every address.
cat >"$T/echo.py" <<'PY'
import asyncio
async def echo(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
    except OSError:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(echo, "0.0.0.0", 7000, backlog=4096)
    print("listening", flush=True)
    await srv.serve_forever()
asyncio.run(main())
PY

# The client: opens N connections (one byte echoed on each), prints "open N", waits for the file
# GO to appear, echoes one byte on every connection again, prints "verified N" and closes them.
cat >"$T/hold.py" <<'PY'
import os, socket, sys, time
host, port, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
socks = []
def ping(s):
    s.sendall(b"x")
    if s.recv(1) != b"x":
        sys.exit("connection %d: no echo" % len(socks))
for i in range(n):
    s = socket.create_connection((host, port), timeout=20)
    ping(s)
    socks.append(s)
print("open", len(socks), flush=True)
while not os.path.exists(go):
    time.sleep(0.1)
for s in socks:
    ping(s)
print("verified", len(socks), flush=True)
for s in socks:
    s.close()
PY

# The interpreter by its real path: the cleanup stops a PID only while its exe is the one started
# (a pyenv shim or a symlink would not match).
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
bench_start_ns echo-s "$S" "$PY" -u "$T/echo.py"
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

ready() { ip netns exec "$1" curl -s --max-time 2 "$2" 2>/dev/null | grep -q ready; }
i=0
until ready "$C" http://127.0.0.1:15021/healthz/ready && ready "$S" http://127.0.0.1:15021/healthz/ready &&
	grep -q listening "$T/echo-s.log"; do
	i=$((i + 1))
	[ $i -lt 150 ] || { bench_alive "$AMB_C" ztunnel-c; bench_alive "$AMB_S" ztunnel-s; bench_alive "$ECHO_PID" echo-s; die "not ready"; }
	sleep 0.1
done

path_host() { case $1 in ambient) echo 10.79.0.2 ;; *) echo 127.0.0.1 ;; esac; }
path_port() { case $1 in ambient) echo 7000 ;; stunnel) echo 17000 ;; haproxy) echo 37000 ;; esac; }
path_pids() {
	case $1 in
	ambient) echo "$AMB_C $AMB_S" ;; stunnel) echo "$ST_C $ST_S" ;; haproxy) echo "$HA_C $HA_S" ;;
	esac
}
check_alive() {
	for pn in "$ECHO_PID:echo-s" "$AMB_C:ztunnel-c" "$AMB_S:ztunnel-s" \
		"$ST_C:stunnel-c" "$ST_S:stunnel-s" "$HA_C:haproxy-c" "$HA_S:haproxy-s"; do
		bench_alive "${pn%%:*}" "${pn#*:}"
	done
}
rss() { # PIDS...: "kb kb"
	out=""
	for p in "$@"; do out="$out $(proc_field "$p" VmRSS)"; done
	echo $out
}
threads() {
	out=""
	for p in "$@"; do out="$out $(proc_field "$p" Threads)"; done
	echo $out
}
sum() { echo $(($1 + $2)); }

printf '\n%d open idle connections per path; VmRSS in KiB (client-side proxy + server-side proxy)\n' "$CONNS"
printf '%-8s %18s %22s %18s %16s %12s\n' path "idle before" "$CONNS open" "after close" "KiB/conn (pair)" "threads"
for p in ambient stunnel haproxy; do
	# shellcheck disable=SC2046
	set -- $(path_pids $p)
	# One connection first, so each proxy has done its lazy setup (certificates, pools, TLS).
	ip netns exec "$C" python3 -c 'import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10); s.sendall(b"x"); assert s.recv(1) == b"x"' \
		"$(path_host $p)" "$(path_port $p)" || { check_alive; die "$p: one echo through the path failed"; }
	sleep 1
	before=$(rss "$@")
	rm -f "$T/go-$p"
	: >"$T/hold-$p.out"
	say "$p: opening $CONNS connections ($(date +%T))"
	bench_bg ip netns exec "$C" python3 -u "$T/hold.py" "$(path_host $p)" "$(path_port $p)" "$CONNS" "$T/go-$p" \
		>"$T/hold-$p.out" 2>&1
	HOLD=$BENCH_BG_PID
	i=0
	until grep -q '^open' "$T/hold-$p.out"; do
		kill -0 "$HOLD" 2>/dev/null || { cat "$T/hold-$p.out" >&2; check_alive; die "$p: opening $CONNS connections failed"; }
		i=$((i + 1))
		[ $i -lt 1200 ] || die "$p: $CONNS connections not open after 120 s"
		sleep 0.1
	done
	sleep "$SETTLE"
	during=$(rss "$@")
	thr=$(threads "$@")
	touch "$T/go-$p"
	wait "$HOLD" || { cat "$T/hold-$p.out" >&2; check_alive; die "$p: the open connections did not all echo again"; }
	grep -q "^verified $CONNS" "$T/hold-$p.out" || die "$p: $(cat "$T/hold-$p.out")"
	sleep "$SETTLE"
	after=$(rss "$@")
	# shellcheck disable=SC2086
	b=$(sum $before)
	# shellcheck disable=SC2086
	d=$(sum $during)
	# shellcheck disable=SC2086
	a=$(sum $after)
	per=$(python3 -c 'import sys; print("%.1f" % ((int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3])))' "$b" "$d" "$CONNS")
	printf '%-8s %18s %22s %18s %16s %12s\n' "$p" "$b ($(echo $before | tr ' ' '+'))" \
		"$d ($(echo $during | tr ' ' '+'))" "$a ($(echo $after | tr ' ' '+'))" "$per" "$(echo $thr | tr ' ' '+')"
	eval "RSS_$p=$d"
done
check_alive
ratio() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2f" % (a / b) if b else "-")' "$1" "$2"; }
printf '\nambient / stunnel (RSS with %d open): %s   ambient / haproxy: %s\n' "$CONNS" \
	"$(ratio "$RSS_ambient" "$RSS_stunnel")" "$(ratio "$RSS_ambient" "$RSS_haproxy")"
echo
echo "TLS: 1.2, $CIPHER for stunnel and haproxy"
echo "netns: C = $C (client), S = $S (server)"
bench_print_cmds
