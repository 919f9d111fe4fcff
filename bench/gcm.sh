#!/bin/sh
# AES-GCM record micro-benchmark: BearSSL's record classes (AES-NI CTR + PCLMUL GHASH) against
# pkg/tls/tls_gcm.c (one pass, 8 blocks at a time; 128-bit loop and 256-bit VAES loop), seal and
# open at 16384/4096/1400-byte records, then `openssl speed` for reference. Builds its own copy
# of the library under $OUT. Not part of `make bench` (bench/run.sh); run it by hand. `make test`
# runs it once with REPS=1 (tests/e2e/test_bench_docs.py).
# Environment: OUT (build/bench-gcm), REPS (15: best of, per size and direction).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

OUT=${OUT:-build/bench-gcm}
REPS=${REPS:-15}
make -s OUT="$OUT" ONLY="base tls" "$OUT/libambient.a" >/dev/null ||
	die "building $OUT/libambient.a failed"
musl-gcc -std=c11 -D_GNU_SOURCE -O2 -I. -isystem vendor/out/musl/include -static \
	-o "$OUT/gcm_bench" bench/gcm_bench.c "$OUT/libambient.a" -Lvendor/out/musl/lib -lbearssl ||
	die "building gcm_bench failed"
say "gcm: $OUT/gcm_bench $REPS (MB per CPU-second, best of $REPS)"
"$OUT/gcm_bench" "$REPS"
if command -v openssl >/dev/null 2>&1; then
	say "gcm: openssl speed -evp aes-128-gcm -bytes 16384 -seconds 2 (wall clock, for reference)"
	openssl speed -evp aes-128-gcm -bytes 16384 -seconds 2 2>/dev/null | tail -1
fi
