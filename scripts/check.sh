#!/bin/sh
# `make check`: formatting, module layering and static analysis (cppcheck).
set -u
cd "$(dirname "$0")/.."
rc=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^vendor/')
[ -n "$files" ] || files=$(find ambient.c cmd pkg test -name '*.[ch]')

echo "== clang-format"
if clang-format --dry-run --Werror $files 2>build-format.txt; then
	echo "format: ok"
else
	head -40 build-format.txt
	echo "format: run 'clang-format -i' on the files above"
	rc=1
fi
rm -f build-format.txt

echo "== layering"
sh scripts/check_layering.sh || rc=1

echo "== cppcheck"
mkdir -p build
if cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	--inline-suppr --suppress=missingIncludeSystem --std=c11 -D_GNU_SOURCE -I. \
	--cppcheck-build-dir=build --template='{file}:{line}: {severity}: {message} [{id}]' \
	ambient.c cmd pkg 2>build/cppcheck.txt; then
	echo "cppcheck: ok"
else
	cat build/cppcheck.txt
	rc=1
fi
exit "$rc"
