"""cconv.conv2d and cconv.conv2d_backward: references, PyTorch, gradients, threads, edges, arguments.

* against the plain-NumPy references of ``tests/reference.py`` (the book's
  ``Convolution`` layer on its im2col, generalised to dilation, and a
  brute-force loop version), and against ``torch.nn.functional.conv2d`` and
  its autograd (the torch tests skip without torch; the rest does not need it);
* im2col / col2im with dilation against torch's ``unfold`` / ``fold``;
* numerical gradients (``cconv.gradient.numerical_gradient``) on a tiny case;
* bit-identical results for 1, 2 and 3 OpenMP threads and from run to run,
  and from Python threads calling at once (also in test_threads.py);
* ``need_input_grad``, ``out=``, empty and degenerate shapes, the dtype rule;
* every bad argument refused with ValueError / TypeError naming it.

Tolerances (``cconv_testutils.assert_sum_close``): a float32 result within
``1e-4`` (float64: ``1e-10``) relative, plus that much of the largest sum of
absolute terms of an element (the reference run on ``|x|``, ``|W|``, ``|b|``,
``|dout|``), so sums that cancel are not held to a relative error they
cannot have.
"""

import dataclasses
import platform
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

import cconv
from cconv.gradient import numerical_gradient
from cconv.kernels import direct

import reference as ref
from cconv_testutils import (
    CONV_GEOMETRIES,
    DILATED_GEOMETRIES,
    INPUT_DTYPES,
    LAYOUTS,
    PROPERTY_SETTINGS,
    REJECTED_DTYPES,
    Geometry,
    assert_sum_close,
    geometries,
    random_array,
    result_dtype,
    seeds,
    with_layout,
)

#: Hypothesis settings of the torch comparisons: fewer examples than the
#: other property tests, each runs torch's forward and autograd.
TORCH_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=50)

float_dtypes = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
layouts = st.sampled_from(LAYOUTS)


@pytest.fixture(params=["direct", "gemm"])
def conv_path(request):
    """Run the test on each path of the float32 stride-1 convolution: direct
    (where the CPU has AVX2 and FMA) and GEMM (everywhere else, and all other cases)."""
    if request.param == "direct" and not direct.supported():
        pytest.skip("this CPU lacks AVX2/FMA: conv2d never takes the direct path here")
    previous = direct.set_enabled(request.param == "direct")
    yield request.param
    direct.set_enabled(previous)


@pytest.fixture(scope="module")
def torch():
    """PyTorch, the oracle of the ``*_torch`` tests (skipped without it)."""
    return pytest.importorskip("torch", reason="PyTorch is the oracle of the torch comparisons")


# --------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Conv:
    """One convolution: ``geom`` (x's shape, the filter size, stride, pad, dilation),
    ``filters`` (FN) and whether there is a bias."""

    geom: Geometry
    filters: int
    bias: bool = True

    @property
    def x_shape(self):
        return tuple(self.geom.shape)

    @property
    def w_shape(self):
        return (self.filters, self.geom.shape[1], self.geom.filter_h, self.geom.filter_w)

    @property
    def out_shape(self):
        return (self.geom.shape[0], self.filters) + self.geom.out_hw

    @property
    def kwargs(self):
        """``stride``, ``pad`` and ``dilation`` in the form the geometry keeps."""
        return {"stride": self.geom.stride, "pad": self.geom.pad, "dilation": self.geom.dilation}

    @property
    def torch_kwargs(self):
        g = self.geom
        return {"stride": ref.as_pair(g.stride), "padding": ref.as_pair(g.pad),
                "dilation": ref.as_pair(g.dilation)}

    def arrays(self, rng, dtype=np.float64):
        """Random ``x``, ``W``, ``b`` (None without bias) and ``dout`` of ``dtype``."""
        x = random_array(rng, self.x_shape, dtype)
        W = random_array(rng, self.w_shape, dtype)
        b = random_array(rng, (self.filters,), dtype) if self.bias else None
        dout = random_array(rng, self.out_shape, dtype)
        return x, W, b, dout

    def __str__(self):
        return f"{self.geom}-f{self.filters}" + ("" if self.bias else "-nobias")


#: Fixed problems: the im2col geometries (the book's first) and the dilated ones,
#: 2 to 5 filters; PROBLEMS[4], [9] and [14] have no bias.
PROBLEMS = tuple(Conv(g, 2 + i % 4, bias=i % 5 != 4) for i, g in enumerate(CONV_GEOMETRIES + DILATED_GEOMETRIES))


@st.composite
def conv_problems(draw, max_dilation=3):
    """Small random problems: N, C 1..3, FN 1..4, filters up to 4x4, stride 1..3,
    pad 0..2, dilation 1..``max_dilation`` (ints or pairs), with or without bias."""
    geom = draw(geometries(max_dilation=max_dilation))
    return Conv(geom, draw(st.integers(1, 4)), draw(st.booleans()))


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def assert_sums_close(got, want, bound, name):
    """``got`` within SUM_RTOL of ``want``, plus that much of the largest sum of |terms| (``bound``)."""
    assert_sum_close(got, want, bound, err_msg=name)


def forward_bound(x, W, b, kwargs):
    """The sum of |terms| of each output element."""
    return ref.conv2d(np.abs(x), np.abs(W), None if b is None else np.abs(b), **kwargs)


def backward_bounds(dout, x, W, kwargs):
    """The sums of |terms| of dx, dW and db."""
    return ref.conv2d_backward(np.abs(dout), np.abs(x), np.abs(W), **kwargs)


def check_result(got, shape, dtype):
    assert isinstance(got, np.ndarray)
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    assert got.shape == tuple(shape)
    assert got.flags.c_contiguous


def check_forward(x, W, b, kwargs, expected_dtype=None):
    """conv2d of the given (possibly strided, converted) arrays against the reference."""
    out = cconv.conv2d(x, W, b, **kwargs)
    values = [np.asarray(a) for a in (x, W) + (() if b is None else (b,))]
    dtype = np.result_type(*[result_dtype(a.dtype) for a in values]) if expected_dtype is None else expected_dtype
    want_shape = (np.shape(x)[0], np.shape(W)[0]) + Geometry(np.shape(x), *np.shape(W)[2:], **kwargs).out_hw
    check_result(out, want_shape, dtype)
    xs, Ws, bs = (np.asarray(a, dtype=dtype).astype(np.float64) if a is not None else None for a in (x, W, b))
    assert_sums_close(out, ref.conv2d(xs, Ws, bs, **kwargs), forward_bound(xs, Ws, bs, kwargs), "out")
    return out


def check_backward(dout, x, W, kwargs, expected_dtype=None):
    """conv2d_backward against the reference; need_input_grad=False gives the same dW, db."""
    dx, dW, db = cconv.conv2d_backward(dout, x, W, **kwargs)
    dtype = expected_dtype
    if dtype is None:
        dtype = np.result_type(*[result_dtype(np.asarray(a).dtype) for a in (dout, x, W)])
    check_result(dx, np.shape(x), dtype)
    check_result(dW, np.shape(W), dtype)
    check_result(db, (np.shape(W)[0],), dtype)
    ds, xs, Ws = (np.asarray(a, dtype=dtype).astype(np.float64) for a in (dout, x, W))
    want, bounds = ref.conv2d_backward(ds, xs, Ws, **kwargs), backward_bounds(ds, xs, Ws, kwargs)
    for name, got, expected, bound in zip(("dx", "dW", "db"), (dx, dW, db), want, bounds):
        assert_sums_close(got, expected, bound, name)
    none, dW2, db2 = cconv.conv2d_backward(dout, x, W, **kwargs, need_input_grad=False)
    assert none is None
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)
    return dx, dW, db


# --------------------------------------------------------------------------
# The references themselves
# --------------------------------------------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS[2:5] + PROBLEMS[9:13], ids=str)
def test_reference_matches_its_loops(rng, problem):
    """The vectorised reference agrees with the brute-force one (and im2col's loops)."""
    x, W, b, _ = problem.arrays(rng)
    g = problem.geom
    np.testing.assert_allclose(ref.conv2d(x, W, b, **problem.kwargs),
                               ref.conv2d_loops(x, W, b, **problem.kwargs), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ref.im2col(x, *g.args, g.stride, g.pad, dilation=g.dilation),
                                  ref.im2col_loops(x, *g.args, g.stride, g.pad, g.dilation))


