#!/bin/sh
# `make bench`: runs every benchmark side by side with its peers and prints the tables.
# Benchmarks measure, their figures never pass or fail a build; a benchmark fails only when a
# server it measures does not work (errors, crash), and then it says why. `make test` runs each
# script once in a quick mode (tests/e2e/test_bench_docs.py) for those checks, never for figures.
set -eu
cd "$(dirname "$0")/.."
echo "== bench/ca.sh: certificate issuance over HTTPS, ambient ca serve vs cfssl serve"
sh bench/ca.sh
echo
echo "== bench/l4.sh: L4 data plane over veth, direct vs ambient (HBONE) vs stunnel vs haproxy (mTLS)"
sh bench/l4.sh
echo
echo "== bench/l4_conns.sh: RSS with 1,000 open idle tunnels, ambient (HBONE) vs stunnel vs haproxy"
sh bench/l4_conns.sh
echo
echo "== bench/l7.sh: L7 (HTTP/1.1 + HTTP/2, 1 KiB) direct vs ambient (ztunnel + waypoint) vs haproxy vs nginx (mTLS upstream)"
sh bench/l7.sh
