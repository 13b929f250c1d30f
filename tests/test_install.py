"""The cconv under test is a real installation with compiled kernels.

Every run checks that the kernels are compiled extension modules. Where the
tests run against a built wheel (``.ci/run``, cibuildwheel, the sdist job of
the wheels workflow), ``CCONV_EXPECT_INSTALLED=1`` also requires that the
imported ``cconv`` is the installed distribution's own files, not a source tree
that happened to be on ``sys.path``.
"""

import fnmatch
import importlib
import importlib.machinery
import importlib.metadata
import os
from pathlib import Path

import pytest

import cconv

KERNEL_MODULES = ("_openmp", "im2col", "col2im", "pooling", "activation", "adam")


@pytest.mark.parametrize("name", KERNEL_MODULES)
def test_kernels_are_compiled_extension_modules(name):
    module = importlib.import_module(f"cconv.kernels.{name}")
    assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader), (
        f"cconv.kernels.{name} was loaded by {module.__loader__!r}, not as an extension module"
    )
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), module.__file__


def test_public_kernels_come_from_the_extension_modules():
    for function, module in [
        (cconv.im2col, "im2col"),
        (cconv.col2im, "col2im"),
        (cconv.max_pool2d, "pooling"),
        (cconv.avg_pool2d_backward, "pooling"),
        (cconv.relu_with_mask, "activation"),
        (cconv.relu_backward, "activation"),
    ]:
        assert function.__module__ == f"cconv.kernels.{module}"
        assert type(function).__name__ in {"cython_function_or_method", "builtin_function_or_method"}


def test_the_distribution_metadata_matches_the_package():
    distribution = importlib.metadata.distribution("cconv")
    assert distribution.version == cconv.__version__
    assert distribution.entry_points.select(group="console_scripts", name="cconv")


@pytest.mark.skipif(
    os.environ.get("CCONV_EXPECT_INSTALLED") != "1",
    reason="CCONV_EXPECT_INSTALLED=1 is set where the tests run against a built wheel",
)
def test_cconv_is_imported_from_the_installed_distribution():
    distribution = importlib.metadata.distribution("cconv")
    installed_init = Path(distribution.locate_file("cconv/__init__.py")).resolve()
    assert Path(cconv.__file__).resolve() == installed_init, (
        f"cconv was imported from {cconv.__file__}, not from the installed {installed_init}"
    )
    recorded = {str(f) for f in distribution.files}
    for name in KERNEL_MODULES:
        module_file = Path(importlib.import_module(f"cconv.kernels.{name}").__file__).resolve()
        assert module_file.parent == installed_init.parent / "kernels"
        assert f"cconv/kernels/{module_file.name}" in recorded
    # Not a source tree: an installed package has no setup.py or src/ beside it.
    package_root = installed_init.parent.parent
    assert not (package_root / "setup.py").exists()
    assert not (package_root / "src" / "cconv" / "kernels").exists()


@pytest.mark.skipif(
    os.environ.get("CCONV_EXPECT_INSTALLED") != "1" or os.environ.get("CCONV_EXPECT_OPENMP") != "1",
    reason="CCONV_EXPECT_INSTALLED=1 and CCONV_EXPECT_OPENMP=1 are set where a built wheel is tested",
)
def test_a_repaired_wheel_carries_its_openmp_runtime():
    """The runtime is inside the installed wheel, not found where the wheel was built."""
    distribution = importlib.metadata.distribution("cconv")
    wheel_tags = [
        line.split(":", 1)[1].strip()
        for line in (distribution.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    assert wheel_tags, "the installed cconv has no WHEEL tags"
    platform_tag = wheel_tags[0].rsplit("-", 1)[-1]
    if platform_tag.startswith(("manylinux", "musllinux")):
        pattern = "cconv.libs/libgomp*.so*"  # auditwheel
    elif platform_tag.startswith("macosx"):
        pattern = "cconv/.dylibs/libomp*.dylib"  # delocate
    else:
        pytest.skip(
            f"{platform_tag}: an unrepaired wheel (linux_*), or Windows, where vcomp140.dll comes "
            "with delvewheel's repair or the Visual C++ runtime"
        )
    recorded = [str(f) for f in distribution.files]
    assert any(fnmatch.fnmatchcase(f, pattern) for f in recorded), (
        f"no {pattern} in the installed {platform_tag} wheel"
    )