def test_reference_without_dilation_is_the_book_layer(rng):
    import reference_layers as rl

    x, W, b, dout = Conv(CONV_GEOMETRIES[3], 3).arrays(rng)
    g = CONV_GEOMETRIES[3]
    np.testing.assert_allclose(ref.conv2d(x, W, b, g.stride, g.pad), rl.conv(x, W, b, g.stride, g.pad), rtol=1e-13)
    for got, want in zip(ref.conv2d_backward(dout, x, W, g.stride, g.pad),
                         rl.conv_backward(dout, x, W, g.stride, g.pad), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# Against the NumPy reference
# --------------------------------------------------------------------------


def test_hand_computed():
    """The docstring's example: 2x2 sums of a 4x4 ramp with stride 2, plus 0.5."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out = cconv.conv2d(x, np.ones((1, 1, 2, 2)), np.array([0.5]), stride=2)
    np.testing.assert_array_equal(out, [[[[10.5, 18.5], [42.5, 50.5]]]])


def test_hand_computed_dilation_and_cross_correlation():
    """W is not flipped: with taps [1, 10] two apart, out[ox] = x[ox] + 10*x[ox + 2]."""
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    out = cconv.conv2d(x, np.array([1.0, 10.0]).reshape(1, 1, 1, 2), dilation=(1, 2))
    np.testing.assert_array_equal(out, [[[[31.0, 42.0]]]])
    # pad 1: windows start at -1 (taps -1, 1), 0, 1, 2 (taps 2, 4 -> 4 is padding)
    out = cconv.conv2d(x, np.array([1.0, 10.0]).reshape(1, 1, 1, 2), pad=(0, 1), dilation=(1, 2))
    np.testing.assert_array_equal(out, [[[[20.0, 31.0, 42.0, 3.0]]]])


def test_hand_computed_backward():
    """One 1x2 filter [1, 10], dilation 2: dx scatters dout with the taps; dW correlates."""
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    W = np.array([1.0, 10.0]).reshape(1, 1, 1, 2)
    dout = np.array([1.0, 100.0]).reshape(1, 1, 1, 2)
    dx, dW, db = cconv.conv2d_backward(dout, x, W, dilation=(1, 2))
    np.testing.assert_array_equal(dx, [[[[1.0, 100.0, 10.0, 1000.0]]]])
    np.testing.assert_array_equal(dW, [[[[1.0 + 200.0, 3.0 + 400.0]]]])
    np.testing.assert_array_equal(db, [101.0])


@pytest.mark.parametrize("problem", PROBLEMS, ids=str)
def test_matches_reference(rng, problem, float_dtype, layout, n_threads, conv_path):
    """Fixed problems, every layout of x and dout (W in the same layout), 1 and 2 threads."""
    x, W, b, dout = problem.arrays(rng, float_dtype)
    x, W, dout = (with_layout(a, layout) for a in (x, W, dout))
    check_forward(x, W, b, problem.kwargs)
    check_backward(dout, x, W, problem.kwargs)


@pytest.mark.parametrize("problem", PROBLEMS[3:5] + PROBLEMS[11:13], ids=str)
def test_matches_brute_force(rng, problem):
    x, W, b, _ = problem.arrays(rng)
    np.testing.assert_allclose(cconv.conv2d(x, W, b, **problem.kwargs),
                               ref.conv2d_loops(x, W, b, **problem.kwargs), rtol=1e-12, atol=1e-12)


@PROPERTY_SETTINGS
@given(problem=conv_problems(), dtype=float_dtypes, layout=layouts, w_layout=layouts, seed=seeds)
def test_property_matches_reference(problem, dtype, layout, w_layout, seed):
    x, W, b, dout = problem.arrays(np.random.default_rng(seed), dtype)
    x, dout, W = with_layout(x, layout), with_layout(dout, layout), with_layout(W, w_layout)
    check_forward(x, W, b, problem.kwargs)
    check_backward(dout, x, W, problem.kwargs)


@PROPERTY_SETTINGS
@given(problem=conv_problems(), seed=seeds)
def test_property_backward_is_the_adjoint(problem, seed):
    """<conv(x, W), dout> == <x, dx> == <W, dW> (conv is bilinear), and db sums dout."""
    x, W, _, dout = problem.arrays(np.random.default_rng(seed))
    out = cconv.conv2d(x, W, **problem.kwargs)
    dx, dW, db = cconv.conv2d_backward(dout, x, W, **problem.kwargs)
    lhs = np.vdot(out, dout)
    scale = np.vdot(forward_bound(x, W, None, problem.kwargs), np.abs(dout))
    np.testing.assert_allclose(np.vdot(x, dx), lhs, rtol=1e-10, atol=1e-13 * scale)
    np.testing.assert_allclose(np.vdot(W, dW), lhs, rtol=1e-10, atol=1e-13 * scale)
    np.testing.assert_allclose(db, dout.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12 * np.abs(dout).sum())


def test_bias_is_added_per_filter(rng):
    x, W, b, _ = PROBLEMS[3].arrays(rng)
    kwargs = PROBLEMS[3].kwargs
    np.testing.assert_allclose(cconv.conv2d(x, W, b, **kwargs),
                               cconv.conv2d(x, W, **kwargs) + b.reshape(-1, 1, 1), rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(cconv.conv2d(x, W, None, **kwargs), cconv.conv2d(x, W, **kwargs))


def test_stride_pad_dilation_forms_agree(rng):
    x, W, b, _ = Conv(Geometry((2, 3, 9, 8), 3, 2), 4).arrays(rng)
    expected = cconv.conv2d(x, W, b, (2, 2), (1, 1), (2, 2))
    for stride, pad, dilation in [(2, 1, 2), ([2, 2], [1, 1], [2, 2]), (np.int64(2), np.array(1), np.array([2, 2]))]:
        np.testing.assert_array_equal(cconv.conv2d(x, W, b, stride, pad, dilation), expected)
        np.testing.assert_array_equal(cconv.conv2d(x=x, W=W, b=b, stride=stride, pad=pad, dilation=dilation),
                                      expected)


def test_array_like_inputs():
    """Nested lists are array_like (integers -> float64)."""
    x = np.arange(2 * 2 * 4 * 4).reshape(2, 2, 4, 4) % 5
    W = np.arange(3 * 2 * 2 * 2).reshape(3, 2, 2, 2) % 3 - 1
    out = cconv.conv2d(x.tolist(), W.tolist(), [1, 2, 3], pad=1, dilation=2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ref.conv2d(x, W, [1, 2, 3], pad=1, dilation=2))
    dx, dW, db = cconv.conv2d_backward(np.ones(out.shape).tolist(), x.tolist(), W.tolist(), pad=1, dilation=2)
    for got, want in zip((dx, dW, db), ref.conv2d_backward(np.ones(out.shape), x, W, pad=1, dilation=2)):
        np.testing.assert_array_equal(got, want)


def test_zero_stride_broadcast_inputs(rng):
    """Read-only zero-stride views (np.broadcast_to) are valid x, W and dout."""
    x = np.broadcast_to(rng.standard_normal(6), (2, 3, 5, 6))
    W = np.broadcast_to(rng.standard_normal((1, 3, 1, 2)), (4, 3, 3, 2))
    check_forward(x, W, None, {"pad": 1, "dilation": (1, 2)})
    dout = np.broadcast_to(np.float64(0.5), (2, 4, 5, 6))
    check_backward(dout, x, W, {"pad": 1, "dilation": (1, 2)})


def test_inputs_are_not_written(rng):
    problem = PROBLEMS[11]
    x, W, b, dout = problem.arrays(rng)
    copies = [a.copy() for a in (x, W, b, dout)]
    cconv.conv2d(x, W, b, **problem.kwargs)
    cconv.conv2d_backward(dout, x, W, **problem.kwargs)
    for before, after in zip(copies, (x, W, b, dout)):
        np.testing.assert_array_equal(after, before)


def test_special_values_propagate(rng, conv_path):
    """inf and NaN in x reach exactly the outputs whose windows hold them (as in the reference)."""
    problem = Conv(Geometry((1, 2, 7, 7), 3, 3, 2, 1, 2), 3)
    x, W, b, _ = problem.arrays(rng)
    # stride 2, pad 1, dilation 2: the windows read odd rows and columns only
    x[0, 1, 3, 5] = np.nan
    x[0, 0, 1, 1] = np.inf
    with np.errstate(invalid="ignore"):
        want = ref.conv2d(x, W, b, **problem.kwargs)
    got = cconv.conv2d(x, W, b, **problem.kwargs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert finite.any() and not finite.all()
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# The direct float32 stride-1 path against the GEMM path
# --------------------------------------------------------------------------

#: Problems that reach the direct path's corners: DeepConvNet's conv2, filter
#: counts and taps off the kernel's blocks (4 filters, 3 taps), dilation and
#: pairs, pad > FH-1 (its dx takes the GEMM path), 1x1 filters, images cut
#: into several bands, one output row, and output widths 1 to 17 (every
#: remainder of the 8-wide vectors).
DIRECT_PROBLEMS = [
    Conv(Geometry((3, 16, 28, 28), 3, 3, 1, 1), 16),
    Conv(Geometry((2, 5, 9, 13), 3, 3, 1, 1), 7),
    Conv(Geometry((2, 4, 10, 7), 5, 3, 1, (2, 1), (1, 2)), 6, bias=False),
    Conv(Geometry((2, 3, 7, 9), 3, 3, 1, 3), 4),
    Conv(Geometry((1, 2, 5, 5), 1, 1, 1, 0), 5),
    Conv(Geometry((1, 3, 200, 90), 3, 3, 1, 1), 5),
    Conv(Geometry((5, 2, 1, 17), 1, 5, 1, (0, 2)), 3),
] + [Conv(Geometry((2, 3, 4, width), 3, 3, 1, 1), 9) for width in range(1, 18)]


@pytest.mark.parametrize("layout", ["C", "strided"])
@pytest.mark.parametrize("problem", DIRECT_PROBLEMS, ids=str)
def test_direct_problems_match_reference(rng, problem, layout, n_threads, conv_path):
    x, W, b, dout = problem.arrays(rng, np.float32)
    x = with_layout(x, layout)
    check_forward(x, W, b, problem.kwargs)
    check_backward(dout, x, W, problem.kwargs)


def test_direct_path_is_taken_where_the_cpu_has_it(rng):
    """On x86-64 with AVX2 and FMA the direct path is on, and switching it off changes the sums' order.

    Elsewhere it is off. (Under QEMU user emulation /proc/cpuinfo may be the
    x86 host's: the machine the process runs as decides, not that file.)
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert not direct.supported()
        return
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split()}
    except OSError:
        pass
    if not flags:
        pytest.skip("no x86 'flags' line in /proc/cpuinfo to read AVX2/FMA support from")
    assert direct.supported() == ({"avx2", "fma"} <= flags)
    if not direct.supported():
        return
    problem = DIRECT_PROBLEMS[0]
    x, W, b, dout = problem.arrays(rng, np.float32)
    previous = direct.set_enabled(True)
    try:
        assert previous, "the direct path is on by default"
        fast = cconv.conv2d(x, W, b, pad=1), cconv.conv2d_backward(dout, x, W, pad=1)
        direct.set_enabled(False)
        slow = cconv.conv2d(x, W, b, pad=1), cconv.conv2d_backward(dout, x, W, pad=1)
    finally:
        direct.set_enabled(previous)
    assert not np.array_equal(fast[0], slow[0])
    assert not np.array_equal(fast[1][1], slow[1][1])
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-4, atol=1e-4)


