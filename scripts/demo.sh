#!/bin/sh
# `make demo`: starts a small ambient mesh in network namespaces of its own and narrates it step
# by step: plain traffic, enrollment with `ambient cni add` (mTLS, identities from the access
# log), an L4 DENY policy by config reload, then (when this build has them) `ambient ctl explain`
# and an L7 route + policy at a waypoint. Everything is torn down on exit, Ctrl-C or failure.
#
# Needs root. Touches nothing outside the namespaces it creates (all named ambdemo-*, addresses in
# 10.86.0.0/24) and its state directory (DEMO_DIR, default /tmp/ambient-demo; logs are kept there
# after the run). Environment:
#   DEMO_NONINTERACTIVE=1   no pauses between steps (tests, CI); also implied without a terminal
#   AMBIENT_BIN=PATH        use this binary instead of building build/ambient
#   DEMO_DIR=DIR            state and logs (default /tmp/ambient-demo; emptied at start)
#   DEMO_SKIP_DEPS=1        do not run scripts/deps.sh even if a tool is missing
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
P=ambdemo
NET=10.86.0
DIR=${DEMO_DIR:-/tmp/ambient-demo}
TD=cluster.local
NSS="$P-client $P-batch $P-web $P-wp $P-n1 $P-n2 $P-lan"

# ---------------------------------------------------------------------------------------------
# Output helpers
if [ -t 1 ]; then B=$(printf '\033[1m'); D=$(printf '\033[2m'); G=$(printf '\033[32m'); R=$(printf '\033[31m'); N=$(printf '\033[0m'); else B='' D='' G='' R='' N=''; fi
interactive=1
if [ "${DEMO_NONINTERACTIVE:-0}" = 1 ] || ! [ -t 0 ] || ! [ -r /dev/tty ]; then interactive=0; fi

say() { printf '%s\n' "$*"; }
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
explain() { printf '%s\n' "$*" | fold -s -w 96 | sed 's/^/   /'; }
ok() { printf '   %s%s%s\n' "$G" "$*" "$N"; }
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }
pause() {
	[ "$interactive" = 1 ] || return 0
	printf '%s   [press Enter to continue, Ctrl-C to stop]%s' "$D" "$N"
	read -r _ </dev/tty || true
}
# show_rc CMD...: prints the command as typed, runs it, prints its output indented; its exit
# status is left in SHOW_RC and its output in $DIR/show.out.
show_rc() {
	printf '   %s$ %s%s\n' "$D" "$*" "$N"
	SHOW_RC=0
	"$@" >"$DIR/show.out" 2>&1 || SHOW_RC=$?
	sed 's/^/     /' "$DIR/show.out"
}
# show CMD...: the same, and a failing command stops the demo.
show() {
	show_rc "$@"
	[ "$SHOW_RC" = 0 ] || die "failed (exit $SHOW_RC): $*"
}
# showsh 'PIPELINE': the same for a shell pipeline (its status is the last command's).
showsh() {
	printf '   %s$ %s%s\n' "$D" "$1" "$N"
	SHOW_RC=0
	sh -c "$1" >"$DIR/show.out" 2>&1 || SHOW_RC=$?
	sed 's/^/     /' "$DIR/show.out"
	[ "$SHOW_RC" = 0 ] || die "failed (exit $SHOW_RC): $1"
}
# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s.
wait_until() {
	_wt=$1; _what=$2; shift 2
	_wn=$((_wt * 5))
	while [ "$_wn" -gt 0 ]; do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
		_wn=$((_wn - 1))
	done
	die "timed out after ${_wt}s waiting for $_what (logs in $DIR)"
}
inns() { _ns=$1; shift; ip netns exec "$P-$_ns" "$@"; }

