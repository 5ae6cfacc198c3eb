#!/bin/sh
# SPDX-License-Identifier: MIT
# The shared library exports exactly the symbols listed in libshmbus.sym, all
# under a version node, and nothing else (no shmbus__ internals, no helpers).
set -eu
lib="${top_builddir:-.}/.libs/libshmbus.so"
sym="${top_srcdir:-.}/libclient/libshmbus.sym"
if [ ! -e "$lib" ]; then
        echo "SKIP: $lib not built (static-only build)"
        exit 77
fi
expected=$(sed -n 's/^[[:space:]]*\(shmbus_[a-z0-9_]*\);$/\1/p' "$sym" | sort)
actual=$(nm -D --defined-only "$lib" | awk '$2 == "T" || $2 == "D" || $2 == "B" {print $3}' |
        sed 's/@.*//' | grep -v '^SHMBUS_' | sort)
if [ "$expected" != "$actual" ]; then
        echo "FAIL: exported symbols differ from libshmbus.sym"
        echo "$expected" > /tmp/abi-expected.$$
        echo "$actual" > /tmp/abi-actual.$$
        diff -u /tmp/abi-expected.$$ /tmp/abi-actual.$$ || true
        rm -f /tmp/abi-expected.$$ /tmp/abi-actual.$$
        exit 1
fi
unversioned=$(nm -D --defined-only "$lib" | awk '$3 ~ /^shmbus_/ && $3 !~ /@/ {print $3}')
if [ -n "$unversioned" ]; then
        echo "FAIL: unversioned exports: $unversioned"
        exit 1
fi
echo "PASS: $(echo "$expected" | wc -l) symbols, all versioned"

# The manual lists every public function: shmbus(3) names each symbol of libshmbus.sym
# (in any version node), so a function added to the library is added to the page too.
man3="${top_srcdir:-.}/man/shmbus.3"
missing=""
for f in $(sed -n 's/^[[:space:]]*\(shmbus_[a-z0-9_]*\);$/\1/p' "$sym"); do
        grep -qw "$f" "$man3" || missing="$missing $f"
done
if [ -n "$missing" ]; then
        echo "FAIL: man/shmbus.3 does not mention:$missing"
        exit 1
fi
echo "PASS: man/shmbus.3 mentions all $(echo "$expected" | wc -l) symbols"

# The Debian symbols file follows libshmbus.sym (a tree without debian/, such as the
# release tarball, skips this).
gen="${top_srcdir:-.}/debian/gen-symbols.sh"
if [ -e "$gen" ]; then
        sh "$gen" --check || {
                echo "FAIL: debian/libshmbus1.symbols is out of date"
                exit 1
        }
        echo "PASS: debian/libshmbus1.symbols lists every symbol of libshmbus.sym"
fi
