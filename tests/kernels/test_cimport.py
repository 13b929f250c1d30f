"""The C API ships: Cython code can cimport the installed cconv.kernels cores.

A consumer module (``cimport_consumer/``) cimports every ``.pxd`` of
``cconv.kernels`` from the *installed* package, is compiled once per test run
in a temporary folder, and calls every core inside ``with nogil:``. Its results
must equal the Python API's bit for bit, although its output buffers start full
of NaN (the cores zero what they accumulate). README.md's cimport example is
built the way README says and checked against ``cconv.im2col`` too.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cconv
import cconv.kernels
import cconv.kernels.adam

from cconv_testutils import Geometry, random_array, with_layout

CONSUMER_SOURCES = Path(__file__).parent / "cimport_consumer"
PXD_MODULES = ("im2col", "col2im", "conv", "pooling", "activation", "adam")
GEOM = Geometry((2, 3, 7, 6), 3, 2, (2, 1), (1, 1))


def pxd_include_dir():
    """The folder whose ``cconv/kernels/*.pxd`` are the installed C API.

    For a regular install that is the parent of the ``cconv`` package; for an
    editable install the compiled ``cconv.kernels`` may live elsewhere (its
    source folder), so that location is tried second.
    """
    candidates = [
        Path(cconv.__file__).resolve().parent.parent,
        Path(cconv.kernels.__file__).resolve().parent.parent.parent,
    ]
    for folder in candidates:
        if all((folder / "cconv" / "kernels" / f"{m}.pxd").is_file() for m in PXD_MODULES):
            return folder
    pytest.fail(f"no cconv/kernels/{{{','.join(PXD_MODULES)}}}.pxd under {candidates}")


def test_pxd_files_are_installed():
    kernels_dir = pxd_include_dir() / "cconv" / "kernels"
    for module in PXD_MODULES:
        text = (kernels_dir / f"{module}.pxd").read_text()
        assert "noexcept nogil" in text


def c_compiler_works(folder):
    """True when setuptools can compile a trivial C file with the default compiler."""
    probe = Path(folder) / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    code = (
        "import setuptools\n"
        "from distutils.ccompiler import new_compiler\n"
        "from distutils.sysconfig import customize_compiler\n"
        "c = new_compiler(); customize_compiler(c)\n"
        f"c.compile([{str(probe)!r}], output_dir={str(folder)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True)
    return result.returncode == 0


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    """The compiled consumer module, built once for this module's tests.

    Skipped without Cython or a C compiler, unless ``CCONV_EXPECT_COMPILER=1``
    (.ci/aarch64), where either missing fails.
    """
    expected = os.environ.get("CCONV_EXPECT_COMPILER") == "1"
    if expected:
        assert importlib.util.find_spec("Cython"), "CCONV_EXPECT_COMPILER=1 but Cython is not installed"
    pytest.importorskip("Cython", reason="building the cimport consumer needs Cython")
    build_dir = tmp_path_factory.mktemp("cimport_consumer")
    for name in ("cconv_cimport_consumer.pyx", "setup.py"):
        shutil.copy(CONSUMER_SOURCES / name, build_dir)
    env = dict(os.environ, CCONV_INCLUDE_DIR=str(pxd_include_dir()))
    build = subprocess.run(
        [sys.executable, "setup.py"], cwd=build_dir, env=env, capture_output=True, text=True
    )
    if build.returncode != 0:
        if not c_compiler_works(tmp_path_factory.mktemp("probe")):
            if expected:
                pytest.fail(f"CCONV_EXPECT_COMPILER=1 but no C compiler works:\n{build.stderr[-3000:]}")
            pytest.skip("no working C compiler: cannot build the cimport consumer")
        pytest.fail(
            f"building the cimport consumer failed:\n{build.stdout[-3000:]}\n{build.stderr[-5000:]}"
        )
    sys.path.insert(0, str(build_dir))
    try:
        return importlib.import_module("cconv_cimport_consumer")
    finally:
        sys.path.remove(str(build_dir))


@pytest.fixture(params=["C", "negative", "readonly"])
def core_layout(request):
    """Cores take any strided (and read-only) input through const memoryviews."""
    return request.param


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads{n}")
def num_threads(request):
    return request.param


def window_args(geom):
    """The cores' positional window arguments: sizes, stride pair, pad pair."""
    (sh, sw), (ph, pw) = (np.broadcast_to(v, 2).tolist() for v in (geom.stride, geom.pad))
    return geom.filter_h, geom.filter_w, sh, sw, ph, pw


def nan_like(a):
    return np.full(a.shape, np.nan, dtype=a.dtype)


@pytest.mark.parametrize("dilation", [(1, 1), (2, 1)], ids=["d1", "d21"])
def test_im2col_core(consumer, rng, float_dtype, core_layout, num_threads, dilation):
    x = with_layout(random_array(rng, GEOM.shape, float_dtype), core_layout)
    expected = cconv.im2col(x, *GEOM.args, **GEOM.kwargs, dilation=dilation)
    col = nan_like(expected)
    consumer.im2col(x, *window_args(GEOM), *dilation, col, num_threads)
    np.testing.assert_array_equal(col, expected)


@pytest.mark.parametrize("dilation", [(1, 1), (2, 1)], ids=["d1", "d21"])
def test_col2im_core(consumer, rng, float_dtype, core_layout, num_threads, dilation):
    col_shape = cconv.im2col(np.zeros(GEOM.shape), *GEOM.args, **GEOM.kwargs, dilation=dilation).shape
    col = with_layout(random_array(rng, col_shape, float_dtype), core_layout)
    expected = cconv.col2im(col, GEOM.shape, *GEOM.args, **GEOM.kwargs, dilation=dilation)
    img = nan_like(expected)
    consumer.col2im(col, *window_args(GEOM), *dilation, img, num_threads)
    np.testing.assert_array_equal(img, expected)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_conv2d_cores(consumer, rng, float_dtype, core_layout, num_threads, with_bias):
    x = with_layout(random_array(rng, GEOM.shape, float_dtype), core_layout)
    W = random_array(rng, (4, GEOM.shape[1], GEOM.filter_h, GEOM.filter_w), float_dtype)
    b = random_array(rng, (4,), float_dtype) if with_bias else np.empty(0, float_dtype)
    window = dict(stride=GEOM.stride, pad=GEOM.pad, dilation=(1, 2))
    expected = cconv.conv2d(x, W, b if with_bias else None, **window)
    out = nan_like(expected)
    # BLAS on one thread, as the Python functions run it (the results do not
    # depend on it; the speed does).
    with threadpool_limits(limits=1, user_api="blas"):
        assert consumer.conv2d(x, W, b, *window_args(GEOM)[2:], 1, 2, out, num_threads) == 0
    np.testing.assert_array_equal(out, expected)

    dout = random_array(rng, expected.shape, float_dtype)
    want = cconv.conv2d_backward(dout, x, W, **window)
    for need_input_grad in (True, False):
        dx, dW, db = nan_like(x), nan_like(W), np.full(4, np.nan, float_dtype)
        with threadpool_limits(limits=1, user_api="blas"):
            assert consumer.conv2d_backward(dout, x, W, *window_args(GEOM)[2:], 1, 2, dx, dW, db,
                                            need_input_grad, num_threads) == 0
        np.testing.assert_array_equal(dW, want[1])
        np.testing.assert_array_equal(db, want[2])
        if need_input_grad:
            np.testing.assert_array_equal(dx, want[0])
        else:
            assert np.isnan(dx).all()  # not written


def test_max_pool2d_core(consumer, rng, float_dtype, core_layout, num_threads):
    x = with_layout(random_array(rng, GEOM.shape, float_dtype), core_layout)
    expected_out, expected_argmax = cconv.max_pool2d(x, *GEOM.args, **GEOM.kwargs)
    out, argmax = nan_like(expected_out), np.full(GEOM.out_shape, -1, np.int64)
    consumer.max_pool2d(x, *window_args(GEOM), out, argmax, num_threads)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(argmax, expected_argmax)


def test_max_pool2d_backward_core(consumer, rng, float_dtype, core_layout, num_threads):
    _, argmax = cconv.max_pool2d(random_array(rng, GEOM.shape), *GEOM.args, **GEOM.kwargs)
    dout = with_layout(random_array(rng, GEOM.out_shape, float_dtype), core_layout)
    argmax = with_layout(argmax, core_layout)
    expected = cconv.max_pool2d_backward(dout, argmax, GEOM.shape, *GEOM.args, **GEOM.kwargs)
    dx = nan_like(expected)
    consumer.max_pool2d_backward(dout, argmax, *window_args(GEOM), dx, num_threads)
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("include_pad", [True, False], ids=["include_pad", "exclude_pad"])
def test_avg_pool2d_core(consumer, rng, float_dtype, core_layout, num_threads, include_pad):
    x = with_layout(random_array(rng, GEOM.shape, float_dtype), core_layout)
    expected = cconv.avg_pool2d(x, *GEOM.args, **GEOM.kwargs, count_include_pad=include_pad)
    out = nan_like(expected)
    consumer.avg_pool2d(x, *window_args(GEOM), include_pad, out, num_threads)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("include_pad", [True, False], ids=["include_pad", "exclude_pad"])
def test_avg_pool2d_backward_core(
    consumer, rng, float_dtype, core_layout, num_threads, include_pad
):
    dout = with_layout(random_array(rng, GEOM.out_shape, float_dtype), core_layout)
    expected = cconv.avg_pool2d_backward(
        dout, GEOM.shape, *GEOM.args, **GEOM.kwargs, count_include_pad=include_pad
    )
    dx = nan_like(expected)
    consumer.avg_pool2d_backward(dout, *window_args(GEOM), include_pad, dx, num_threads)
    np.testing.assert_array_equal(dx, expected)


def test_relu_cores(consumer, rng, float_dtype, num_threads):
    x = random_array(rng, (3, 40, 50), float_dtype)
    expected_out, expected_mask = cconv.relu_with_mask(x)
    out, mask = nan_like(expected_out), np.zeros(x.shape, np.uint8)
    consumer.relu(x.reshape(-1), out.reshape(-1), mask.reshape(-1), num_threads)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(mask.view(bool), expected_mask)
    dout = random_array(rng, x.shape, float_dtype)
    dx = nan_like(dout)
    consumer.relu_backward(dout.reshape(-1), mask.reshape(-1), dx.reshape(-1), num_threads)
    np.testing.assert_array_equal(dx, cconv.relu_backward(dout, expected_mask))


def test_adam_update_core(consumer, rng, float_dtype, num_threads):
    param = random_array(rng, (40, 50), float_dtype)
    grad = random_array(rng, param.shape, float_dtype)
    m, v = random_array(rng, param.shape, float_dtype), np.abs(random_array(rng, param.shape, float_dtype))
    want = [a.copy() for a in (param, grad, m, v)]
    cconv.kernels.adam.adam_update(*want, 0.001, 0.9, 0.999, 1e-7)
    consumer.adam_update(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                         0.001, 0.9, 0.999, 1e-7, num_threads)
    for got, expected in zip((param, m, v), (want[0], want[2], want[3])):
        np.testing.assert_array_equal(got, expected)


def test_explicit_specialisation(consumer, rng):
    """``im2col_core[double](...)``, as the package docstring shows it."""
    x = rng.standard_normal((2, 2, 5, 4))
    expected = cconv.im2col(x, 3, 2)
    col = nan_like(expected)
    consumer.explicit_double_im2col(x, 3, 2, col)
    np.testing.assert_array_equal(col, expected)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(language, first_line):
    """The fenced ``language`` block of README.md whose first line is ``first_line``."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), re.M | re.S)
    matches = [b for b in blocks if b.startswith(first_line + "\n")]
    assert len(matches) == 1, f"README.md: expected one ```{language} block starting {first_line!r}"
    return matches[0]


@pytest.fixture(scope="module")
def readme_example(tmp_path_factory):
    """README's cimport example, built exactly as README says, against the installed cconv."""
    pytest.importorskip("Cython", reason="building the README's example needs Cython")
    if not README.is_file():
        pytest.skip(f"{README} is not beside tests/ (copy it with the tests)")
    build_dir = tmp_path_factory.mktemp("readme_example")
    (build_dir / "my_unfold.pyx").write_text(readme_block("cython", "# my_unfold.pyx"))
    (build_dir / "setup.py").write_text(readme_block("python", "# setup.py: python setup.py build_ext --inplace"))
    # Where cconv is installed, Cython finds its .pxd files on sys.path; an
    # editable install keeps them in src/, which PYTHONPATH adds (as README says).
    env = dict(os.environ, PYTHONPATH=str(pxd_include_dir()))
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=build_dir, env=env, capture_output=True, text=True,
    )
    if build.returncode != 0:
        if not c_compiler_works(tmp_path_factory.mktemp("probe")):
            pytest.skip("no working C compiler: cannot build the README's example")
        pytest.fail(f"building README's example failed:\n{build.stdout[-3000:]}\n{build.stderr[-5000:]}")
    sys.path.insert(0, str(build_dir))
    try:
        return importlib.import_module("my_unfold")
    finally:
        sys.path.remove(str(build_dir))


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 1, 1), (0, 2, 3, 3)])
def test_readme_cimport_example(readme_example, rng, shape, num_threads):
    x = with_layout(random_array(rng, shape, np.float64), "negative")
    np.testing.assert_array_equal(
        readme_example.unfold3x3(x, num_threads), cconv.im2col(x, 3, 3, 1, 1)
    )
    with pytest.raises(ValueError, match="H, W >= 1"):
        readme_example.unfold3x3(np.zeros((1, 1, 0, 3)))