# ---------------------------------------------------------------------------------------------
# Teardown: every process lives in one of our namespaces, so `ip netns pids` finds exactly the
# processes this demo started (and those of an earlier run that was killed hard).
cleanup() {
	set +e
	trap - EXIT INT TERM HUP
	for ns in $NSS; do
		[ -e "/var/run/netns/$ns" ] || continue
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] && kill $pids 2>/dev/null
	done
	i=0
	while [ $i -lt 30 ]; do
		left=""
		for ns in $NSS; do
			[ -e "/var/run/netns/$ns" ] && left="$left$(ip netns pids "$ns" 2>/dev/null)"
		done
		[ -z "$left" ] && break
		sleep 0.1
		i=$((i + 1))
	done
	for ns in $NSS; do
		[ -e "/var/run/netns/$ns" ] || continue
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] && kill -9 $pids 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
}
on_exit() {
	rc=$?
	cleanup
	if [ "$rc" = 0 ]; then
		say ""
		say "${B}demo finished${N}: namespaces and processes removed; logs kept in $DIR"
	else
		say "demo stopped (exit $rc): namespaces and processes removed; logs kept in $DIR" >&2
	fi
	exit "$rc"
}
on_signal() { say ""; say "interrupted" >&2; exit 130; }

[ "$(id -u)" = 0 ] || die "must run as root: it creates network namespaces (try: sudo make demo)"

# ---------------------------------------------------------------------------------------------
# Tools and binary
need="ip curl socat python3 nft"
[ -n "${AMBIENT_BIN:-}" ] || need="$need make musl-gcc"
missing=""
for t in $need; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
if [ -n "$missing" ]; then
	[ "${DEMO_SKIP_DEPS:-0}" = 1 ] && die "missing tools:$missing"
	say "installing what the demo needs (missing:$missing): sh scripts/deps.sh"
	sh scripts/deps.sh
fi
if [ -n "${AMBIENT_BIN:-}" ]; then
	AMB=$AMBIENT_BIN
else
	say "building build/ambient (make)"
	make -s -j"$(nproc 2>/dev/null || echo 2)" >/dev/null || die "build failed: run make to see why"
	AMB=$ROOT/build/ambient
