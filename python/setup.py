# SPDX-License-Identifier: MIT
"""Build shmbus._shmbus with setuptools, for `pip install ./python`.

The extension links to the installed libshmbus (libshmbus-dev, or
`make install` of this tree), found with pkg-config: one copy of the library
on the machine, the one shmbusd and the C services use, so a library update
fixes Python too. Building the library's sources into the module instead
would need the autotools-generated headers and cJSON here as well, and would
carry a second, stale copy of the ring code. Set PKG_CONFIG_PATH to build
against a library installed elsewhere.

The autotools build (configure; make; make install) builds and installs the
same module itself; this file is for pip users only.
"""
import shlex
import subprocess

from setuptools import Extension, setup


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "libshmbus"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit("shmbus: libshmbus not found by pkg-config; install it first "
                         "(make install, or libshmbus-dev) or set PKG_CONFIG_PATH") from e
    return shlex.split(out)


flags = pkg_config("--cflags")
libs = pkg_config("--libs")
setup(
    version=pkg_config("--modversion")[0],
    packages=["shmbus"],
    package_data={"shmbus": ["py.typed", "_shmbus.pyi"]},
    ext_modules=[
        Extension(
            "shmbus._shmbus",
            sources=["_shmbus.c"],
            include_dirs=[f[2:] for f in flags if f.startswith("-I")],
            library_dirs=[f[2:] for f in libs if f.startswith("-L")],
            libraries=[f[2:] for f in libs if f.startswith("-l")],
            runtime_library_dirs=[f[2:] for f in libs if f.startswith("-L")],
            extra_compile_args=["-std=c11", "-fvisibility=hidden"],
        )
    ],
)