def test_set_enabled_returns_the_old_setting():
    previous = direct.set_enabled(False)
    try:
        assert direct.set_enabled(True) is False
        assert direct.set_enabled(True) is direct.supported()
    finally:
        direct.set_enabled(previous)


@pytest.mark.parametrize("problem", [DIRECT_PROBLEMS[0], DIRECT_PROBLEMS[2], DIRECT_PROBLEMS[3]], ids=str)
def test_special_values_in_the_backward(rng, problem, conv_path):
    """inf/NaN in x, W and dout give NaN and inf exactly where the exact sums have them:
    no product of a non-output position or of padding with an inf filter is added."""
    x, W, _, dout = problem.arrays(rng, np.float32)
    N, C, H, width = x.shape
    x[0, 0, H // 2, width - 1] = np.inf  # the last column: read by no window's first tap
    x[-1, -1, 0, 0] = np.nan
    W[0, 0, 0, 0] = np.inf  # a corner tap: border pixels of dx get no term of it
    dout[-1, -1, -1, -1] = -np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.conv2d_backward(*(a.astype(np.float64) for a in (dout, x, W)), **problem.kwargs)
        got = cconv.conv2d_backward(dout, x, W, **problem.kwargs)
    for name, g, w in zip(("dx", "dW", "db"), got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"NaN in {name}")
        np.testing.assert_array_equal(np.isposinf(g), np.isposinf(w), err_msg=f"+inf in {name}")
        np.testing.assert_array_equal(np.isneginf(g), np.isneginf(w), err_msg=f"-inf in {name}")
        assert np.isfinite(w).any(), name


# --------------------------------------------------------------------------
# PyTorch as the oracle
# --------------------------------------------------------------------------


def torch_conv(torch, x, W, b, dout, problem):
    """torch's conv2d and autograd in float64: ``out, dx, dW, db`` (db of a zero bias without b)."""
    F = torch.nn.functional
    xt, Wt = (torch.tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in (x, W))
    bias = np.zeros(problem.filters) if b is None else np.asarray(b, dtype=np.float64)
    bt = torch.tensor(bias, requires_grad=True)
    out = F.conv2d(xt, Wt, bt, **problem.torch_kwargs)
    out.backward(torch.tensor(np.array(dout, dtype=np.float64)))
    return out.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy()


def check_against_torch(torch, problem, x, W, b, dout):
    """conv2d and conv2d_backward of the given arrays against torch in float64."""
    dtype = np.result_type(x, W, *(() if b is None else (b,)))
    out = cconv.conv2d(x, W, b, **problem.kwargs)
    dx, dW, db = cconv.conv2d_backward(dout, x, W, **problem.kwargs)
    for got, shape in ((out, problem.out_shape), (dx, problem.x_shape), (dW, problem.w_shape),
                       (db, (problem.filters,))):
        check_result(got, shape, dtype)
    want = torch_conv(torch, x, W, b, dout, problem)
    xs, Ws, ds = (np.asarray(a, dtype=np.float64) for a in (x, W, dout))
    bounds = (forward_bound(xs, Ws, b, problem.kwargs),) + backward_bounds(ds, xs, Ws, problem.kwargs)
    for name, got, expected, bound in zip(("out", "dx", "dW", "db"), (out, dx, dW, db), want, bounds):
        assert_sums_close(got, expected, bound, name)


@TORCH_SETTINGS
@given(problem=conv_problems(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_property_matches_torch(torch, problem, dtype, layout, seed):
    x, W, b, dout = problem.arrays(np.random.default_rng(seed), dtype)
    check_against_torch(torch, problem, with_layout(x, layout), W, b, with_layout(dout, layout))


@pytest.mark.parametrize(
    "problem",
    [
        Conv(Geometry((4, 3, 16, 16), 5, 5, 1, 2), 8),  # "same" 5x5
        Conv(Geometry((2, 4, 17, 15), 3, 3, 2, 2, 2), 6),  # dilated, strided
        Conv(Geometry((2, 2, 12, 20), 3, 5, (2, 3), (0, 4), (4, 2)), 5, bias=False),
        Conv(Geometry((1, 3, 40, 40), 7, 7, 3, 9, 3), 16),  # several tiles of output lines
        Conv(Geometry((3, 2, 8, 8), 8, 8, 1, 0), 2),  # the filter is the image
    ],
    ids=str,
)
def test_matches_torch(torch, rng, problem, float_dtype, n_threads):
    x, W, b, dout = problem.arrays(rng, float_dtype)
    check_against_torch(torch, problem, x, W, b, dout)


@pytest.mark.parametrize("x_dtype, w_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_mixed_dtypes_match_torch(torch, rng, x_dtype, w_dtype):
    """float32 with float64 computes in float64 (the float32 values, exactly)."""
    problem = PROBLEMS[11]
    x, W, b, dout = problem.arrays(rng)
    x, W = x.astype(x_dtype), W.astype(w_dtype)
    check_against_torch(torch, problem, x, W, b, dout)


def unfold_as_col(torch, x, geom):
    """torch's unfold in the book's layout (N*out_h*out_w, C*filter_h*filter_w)."""
    F = torch.nn.functional
    cols = F.unfold(torch.tensor(np.array(x, dtype=np.float64)), geom.args, ref.as_pair(geom.dilation),
                    ref.as_pair(geom.pad), ref.as_pair(geom.stride))
    return cols.transpose(1, 2).reshape(geom.col_shape).numpy()


def fold_col(torch, col, geom):
    """torch's fold of the book's col."""
    F = torch.nn.functional
    n = geom.shape[0]
    cols = torch.tensor(np.array(col, dtype=np.float64)).reshape(n, -1, geom.col_shape[1]).transpose(1, 2)
    return F.fold(cols, geom.shape[2:], geom.args, ref.as_pair(geom.dilation), ref.as_pair(geom.pad),
                  ref.as_pair(geom.stride)).numpy()


@TORCH_SETTINGS
@given(geom=geometries(max_dilation=3), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_property_im2col_col2im_match_torch(torch, geom, dtype, layout, seed):
    """im2col is torch's unfold transposed (exactly); col2im its fold."""
    rng = np.random.default_rng(seed)
    x = with_layout(random_array(rng, geom.shape, dtype), layout)
    col = cconv.im2col(x, *geom.args, **geom.kwargs)
    check_result(col, geom.col_shape, dtype)
    np.testing.assert_array_equal(col, unfold_as_col(torch, x, geom))
    c = with_layout(random_array(rng, geom.col_shape, dtype), layout)
    img = cconv.col2im(c, geom.shape, *geom.args, **geom.kwargs)
    check_result(img, geom.shape, dtype)
    want = fold_col(torch, c, geom)
    bound = fold_col(torch, np.abs(np.asarray(c, dtype=np.float64)), geom)
    assert_sums_close(img, want, bound, "img")


@pytest.mark.parametrize("geom", DILATED_GEOMETRIES, ids=str)
def test_im2col_col2im_match_torch(torch, rng, geom, float_dtype):
    x = random_array(rng, geom.shape, float_dtype)
    np.testing.assert_array_equal(cconv.im2col(x, *geom.args, **geom.kwargs), unfold_as_col(torch, x, geom))
    c = random_array(rng, geom.col_shape, float_dtype)
    bound = fold_col(torch, np.abs(c), geom)
    assert_sums_close(cconv.col2im(c, geom.shape, *geom.args, **geom.kwargs), fold_col(torch, c, geom), bound, "img")


# --------------------------------------------------------------------------
# Numerical gradients
# --------------------------------------------------------------------------


def test_numerical_gradients():
    """dx, dW and db of L = sum(conv2d(x, W, b) * dout) by central differences,
    float64, stride (2, 1), pad (1, 2), dilation (2, 1)."""
    rng = np.random.default_rng(7)
    kwargs = {"stride": (2, 1), "pad": (1, 2), "dilation": (2, 1)}
    x, W, b = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    out = cconv.conv2d(x, W, b, **kwargs)
    assert out.shape == (2, 3, 3, 8)
    dout = rng.standard_normal(out.shape)

    def loss(_):
        return float(np.sum(cconv.conv2d(x, W, b, **kwargs) * dout))

    dx, dW, db = cconv.conv2d_backward(dout, x, W, **kwargs)
    # L is linear in each argument: the differences are exact up to rounding (~1e-16 * |L| / h)
    for name, analytic, arg in (("dx", dx, x), ("dW", dW, W), ("db", db, b)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, arg), rtol=1e-6, atol=1e-8, err_msg=name)


def test_numerical_gradient_of_a_nonlinear_loss():
    """Through a square: L = sum(conv2d(x, W)**2) / 2, whose dout is conv2d's output."""
    rng = np.random.default_rng(8)
    kwargs = {"stride": 2, "pad": 2, "dilation": 2}
    x, W = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((2, 2, 3, 2))

    def loss(_):
        return float(np.sum(cconv.conv2d(x, W, **kwargs) ** 2) / 2)

    dx, dW, _ = cconv.conv2d_backward(cconv.conv2d(x, W, **kwargs), x, W, **kwargs)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dW, numerical_gradient(loss, W), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------
# Threads: bit-identical for 1, 2, 3 OpenMP threads and from run to run
# --------------------------------------------------------------------------

#: Large enough that the threads split the work (the kernels run serially
#: below 32768 elements of work per thread): (8, 8, 30, 30) with 16 3x3
#: filters is 8*900*72 elements of windows; a batch of 13 puts more than one
#: image in some of the backward pass' 12 chunks; one large image splits
#: only the forward pass (over its tiles of output lines).
THREAD_PROBLEMS = [
    Conv(Geometry((8, 8, 30, 30), 3, 3, 1, 1), 16),
    Conv(Geometry((8, 8, 30, 30), 3, 3, 2, 2, 2), 16),
    Conv(Geometry((8, 8, 30, 30), 3, 3, (1, 2), (3, 1), (3, 1)), 16, bias=False),
    Conv(Geometry((13, 4, 20, 20), 3, 3, 1, 1), 16),
    Conv(Geometry((1, 16, 64, 64), 3, 3, 1, 1), 16),
]


@pytest.fixture
def restore_threads():
    yield
    cconv.set_num_threads(None)


def all_results(problem, x, W, b, dout):
    out = cconv.conv2d(x, W, b, **problem.kwargs)
    dx, dW, db = cconv.conv2d_backward(dout, x, W, **problem.kwargs)
    none, dW_only, db_only = cconv.conv2d_backward(dout, x, W, **problem.kwargs, need_input_grad=False)
    assert none is None
    return {"out": out, "dx": dx, "dW": dW, "db": db, "dW (no dx)": dW_only, "db (no dx)": db_only}


@pytest.mark.parametrize("layout", ["C", "strided"])
@pytest.mark.parametrize("problem", THREAD_PROBLEMS, ids=str)
def test_bit_identical_across_thread_counts_and_runs(restore_threads, rng, problem, float_dtype, layout,
                                                    conv_path):
    x, W, b, dout = problem.arrays(rng, float_dtype)
    x = with_layout(x, layout)
    cconv.set_num_threads(1)
    serial = all_results(problem, x, W, b, dout)
    np.testing.assert_array_equal(serial["dW (no dx)"], serial["dW"])
    np.testing.assert_array_equal(serial["db (no dx)"], serial["db"])
    for n in (2, 3, 1, 3):  # and a second run of each
        cconv.set_num_threads(n)
        for name, got in all_results(problem, x, W, b, dout).items():
            np.testing.assert_array_equal(got, serial[name], err_msg=f"{name} with {n} threads")
    check_forward(x, W, b, problem.kwargs)  # and right, not just repeatable


def test_concurrent_python_threads_mixed_calls(rng, n_threads):
    """Python threads running conv2d and conv2d_backward of different problems at once
    (the GIL released, BLAS held to one thread meanwhile) get the serial results."""
    problems = [THREAD_PROBLEMS[i % 3] for i in range(9)] + [Conv(g, 3) for g in DILATED_GEOMETRIES[:3]]
    data = [p.arrays(rng) for p in problems]
    tasks = []
    for problem, (x, W, b, dout) in zip(problems, data):
        tasks.append(lambda p=problem, x=x, W=W, b=b: (cconv.conv2d(x, W, b, **p.kwargs),))
        tasks.append(lambda p=problem, x=x, W=W, d=dout: cconv.conv2d_backward(d, x, W, **p.kwargs))
    serial = [task() for task in tasks]
    barrier = threading.Barrier(4)

    def run(task):
        try:
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        return task()

    for _ in range(2):
        with ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(run, tasks))
        for got_results, want_results in zip(parallel, serial, strict=True):
            for got, want in zip(got_results, want_results, strict=True):
                np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------
# need_input_grad
# --------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [False, np.False_])
@pytest.mark.parametrize("problem", PROBLEMS[::3], ids=str)
def test_need_input_grad_false(rng, problem, float_dtype, flag):
    x, W, _, dout = problem.arrays(rng, float_dtype)
    dx, dW, db = cconv.conv2d_backward(dout, x, W, **problem.kwargs)
    result = cconv.conv2d_backward(dout, x, W, **problem.kwargs, need_input_grad=flag)
    assert isinstance(result, tuple) and len(result) == 3
    assert result[0] is None
    np.testing.assert_array_equal(result[1], dW)
    np.testing.assert_array_equal(result[2], db)
    assert result[1].dtype == dW.dtype and result[2].dtype == db.dtype


@pytest.mark.parametrize("flag", [True, np.True_])
def test_need_input_grad_true(rng, flag):
    problem = PROBLEMS[4]
    x, W, _, dout = problem.arrays(rng)
    for got, want in zip(cconv.conv2d_backward(dout, x, W, **problem.kwargs, need_input_grad=flag),
                         cconv.conv2d_backward(dout, x, W, **problem.kwargs), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "shapes",
    [((0, 3, 5, 5), (4, 3, 3, 3)), ((2, 3, 5, 5), (0, 3, 3, 3)), ((2, 0, 5, 5), (4, 0, 3, 3)),
     ((2, 3, 0, 5), (4, 3, 3, 3))],
    ids=["N=0", "FN=0", "C=0", "H=0"],
)
def test_need_input_grad_false_on_empty_shapes(shapes):
    x_shape, w_shape = shapes
    x, W = np.ones(x_shape), np.ones(w_shape)
    out = cconv.conv2d(x, W, pad=2)
    dx, dW, db = cconv.conv2d_backward(np.ones(out.shape), x, W, pad=2)
    none, dW2, db2 = cconv.conv2d_backward(np.ones(out.shape), x, W, pad=2, need_input_grad=False)
    assert none is None
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------


def garbage(shape, dtype):
    return np.full(shape, np.nan, dtype)


@pytest.mark.parametrize("problem", [PROBLEMS[2], PROBLEMS[11], Conv(Geometry((0, 2, 4, 4), 3, 3, 1, 1), 3),
                                     Conv(Geometry((2, 0, 4, 4), 3, 3, 1, 1), 3),
                                     Conv(Geometry((2, 2, 0, 4), 3, 3, 1, 2), 3)], ids=str)
def test_out_is_filled_and_returned(rng, problem, float_dtype):
    """Also on the empty and the bias-only paths (no channels, no pixels)."""
    x, W, b, _ = problem.arrays(rng, float_dtype)
    expected = cconv.conv2d(x, W, b, **problem.kwargs)
    out = garbage(expected.shape, float_dtype)
    assert cconv.conv2d(x, W, b, **problem.kwargs, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_out_reused_across_calls(rng):
    problem = PROBLEMS[11]
    x, W, b, _ = problem.arrays(rng)
    out = cconv.conv2d(x, W, b, **problem.kwargs)
    first = out.copy()
    assert cconv.conv2d(2 * x, W, 2 * b, **problem.kwargs, out=out) is out
    np.testing.assert_allclose(out, 2 * first, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "arrays, out_dtype, accepted",
    [
        ((np.float32, np.float32, np.float32), np.float32, True),
        ((np.float32, np.float64, np.float32), np.float32, False),  # the result is float64
        ((np.float32, np.float64, np.float32), np.float64, True),
        ((np.float32, np.float32, np.float64), np.float32, False),
        ((np.float16, np.float32, None), np.float32, True),
        ((np.float16, np.float16, np.float16), np.float16, False),
        ((np.int32, np.int8, np.bool_), np.float64, True),
        ((np.int32, np.float32, None), np.float32, False),
    ],
)
def test_out_dtype_follows_dtype_rule(rng, arrays, out_dtype, accepted):
    problem = PROBLEMS[2]
    x, W, b, _ = problem.arrays(rng)
    x_dtype, w_dtype, b_dtype = arrays
    x, W = x.astype(x_dtype), W.astype(w_dtype)
    b = None if b_dtype is None else b.astype(b_dtype)
    out = garbage(problem.out_shape, out_dtype)
    if accepted:
        assert cconv.conv2d(x, W, b, **problem.kwargs, out=out) is out
        np.testing.assert_array_equal(out, cconv.conv2d(x, W, b, **problem.kwargs))
    else:
        with pytest.raises(TypeError, match=r"^out\b"):
            cconv.conv2d(x, W, b, **problem.kwargs, out=out)
        assert np.isnan(out).all()  # not written


def bad_outs(shape, dtype):
    """``{label: (out, exception)}`` of buffers conv2d must refuse."""
    readonly = np.empty(shape, dtype)
    readonly.flags.writeable = False
    wrong = np.float32 if np.dtype(dtype) == np.float64 else np.float64
    return {
        "shape": (np.empty(shape[:-1] + (shape[-1] + 1,), dtype), ValueError),
        "transposed_shape": (np.empty(shape[::-1], dtype), ValueError),
        "flat": (np.empty(int(np.prod(shape)), dtype), ValueError),
        "dtype": (np.empty(shape, wrong), TypeError),
        "int": (np.empty(shape, np.int64), TypeError),
        "strided": (np.empty(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2], ValueError),
        "fortran": (np.empty(shape, dtype, order="F"), ValueError),
        "negative": (np.empty(shape, dtype)[:, :, ::-1], ValueError),
        "readonly": (readonly, ValueError),
        "unaligned": (with_layout(np.zeros(shape, dtype), "unaligned"), ValueError),
        "list": (np.zeros(shape, dtype).tolist(), (TypeError, ValueError)),
        "number": (0.0, (TypeError, ValueError)),
    }


@pytest.mark.parametrize("problem_label", list(bad_outs((2, 3, 4, 4), np.float64)))
def test_bad_out(rng, float_dtype, problem_label):
    problem = PROBLEMS[11]
    x, W, b, _ = problem.arrays(rng, float_dtype)
    out, exc = bad_outs(problem.out_shape, float_dtype)[problem_label]
    before = np.array(out, copy=True) if isinstance(out, np.ndarray) else None
    with pytest.raises(exc, match=r"^out\b"):
        cconv.conv2d(x, W, b, **problem.kwargs, out=out)
    if before is not None:
        np.testing.assert_array_equal(out, before)


def shared_buffer(value, out_shape, out_start):
    """A copy of ``value`` and an out array of ``out_shape``, views of one buffer;
    out starts ``out_start`` bytes in (they overlap when it is < value.nbytes)."""
    out_bytes = int(np.prod(out_shape)) * value.itemsize
    buffer = np.zeros(max(value.nbytes, out_start + out_bytes), np.uint8)
    arr = buffer[: value.nbytes].view(value.dtype).reshape(value.shape)
    arr[...] = value
    out = buffer[out_start : out_start + out_bytes].view(value.dtype).reshape(out_shape)
    return arr, out


@pytest.mark.parametrize("where", ["same_start", "partial", "adjacent"])
@pytest.mark.parametrize("name", ["x", "W", "b"])
def test_out_overlapping_an_input(rng, name, where):
    """out must share no memory with x, W or b; a buffer just after one is fine."""
    problem = Conv(Geometry((2, 3, 6, 6), 3, 3, 1, 1), 4)
    x, W, b, _ = problem.arrays(rng)
    kwargs = {"x": x, "W": W, "b": b, **problem.kwargs}
    expected = cconv.conv2d(**kwargs)
    value = kwargs[name]
    start = {"same_start": 0, "partial": value.nbytes // 2 // 8 * 8, "adjacent": value.nbytes}[where]
    kwargs[name], out = shared_buffer(value, problem.out_shape, start)
    if where == "adjacent":
        assert cconv.conv2d(**kwargs, out=out) is out
        np.testing.assert_array_equal(out, expected)
    else:
        with pytest.raises(ValueError, match=r"^out\b"):
            cconv.conv2d(**kwargs, out=out)
        np.testing.assert_array_equal(kwargs[name], value)


def test_out_is_keyword_only(rng):
    x, W, b, _ = PROBLEMS[2].arrays(rng)
    with pytest.raises(TypeError):
        cconv.conv2d(x, W, b, 1, 1, 1, np.empty(PROBLEMS[2].out_shape))
    with pytest.raises(TypeError):
        cconv.conv2d_backward(np.ones((2, 4, 6, 5)), x, W, 1, 1, 1, False)


# --------------------------------------------------------------------------
# Empty and degenerate shapes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((0, 3, 5, 5), (4, 3, 3, 3), {}),
        ((0, 2, 6, 7), (3, 2, 2, 3), {"stride": 2, "pad": 1, "dilation": 2}),
        ((2, 3, 5, 5), (0, 3, 3, 3), {"pad": 1}),
        ((0, 3, 5, 5), (0, 3, 3, 3), {}),
    ],
    ids=["N=0", "N=0-dilated", "FN=0", "N=FN=0"],
)
def test_empty_batch_or_no_filters(rng, float_dtype, x_shape, w_shape, kwargs, bias):
    x, W = random_array(rng, x_shape, float_dtype), random_array(rng, w_shape, float_dtype)
    b = random_array(rng, w_shape[:1], float_dtype) if bias else None
    out = cconv.conv2d(x, W, b, **kwargs)
    check_result(out, (x_shape[0], w_shape[0]) + Geometry(x_shape, *w_shape[2:], **kwargs).out_hw, float_dtype)
    dx, dW, db = cconv.conv2d_backward(random_array(rng, out.shape, float_dtype), x, W, **kwargs)
    check_result(dx, x_shape, float_dtype)
    check_result(dW, w_shape, float_dtype)
    check_result(db, w_shape[:1], float_dtype)
    assert not dx.any() and not dW.any() and not db.any()  # nothing to sum


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((2, 0, 5, 5), (4, 0, 3, 3), {}),  # no channels: every output is the bias
        ((2, 0, 5, 5), (4, 0, 3, 3), {"stride": 2, "pad": 1, "dilation": 2}),
        ((2, 3, 0, 5), (4, 3, 3, 3), {"pad": 2}),  # no pixels: every window is padding
        ((2, 3, 4, 0), (4, 3, 2, 3), {"pad": (0, 2)}),
        ((1, 2, 0, 0), (3, 2, 1, 1), {"stride": 3, "pad": (1, 2), "dilation": (5, 7)}),
    ],
    ids=["C=0", "C=0-dilated", "H=0-pad", "W=0-pad", "HW=0-pad-dilated"],
)
def test_only_the_bias_when_no_window_sees_a_pixel(rng, float_dtype, x_shape, w_shape, kwargs):
    """Sums over no terms are 0: the output is b, dW is 0, db sums dout.

    (torch is no oracle here: it refuses images without pixels, and for an
    input without channels returns an empty (N, 0, out_h, out_w) whatever FN.)
    """
    x, W = random_array(rng, x_shape, float_dtype), random_array(rng, w_shape, float_dtype)
    b = random_array(rng, w_shape[:1], float_dtype)
    out_shape = (x_shape[0], w_shape[0]) + Geometry(x_shape, *w_shape[2:], **kwargs).out_hw
    assert min(out_shape) > 0
    out = cconv.conv2d(x, W, b, **kwargs)
    check_result(out, out_shape, float_dtype)
    np.testing.assert_array_equal(out, np.broadcast_to(b.reshape(-1, 1, 1), out_shape))
    np.testing.assert_array_equal(cconv.conv2d(x, W, **kwargs), np.zeros(out_shape, float_dtype))
    np.testing.assert_allclose(out, ref.conv2d(x, W, b, **kwargs), rtol=0, atol=0)
    dout = random_array(rng, out_shape, float_dtype)
    dx, dW, db = cconv.conv2d_backward(dout, x, W, **kwargs)
    check_result(dx, x_shape, float_dtype)
    check_result(dW, w_shape, float_dtype)
    check_result(db, w_shape[:1], float_dtype)
    assert not dW.any()
    wide = dout.astype(np.float64)
    assert_sums_close(db, wide.sum(axis=(0, 2, 3)), np.abs(wide).sum(axis=(0, 2, 3)), "db")


@pytest.mark.parametrize(
    "problem",
    [
        Conv(Geometry((2, 3, 5, 6), 1, 1), 4),
        Conv(Geometry((2, 3, 5, 6), 1, 1, 2, 0), 4),
        Conv(Geometry((2, 3, 5, 6), 1, 1, (2, 3), (1, 2), 7), 4),  # dilation does nothing to 1x1
    ],
    ids=str,
)
def test_one_by_one_filters(rng, problem, float_dtype):
    """A 1x1 filter mixes channels pixel by pixel: an einsum over the (padded, strided) image."""
    x, W, b, dout = problem.arrays(rng, float_dtype)
    out = check_forward(x, W, b, problem.kwargs)
    (sh, sw), (ph, pw) = ref.as_pair(problem.geom.stride), ref.as_pair(problem.geom.pad)
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (ph, ph), (pw, pw)])[:, :, ::sh, ::sw]
    want = np.einsum("fc,nchw->nfhw", W[:, :, 0, 0].astype(np.float64), padded) + b.reshape(-1, 1, 1)
    assert_sums_close(out, want, forward_bound(x, W, b, problem.kwargs), "out")
    check_backward(dout, x, W, problem.kwargs)
    if ref.as_pair(problem.geom.dilation) != (1, 1):
        undilated = {**problem.kwargs, "dilation": 1}
        np.testing.assert_array_equal(out, cconv.conv2d(x, W, b, **undilated))


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((2, 3, 5, 5), (4, 3, 5, 5), {}),
        ((2, 3, 5, 6), (4, 3, 7, 10), {"pad": (1, 2)}),
        ((2, 3, 5, 5), (4, 3, 3, 3), {"dilation": 2}),  # a 5x5 span
        ((2, 3, 4, 3), (4, 3, 3, 2), {"pad": 1, "dilation": (2, 4), "stride": 5}),
    ],
    ids=["image", "padded", "dilated", "dilated-padded"],
)
def test_filter_as_large_as_the_padded_input(rng, float_dtype, x_shape, w_shape, kwargs):
    """One window: each output is the dot product of a filter with the whole (padded) image."""
    x, W = random_array(rng, x_shape, float_dtype), random_array(rng, w_shape, float_dtype)
    b = random_array(rng, w_shape[:1], float_dtype)
    out = check_forward(x, W, b, kwargs)
    assert out.shape[2:] == (1, 1)
    (ph, pw), (dh, dw) = ref.as_pair(kwargs.get("pad", 0)), ref.as_pair(kwargs.get("dilation", 1))
    taps = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (ph, ph), (pw, pw)])[:, :, ::dh, ::dw]
    want = np.einsum("fcij,ncij->nf", W.astype(np.float64), taps) + b
    assert_sums_close(out[:, :, 0, 0], want, forward_bound(x, W, b, kwargs)[:, :, 0, 0], "out")
    check_backward(random_array(rng, out.shape, float_dtype), x, W, kwargs)
    # one pixel more of filter, or of dilation, and it no longer fits
    with pytest.raises(ValueError, match=r"\bx\b"):
        cconv.conv2d(x, np.zeros(w_shape[:2] + (w_shape[2] + 1, w_shape[3])), **kwargs)
    if w_shape[3] > 1:
        with pytest.raises(ValueError, match="dilation"):
            cconv.conv2d(x, W, **{**kwargs, "dilation": (dh, dw + 1)})


