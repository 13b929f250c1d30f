"""What the built wheel and sdist contain, and the wheel builds cibuildwheel plans.

``.ci/run`` builds both with ``python -m build`` (the wheel from the sdist),
repairs the wheel with auditwheel and runs the suite against it with
``CCONV_WHEEL`` and ``CCONV_SDIST`` naming the two files; elsewhere these tests
are skipped.
"""

import fnmatch
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import PurePosixPath

import pytest

KERNELS = ("_openmp", "im2col", "col2im", "pooling", "activation", "adam")
PUBLIC_PXD = ("im2col", "col2im", "pooling", "activation", "adam")
#: The packages of the wheel (pyproject.toml's packages list), as folders.
PACKAGES = ("cconv", "cconv/cli", "cconv/nets", "cconv/kernels", "cconv/book",
            "cconv/book/compat/common", "cconv/book/compat/dataset")
#: The NumPy reference and the benchmarks live in the source tree only (tests/, benchmarks/).
SOURCE_TREE_ONLY = ("reference.py", "reference_layers.py", "numpy_reference.py", "cconv_testutils.py",
                    "conftest.py", "book_convnets.py", "bench_*.py")

WHEEL = os.environ.get("CCONV_WHEEL")
SDIST = os.environ.get("CCONV_SDIST")
needs_wheel = pytest.mark.skipif(not WHEEL, reason="CCONV_WHEEL names a built wheel (.ci/run)")
needs_sdist = pytest.mark.skipif(not SDIST, reason="CCONV_SDIST names a built sdist (.ci/run)")


@pytest.fixture(scope="module")
def wheel_files():
    with zipfile.ZipFile(WHEEL) as wheel:
        return wheel.namelist()


@pytest.fixture(scope="module")
def sdist_files():
    with tarfile.open(SDIST) as sdist:
        names = [PurePosixPath(m.name) for m in sdist.getmembers() if m.isfile()]
    top = {name.parts[0] for name in names}
    assert len(top) == 1, f"the sdist should hold one top folder, found {sorted(top)}"
    return [str(PurePosixPath(*name.parts[1:])) for name in names]


def matching(files, pattern):
    return [f for f in files if fnmatch.fnmatchcase(f, pattern)]


def extension_module_re(name):
    """A compiled module file of cconv.kernels: .so (Linux, macOS) or .pyd (Windows)."""
    return re.compile(rf"cconv/kernels/{re.escape(name)}(\.[^/]*)?\.(so|pyd)")


@needs_wheel
@pytest.mark.parametrize("name", KERNELS)
def test_wheel_has_the_extension_module_and_its_stub(wheel_files, name):
    modules = [f for f in wheel_files if extension_module_re(name).fullmatch(f)]
    assert len(modules) == 1, f"{name}: extension modules {modules}"
    suffix = modules[0][len(f"cconv/kernels/{name}") :]
    assert suffix in importlib.machinery.EXTENSION_SUFFIXES, (
        f"{modules[0]} cannot be imported by this Python ({importlib.machinery.EXTENSION_SUFFIXES})"
    )
    assert f"cconv/kernels/{name}.pyi" in wheel_files
    assert f"cconv/kernels/{name}.pxd" in wheel_files


@needs_wheel
def test_wheel_has_the_c_api_the_typing_marker_and_the_sample(wheel_files):
    for name in PUBLIC_PXD:
        assert f"cconv/kernels/{name}.pxd" in wheel_files
    assert "cconv/kernels/_common.pxd" in wheel_files  # cimported by the public .pxd files
    assert "cconv/py.typed" in wheel_files
    assert "cconv/__init__.py" in wheel_files
    assert "cconv/data/README.md" in wheel_files  # the sample's credits
    assert len(matching(wheel_files, "cconv/data/mnist-sample/*-ubyte.gz")) == 4
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in wheel_files)


@needs_wheel
def test_wheel_has_every_package(wheel_files):
    for package in PACKAGES:
        assert f"{package}/__init__.py" in wheel_files, f"the wheel lacks the package {package}"


