#!/bin/sh
# SPDX-License-Identifier: MIT
# The Python binding's tests (python/tests, pytest) against the package the
# build assembled in python/pkg, the uninstalled libshmbus and a private
# shmbusd per test. Skips (77) only when the binding was not built or pytest
# is missing; pytest collecting nothing (exit 5) is a failure.
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
s=$(cd "${top_srcdir:-.}" && pwd)
py=${SHMBUS_PYTHON:-}
if [ -z "$py" ]; then
        echo "SKIP: the Python binding was not built (configure found no Python.h: python3-dev)"
        exit 77
fi
if ! "$py" -c 'import pytest' 2>/dev/null; then
        echo "SKIP: $py has no pytest (Debian: apt-get install python3-pytest)"
        exit 77
fi
ls "$b"/python/pkg/shmbus/_shmbus*.so >/dev/null 2>&1 || {
        echo "FAIL: the module was not built into $b/python/pkg/shmbus"
        exit 1
}
case "${SHMBUS_PYTHON_PRELOAD:-}" in
"") ;;
none)
        echo "SKIP: this sanitizer's runtime cannot be preloaded into an unsanitized python3"
        exit 77
        ;;
*)
        # The extension is instrumented, the interpreter is not: the sanitizer's
        # runtime must come first. Python's own allocations are never freed at
        # exit on purpose, so leak detection would only report those.
        LD_PRELOAD=$SHMBUS_PYTHON_PRELOAD
        ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
        export LD_PRELOAD ASAN_OPTIONS
        ;;
esac
PYTHONPATH="$b/python/pkg${PYTHONPATH:+:$PYTHONPATH}"
LD_LIBRARY_PATH="$b/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PYTHONDONTWRITEBYTECODE=1
SHMBUS_BUILDDIR=$b
export PYTHONPATH LD_LIBRARY_PATH PYTHONDONTWRITEBYTECODE SHMBUS_BUILDDIR
rc=0
"$py" -m pytest -q -p no:cacheprovider "$s/python/tests" || rc=$?
case $rc in
0) ;;
5)
        echo "FAIL: pytest collected no tests"
        exit 1
        ;;
*) exit 1 ;;
esac

# make install puts the package where this python3 finds it (Debian: a
# dist-packages directory) and it imports from there, .la-free.
[ "${SHMBUS_SANITIZED:-0}" = 1 ] && exit 0
tmp=$(mktemp -d /dev/shm/shmbus-test-python-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
${MAKE:-make} -C "$b" install DESTDIR="$tmp" >"$tmp/install.log" 2>&1 || {
        tail -20 "$tmp/install.log"
        echo "FAIL: make install"
        exit 1
}
init=$(find "$tmp" -path '*/shmbus/__init__.py')
pkg=${init%/__init__.py}
ext=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
[ -n "$init" ] && [ -f "$pkg/_shmbus$ext" ] && [ -f "$pkg/py.typed" ] && [ ! -e "$pkg/_shmbus.la" ] &&
        [ ! -e "$pkg/_shmbus.so" ] || {
        echo "FAIL: installed package: $(find "$tmp" -path '*shmbus/*')"
        exit 1
}
site=$(dirname "${pkg#"$tmp"}")
libdir=$(dirname "$(find "$tmp" -name 'libshmbus.so.1' | head -n 1)")
case $site in
/usr/lib/* | /usr/local/lib/*)
        "$py" -c "import sys; sys.exit('$site' not in sys.path)" || {
                echo "FAIL: $site is not on $py's sys.path"
                exit 1
        }
        ;;
esac
got=$(cd / && PYTHONPATH="$tmp$site" LD_LIBRARY_PATH="$libdir" LD_PRELOAD= \
        "$py" -c 'import shmbus; print(shmbus.__file__, shmbus.library_version())') || {
        echo "FAIL: the installed package does not import"
        exit 1
}
echo "PASS: installed in $site, imports: $got"