@pytest.mark.parametrize("stride", [6, 100, (7, 2**31 - 1), 2**31 - 1])
def test_large_stride_takes_the_first_window(rng, stride):
    problem = Conv(Geometry((2, 3, 6, 6), 3, 3, stride, 1, (1, 2)), 4)
    x, W, b, dout = problem.arrays(rng)
    out = check_forward(x, W, b, problem.kwargs)
    assert out.shape[2:] == (1, 1)
    # the first window of the stride-1 result (a GEMM of another size: not bit for bit)
    first = cconv.conv2d(x, W, b, pad=1, dilation=(1, 2))[:, :, :1, :1]
    assert_sums_close(out, first, forward_bound(x, W, b, problem.kwargs), "out")
    check_backward(dout, x, W, problem.kwargs)


def test_huge_pad_and_dilation_stay_in_bounds():
    """A 2x2 filter with dilation 2**31 - 1 over a 1x1 image padded by 2**30: the
    index arithmetic does not overflow, and only the tap on the pixel counts."""
    x = np.full((1, 1, 1, 1), 3.0)
    W = np.array([[[[1.0, 2.0], [4.0, 8.0]]]])
    kwargs = {"stride": 2**31 - 1, "pad": 2**30, "dilation": 2**31 - 1}
    out = cconv.conv2d(x, W, **kwargs)
    # out_h = (1 + 2**31 - (2**31 - 1) - 1) // (2**31 - 1) + 1 = 1; taps at -2**30 and 2**30 - 1
    assert out.shape == (1, 1, 1, 1)
    np.testing.assert_array_equal(out, ref.conv2d_loops(x, W, **kwargs))
    dx, dW, db = cconv.conv2d_backward(np.ones((1, 1, 1, 1)), x, W, **kwargs)
    np.testing.assert_array_equal(dx, np.zeros_like(x))
    np.testing.assert_array_equal(dW, np.zeros_like(W))
    np.testing.assert_array_equal(db, [1.0])
    # pad 2**31 - 1: two windows, at -(2**31 - 1) (its second tap on the pixel) and at 0
    kwargs = {"stride": 2**31 - 1, "pad": 2**31 - 1, "dilation": 2**31 - 1}
    out = cconv.conv2d(x, W, **kwargs)
    assert out.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(out, ref.conv2d_loops(x, W, **kwargs))
    np.testing.assert_array_equal(out, [[[[3.0 * 8.0, 3.0 * 4.0], [3.0 * 2.0, 3.0 * 1.0]]]])
    dx, dW, _ = cconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, W, **kwargs)
    np.testing.assert_array_equal(dx, [[[[15.0]]]])
    np.testing.assert_array_equal(dW, np.full_like(W, 3.0))


# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtypes, expected",
    [
        ((np.float32, np.float32, np.float32), np.float32),
        ((np.float32, np.float32, None), np.float32),
        ((np.float32, np.float64, None), np.float64),
        ((np.float64, np.float32, np.float32), np.float64),
        ((np.float32, np.float32, np.float64), np.float64),
        ((np.float16, np.float16, np.float16), np.float32),
        ((np.float16, np.float32, None), np.float32),
        ((np.float16, np.float64, None), np.float64),
        ((np.int8, np.float32, None), np.float64),
        ((np.float32, np.float32, np.int32), np.float64),
        ((np.uint8, np.int64, np.bool_), np.float64),
        ((np.bool_, np.bool_, None), np.float64),
        ((">f4", "<f4", None), np.float32),
        ((np.longdouble, np.float32, None), np.float64),
    ],
    ids=lambda v: "-".join(np.dtype(d).str if d else "none" for d in v) if isinstance(v, tuple) else np.dtype(v).name,
)
def test_forward_dtype_rule(rng, dtypes, expected):
    """float32 only when x, W and b are all float32 once converted (float16 -> float32,
    integers, bools, longdouble -> float64); the values are the converted ones'."""
    problem = PROBLEMS[11]
    x_dtype, w_dtype, b_dtype = dtypes
    x = random_array(rng, problem.x_shape, x_dtype if np.dtype(x_dtype).kind != "f" else np.float16)
    W = random_array(rng, problem.w_shape, w_dtype if np.dtype(w_dtype).kind != "f" else np.float16)
    x, W = x.astype(x_dtype), W.astype(w_dtype)  # values exact in every dtype
    b = None if b_dtype is None else random_array(rng, (problem.filters,), b_dtype).astype(b_dtype)
    check_forward(x, W, b, problem.kwargs, expected_dtype=np.dtype(expected))


