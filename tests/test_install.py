"""Where the package was imported from, and what ``show_config`` reports."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ecomcore as ec

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _under(path, root):
    path = os.path.realpath(path)
    root = os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


@pytest.mark.skipif(
    os.environ.get("ECOMCORE_EXPECT_INSTALLED") != "1",
    reason="set ECOMCORE_EXPECT_INSTALLED=1 to check that the installed wheel "
    "is the one under test (as .ci/run does); skipped for in-place "
    "development builds",
)
def test_extension_imported_from_installed_package():
    import ecomcore_ext
    from ecomcore_ext import _topk

    # The source tree: the package folders of the checkout and setuptools' build folder.  A
    # virtual environment inside the checkout (e.g. .venv/) is an installed location.
    source_dirs = [os.path.join(REPO_ROOT, d) for d in ("ecomcore", "ecomcore_ext", "build")]
    for mod in (ecomcore_ext, _topk, ec):
        path = mod.__file__
        assert not any(_under(path, d) for d in source_dirs), (
            f"{mod.__name__} was imported from the source tree ({path}), not from the installed package"
        )
        parts = os.path.realpath(path).split(os.sep)
        assert not _under(path, REPO_ROOT) or "site-packages" in parts, path
    # the wheel must not carry the generated C sources
    ext_dir = os.path.dirname(ecomcore_ext.__file__)
    assert not [f for f in os.listdir(ext_dir) if f.endswith(".c")], os.listdir(ext_dir)


def test_show_config(capsys):
    cfg = ec.show_config()
    assert isinstance(cfg, dict)
    for key in ("openmp", "cython_version", "numpy_version", "numpy_runtime", "max_threads"):
        assert key in cfg, key
    assert isinstance(cfg["openmp"], bool)
    assert isinstance(cfg["cython_version"], str) and cfg["cython_version"][0].isdigit()
    assert isinstance(cfg["numpy_version"], str) and cfg["numpy_version"][0].isdigit()
    assert cfg["numpy_runtime"] == np.__version__
    assert isinstance(cfg["max_threads"], int) and cfg["max_threads"] >= 1
    out = capsys.readouterr().out
    assert "openmp" in out.lower()


def test_public_names():
    for name in ("sparse_topk", "Ranker", "TopK", "merge_topk", "concat_topk", "show_config"):
        assert hasattr(ec, name), name
    for name in ec.__all__:
        assert hasattr(ec, name), name


def test_every_kernel_has_a_stub():
    import glob
    import importlib
    import os

    import ecomcore_ext

    here = os.path.dirname(ecomcore_ext.__file__)
    built = sorted(
        {
            os.path.basename(p).split(".")[0]
            for p in glob.glob(os.path.join(here, "_*.*"))
            if p.endswith((".so", ".pyd"))
        }
    )
    assert {"_topk", "_checks", "_trust", "_trust_score", "_unionfind", "_interest", "_exposure"} <= set(built)
    for name in built:
        assert os.path.isfile(os.path.join(here, name + ".pyi")), f"{name}.pyi missing"
        importlib.import_module(f"ecomcore_ext.{name}")
