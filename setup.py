"""Build script for the ecomcore_ext Cython kernels.

OpenMP is used when the compiler accepts ``-fopenmp`` (or ``/openmp`` on MSVC); otherwise the
kernels are compiled serially.  Setting ``ECOMCORE_NO_OPENMP=1`` forces the serial build.
Only portable optimisation flags are used: no ``-march=native`` and no ``-ffast-math``.

Debug builds (never for a release; build them in a copy or a separate environment, not in place
in a shared checkout):

* ``ECOMCORE_DEBUG=1``: Cython bounds checks.  Every memoryview access is checked
  (``boundscheck``, with ``wraparound`` still off so that a negative index is an error rather
  than an access from the end) and uninitialised memoryviews raise (``initializedcheck``).
  ``cdivision`` stays on (Python division semantics would change results, not just add
  checks), and so does ``nonecheck=False`` (its checks need the GIL, which the kernels' nogil
  sections do not hold: they would not compile).  The kernels set the fast directives in their
  ``# cython:`` header lines, which take precedence over ``cythonize``'s directives, so this
  build cythonizes copies of the ``.pyx`` files under ``build/debug-src/`` with those header
  entries removed (same line numbers).  An out-of-bounds access then raises ``IndexError``
  (printed as "Exception ignored" when it happens inside a ``noexcept`` function) instead of
  reading or writing outside the array.
* ``ECOMCORE_ASAN=1``: compile and link with ``-fsanitize=address -fno-omit-frame-pointer``
  (GCC/Clang).  Importing such a build into a normal Python needs the ASan runtime preloaded:
  ``LD_PRELOAD=$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0``.

Both record themselves in ``ecomcore_ext.BUILD_INFO`` (``'debug': True`` / ``'asan': True``).
"""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# Every ecomcore_ext/*.pyx is a kernel module.  ECOMCORE_ONLY=name1,name2 builds just those (for
# quick in-place rebuilds while developing; never set it for a real build).
KERNELS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob("ecomcore_ext/*.pyx"))
if os.environ.get("ECOMCORE_ONLY"):
    KERNELS = [k for k in KERNELS if k in os.environ["ECOMCORE_ONLY"].split(",")]


def _compiler_accepts_openmp() -> bool:
    """Try to compile and link a tiny OpenMP program with the configured C compiler."""
    if os.environ.get("ECOMCORE_NO_OPENMP", "").strip() not in ("", "0"):
        return False
    if sys.platform == "win32":
        return True
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    if shutil.which(cc[0]) is None:
        return False
    src = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"
    with tempfile.TemporaryDirectory() as d:
        c_path = os.path.join(d, "t.c")
        with open(c_path, "w") as f:
            f.write(src)
        try:
            r = subprocess.run(
                cc + ["-fopenmp", c_path, "-o", os.path.join(d, "t")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return r.returncode == 0


USE_OPENMP = _compiler_accepts_openmp()


def _env_on(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


DEBUG = _env_on("ECOMCORE_DEBUG")
ASAN = _env_on("ECOMCORE_ASAN")
# The directives a debug build turns on; the kernels' `# cython:` headers set them to False.
_DEBUG_DIRECTIVES = {"boundscheck": True, "initializedcheck": True}
_HEADER_SAFETY_KEYS = ("boundscheck", "wraparound", "initializedcheck", "nonecheck")


def _debug_sources(names: list) -> dict:
    """Copies of the kernels' .pyx with the safety directives removed from their header lines.

    Returns ``{name: path of the copy}``.  A check turned off in the body (a decorator or a
    ``with cython.boundscheck(False):`` block, e.g. around a prefetch of a one-past-the-end
    address) still wins: such places are listed on stderr.
    """
    out_dir = os.path.join("build", "debug-src", "ecomcore_ext")
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name in names:
        src = os.path.join("ecomcore_ext", f"{name}.pyx")
        with open(src, encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            if line.startswith("# cython:"):
                items = [it.strip() for it in line[len("# cython:"):].split(",")]
                kept = [it for it in items if it and it.split("=")[0].strip() not in _HEADER_SAFETY_KEYS]
                lines[i] = "# cython: " + ", ".join(kept) if kept else "#"
            elif any(f"cython.{key}(False)" in line for key in _HEADER_SAFETY_KEYS):
                print(f"ECOMCORE_DEBUG: {src}:{i + 1} keeps a check off: {line.strip()}", file=sys.stderr)
        dst = os.path.join(out_dir, f"{name}.pyx")
        text = "\n".join(lines)
        old = None
        if os.path.exists(dst):
            with open(dst, encoding="utf-8") as f:
                old = f.read()
        if old != text:  # keep the mtime (and cythonize's cache) when nothing changed
            with open(dst, "w", encoding="utf-8") as f:
                f.write(text)
        paths[name] = dst
    return paths


def _write_build_info() -> None:
    """Record the toolchain in ecomcore_ext/_build_info.py (shipped in the wheel)."""
    import Cython

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ecomcore_ext", "_build_info.py")
    text = (
        '"""Generated by setup.py at build time."""\n\n'
        f"BUILD_INFO = {{'openmp': {USE_OPENMP!r}, 'cython_version': {Cython.__version__!r}, "
        f"'numpy_version': {np.__version__!r}"
        + (", 'debug': True" if DEBUG else "")
        + (", 'asan': True" if ASAN else "")
        + "}\n"
    )
    with open(path, "w") as f:
        f.write(text)


_write_build_info()

if sys.platform == "win32":
    compile_args = ["/O2"] + (["/openmp"] if USE_OPENMP else [])
    link_args = []
else:
    compile_args = ["-O3", "-fno-math-errno", "-funroll-loops"] + (["-fopenmp"] if USE_OPENMP else [])
    link_args = ["-fopenmp"] if USE_OPENMP else []
if ASAN:
    if sys.platform == "win32":
        raise SystemExit("ECOMCORE_ASAN: only GCC/Clang builds are supported")
    compile_args = compile_args + ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"]
    link_args = link_args + ["-fsanitize=address"]

SOURCES = {name: f"ecomcore_ext/{name}.pyx" for name in KERNELS}
if DEBUG:
    SOURCES = _debug_sources(KERNELS)

extensions = [
    Extension(
        f"ecomcore_ext.{name}",
        [SOURCES[name]],
        include_dirs=[np.get_include(), "ecomcore_ext"],
        define_macros=[
            ("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
            ("ECOMCORE_OPENMP", "1" if USE_OPENMP else "0"),
        ],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in KERNELS
]

DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
}
if DEBUG:
    DIRECTIVES.update(_DEBUG_DIRECTIVES)
    from Cython.Compiler import Options as _cython_options

    if "show_performance_hints" in getattr(_cython_options, "directive_types", {}):
        DIRECTIVES["show_performance_hints"] = False  # "use boundscheck(False)" on every access

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
    ),
)