@pytest.mark.parametrize(
    "dtypes, expected",
    [
        ((np.float32, np.float32, np.float32), np.float32),
        ((np.float64, np.float32, np.float32), np.float64),
        ((np.float32, np.float64, np.float32), np.float64),
        ((np.float32, np.float32, np.float64), np.float64),
        ((np.float16, np.float32, np.float16), np.float32),
        ((np.int32, np.float32, np.float32), np.float64),
        ((np.float32, np.bool_, np.float32), np.float64),
        ((np.int8, np.uint8, np.int64), np.float64),
    ],
    ids=lambda v: "-".join(np.dtype(d).name for d in v) if isinstance(v, tuple) else np.dtype(v).name,
)
def test_backward_dtype_rule(rng, dtypes, expected):
    problem = PROBLEMS[11]
    dout_dtype, x_dtype, w_dtype = dtypes
    _, _, _, dout = problem.arrays(rng)
    exact = [random_array(rng, s, d if np.dtype(d).kind != "f" else np.float16)
             for s, d in ((problem.out_shape, dout_dtype), (problem.x_shape, x_dtype), (problem.w_shape, w_dtype))]
    dout, x, W = (a.astype(d) for a, d in zip(exact, dtypes))
    check_backward(dout, x, W, problem.kwargs, expected_dtype=np.dtype(expected))


