"""Build the compiled kernels of cconv.

The Cython sources live under ``src/cconv/kernels`` (their dotted module path, so
Cython finds each module's own ``.pxd``) and are installed as the package
``cconv.kernels``.

Environment variables
---------------------
CCONV_USE_OPENMP
    ``1`` requires OpenMP (the build fails without it), ``0`` builds serial
    kernels. Unset: OpenMP is used when a test program compiles, links and runs
    with the compiler's OpenMP flags, else the build says so and goes serial.
CCONV_DEBUG_CYTHON
    ``1`` compiles with ``boundscheck`` and ``wraparound`` on, for debugging.
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = ["_openmp", "im2col", "col2im", "direct", "conv", "pooling", "activation", "adam"]

OPENMP_PROBE = textwrap.dedent(
    """\
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n);
        return n >= 1 ? 0 : 1;
    }
    """
)


def _openmp_flags(compiler):
    """Compile and link flags that enable OpenMP for ``compiler``."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang: OpenMP through the preprocessor and libomp (Homebrew or
        # a libomp built for the wheel; its prefix in CPPFLAGS/LDFLAGS).
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _probe_openmp(compiler, compile_flags, link_flags):
    """Return True when a small OpenMP program compiles, links and runs."""
    tmp = tempfile.mkdtemp(prefix="cconv-openmp-")
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        with open("probe.c", "w") as f:
            f.write(OPENMP_PROBE)
        objects = compiler.compile(["probe.c"], extra_postargs=compile_flags)
        # setuptools adds $LDFLAGS when it links an extension, not an executable:
        # add it here, so that a runtime found through it (e.g. -L and -rpath of
        # the libomp built for the macOS wheels) is found by the probe too.
        env_link_flags = []
        if compiler.compiler_type != "msvc":  # MSVC's extension links ignore $LDFLAGS
            env_link_flags = shlex.split(os.environ.get("LDFLAGS", ""))
        compiler.link_executable(objects, "probe", extra_postargs=link_flags + env_link_flags)
        exe = os.path.join(tmp, "probe" + (".exe" if os.name == "nt" else ""))
        subprocess.run([exe], check=True, capture_output=True, timeout=60)
        return True
    except Exception:  # any compile, link or run failure means "no OpenMP"
        return False
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExtWithOptionalOpenMP(build_ext):
    """``build_ext`` that adds OpenMP flags where the compiler supports them."""

    def build_extensions(self):
        choice = os.environ.get("CCONV_USE_OPENMP", "").strip()
        compile_flags, link_flags = _openmp_flags(self.compiler)
        if choice == "0":
            use_openmp = False
            print("cconv: CCONV_USE_OPENMP=0, building serial kernels")
        else:
            use_openmp = _probe_openmp(self.compiler, compile_flags, link_flags)
            if not use_openmp and choice == "1":
                raise RuntimeError(
                    "cconv: CCONV_USE_OPENMP=1 but the compiler cannot build an "
                    f"OpenMP program with {compile_flags} / {link_flags}"
                )
            if not use_openmp:
                print(
                    "cconv: WARNING: the compiler does not support OpenMP; "
                    "building serial kernels (cconv.openmp_enabled() is False)",
                    file=sys.stderr,
                )
        # A build tree made with the other choice holds up-to-date-looking
        # objects and modules: rebuild everything when the choice changes.
        mode = "openmp" if use_openmp else "serial"
        stamp = os.path.join(self.build_temp, "cconv-openmp-mode")
        try:
            with open(stamp) as f:
                self.force = self.force or f.read() != mode
        except OSError:
            self.force = True
        # No fused multiply-add contraction (gcc's default where the CPU has
        # FMA, e.g. aarch64): the kernels round as numpy does, which the
        # bit-identical Adam update relies on. MSVC does not contract by default.
        if self.compiler.compiler_type == "msvc":
            optimize = ["/O2"]
        else:
            optimize = ["-O3", "-ffp-contract=off"]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + optimize
            if use_openmp:
                ext.extra_compile_args += compile_flags
                ext.extra_link_args = list(ext.extra_link_args) + link_flags
        super().build_extensions()
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(mode)


def _extensions():
    debug = os.environ.get("CCONV_DEBUG_CYTHON", "") == "1"
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "embedsignature": True,
    }
    extensions = [
        Extension(
            f"cconv.kernels.{name}",
            [f"src/cconv/kernels/{name}.pyx"],
            include_dirs=[np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name in KERNELS
    ]
    return cythonize(extensions, include_path=["src"], compiler_directives=directives)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExtWithOptionalOpenMP})
