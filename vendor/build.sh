#!/bin/sh
# Builds BearSSL, nghttp2 and cJSON static libraries from vendor/src for one flavour.
# Usage: vendor/build.sh musl|glibc   -> vendor/out/<flavour>/{include,lib}
# Reuses a finished build (stamp per flavour and pinned versions).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
flavour=${1:?usage: build.sh musl|glibc}
case "$flavour" in
musl) CC=musl-gcc; CFLAGS="-O2 -ffunction-sections -fdata-sections" ;;
glibc) CC=gcc; CFLAGS="-O1 -g -fPIC -ffunction-sections -fdata-sections" ;;
*) echo "vendor: unknown flavour '$flavour' (musl or glibc)" >&2; exit 2 ;;
esac
out="$here/out/$flavour"
src="$here/src"
pinsum=$(cat "$here/VERSIONS" "$here/build.sh" | sha256sum | cut -c1-16)
stamp="$out/.built-$pinsum"
[ -e "$stamp" ] && exit 0
"$here/fetch.sh"
rm -rf "$out"
mkdir -p "$out/include/nghttp2" "$out/lib" "$out/obj/bearssl" "$out/obj/nghttp2" "$out/obj/cjson"
jobs=$(nproc 2>/dev/null || echo 2)

compile() { # objdir, extra flags..., then file list on stdin
	objdir=$1; shift
	xargs -P "$jobs" -I{} sh -c 'f={}; o='"$objdir"'/$(echo "$f" | tr / _ | sed "s/\.c$/.o/"); '"$CC $CFLAGS"' "$@" -c "$f" -o "$o"' sh "$@"
}

echo "vendor: building bearssl ($flavour)"
(cd "$src/bearssl" && find src -name '*.c' | compile "$out/obj/bearssl" -Isrc -Iinc)
ar rcs "$out/lib/libbearssl.a" "$out"/obj/bearssl/*.o
cp "$src"/bearssl/inc/*.h "$out/include/"

echo "vendor: building nghttp2 ($flavour)"
ngver=$(sed -n 's/^AC_INIT(\[nghttp2\], \[\([0-9.]*\)\].*/\1/p' "$src/nghttp2/configure.ac")
ngnum=$(echo "$ngver" | awk -F. '{printf "0x%02x%02x%02x", $1, $2, $3}')
sed -e "s/@PACKAGE_VERSION@/$ngver/" -e "s/@PACKAGE_VERSION_NUM@/$ngnum/" \
	"$src/nghttp2/lib/includes/nghttp2/nghttp2ver.h.in" >"$out/include/nghttp2/nghttp2ver.h"
cp "$src/nghttp2/lib/includes/nghttp2/nghttp2.h" "$out/include/nghttp2/"
objs=$(sed -n '/^OBJECTS *=/,/^$/p' "$src/nghttp2/lib/Makefile.am" | tr ' \\' '\n\n' | grep '\.c$')
(cd "$src/nghttp2" && for o in $objs; do echo "lib/$o"; done | compile "$out/obj/nghttp2" \
	-DNGHTTP2_STATICLIB -DHAVE_ARPA_INET_H -DHAVE_NETINET_IN_H -DHAVE_TIME_H -DHAVE_CLOCK_GETTIME \
	-I"$out/include" -Ilib)
ar rcs "$out/lib/libnghttp2.a" "$out"/obj/nghttp2/*.o

echo "vendor: building cjson ($flavour)"
(cd "$src/cjson" && echo cJSON.c | compile "$out/obj/cjson" -std=c89)
ar rcs "$out/lib/libcjson.a" "$out"/obj/cjson/*.o
cp "$src/cjson/cJSON.h" "$out/include/"

# Kernel headers (netlink, nf_tables, SO_ORIGINAL_DST) for the musl build, which has none.
mkdir -p "$out/kheaders"
ln -sfn /usr/include/linux "$out/kheaders/linux"
ln -sfn /usr/include/asm-generic "$out/kheaders/asm-generic"
ln -sfn /usr/include/x86_64-linux-gnu/asm "$out/kheaders/asm"

# Versions for `ambient version`.
{
	echo "#define VENDOR_BEARSSL_VERSION \"$(awk '$1 == "bearssl" {print $2; exit}' "$here/VERSIONS")\""
	echo "#define VENDOR_NGHTTP2_VERSION \"$(awk '$1 == "nghttp2" {print $2; exit}' "$here/VERSIONS")\""
	echo "#define VENDOR_CJSON_VERSION \"$(awk '$1 == "cjson" {print $2; exit}' "$here/VERSIONS")\""
} >"$out/include/vendor_versions.h"
rm -rf "$out/obj"
touch "$stamp"
echo "vendor: $flavour libraries ready in vendor/out/$flavour"