@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_input_dtype(rng, dtype):
    """Every accepted dtype, the same for all arrays: the dtype it converts to."""
    problem = PROBLEMS[12]
    x, W, b, dout = (random_array(rng, s, dtype) for s in
                     (problem.x_shape, problem.w_shape, (problem.filters,), problem.out_shape))
    check_forward(x, W, b, problem.kwargs, expected_dtype=result_dtype(dtype))
    check_backward(dout, x, W, problem.kwargs, expected_dtype=result_dtype(dtype))


# --------------------------------------------------------------------------
# Bad arguments: ValueError / TypeError naming the argument
# --------------------------------------------------------------------------

X_SHAPE, W_SHAPE, OUT_SHAPE = (2, 3, 6, 5), (4, 3, 3, 3), (2, 4, 4, 3)


ARRAY_SHAPES = {"x": X_SHAPE, "W": W_SHAPE, "b": (4,), "dout": OUT_SHAPE}

#: The array arguments of each function.
ARRAY_ARGS = [("conv2d", "x"), ("conv2d", "W"), ("conv2d", "b"),
              ("conv2d_backward", "dout"), ("conv2d_backward", "x"), ("conv2d_backward", "W")]


def conv_caller(function, rng):
    """A function calling conv2d or conv2d_backward (x (2, 3, 6, 5), W (4, 3, 3, 3),
    b (4,), dout (2, 4, 4, 3), defaults) with some arguments replaced."""
    arrays = {name: rng.standard_normal(shape) for name, shape in ARRAY_SHAPES.items()}

    def call(**overrides):
        kwargs = {**arrays, **overrides}
        if function == "conv2d":
            kwargs.pop("dout")
            return cconv.conv2d(**kwargs)
        kwargs.pop("b")
        return cconv.conv2d_backward(**kwargs)

    call.name = function
    call()  # valid as it stands
    return call


@pytest.fixture(params=["conv2d", "conv2d_backward"])
def conv_call(request, rng):
    return conv_caller(request.param, rng)


def assert_refused(call, exc, name, **overrides):
    """``call(**overrides)`` raises ``exc`` with ``name`` (a word) in its message."""
    with pytest.raises(exc, match=rf"\b{name}\b"):
        call(**overrides)


@pytest.mark.parametrize("channels", [2, 4, 0])
def test_w_channels_differ_from_x(conv_call, channels):
    W = np.ones((4, channels, 3, 3))
    assert_refused(conv_call, ValueError, "W", W=W)
    if channels:
        assert_refused(conv_call, ValueError, "W", x=np.ones((2, 0, 6, 5)))


@pytest.mark.parametrize("shape", [(4, 3, 3), (3, 3), (4,), (), (4, 3, 3, 3, 1), (1, 4, 3, 3, 3)], ids=str)
def test_w_not_4d(conv_call, shape):
    assert_refused(conv_call, ValueError, "W", W=np.ones(shape))


@pytest.mark.parametrize("shape", [(4, 3, 0, 3), (4, 3, 3, 0), (4, 3, 0, 0)], ids=str)
def test_w_empty_filter(conv_call, shape):
    assert_refused(conv_call, ValueError, "W", W=np.ones(shape))


@pytest.mark.parametrize("shape", [(2, 3, 6), (6, 5), (1, 2, 3, 6, 5)], ids=str)
def test_x_not_4d(conv_call, shape):
    assert_refused(conv_call, ValueError, "x", x=np.ones(shape))


@pytest.mark.parametrize(
    "b, exc",
    [
        (np.ones(3), ValueError),
        (np.ones(5), ValueError),
        (np.ones(0), ValueError),
        (np.ones((4, 1)), ValueError),
        (np.ones((1, 4)), ValueError),
        (np.ones((4, 1, 1)), ValueError),
        (np.float64(1.0), ValueError),
        (1.0, ValueError),
        (np.ones(4) + 1j, TypeError),
        (np.array(["a"] * 4), TypeError),
        (np.zeros(4, dtype=object), TypeError),
        ("bias", TypeError),
    ],
    ids=repr,
)
def test_bad_bias(rng, b, exc):
    x, W = rng.standard_normal(X_SHAPE), rng.standard_normal(W_SHAPE)
    with pytest.raises(exc, match=r"^b\b"):
        cconv.conv2d(x, W, b)


def test_bias_for_no_filters_must_be_empty(rng):
    x = rng.standard_normal(X_SHAPE)
    with pytest.raises(ValueError, match=r"^b\b"):
        cconv.conv2d(x, np.ones((0, 3, 3, 3)), np.ones(1))
    assert cconv.conv2d(x, np.ones((0, 3, 3, 3)), np.ones(0)).shape == (2, 0, 4, 3)


@pytest.mark.parametrize(
    "shape",
    [(1, 4, 4, 3), (3, 4, 4, 3), (2, 3, 4, 3), (2, 5, 4, 3), (2, 4, 3, 3), (2, 4, 4, 4), (2, 4, 6, 5),
     (2, 4, 4), (2, 4, 4, 3, 1), (4, 2, 4, 3)],
    ids=str,
)
def test_dout_of_the_wrong_shape(rng, shape):
    x, W = rng.standard_normal(X_SHAPE), rng.standard_normal(W_SHAPE)
    with pytest.raises(ValueError, match=r"^dout\b"):
        cconv.conv2d_backward(np.ones(shape), x, W)


def test_dout_shape_follows_stride_pad_dilation(rng):
    """dout made for other geometry arguments does not fit."""
    x, W = rng.standard_normal(X_SHAPE), rng.standard_normal(W_SHAPE)
    dout = np.ones(OUT_SHAPE)
    for kwargs in ({"stride": 2}, {"pad": 1}, {"dilation": (1, 2)}, {"stride": (1, 2)}):
        with pytest.raises(ValueError, match=r"^dout\b"):
            cconv.conv2d_backward(dout, x, W, **kwargs)


