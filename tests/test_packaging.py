"""Packaging checks.

* The suite really tests the installed wheel (under ``ECOMCORE_EXPECT_INSTALLED=1``, which
  ``.ci/run`` sets): ``ecomcore`` and ``ecomcore_ext`` are imported from site-packages, not
  from the source tree.
* The known packaging traps: an sdist built from the repository must hold the ``.pyx`` /
  ``.pxd`` / ``.pyi`` / ``.h`` sources and the build files, and a wheel built FROM THAT SDIST
  must hold both packages, the compiled extension modules and the ``.pyi`` stubs, and no
  generated ``.c`` and no ``.pyx``.

The build tests copy the files a commit would hold (``git ls-files``) to a temporary directory,
build there with setuptools' PEP 517 hooks in this interpreter (no build isolation, nothing is
downloaded), and never write into the repository.  They need setuptools, Cython >= 3, numpy and
a C compiler in the running environment; without them they skip with the reason, except under
``CI=true``, where they fail instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
_TRUE = {"1", "true", "yes", "on"}
BUILD_TIMEOUT_S = 600


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _skip_or_fail(reason: str) -> None:
    if _env_flag("CI"):
        pytest.fail(f"{reason} (CI=true: this packaging check must run in CI)")
    pytest.skip(reason)


def _is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------
# the installed wheel is what the suite tests
# --------------------------------------------------------------------------------------------


def test_imported_from_installed_wheel():
    if not _env_flag("ECOMCORE_EXPECT_INSTALLED"):
        pytest.skip("ECOMCORE_EXPECT_INSTALLED is not set (.ci/run sets it)")
    import ecomcore
    import ecomcore_ext

    site_dirs = {
        os.path.realpath(p)
        for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
    }
    ext_dir = Path(ecomcore_ext.__file__).resolve().parent
    compiled = sorted(
        p for p in ext_dir.iterdir() if p.suffix in (".so", ".pyd") and not p.name.startswith(".")
    )
    assert compiled, f"no compiled extension modules next to {ecomcore_ext.__file__}"
    mods = [ecomcore, ecomcore_ext]
    mods += [importlib.import_module(f"ecomcore_ext.{p.name.split('.')[0]}") for p in compiled]
    for mod in mods:
        path = os.path.realpath(mod.__file__)
        assert not _is_within(path, REPO), (
            f"{mod.__name__} is imported from the source tree ({path}), not the installed wheel; "
            f"sys.path[:5] = {sys.path[:5]}"
        )
        assert any(_is_within(path, d) for d in site_dirs), (
            f"{mod.__name__} is imported from {path}, outside site-packages {sorted(site_dirs)}"
        )
    # ... and it is the installed `ecomcore` distribution's copy.
    dist = importlib.metadata.distribution("ecomcore")
    installed = os.path.realpath(dist.locate_file("ecomcore_ext/__init__.py"))
    assert installed == os.path.realpath(ecomcore_ext.__file__)


def test_readme_example_runs():
    """The README's API example runs as written (the README must not rot)."""
    readme = REPO / "README.md"
    if not readme.is_file():
        pytest.skip(f"no README.md in {REPO}")

    m = re.search(r"## Example\n\n```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert m, "README.md has no '## Example' python block"
    exec(compile(m.group(1), str(readme), "exec"), {"__name__": "readme_example"})


# --------------------------------------------------------------------------------------------
# sdist and wheel-from-sdist
# --------------------------------------------------------------------------------------------


def _tracked_files() -> list[str]:
    """Files a commit would hold: tracked plus untracked-but-not-ignored, that exist."""
    git = shutil.which("git")
    if git and (REPO / ".git").exists():
        r = subprocess.run(
            [git, "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            timeout=60,
        )
        if r.returncode == 0:
            names = [n for n in r.stdout.decode().split("\0") if n]
            return [n for n in names if (REPO / n).is_file()]
    # Not a git checkout: everything except build output.
    skip_dirs = {
        ".git",
        "build",
        "dist",
        "__pycache__",
        ".venv",
        "venv",
        ".pytest_cache",
        ".hypothesis",
        ".benchmarks",
        ".ruff_cache",
    }
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not d.endswith(".egg-info")]
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), REPO).replace(os.sep, "/")
            if f.endswith((".so", ".pyd", ".pyc")) or (
                rel.startswith("ecomcore_ext/") and f.endswith(".c")
            ):
                continue
            out.append(rel)
    return out


