#!/bin/sh
# Installs every Debian package that building, testing and benchmarking ambient needs (idempotent).
set -eu

if [ "$(id -u)" != 0 ]; then
	echo "deps: must run as root (apt-get install)" >&2
	exit 1
fi

# apt-get source needs deb-src entries; a new machine has only "Types: deb". Derive them.
add_deb_src() {
	changed=0
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		case "$f" in *ambient-deb-src.sources) continue ;; esac
		if grep -q '^Types:.*deb-src' "$f"; then continue; fi
		if [ -e /etc/apt/sources.list.d/ambient-deb-src.sources ] &&
			grep -q "^# from $f\$" /etc/apt/sources.list.d/ambient-deb-src.sources; then
			continue
		fi
		{
			echo "# from $f"
			sed -e 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' "$f"
			echo
		} >>/etc/apt/sources.list.d/ambient-deb-src.sources
		changed=1
	done
	if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list &&
		! grep -q '^deb-src ' /etc/apt/sources.list; then
		grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >/etc/apt/sources.list.d/ambient-deb-src.list
		changed=1
	fi
	echo "$changed"
}

PKGS="musl-tools musl-dev linux-libc-dev dpkg-dev make gcc clang libclang-rt-14-dev \
 clang-format cppcheck file binutils curl openssl ca-certificates iproute2 nftables \
 python3 python3-pytest python3-h2 prometheus nginx-light socat \
 nghttp2-client nghttp2-proxy stunnel4 haproxy wrk hyperfine iperf3 golang-cfssl \
 buildah umoci runc systemd"

# tests/e2e/test_vm_guide.py: a Debian rootfs (debootstrap) booted with systemd (systemd-nspawn).
PKGS="$PKGS debootstrap systemd-container"

# A docker engine for tests/e2e/test_image_docker.py (which starts a dockerd of its own, in its
# own namespaces): Debian's docker.io, unless a dockerd is there already or Docker's own packages
# are (docker.io conflicts with docker-ce, docker-ce-cli and containerd.io: apt would remove them).
# Where systemd runs, installing docker.io also starts docker.service (a docker0 bridge and
# iptables rules); without systemd, or when /usr/sbin/policy-rc.d refuses, nothing starts.
docker_ce=$(dpkg-query -W -f='${Package} ${Status}\n' docker-ce docker-ce-cli containerd.io \
	2>/dev/null | grep -c 'install ok installed' || true)
if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ] && [ "$docker_ce" = 0 ]; then
	PKGS="$PKGS docker.io"
fi

need_update=$(add_deb_src)
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
stamp=/var/lib/apt/lists/.ambient-deps-updated
if [ "$need_update" = 1 ] || [ -n "$missing" ] || [ ! -e "$stamp" ]; then
	apt-get update -qq
	touch "$stamp"
fi
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Services from these packages must not run on their own; tests start them on loopback.
for s in nginx haproxy prometheus stunnel4; do
	if [ -x /usr/sbin/service ] && pidof "$s" >/dev/null 2>&1; then :; fi
done
echo "deps: ok"