fi
[ -x "$AMB" ] || die "no binary at $AMB"
case "$AMB" in /*) ;; *) AMB=$ROOT/$AMB ;; esac
has_sub() { ! "$AMB" "$@" --help 2>&1 | grep -q "not implemented"; }

cleanup                   # leftovers of an earlier run that was killed hard
trap on_exit EXIT
trap on_signal INT TERM HUP
rm -rf "$DIR"
mkdir -p "$DIR/www" "$DIR/bin"
ln -s "$AMB" "$DIR/bin/ambient"   # so the commands shown read as typed: ambient ...
PATH=$DIR/bin:$PATH
AMB=ambient
printf 'hello from web\n' >"$DIR/www/index.html"

# ---------------------------------------------------------------------------------------------
step "0. Setting up: a CA, two nodes, three workloads"
explain "Everything runs in network namespaces named $P-*, addresses $NET.0/24. A 'lan' namespace \
holds a bridge that links the three workload namespaces. Each node namespace runs the node \
agent (ambient cni agent) and one shared ztunnel (ambient ztunnel --mode shared); the ztunnel \
creates its listeners inside each workload's namespace once the agent enrolls it."
say ""
say "   node n1: client ($NET.11, curl in a loop)   batch ($NET.13, socat in a loop)"
say "   node n2: web ($NET.12, python3 -m http.server 8080)"

for ns in $NSS; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip -n "$P-lan" link add br0 type bridge
ip -n "$P-lan" link set br0 up
for w in client:11 web:12 batch:13; do
	name=${w%:*}
	ip -n "$P-lan" link add "p-$name" type veth peer name eth0 netns "$P-$name"
	ip -n "$P-lan" link set "p-$name" master br0
	ip -n "$P-lan" link set "p-$name" up
	ip -n "$P-$name" addr add "$NET.${w#*:}/24" dev eth0
	ip -n "$P-$name" link set eth0 up
done

"$AMB" ca init --trust-domain "$TD" --dir "$DIR/ca" >"$DIR/ca-init.log" 2>&1 || die "ca init failed: $(cat "$DIR/ca-init.log")"
ok "CA created in $DIR/ca (self-signed root, trust domain $TD)"

# The mesh config: three workloads, their identities (namespace + service account) and nodes.
# MESH_POLICIES: the L4 policies (JSON objects, comma-separated); MESH_L7=1 adds the waypoint,
# the web service behind it, an HTTPRoute and an L7 AuthorizationPolicy (step 5).
MESH_POLICIES=""
MESH_L7=0
mesh() {
	web_services=""
	l7_workloads=""
	l7=""
	if [ "$MESH_L7" = 1 ]; then
		web_services=',
     "services": {"demo/web.demo.svc.cluster.local": {"80": 8080}}'
		l7_workloads=',
    {"uid": "waypoint", "name": "waypoint", "namespace": "demo", "serviceAccount": "waypoint",
     "workloadIps": ["'$NET'.20"], "protocol": "HBONE",
     "services": {"demo/waypoint.demo.svc.cluster.local": {"15008": 15008}}}'
		l7=',
  "services": [
    {"name": "web", "namespace": "demo", "hostname": "web.demo.svc.cluster.local",
     "vips": ["'$NET'.100"], "ports": {"80": 8080},
     "waypoint": {"destination": "demo/waypoint.demo.svc.cluster.local"}},
    {"name": "waypoint", "namespace": "demo", "hostname": "waypoint.demo.svc.cluster.local",
     "vips": ["'$NET'.101"], "ports": {"15008": 15008}}
  ],
  "routes": [
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
     "metadata": {"name": "web", "namespace": "demo"},
     "spec": {"parentRefs": [{"kind": "Service", "name": "web", "port": 80}],
              "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/hello"}}],
                         "filters": [{"type": "URLRewrite", "urlRewrite": {"path":
                           {"type": "ReplaceFullPath", "replaceFullPath": "/index.html"}}},
                                     {"type": "ResponseHeaderModifier", "responseHeaderModifier":
                           {"add": [{"name": "x-route", "value": "demo/web"}]}}],
                         "backendRefs": [{"name": "web", "port": 80}]}]}}
  ],
  "l7Policies": [
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "read-only", "namespace": "demo"},
     "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "web"}],
              "action": "DENY",
              "rules": [{"to": [{"operation": {"methods": ["POST", "PUT", "DELETE"]}}]}]}}
  ]'
	fi
	cat <<EOF
{
  "workloads": [
    {"uid": "client", "name": "client", "namespace": "demo", "serviceAccount": "client",
     "node": "n1", "workloadIps": ["$NET.11"], "protocol": "HBONE"},
    {"uid": "batch", "name": "batch", "namespace": "demo", "serviceAccount": "batch",
     "node": "n1", "workloadIps": ["$NET.13"], "protocol": "HBONE"},
    {"uid": "web", "name": "web", "namespace": "demo", "serviceAccount": "web",
     "node": "n2", "workloadIps": ["$NET.12"], "protocol": "HBONE"$web_services}$l7_workloads
  ],
  "policies": [$MESH_POLICIES]$l7
}
EOF
}
write_mesh() { mesh >"$DIR/mesh.json.tmp" && mv "$DIR/mesh.json.tmp" "$DIR/mesh.json"; }
write_mesh

start() { # netns-suffix log cmd...: starts a process inside the namespace
	_ns=$1; _log=$2; shift 2
	ip netns exec "$P-$_ns" "$@" >"$DIR/$_log" 2>&1 </dev/null &
}
for n in n1 n2; do
	start "$n" "$n-agent.log" "$AMB" cni agent --zds-socket "$DIR/$n-zds.sock" \
		--control-socket "$DIR/$n-cni.sock" --state-file "$DIR/$n-state.json"
done
for n in n1 n2; do
	wait_until 10 "the $n agent" test -S "$DIR/$n-cni.sock"
	start "$n" "$n-ztunnel.log" "$AMB" ztunnel --mode shared --node "$n" --zds-socket "$DIR/$n-zds.sock" \
		--ca-dir "$DIR/ca" --mesh-config "$DIR/mesh.json"
done
for n in n1 n2; do
	wait_until 10 "the $n ztunnel to be ready" inns "$n" curl -sf http://127.0.0.1:15021/healthz/ready
done
ok "node agents and shared ztunnels running on n1 and n2"

start web web.log python3 -u -m http.server 8080 --bind "$NET.12" --directory "$DIR/www"
wait_until 10 "the web server" inns web curl -sf "http://$NET.12:8080/"
start client client.log sh -c "while :; do printf '%s %s\n' \"\$(date +%T)\" \
	\"\$(curl -s -o /dev/null -w 'HTTP %{http_code}' --max-time 2 http://$NET.12:8080/ || echo failed)\"; sleep 0.3; done"
start batch batch.log sh -c "while :; do r=\$(printf 'GET / HTTP/1.0\r\n\r\n' | \
	socat -t 2 - TCP:$NET.12:8080,connect-timeout=2 2>/dev/null | head -1 | tr -d '\r'); \
	printf '%s %s\n' \"\$(date +%T)\" \"\${r:-failed: connection closed without a response}\"; sleep 0.3; done"
ok "web, client and batch running (real python3, curl and socat processes)"
pause

lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
# newer FILE MARK PATTERN: a line after line MARK matches PATTERN.
newer() { tail -n +"$(($2 + 1))" "$1" | grep -q -- "$3"; }

# ---------------------------------------------------------------------------------------------
step "1. Plain traffic"
explain "Nothing is enrolled yet: client and batch talk to web directly, in plain text. The \
ztunnels see none of it."
wait_until 10 "plain requests" newer "$DIR/client.log" 0 "HTTP 200"
wait_until 10 "plain requests from batch" newer "$DIR/batch.log" 0 "200 OK"
show tail -n 2 "$DIR/client.log"
show tail -n 2 "$DIR/batch.log"
show tail -n 2 "$DIR/web.log"
n=$(cat "$DIR/n1-ztunnel.log" "$DIR/n2-ztunnel.log" | grep -c "connection complete" || true)
ok "ztunnel access-log lines so far: $n (plain traffic does not reach them)"
pause

# ---------------------------------------------------------------------------------------------
step "2. Enrolling the workloads: ambient cni add"
explain "The node agent asks its ztunnel to serve the workload (over ZDS, Istio's protocol), then \
programs redirection rules inside the workload's namespace (nf_tables over netlink). The apps \
keep running, unchanged: their next connections go through the ztunnels as mTLS (HBONE: TLS + \
HTTP/2 CONNECT to port 15008), each side with its own SPIFFE identity signed by the CA."
cni() { _node=$1; shift; show ip netns exec "$P-$_node" "$AMB" cni "$@" --control-socket "$DIR/$_node-cni.sock"; }
m1=$(lines "$DIR/client.log")
cni n2 add --netns "/var/run/netns/$P-web" --workload web
cni n1 add --netns "/var/run/netns/$P-client" --workload client
cni n1 add --netns "/var/run/netns/$P-batch" --workload batch
say ""
explain "The rules in the client's namespace (outbound TCP to ztunnel's 15001, inbound to 15006/15008):"
showsh "ip netns exec $P-client nft list ruleset | grep -E 'table|redirect' | head -n 5"
inbound_ok() { grep "connection complete" "$DIR/n2-ztunnel.log" | grep "direction=inbound" | grep 'error=""' | grep -q "src.identity=spiffe://$TD/ns/demo/sa/$1"; }
wait_until 15 "mTLS from client" inbound_ok client
wait_until 15 "mTLS from batch" inbound_ok batch
say ""
explain "The access log of n2's ztunnel (the server side) now has a line per connection:"
line=$(grep "connection complete" "$DIR/n2-ztunnel.log" | grep "direction=inbound" | grep 'error=""' | grep "sa/client" | tail -1)
printf '%s\n' "$line" | fold -s -w 96 | sed 's/^/     /'
src=$(printf '%s\n' "$line" | sed -n 's/.*src\.identity=\([^ ]*\).*/\1/p')
dst=$(printf '%s\n' "$line" | sed -n 's/.*dst\.identity=\([^ ]*\).*/\1/p')
ok "mTLS: $src -> $dst"
newer "$DIR/client.log" "$m1" "HTTP 200" && ok "the client's requests keep succeeding: $(tail -n 1 "$DIR/client.log")"
explain "web still sees the caller's own address ($NET.11): the ztunnels preserve the source IP."
showsh "grep '^$NET.11 ' $DIR/web.log | tail -n 1"
show ip netns exec "$P-n1" "$AMB" cni list --control-socket "$DIR/n1-cni.sock"
pause