def _run_hook(hook: str, src: Path, outdir: Path) -> tuple[str, str]:
    """Call setuptools' PEP 517 hook ``hook`` in a subprocess with cwd ``src``."""
    code = (
        "import sys\n"
        "from setuptools import build_meta\n"
        f"name = build_meta.{hook}(sys.argv[1])\n"
        "print('\\nBUILT:' + name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    try:
        r = subprocess.run(
            [sys.executable, "-c", code, str(outdir)],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{hook} took more than {BUILD_TIMEOUT_S}s")
    log = r.stdout + r.stderr
    if r.returncode != 0:
        pytest.fail(f"{hook} failed (exit {r.returncode}):\n{log[-6000:]}")
    built = [ln[len("BUILT:") :] for ln in r.stdout.splitlines() if ln.startswith("BUILT:")]
    assert built, log[-3000:]
    return built[-1].strip(), log


@pytest.fixture(scope="module")
def build_env():
    if not (REPO / "pyproject.toml").is_file() or not (REPO / "setup.py").is_file():
        pytest.skip(f"{REPO} is not an ecomcore source checkout")
    missing = []
    for mod in ("setuptools", "Cython", "numpy"):
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        _skip_or_fail(
            "building from the sdist without isolation needs "
            + ", ".join(missing)
            + ' in this environment (pip install "setuptools>=64" "Cython>=3" numpy)'
        )
    import Cython

    if int(Cython.__version__.split(".")[0]) < 3:
        _skip_or_fail(f"Cython >= 3 needed, found {Cython.__version__}")
    import setuptools

    st_version = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    if st_version < (70, 1):
        try:
            importlib.import_module("wheel")
        except ImportError:
            _skip_or_fail(
                f"setuptools {setuptools.__version__} has no bdist_wheel of its own and the "
                '`wheel` package is missing (pip install "setuptools>=70.1")'
            )
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        _skip_or_fail(f"no C compiler ({cc!r} not found)")


@pytest.fixture(scope="module")
def source_files(build_env):
    return _tracked_files()


@pytest.fixture(scope="module")
def sdist(build_env, source_files, tmp_path_factory):
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    for rel in source_files:
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    outdir = base / "sdist"
    outdir.mkdir()
    name, log = _run_hook("build_sdist", src, outdir)
    path = outdir / name
    assert path.is_file() and name.endswith(".tar.gz"), name
    return {"path": path, "log": log, "base": base}


@pytest.fixture(scope="module")
def sdist_names(sdist):
    with tarfile.open(sdist["path"]) as tf:
        names = [m.name for m in tf.getmembers() if m.isfile()]
    top = {PurePosixPath(n).parts[0] for n in names}
    assert len(top) == 1, f"sdist has several top-level folders: {top}"
    prefix = top.pop() + "/"
    return {n[len(prefix) :] for n in names}


@pytest.fixture(scope="module")
def wheel(sdist):
    unpack = sdist["base"] / "unpacked"
    with tarfile.open(sdist["path"]) as tf:
        if sys.version_info >= (3, 12):
            tf.extractall(unpack, filter="data")
        else:
            tf.extractall(unpack)
    (root,) = list(unpack.iterdir())
    outdir = sdist["base"] / "wheel"
    outdir.mkdir()
    name, log = _run_hook("build_wheel", root, outdir)
    path = outdir / name
    assert path.is_file() and name.endswith(".whl"), name
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    return {"path": path, "names": names, "log": log, "base": sdist["base"]}


def _ext_sources(names, suffix):
    return sorted(n for n in names if n.startswith("ecomcore_ext/") and n.endswith(suffix))


@pytest.mark.slow
def test_sdist_holds_sources(source_files, sdist_names):
    required = {"setup.py", "pyproject.toml", "README.md", "PKG-INFO"}
    # Every kernel source, header and stub in the repository, and every module of both packages.
    for rel in source_files:
        if rel.startswith("ecomcore_ext/") and rel.endswith((".pyx", ".pxd", ".pyi", ".h")):
            required.add(rel)
        if rel.startswith(("ecomcore/", "ecomcore_ext/")) and rel.endswith((".py", "py.typed")):
            required.add(rel)
    missing = sorted(required - sdist_names)
    assert not missing, f"sdist lacks {missing}"
    pyx = _ext_sources(sdist_names, ".pyx")
    assert pyx, "sdist holds no ecomcore_ext/*.pyx"
    for p in pyx:
        assert p[: -len(".pyx")] + ".pyi" in sdist_names, f"{p} has no .pyi stub in the sdist"
    bad = sorted(
        n
        for n in sdist_names
        if n.endswith((".so", ".pyd", ".pyc", ".o"))
        or (n.startswith("ecomcore_ext/") and n.endswith(".c"))
        or n.startswith(("build/", "dist/"))
        or "__pycache__" in n
    )
    assert not bad, f"sdist holds build output: {bad}"


@pytest.mark.slow
def test_wheel_from_sdist_contents(sdist_names, wheel):
    names = wheel["names"]
    for pkg in ("ecomcore", "ecomcore_ext"):
        assert f"{pkg}/__init__.py" in names, f"wheel lacks the {pkg} package"
    py_missing = sorted(
        n
        for n in sdist_names
        if n.startswith(("ecomcore/", "ecomcore_ext/"))
        and n.endswith((".py", "py.typed"))
        and n not in names
    )
    assert not py_missing, f"wheel lacks {py_missing}"
    for pyx in _ext_sources(sdist_names, ".pyx"):
        stem = pyx[: -len(".pyx")]
        compiled = [
            n
            for n in names
            if n.startswith(stem + ".")
            and n.endswith((".so", ".pyd"))
            and "/" not in n[len(stem) :]
        ]
        assert len(compiled) == 1, f"wheel lacks the compiled module for {pyx}: {compiled}"
        assert stem + ".pyi" in names, f"wheel lacks the stub {stem}.pyi"
    bad = sorted(n for n in names if n.endswith((".c", ".pyx", ".o", ".pyc")))
    assert not bad, f"wheel holds sources or build output it must not ship: {bad}"
    tops = {PurePosixPath(n).parts[0] for n in names}
    extra = sorted(
        t
        for t in tops
        if t not in ("ecomcore", "ecomcore_ext") and not t.endswith((".dist-info", ".data"))
    )
    assert not extra, f"wheel installs unexpected top-level entries: {extra}"


@pytest.mark.slow
def test_wheel_metadata(wheel):
    with zipfile.ZipFile(wheel["path"]) as zf:
        (info,) = {n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n}
        meta = zf.read(f"{info}/METADATA").decode()
        wheel_file = zf.read(f"{info}/WHEEL").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert "Name: ecomcore" in meta
    requires = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    for dep in ("numpy", "scipy"):
        assert any(
            ln.split(":", 1)[1].strip().lower().startswith(dep) and "extra ==" not in ln
            for ln in requires
        ), f"{dep} is not a runtime dependency: {requires}"
    for extra in ("test", "bench"):
        assert f"Provides-Extra: {extra}" in meta
    assert "Root-Is-Purelib: false" in wheel_file, "the wheel must be platform-specific"
    assert "ecomcore = ecomcore.cli:main" in entry_points


@pytest.mark.slow
def test_build_uses_portable_flags(wheel):
    """No -march=native / -ffast-math in the compile commands the wheel build ran."""
    lines = wheel["log"].splitlines()
    compile_lines = [ln for ln in lines if "ecomcore_ext/" in ln and " -c " in ln]
    assert compile_lines, "the build log shows no compile command for ecomcore_ext"
    for ln in compile_lines:
        for flag in ("-march=native", "-mtune=native", "-ffast-math", "-Ofast"):
            assert flag not in ln.split(), f"the build passed {flag}: {ln}"


@pytest.mark.slow
def test_wheel_from_sdist_imports(wheel):
    """The wheel built from the sdist works on its own (no source tree on sys.path)."""
    target = wheel["base"] / "wheel-unpacked"
    with zipfile.ZipFile(wheel["path"]) as zf:
        zf.extractall(target)
    code = (
        "import importlib, os, pathlib, sys\n"
        "import ecomcore, ecomcore_ext\n"
        "here = os.path.realpath(os.getcwd())\n"
        "for m in (ecomcore, ecomcore_ext):\n"
        "    assert os.path.realpath(m.__file__).startswith(here + os.sep), m.__file__\n"
        "d = pathlib.Path(ecomcore_ext.__file__).parent\n"
        "mods = sorted({p.name.split('.')[0] for p in d.iterdir()\n"
        "               if p.suffix in ('.so', '.pyd')})\n"
        "assert mods, 'no compiled modules'\n"
        "for name in mods:\n"
        "    importlib.import_module('ecomcore_ext.' + name)\n"
        "print('ok', mods)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
