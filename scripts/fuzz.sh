#!/bin/sh
# `make fuzz [FUZZ_TIME=seconds]`: runs every libFuzzer target for FUZZ_TIME seconds (default 60),
# starting from and adding to testdata/fuzz/<target>/. Crashes are left in build/fuzz-artifacts/.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
[ -n "$secs" ] || secs=60
mkdir -p build/fuzz build/fuzz-artifacts
vend=vendor/out/glibc
sh vendor/build.sh glibc
libsrc=$(ls pkg/*/*.c | grep -v -e '_test\.c$' -e '_fuzz\.c$')
for target in pkg/*/*_fuzz.c; do
	name=$(basename "$target" .c)
	bin=build/fuzz/$name
	echo "== $name ($secs s)"
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I. -Ibuild/san/gen \
		-isystem "$vend/include" $libsrc "$target" -o "$bin" \
		-L"$vend/lib" -lnghttp2 -lbearssl -lcjson -lpthread -lm
	mkdir -p "testdata/fuzz/$name" "build/fuzz/$name.corpus"
	"$bin" -max_total_time="$secs" -artifact_prefix=build/fuzz-artifacts/"$name"- \
		-print_final_stats=1 build/fuzz/"$name".corpus "testdata/fuzz/$name" 2>&1 | tail -5 || {
		echo "fuzz: $name found a crash; see build/fuzz-artifacts/"
		exit 1
	}
done