# ---------------------------------------------------------------------------------------------
step "3. An L4 policy: deny batch"
explain "Policies are part of the mesh config; each ztunnel watches the file and applies a new \
version without dropping allowed connections. This DENY policy names the caller by its SPIFFE \
identity (without spiffe://), which only mTLS can prove. It is enforced by the server-side \
ztunnel."
POLICY='{"name": "deny-batch", "namespace": "demo", "scope": "Namespace", "action": "Deny",
     "rules": [[[{"principals": [{"Exact": "'$TD'/ns/demo/sa/batch"}]}]]]}'
printf '%s\n' "$POLICY" | sed 's/^/     /'
applied() { grep -c "mesh config applied" "$DIR/$1-ztunnel.log" || true; }
a2=$(applied n2)
mb=$(lines "$DIR/batch.log")
MESH_POLICIES=$POLICY
write_mesh
wait_until 10 "n2 to apply the new config" sh -c "[ \$(grep -c 'mesh config applied' '$DIR/n2-ztunnel.log') -gt $a2 ]"
ok "n2's ztunnel applied version $(grep "mesh config applied" "$DIR/n2-ztunnel.log" | tail -1 | sed -n 's/.* version=\([0-9]*\).*/\1/p') of the mesh config"
mb=$(lines "$DIR/batch.log")
mc=$(lines "$DIR/client.log")
wait_until 10 "batch to be denied" newer "$DIR/batch.log" "$mb" "failed"
wait_until 10 "client requests after the policy" newer "$DIR/client.log" "$mc" "HTTP 200"
show tail -n 2 "$DIR/batch.log"
show tail -n 2 "$DIR/client.log"
denied_line() { grep "connection complete" "$DIR/n2-ztunnel.log" | grep "sa/batch" | grep "deny-batch" | tail -1; }
wait_until 5 "the denial in the access log" denied_line
line=$(denied_line)
explain "n2's access log names the policy that denied the connection:"
printf '%s\n' "$line" | fold -s -w 96 | sed 's/^/     /'
reason=$(printf '%s\n' "$line" | sed -n 's/.* error="\([^"]*\)".*/\1/p')
ok "batch denied: ${reason:-see the line above}"
ok "client allowed: $(tail -n 1 "$DIR/client.log")"
pause