@pytest.mark.parametrize(
    "w_shape, kwargs",
    [
        ((4, 3, 7, 3), {}),  # 7 > 6
        ((4, 3, 3, 6), {}),  # 6 > 5
        ((4, 3, 9, 3), {"pad": 1}),  # 9 > 6 + 2
        ((4, 3, 3, 3), {"dilation": 3}),  # spans 7 > 6
        ((4, 3, 3, 3), {"dilation": (1, 3)}),  # spans 7 > 5
        ((4, 3, 3, 3), {"dilation": (4, 1), "pad": (0, 5)}),  # spans 9 > 6
        ((4, 3, 2, 2), {"dilation": 2**31 - 1}),
    ],
    ids=str,
)
def test_filter_that_does_not_fit(conv_call, w_shape, kwargs):
    """A (dilated) filter larger than the padded input: the output would be empty."""
    with pytest.raises(ValueError, match=r"\bx\b") as info:
        conv_call(W=np.ones(w_shape), **kwargs)
    if "dilation" in kwargs:
        assert "dilation" in str(info.value)


@pytest.mark.parametrize(
    "name, value, exc",
    [
        ("dilation", 0, ValueError),
        ("dilation", -1, ValueError),
        ("dilation", (1, 0), ValueError),
        ("dilation", (-2, 1), ValueError),
        ("dilation", True, TypeError),
        ("dilation", np.False_, TypeError),
        ("dilation", 1.0, TypeError),
        ("dilation", (1, 2.0), TypeError),
        ("dilation", (1,), ValueError),
        ("dilation", (1, 1, 1), ValueError),
        ("dilation", 2**31, ValueError),
        ("dilation", None, TypeError),
        ("stride", 0, ValueError),
        ("stride", (1, 0), ValueError),
        ("stride", -1, ValueError),
        ("stride", 1.5, TypeError),
        ("pad", -1, ValueError),
        ("pad", (0, -1), ValueError),
        ("pad", True, TypeError),
    ],
    ids=repr,
)
def test_bad_geometry(conv_call, name, value, exc):
    assert_refused(conv_call, exc, name, **{name: value})


@pytest.mark.parametrize("dtype", REJECTED_DTYPES + (np.clongdouble,), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("function, name", ARRAY_ARGS, ids="-".join)
def test_rejected_dtypes(rng, function, name, dtype):
    with pytest.raises(TypeError, match=rf"^{name}\b"):
        conv_caller(function, rng)(**{name: np.zeros(ARRAY_SHAPES[name], dtype)})


@pytest.mark.parametrize("function, name", ARRAY_ARGS, ids="-".join)
def test_complex_is_refused_not_truncated(rng, function, name):
    """Even with a zero imaginary part."""
    with pytest.raises(TypeError, match=rf"^{name}\b"):
        conv_caller(function, rng)(**{name: rng.standard_normal(ARRAY_SHAPES[name]) + 0j})


@pytest.mark.parametrize("value", [[[1, 2], [3]], "abc", None, {"a": 1}, object()], ids=repr)
@pytest.mark.parametrize("name", ["x", "W"])
def test_not_an_array(conv_call, name, value):
    with pytest.raises((TypeError, ValueError), match=rf"^{name}\b"):
        conv_call(**{name: value})


@pytest.mark.parametrize("value", [0, 1, None, "True", 1.0, np.array(True), np.array([True]), [True]], ids=repr)
def test_need_input_grad_not_a_bool(rng, value):
    x, W = rng.standard_normal(X_SHAPE), rng.standard_normal(W_SHAPE)
    with pytest.raises(TypeError, match=r"^need_input_grad\b"):
        cconv.conv2d_backward(np.ones(OUT_SHAPE), x, W, need_input_grad=value)


def test_bad_arguments_checked_before_anything_is_written(rng):
    """A refused call leaves out untouched and its inputs unchanged."""
    x, W, b = rng.standard_normal(X_SHAPE), rng.standard_normal(W_SHAPE), rng.standard_normal(4)
    out = garbage((2, 4, 4, 3), np.float64)
    copies = [a.copy() for a in (x, W, b)]
    for kwargs in ({"dilation": 0}, {"b": b[:3]}, {"W": W[:, :2]}, {"stride": 0}, {"pad": 9}):
        with pytest.raises(ValueError):
            cconv.conv2d(**{"x": x, "W": W, "b": b, "out": out, **kwargs})
        assert np.isnan(out).all()
    for before, after in zip(copies, (x, W, b)):
        np.testing.assert_array_equal(after, before)


# --------------------------------------------------------------------------
# Sizes: BLAS takes 32-bit sizes; no result or copy of more than 2**48 bytes
# --------------------------------------------------------------------------


def huge_view(shape, dtype=np.float64):
    """A view of ``shape`` on a single zero (zero strides): no memory behind it."""
    return as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))


@pytest.mark.parametrize(
    "x, W, kwargs, what",
    [
        (np.ones((1, 1, 1, 1)), huge_view((2**31, 1, 1, 1)), {}, "FN"),
        (np.ones((1, 2, 1, 1)), huge_view((1, 2, 2**15, 2**15)), {"pad": 2**14}, "C*FH*FW"),
        (huge_view((1, 1, 2**16, 2**16)), np.ones((1, 1, 1, 1)), {}, "out_h*out_w"),
    ],
    ids=["FN", "C*FH*FW", "out_h*out_w"],
)
def test_sizes_beyond_blas_are_refused(x, W, kwargs, what):
    """FN, C*FH*FW and out_h*out_w above 2**31 - 1 are refused before anything is allocated."""
    with pytest.raises(ValueError, match=rf"{what.replace('*', '[*]')}"):
        cconv.conv2d(x, W, **kwargs)
    dout = huge_view((x.shape[0], W.shape[0]) + Geometry(x.shape, *W.shape[2:], **kwargs).out_hw)
    with pytest.raises(ValueError, match=rf"{what.replace('*', '[*]')}"):
        cconv.conv2d_backward(dout, x, W, **kwargs)


def test_result_too_large_is_refused():
    """conv2d's (2**20, 1, 2**20, 2**10) float64 result would take 8 PiB: ValueError."""
    with pytest.raises(ValueError, match="result"):
        cconv.conv2d(huge_view((2**20, 1, 2**20, 2**10)), np.ones((1, 1, 1, 1)))


def test_zero_stride_float64_input_is_read_in_place():
    """A float64 zero-stride x of 2**50 elements needs no copy: a 1x1 output is fine."""
    out = cconv.conv2d(huge_view((1, 1, 2**25, 2**25)), np.ones((1, 1, 1, 1)), stride=2**31 - 1)
    np.testing.assert_array_equal(out, np.zeros((1, 1, 1, 1)))


# README: "a result (or a converted copy of an input) of more than 2**48
# bytes is refused with ValueError": the results, the conversions to the
# common dtype and the contiguous copies of W, b and dout too.


def test_backward_result_too_large_is_refused():
    """dx of (2**20, 1, 2**20, 2**10) float64 would take 8 PiB: ValueError, as for conv2d."""
    x = huge_view((2**20, 1, 2**20, 2**10))
    with pytest.raises(ValueError):
        cconv.conv2d_backward(huge_view((2**20, 1, 2**20, 2**10)), x, np.ones((1, 1, 1, 1)))


def test_backward_dout_copy_too_large_is_refused():
    """Without dx the results are small, but the C-contiguous copy of a zero-stride
    dout of 2**50 float64 elements would take 8 PiB: ValueError."""
    view = huge_view((2**20, 1, 2**20, 2**10))
    with pytest.raises(ValueError):
        cconv.conv2d_backward(view, view, np.ones((1, 1, 1, 1)), need_input_grad=False)


def test_filter_copy_too_large_is_refused():
    """A zero-stride W of 65536 x 46340 x 46340 float64 (within every BLAS limit,
    a 1x1 output) would be copied into 1 PiB: ValueError."""
    W = huge_view((2**16, 1, 46340, 46340))
    with pytest.raises(ValueError):
        cconv.conv2d(np.ones((1, 1, 1, 1)), W, pad=23170, stride=2**31 - 1)


@pytest.mark.parametrize("function", ["conv2d", "conv2d_backward"])
def test_mixed_dtype_copy_too_large_is_refused(function):
    """A float32 zero-stride x of 2**50 elements with a float64 W: converting x to
    float64 would take 8 PiB (the same call with a float64 x returns at once)."""
    x = huge_view((1, 1, 2**25, 2**25), np.float32)
    W = np.ones((1, 1, 1, 1))
    with pytest.raises(ValueError):
        if function == "conv2d":
            cconv.conv2d(x, W, stride=2**31 - 1)
        else:
            cconv.conv2d_backward(np.ones((1, 1, 1, 1)), x, W, stride=2**31 - 1)
