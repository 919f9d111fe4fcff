#!/bin/sh
# Fetches the pinned Debian source packages of vendor/VERSIONS, checks every sha256, unpacks them.
# Usage: vendor/fetch.sh   (idempotent: a verified, unpacked tree is reused)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dl="$here/dl"
src="$here/src"
mkdir -p "$dl" "$src"

pins=$(grep -v '^#' "$here/VERSIONS" | awk 'NF == 4')
names=$(echo "$pins" | awk '{print $1}' | sort -u)

for name in $names; do
	ver=$(echo "$pins" | awk -v n="$name" '$1 == n {print $2; exit}')
	stamp="$src/.$name-$ver.ok"
	[ -e "$stamp" ] && continue
	# Download only what is missing or does not match.
	ok=1
	for f in $(echo "$pins" | awk -v n="$name" '$1 == n {print $3}'); do
		want=$(echo "$pins" | awk -v f="$f" '$3 == f {print $4}')
		if [ ! -e "$dl/$f" ] || [ "$(sha256sum "$dl/$f" | cut -d' ' -f1)" != "$want" ]; then ok=0; fi
	done
	if [ "$ok" = 0 ]; then
		if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
			echo "vendor: no deb-src entries in apt's sources; run 'make deps' (scripts/deps.sh) first" >&2
			exit 1
		fi
		echo "vendor: downloading $name=$ver"
		(cd "$dl" && apt-get source --download-only -qq "$name=$ver" >/dev/null 2>"$dl/$name.err") || {
			echo "vendor: 'apt-get source $name=$ver' failed:" >&2
			cat "$dl/$name.err" >&2
			echo "vendor: the pinned version may have left the archive; update vendor/VERSIONS deliberately" >&2
			exit 1
		}
	fi
	for f in $(echo "$pins" | awk -v n="$name" '$1 == n {print $3}'); do
		want=$(echo "$pins" | awk -v f="$f" '$3 == f {print $4}')
		got=$(sha256sum "$dl/$f" | cut -d' ' -f1)
		if [ "$got" != "$want" ]; then
			echo "vendor: sha256 MISMATCH for $f" >&2
			echo "vendor:   expected $want (vendor/VERSIONS)" >&2
			echo "vendor:   got      $got" >&2
			echo "vendor: refusing to build from unverified source" >&2
			exit 1
		fi
	done
	dsc=$(echo "$pins" | awk -v n="$name" '$1 == n && $3 ~ /\.dsc$/ {print $3}')
	rm -rf "${src:?}/$name"
	# The hashes above are the trust anchor; dpkg-source rechecks the .dsc checksums.
	(cd "$dl" && dpkg-source --no-copy -x "$dsc" "$src/$name" >/dev/null 2>&1)
	touch "$stamp"
	echo "vendor: $name $ver verified and unpacked"
done
