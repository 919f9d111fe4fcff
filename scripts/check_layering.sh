#!/bin/sh
# Checks DESIGN.md §8's module order: a module may include only modules listed before it.
set -u
cd "$(dirname "$0")/.."
order="base buf der x509 json cniconf config authz metrics ev net tls h2 hbone http1 socks5 httpc watch admin ca identity redirect inpod proxy l7 waypoint"
rank() { i=0; for m in $order; do [ "$m" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo -1; }
bad=0
for dir in pkg/*/; do
	m=$(basename "$dir")
	rm_=$(rank "$m")
	if [ "$rm_" = -1 ]; then
		echo "layering: pkg/$m is not in the module order (scripts/check_layering.sh)"
		bad=1
		continue
	fi
	for f in "$dir"*.c "$dir"*.h; do
		[ -e "$f" ] || continue
		case "$f" in *_test.c | *_fuzz.c) continue ;; esac
		for dep in $(sed -n 's|^#include "pkg/\([a-z0-9_]*\)/.*|\1|p' "$f" | sort -u); do
			[ "$dep" = "$m" ] && continue
			rd=$(rank "$dep")
			if [ "$rd" = -1 ] || [ "$rd" -gt "$rm_" ]; then
				echo "layering: $f includes pkg/$dep, which comes after $m in the module order"
				bad=1
			fi
		done
		if grep -q '^#include "cmd/' "$f"; then
			echo "layering: $f includes cmd/ (pkg modules never depend on commands)"
			bad=1
		fi
	done
done
[ "$bad" = 0 ] && echo "layering: ok"
exit "$bad"