# ---------------------------------------------------------------------------------------------
step "4. ambient ctl explain: why is batch denied?"
if has_sub ctl explain; then
	explain "ctl explain walks one connection through the mesh config with the data plane's own \
routing and authorization code: route, expected identities, every policy, the verdict."
	show_rc "$AMB" ctl explain --config "$DIR/mesh.json" --from demo/batch --to "$NET.12:8080"
	[ "$SHOW_RC" = 5 ] || die "ctl explain: expected exit 5 (denied), got $SHOW_RC"
	ok "ctl explain: denied (exit 5)"
else
	say "   skipped: not in this build (ambient ctl says 'not implemented yet')"
fi
pause

# ---------------------------------------------------------------------------------------------
step "5. L7: an HTTP route and an HTTP policy at a waypoint"
if has_sub waypoint; then
	explain "A waypoint is an L7 proxy for the services that name it. The config now adds one \
(its own workload, demo/waypoint, $NET.20, identity .../sa/waypoint), a service web \
(VIP $NET.100:80 -> web:8080) that names it, an HTTPRoute (/hello is rewritten to /index.html \
and answered with an x-route header) and an AuthorizationPolicy that denies POST, PUT and \
DELETE. The client's ztunnel sends connections to the VIP over HBONE to the waypoint, which \
parses each HTTP request, authorizes and routes it, and forwards it over HBONE to web's ztunnel."
	ip -n "$P-lan" link add p-wp type veth peer name eth0 netns "$P-wp"
	ip -n "$P-lan" link set p-wp master br0
	ip -n "$P-lan" link set p-wp up
	ip -n "$P-wp" addr add "$NET.20/24" dev eth0
	ip -n "$P-wp" link set eth0 up
	a1=$(applied n1)
	MESH_L7=1
	write_mesh
	wait_until 10 "n1 to apply the new config" sh -c "[ \$(grep -c 'mesh config applied' '$DIR/n1-ztunnel.log') -gt $a1 ]"
	start wp waypoint.log "$AMB" waypoint --mesh-config "$DIR/mesh.json" --ca-dir "$DIR/ca" --workload waypoint
	wait_until 10 "the waypoint to be ready" inns wp curl -sf http://127.0.0.1:15021/healthz/ready
	ok "waypoint running in $P-wp"
	say ""
	explain "GET /hello from the client, to the service's VIP: routed and rewritten by the waypoint."
	showsh "ip netns exec $P-client curl -s -i http://$NET.100/hello | grep -iE '^HTTP|^x-route|hello from'"
	code=$(inns client curl -s -o /dev/null -w '%{http_code}' "http://$NET.100/hello")
	[ "$code" = 200 ] || die "GET /hello through the waypoint: HTTP $code (logs in $DIR)"
	explain "POST from the same client: the L7 policy denies it at the waypoint (web never sees it)."
	showsh "ip netns exec $P-client curl -s -i -X POST http://$NET.100/hello | head -n 1"
	code=$(inns client curl -s -o /dev/null -w '%{http_code}' -X POST "http://$NET.100/hello")
	[ "$code" = 403 ] || die "POST /hello through the waypoint: HTTP $code, expected 403 (logs in $DIR)"
	wl_line() { grep 'request complete' "$DIR/waypoint.log" | grep "method=$1" | tail -1; }
	wait_until 5 "the waypoint's access log" sh -c "grep 'request complete' '$DIR/waypoint.log' | grep -q 'method=POST'"
	explain "The waypoint's access log, one line per request:"
	wl_line GET | fold -s -w 96 | sed 's/^/     /'
	wl_line POST | fold -s -w 96 | sed 's/^/     /'
	route=$(wl_line GET | sed -n 's/.* route=\([^ ]*\).*/\1/p')
	pol=$(wl_line POST | sed -n 's/.* policy=\([^ ]*\).*/\1/p')
	ok "GET /hello: 200, route $route; POST /hello: 403, policy $pol"
	if has_sub ctl explain; then
		say ""
		explain "ctl explain of the POST, from the config alone:"
		show_rc "$AMB" ctl explain --config "$DIR/mesh.json" --from demo/client --to web.demo.svc.cluster.local:80 --method POST --path /hello
		if [ "$SHOW_RC" = 5 ]; then
			ok "ctl explain: the waypoint denies the POST (exit 5)"
		elif [ "$SHOW_RC" = 0 ]; then
			# A ctl that cannot evaluate L7 offline yet says so in its output.
			say "   ctl explain (exit 0): $(grep '^Verdict:' "$DIR/show.out" | head -n 1)"
		else
			die "ctl explain of the POST failed (exit $SHOW_RC)"
		fi
	fi
else
	say "   skipped: not in this build (ambient waypoint says 'not implemented yet')"
fi
pause

step "Cleaning up"
explain "Every process runs inside one of the demo's namespaces; they are stopped and the \
namespaces deleted (their rules go with them). Nothing outside them was changed."
exit 0