@needs_wheel
def test_wheel_has_no_sources_build_debris_or_tests(wheel_files):
    unwanted = [
        f
        for f in wheel_files
        if f.endswith((".c", ".cpp", ".h", ".html", ".o", ".obj", ".pyc", ".pyx"))
        or "__pycache__" in f
        or f.split("/")[0] in {"tests", "benchmarks", "scripts", "src", "build"}
    ]
    assert not unwanted, f"the wheel should not contain {unwanted}"
    assert not [f for f in wheel_files if f.startswith("cconv/_bench/")], "the wheel holds cconv/_bench"
    source_only = [f for f in wheel_files if any(fnmatch.fnmatchcase(PurePosixPath(f).name, name)
                                                 for name in SOURCE_TREE_ONLY)]
    assert not source_only, f"the wheel holds the reference or benchmark modules {source_only}"
    top_level = {f.split("/")[0] for f in wheel_files}
    allowed = {"cconv", "cconv.libs"}
    assert {t for t in top_level if not t.endswith(".dist-info")} <= allowed, top_level


@needs_wheel
@pytest.mark.skipif(sys.platform != "linux", reason="auditwheel repairs Linux wheels")
def test_linux_wheel_is_repaired_and_carries_its_openmp_runtime(wheel_files):
    name = os.path.basename(WHEEL)
    assert re.search(r"-(manylinux|musllinux)_\d+_\d+_\w+\.whl$", name), (
        f"{name} has no manylinux/musllinux tag: was it repaired by auditwheel?"
    )
    if os.environ.get("CCONV_EXPECT_OPENMP") == "1":
        assert matching(wheel_files, "cconv.libs/libgomp*.so*"), "libgomp is not bundled"


@needs_sdist
def test_sdist_has_everything_the_build_needs(sdist_files):
    for required in (
        "setup.py",
        "pyproject.toml",
        "MANIFEST.in",
        "README.md",
        "CONTRIBUTING.md",
        "LICENSE",
        "cconv/__init__.py",
        "cconv/py.typed",
        "cconv/data/README.md",
        "scripts/build_libomp_macos.sh",
        "src/cconv/kernels/__init__.py",
        "src/cconv/kernels/_common.pxd",
    ):
        assert required in sdist_files, f"the sdist lacks {required}"
    for name in KERNELS:
        for ext in ("pyx", "pxd", "pyi"):
            assert f"src/cconv/kernels/{name}.{ext}" in sdist_files
    assert len(matching(sdist_files, "cconv/data/mnist-sample/*-ubyte.gz")) == 4
    assert "tests/conftest.py" in sdist_files
    # The one NumPy reference (with the tests) and the benchmarks that import it.
    for required in ("tests/reference.py", "benchmarks/bench_kernels.py", "benchmarks/_util.py",
                     "benchmarks/_reference.py"):
        assert required in sdist_files, f"the sdist lacks {required}"
    assert not [f for f in sdist_files if f.startswith("cconv/_bench/")], "the sdist holds cconv/_bench"


@needs_sdist
def test_sdist_has_no_generated_or_compiled_files(sdist_files):
    unwanted = [
        f
        for f in sdist_files
        if f.endswith((".c", ".so", ".pyd", ".o", ".html", ".pyc", ".whl"))
        or "__pycache__" in f
        or f.startswith(("build/", "dist/", "wheels/", ".git/"))
    ]
    assert not unwanted, f"the sdist should not contain {unwanted}"


@pytest.fixture(scope="module")
def sdist_tree(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sdist")
    with tarfile.open(SDIST) as sdist:
        sdist.extractall(folder, filter="data")
    (top,) = folder.iterdir()
    return top


def build_identifiers(sdist_tree, platform):
    assert importlib.util.find_spec("cibuildwheel"), (
        "cibuildwheel is not installed (.ci/run installs it beside the wheel)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform, "."],
        cwd=sdist_tree,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CIBW_")},
    )
    assert result.returncode == 0, f"cibuildwheel refused the configuration:\n{result.stderr}"
    return result.stdout.split()


@needs_sdist
@pytest.mark.parametrize(
    "platform, expected_platforms",
    [
        ("linux", {"manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64", "musllinux_aarch64"}),
        ("macos", {"macosx_x86_64", "macosx_arm64"}),
        ("windows", {"win_amd64"}),
    ],
)
def test_cibuildwheel_plans_cpython_3_10_and_newer_for_64_bit_platforms(
    sdist_tree, platform, expected_platforms
):
    identifiers = build_identifiers(sdist_tree, platform)
    builds = {}
    for identifier in identifiers:
        match = re.fullmatch(r"cp3(\d+)-(\w+)", identifier)
        assert match, f"{identifier} is not a CPython build (no PyPy, no free-threaded)"
        builds.setdefault(match[2], set()).add(int(match[1]))
    assert set(builds) == expected_platforms
    for versions in builds.values():
        assert min(versions) == 10
        assert {10, 11, 12, 13, 14} <= versions
        assert versions == builds[next(iter(expected_platforms))]
