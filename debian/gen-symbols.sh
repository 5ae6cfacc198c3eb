#!/bin/sh
# SPDX-License-Identifier: MIT
# Write debian/libshmbus1.symbols from libclient/libshmbus.sym, the one list of
# exported symbols: every symbol under its version node (SHMBUS_1, SHMBUS_1.1, ...),
# and each node itself. Symbols already in the file keep the version they were
# added in; new ones get VERSION (default: the upstream version in configure.ac,
# which should be the release that first has them).
#   sh debian/gen-symbols.sh [VERSION]           rewrite the file
#   sh debian/gen-symbols.sh --check             exit 1 if it is not up to date
# dpkg-gensymbols checks the file against the built library (debian/rules sets
# DPKG_GENSYMBOLS_CHECK_LEVEL=4); tests/test-abi.sh runs --check.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/debian/libshmbus1.symbols"
check=0
version=""
case "${1:-}" in
--check) check=1 ;;
"") ;;
*) version=$1 ;;
esac
if [ -z "$version" ]; then
        version=$(sed -n 's/^m4_define(\[shmbus_\(major\|minor\|patch\)\], \[\([0-9]*\)\]).*/\2/p' \
                "$top/configure.ac" | paste -sd.)
fi
[ -n "$version" ] || {
        echo "gen-symbols: no version given and none found in configure.ac" >&2
        exit 2
}
old=""
[ -e "$out" ] && old=$out
new=$(awk -v version="$version" -v old="$old" '
        BEGIN {
                if (old != "")
                        while ((getline line < old) > 0)
                                if (line ~ /^ [^ ]+@[^ ]+ /) {
                                        split(substr(line, 2), f, " ")
                                        known[f[1]] = f[2]
                                }
        }
        function emit(sym) { print " " sym " " ((sym in known) ? known[sym] : version) }
        /^[[:space:]]*[A-Za-z0-9_.]+[[:space:]]*\{/ {
                node = $1
                sub(/\{.*/, "", node)
                emit(node "@" node)
                next
        }
        /^[[:space:]]*shmbus_[a-z0-9_]*;/ {
                sym = $1
                sub(/;.*/, "", sym)
                emit(sym "@" node)
        }
' "$top/libclient/libshmbus.sym" | LC_ALL=C sort)
text=$(printf '%s\n' "# Written by debian/gen-symbols.sh from libclient/libshmbus.sym: edit that, then run it." \
        "libshmbus.so.1 libshmbus1 #MINVER#" \
        "* Build-Depends-Package: libshmbus-dev" "$new")
if [ "$check" = 1 ]; then
        if [ "$(cat "$out" 2>/dev/null)" != "$text" ]; then
                echo "debian/libshmbus1.symbols is not up to date with libclient/libshmbus.sym:" >&2
                printf '%s\n' "$text" | diff -u "$out" - >&2 || true
                echo "run: sh debian/gen-symbols.sh [VERSION-THAT-FIRST-HAS-THEM]" >&2
                exit 1
        fi
        exit 0
fi
printf '%s\n' "$text" >"$out"
