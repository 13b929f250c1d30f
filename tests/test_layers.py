"""cconv.layers against the book's algorithms (tests/reference_layers.py).

Each layer's forward and backward equal the plain-NumPy reference (float64
and float32, with the tolerances of cconv_testutils), backprop equals the
numerical gradient (float64, relative error < 1e-6), and float32 stays
float32 end to end.
"""

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import pytest

import cconv
from cconv.gradient import numerical_gradient
from cconv.layers import (
    LRN,
    Affine,
    AvgPooling,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)

import reference as ref
import reference_layers as rl
from cconv_testutils import assert_close, distinct_values, random_array, with_layout

F64 = np.float64


def as64(*arrays):
    return tuple(np.asarray(a, dtype=F64) for a in arrays)


def rel_error(actual, expected):
    """``|actual - expected| / max(|actual|, |expected|)`` in the 2-norm."""
    scale = max(np.linalg.norm(actual), np.linalg.norm(expected))
    return np.linalg.norm(actual - expected) / scale if scale else 0.0


# --------------------------------------------------------------------------
# Layer cases: shared by the gradient checks and the dtype checks
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """A layer, an input, its parameter names and how to call forward."""

    layer: object
    x: np.ndarray
    params: tuple = ()
    forward: Callable | None = None

    def run(self, x=None):
        x = self.x if x is None else x
        return self.forward(x) if self.forward else self.layer.forward(x)


def _signed_away_from_zero(rng, shape, dtype):
    """Values with |v| in [0.1, 1): Relu's kink stays out of the difference steps."""
    return (rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def conv_case(rng, dtype, stride=1, pad=1):
    W = random_array(rng, (3, 2, 3, 2), dtype)
    b = random_array(rng, (3,), dtype)
    return Case(Convolution(W, b, stride, pad), random_array(rng, (2, 2, 5, 6), dtype), ("W", "b"))


def max_pool_case(rng, dtype, stride=2, pad=0, window=(2, 2)):
    x = (distinct_values(rng, (2, 2, 5, 5)) / 10).astype(dtype)  # spaced 0.1: no near-ties
    return Case(Pooling(*window, stride=stride, pad=pad), x)


def avg_pool_case(rng, dtype, include_pad):
    layer = AvgPooling(3, 3, stride=2, pad=1, count_include_pad=include_pad)
    return Case(layer, random_array(rng, (2, 2, 5, 6), dtype))


def affine_case(rng, dtype):
    W, b = random_array(rng, (12, 4), dtype), random_array(rng, (4,), dtype)
    return Case(Affine(W, b), random_array(rng, (3, 3, 2, 2), dtype), ("W", "b"))


def dropout_case(rng, dtype):
    layer = Dropout(0.4)

    def forward(x):
        layer.rng = np.random.default_rng(7)  # the same mask at every call
        return layer.forward(x, train_flg=True)

    return Case(layer, random_array(rng, (4, 6), dtype), forward=forward)


def batchnorm_case(rng, dtype, shape):
    features = int(np.prod(shape[1:]))
    gamma = (1 + 0.5 * random_array(rng, (features,), F64)).astype(dtype)
    beta = random_array(rng, (features,), dtype)
    layer = BatchNormalization(gamma, beta)
    x = random_array(rng, shape, dtype)
    return Case(layer, x, ("gamma", "beta"), forward=lambda v: layer.forward(v, train_flg=True))


def lrn_case(rng, dtype, **kwargs):
    return Case(LRN(**kwargs), random_array(rng, (2, 6, 2, 3), dtype))


CASES = {
    "conv": conv_case,
    "conv_stride_pad_pairs": lambda rng, dt: conv_case(rng, dt, stride=(2, 1), pad=(0, 2)),
    "max_pool": max_pool_case,
    "max_pool_overlap_pad": lambda rng, dt: max_pool_case(rng, dt, 2, 1, (3, 3)),
    "avg_pool_include_pad": lambda rng, dt: avg_pool_case(rng, dt, True),
    "avg_pool_exclude_pad": lambda rng, dt: avg_pool_case(rng, dt, False),
    "relu": lambda rng, dt: Case(Relu(), _signed_away_from_zero(rng, (3, 2, 4), dt)),
    "sigmoid": lambda rng, dt: Case(Sigmoid(), random_array(rng, (3, 5), dt)),
    "affine_4d": affine_case,
    "dropout": dropout_case,
    "batchnorm_2d": lambda rng, dt: batchnorm_case(rng, dt, (5, 4)),
    "batchnorm_4d": lambda rng, dt: batchnorm_case(rng, dt, (4, 2, 2, 3)),
    "lrn_alexnet": lrn_case,
    "lrn_strong_even_n": lambda rng, dt: lrn_case(rng, dt, n=4, k=1.0, alpha=0.5, beta=0.75),
    "lrn_strong_odd_n": lambda rng, dt: lrn_case(rng, dt, n=3, k=0.5, alpha=1.0, beta=1.5),
}


@pytest.fixture
def one_kernel_thread():
    """Hundreds of tiny kernel calls: one thread, so that a busy machine cannot stall
    each call on waking a second OpenMP thread (kernel threading is tested elsewhere)."""
    cconv.set_num_threads(1)
    try:
        yield
    finally:
        cconv.set_num_threads(None)


@pytest.mark.parametrize("name", CASES)
def test_backprop_matches_numerical_gradient(name, rng, one_kernel_thread):
    """L = sum(out * w): dL/dx and the parameter gradients, float64, rel. error < 1e-6."""
    case = CASES[name](rng, F64)
    weights = rng.standard_normal(case.run().shape)

    def loss(_):
        return np.sum(case.run() * weights)

    numerical = {"x": numerical_gradient(loss, case.x)}
    for name_ in case.params:
        numerical[name_] = numerical_gradient(loss, getattr(case.layer, name_))
    case.run()
    analytic = {"x": case.layer.backward(weights.copy())}
    for name_ in case.params:
        analytic[name_] = getattr(case.layer, "d" + name_)
    for key, expected in numerical.items():
        assert analytic[key].shape == expected.shape
        assert np.linalg.norm(expected) > 0, key
        assert rel_error(analytic[key], expected) < 1e-6, key


@pytest.mark.parametrize("name", CASES)
def test_float32_stays_float32(name, rng):
    case = CASES[name](rng, np.float32)
    out = case.run()
    assert out.dtype == np.float32
    dx = case.layer.backward(random_array(rng, out.shape, np.float32))
    assert dx.dtype == np.float32
    assert dx.shape == case.x.shape
    for name_ in case.params:
        assert getattr(case.layer, "d" + name_).dtype == np.float32, name_


def test_softmax_with_loss_gradient_check(rng):
    """The book's loss has 1e-7 inside the log; its backward is (y - t)/N exactly,
    so the two differ by about 1e-7 / y_t relatively: small with 3 classes."""
    x = 0.5 * rng.standard_normal((4, 3))
    t = rng.integers(0, 3, 4)
    layer = SoftmaxWithLoss()
    numerical = numerical_gradient(lambda _: layer.forward(x, t), x)
    layer.forward(x, t)
    assert rel_error(layer.backward(), numerical) < 1e-6


# --------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stride, pad", [(1, 0), (1, 1), (2, 1), ((2, 1), (0, 2))], ids=["s1p0", "s1p1", "s2p1", "pairs"]
)
def test_convolution_matches_book(rng, float_dtype, stride, pad):
    x = random_array(rng, (2, 3, 7, 6), float_dtype)
    W = random_array(rng, (4, 3, 3, 2), float_dtype)
    b = random_array(rng, (4,), float_dtype)
    layer = Convolution(W, b, stride, pad)
    out = layer.forward(x)
    expected = rl.conv(*as64(x, W, b), stride, pad)
    assert out.dtype == float_dtype
    assert_close(out, expected, terms=3 * 3 * 2)

    dout = random_array(rng, out.shape, float_dtype)
    dx = layer.backward(dout)
    expected_dx, expected_dW, expected_db = rl.conv_backward(*as64(dout, x, W), stride, pad)
    rows = out.shape[0] * out.shape[2] * out.shape[3]
    assert (dx.dtype, layer.dW.dtype, layer.db.dtype) == (float_dtype,) * 3
    assert_close(dx, expected_dx, terms=4 * 3 * 2)
    assert_close(layer.dW, expected_dW, terms=rows)
    assert_close(layer.db, expected_db, terms=rows)


def test_convolution_book_attributes(rng):
    x = random_array(rng, (2, 3, 5, 5))
    W, b = random_array(rng, (4, 3, 3, 3)), random_array(rng, (4,))
    layer = Convolution(W, b, 1, 1)
    layer.forward(x)
    assert layer.x is x  # the input itself, not a copy
    np.testing.assert_array_equal(layer.col, ref.im2col(x, 3, 3, 1, 1))
    np.testing.assert_array_equal(layer.col_W, W.reshape(4, -1).T)
    assert np.shares_memory(layer.col_W, W)
    W += 1.0  # an optimizer updating W in place is seen by the next forward
    np.testing.assert_allclose(layer.forward(x), rl.conv(x, W, b, 1, 1), rtol=1e-12, atol=1e-12)


def test_convolution_output_is_nchw_contiguous(rng):
    layer = Convolution(random_array(rng, (4, 3, 3, 3)), random_array(rng, (4,)))
    out = layer.forward(random_array(rng, (2, 3, 6, 6)))
    assert out.flags.c_contiguous  # the memory order the pooling gradients come in


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convolution_param_backward_equals_backward(rng, dtype):
    W, b = random_array(rng, (4, 3, 3, 3), dtype), random_array(rng, (4,), dtype)
    x = random_array(rng, (2, 3, 7, 6), dtype)
    full, params_only = Convolution(W, b, 2, 1), Convolution(W, b, 2, 1)
    dout = random_array(rng, full.forward(x).shape, dtype)
    params_only.forward(x)
    full.backward(dout)
    assert params_only.param_backward(dout) is None
    np.testing.assert_array_equal(params_only.dW, full.dW)
    np.testing.assert_array_equal(params_only.db, full.db)
    assert params_only.dW.dtype == dtype


@pytest.mark.parametrize("layout", ["F", "transposed", "strided", "negative", "readonly"])
def test_convolution_reads_any_layout(rng, layout):
    x = random_array(rng, (2, 3, 6, 5))
    W, b = random_array(rng, (4, 3, 3, 3)), random_array(rng, (4,))
    strided = with_layout(x, layout)
    layer = Convolution(W, b, 1, 1)
    out = layer.forward(strided)
    assert layer.x is strided
    assert_close(out, rl.conv(x, W, b, 1, 1), terms=27)
    dout = random_array(rng, out.shape)
    assert_close(layer.backward(dout), rl.conv_backward(dout, x, W, 1, 1)[0], terms=36)


def test_convolution_keeps_no_unfolded_input(rng):
    """Only x is kept between forward and backward; col is made when read."""
    W, b = random_array(rng, (4, 2, 3, 3)), random_array(rng, (4,))
    layer = Convolution(W, b, 1, 1)
    x1, x2 = random_array(rng, (2, 2, 5, 5)), random_array(rng, (2, 2, 5, 5))
    layer.forward(x1)
    layer.forward(x2)
    assert [name for name, value in vars(layer).items() if isinstance(value, np.ndarray)
            and value.size > max(W.size, x2.size)] == []
    np.testing.assert_array_equal(layer.col, ref.im2col(x2, 3, 3, 1, 1))
    # backward differentiates the last forward, as in the book
    dout = random_array(rng, (2, 4, 5, 5))
    dx = layer.backward(dout)
    expected_dx, expected_dW, _ = rl.conv_backward(dout, x2, W, 1, 1)
    assert_close(dx, expected_dx, terms=36)
    assert_close(layer.dW, expected_dW, terms=50)
    assert Convolution(W, b).col is None  # before any forward


def test_convolution_layers_do_not_share_state(rng):
    W, b = random_array(rng, (2, 2, 3, 3)), random_array(rng, (2,))
    first, second = Convolution(W, b), Convolution(W, b)
    x1, x2 = random_array(rng, (1, 2, 4, 4)), random_array(rng, (1, 2, 4, 4))
    first.forward(x1)
    second.forward(x2)
    np.testing.assert_array_equal(first.col, ref.im2col(x1, 3, 3))


@pytest.mark.parametrize("dilation", [2, (1, 3)])
def test_convolution_with_dilation_matches_kernels(rng, dilation):
    W, b = random_array(rng, (3, 2, 3, 2)), random_array(rng, (3,))
    x = random_array(rng, (2, 2, 9, 8))
    layer = Convolution(W, b, 1, 1, dilation)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, cconv.conv2d(x, W, b, 1, 1, dilation))
    dout = random_array(rng, out.shape)
    dx = layer.backward(dout)
    expected = cconv.conv2d_backward(dout, x, W, 1, 1, dilation)
    for got, want in zip((dx, layer.dW, layer.db), expected):
        np.testing.assert_array_equal(got, want)


def test_convolution_checks_its_window_once_at_construction(rng):
    W, b = random_array(rng, (2, 1, 3, 3)), random_array(rng, (2,))
    with pytest.raises(ValueError, match="stride"):
        Convolution(W, b, stride=0)
    with pytest.raises(ValueError, match="pad"):
        Convolution(W, b, pad=-1)
    with pytest.raises(ValueError, match="dilation"):
        Convolution(W, b, dilation=0)


def test_window_attributes_are_checked_when_set_and_then_used(rng):
    """stride, pad, pool sizes read back as given; a later value is checked at once and used."""
    W, b = random_array(rng, (2, 1, 3, 3)), random_array(rng, (2,))
    conv = Convolution(W, b)
    assert (conv.stride, conv.pad, conv.dilation) == (1, 0, 1)
    with pytest.raises(ValueError, match="stride"):
        conv.stride = 0
    with pytest.raises(TypeError, match="pad"):
        conv.pad = 1.0
    conv.stride, conv.pad = (2, 1), 1
    x = random_array(rng, (2, 1, 7, 6))
    np.testing.assert_array_equal(conv.forward(x), cconv.conv2d(x, W, b, (2, 1), 1))
    assert conv.stride == (2, 1)

    with pytest.raises(ValueError, match="pad"):
        Pooling(2, 2, pad=2)  # more than half the window
    with pytest.raises(ValueError, match="pool_h"):
        Pooling(0, 2)
    with pytest.raises(TypeError, match="count_include_pad"):
        AvgPooling(2, 2, count_include_pad=1)
    pool = Pooling(2, 2)
    pool.stride = 2
    np.testing.assert_array_equal(pool.forward(x), cconv.max_pool2d(x, 2, 2, 2)[0])
    with pytest.raises(ValueError, match="pool_w"):
        pool.pool_w = -1
    assert (pool.pool_h, pool.pool_w, pool.stride, pool.pad) == (2, 2, 2, 0)


def test_convolution_refuses_channel_mismatch(rng):
    layer = Convolution(random_array(rng, (2, 3, 3, 3)), random_array(rng, (2,)))
    with pytest.raises(ValueError, match="channels"):
        layer.forward(random_array(rng, (1, 2, 5, 5)))
    with pytest.raises(ValueError, match="4-D"):
        layer.forward(random_array(rng, (2, 5, 5)))


# --------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("window, stride", [((2, 2), 2), ((3, 3), 1), ((3, 2), (2, 1))])
def test_max_pooling_matches_book(rng, float_dtype, window, stride):
    x = distinct_values(rng, (2, 3, 6, 7)).astype(float_dtype)
    layer = Pooling(*window, stride=stride)
    out = layer.forward(x)
    expected, book_arg_max = rl.max_pool(x, *window, stride=stride)
    assert out.dtype == float_dtype
    np.testing.assert_array_equal(out, expected)
    assert layer.x is x
    # the same maxima; the book's flat arg_max is in (n, oy, ox, c) order
    np.testing.assert_array_equal(layer.arg_max.transpose(0, 2, 3, 1).ravel(), book_arg_max)

    dout = random_array(rng, out.shape, float_dtype)
    n, c, out_h, out_w = out.shape
    arg_max = book_arg_max.reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2)
    expected_dx = ref.max_pool2d_backward(dout, arg_max, x.shape, *window, stride=stride)
    assert_close(layer.backward(dout), expected_dx, terms=window[0] * window[1])


def test_max_pooling_pads_with_minus_infinity(rng):
    """cconv's documented deviation: the book pads with 0, cconv with -inf."""
    x = -1.0 - rng.random((1, 2, 3, 3))  # all negative; every window touches the padding
    layer = Pooling(3, 3, stride=2, pad=1)
    out = layer.forward(x)
    expected, _ = rl.max_pool(x, 3, 3, stride=2, pad=1, pad_value=-np.inf)
    np.testing.assert_array_equal(out, expected)
    assert np.all(out < -1.0)  # always a real pixel
    book, _ = rl.max_pool(x, 3, 3, stride=2, pad=1)
    assert np.all(book == 0.0)  # the book would take the zero padding

    dout = random_array(rng, out.shape)
    dx = layer.backward(dout)
    np.testing.assert_allclose(dx.sum(), dout.sum(), rtol=1e-12)  # every gradient reaches a pixel


def test_pooling_reads_book_convolution_output_view(rng):
    # The book's Convolution returns a transposed view of (N, out_h, out_w, FN).
    y = random_array(rng, (2, 4, 4, 3)).transpose(0, 3, 1, 2)
    assert not y.flags.c_contiguous
    out = Pooling(2, 2, stride=2).forward(y)
    np.testing.assert_array_equal(out, rl.max_pool(np.ascontiguousarray(y), 2, 2, stride=2)[0])


def test_avg_pooling_matches_book_style_and_reference(rng, float_dtype):
    x = random_array(rng, (2, 3, 6, 7), float_dtype)
    layer = AvgPooling(3, 3, stride=2, pad=1)
    out = layer.forward(x)
    assert out.dtype == float_dtype
    assert_close(out, rl.avg_pool(x.astype(F64), 3, 3, stride=2, pad=1), terms=9)
    dout = random_array(rng, out.shape, float_dtype)
    dx = layer.backward(dout)
    assert dx.dtype == float_dtype
    assert_close(dx, ref.avg_pool2d_backward(dout, x.shape, 3, 3, 2, 1), terms=9)

    exclude = AvgPooling(3, 3, stride=2, pad=1, count_include_pad=False)
    expected = ref.avg_pool2d(x, 3, 3, 2, 1, count_include_pad=False)
    assert_close(exclude.forward(x), expected, terms=9)
    expected_dx = ref.avg_pool2d_backward(dout, x.shape, 3, 3, 2, 1, count_include_pad=False)
    assert_close(exclude.backward(dout), expected_dx, terms=9)


# --------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------


def test_relu_matches_book_and_keeps_dout(rng, float_dtype):
    x = random_array(rng, (3, 4, 5), float_dtype)
    x[0, 0, :2] = 0.0
    dout = random_array(rng, x.shape, float_dtype)
    dout_before = dout.copy()
    layer = Relu()
    out = layer.forward(x)
    dx = layer.backward(dout)
    expected_out, expected_dx = rl.relu_book(x, dout.copy())
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(layer.mask, x <= 0)
    np.testing.assert_array_equal(dout, dout_before)  # not mutated, unlike the book
    assert not np.shares_memory(dx, dout)
    assert out.dtype == dx.dtype == float_dtype


def test_relu_non_finite_values_as_book():
    x = np.array([-1.0, 0.0, 2.0, np.nan, -3.0, 4.0])
    dout = np.array([np.inf, np.nan, 1.0, 2.0, -np.inf, np.inf])
    layer = Relu()
    out = layer.forward(x)
    dx = layer.backward(dout)
    expected_out, expected_dx = rl.relu_book(x, dout.copy())
    np.testing.assert_array_equal(out, expected_out)  # NaN stays NaN
    np.testing.assert_array_equal(dx, expected_dx)  # inf/NaN reaching an off unit give 0
    np.testing.assert_array_equal(dx, [0.0, 0.0, 1.0, 2.0, 0.0, np.inf])


def test_sigmoid_matches_book(rng, float_dtype):
    x = random_array(rng, (4, 5), float_dtype)
    dout = random_array(rng, x.shape, float_dtype)
    layer = Sigmoid()
    out = layer.forward(x)
    dx = layer.backward(dout)
    expected_out, expected_dx = rl.sigmoid(*as64(x, dout))
    assert out.dtype == dx.dtype == float_dtype
    assert_close(out, expected_out)
    assert_close(dx, expected_dx, terms=3)


def test_sigmoid_extremes_without_warnings():
    layer = Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = layer.forward(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


# --------------------------------------------------------------------------
# Affine, SoftmaxWithLoss, Dropout
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 12), (4, 3, 2, 2)], ids=["2d", "4d"])
def test_affine_matches_book(rng, float_dtype, shape):
    x = random_array(rng, shape, float_dtype)
    W, b = random_array(rng, (12, 5), float_dtype), random_array(rng, (5,), float_dtype)
    layer = Affine(W, b)
    out = layer.forward(x)
    assert out.dtype == float_dtype
    assert_close(out, rl.affine(*as64(x, W, b)), terms=12)
    assert layer.original_x_shape == shape
    assert layer.x.shape == (4, 12)
    dout = random_array(rng, out.shape, float_dtype)
    dx = layer.backward(dout)
    expected_dx, expected_dW, expected_db = rl.affine_backward(*as64(dout, x, W))
    assert dx.shape == shape  # the 4-D shape comes back
    assert_close(dx, expected_dx, terms=5)
    assert_close(layer.dW, expected_dW, terms=4)
    assert_close(layer.db, expected_db, terms=4)


@pytest.mark.parametrize("label_dtype", [np.int64, np.uint8])
def test_softmax_with_loss_index_and_one_hot_labels(rng, float_dtype, label_dtype):
    x = random_array(rng, (6, 4), float_dtype)
    t = rng.integers(0, 4, 6).astype(label_dtype)
    one_hot = np.eye(4, dtype=label_dtype)[t]
    expected_loss, expected_dx = rl.softmax_with_loss(x.astype(F64), t)
    for labels in (t, one_hot):
        layer = SoftmaxWithLoss()
        loss = layer.forward(x, labels)
        dx = layer.backward()
        assert loss.dtype == dx.dtype == float_dtype
        assert_close(np.asarray(loss), expected_loss, terms=4)
        assert_close(dx, expected_dx, terms=4)
        assert layer.t is labels
        assert_close(layer.y.sum(axis=1), np.ones(6), terms=4)


def test_softmax_with_loss_is_stable_for_large_scores():
    x = np.array([[1000.0, 0.0, -1000.0], [5000.0, 5000.0, 5000.0]])
    t = np.array([1, 2])
    layer = SoftmaxWithLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = layer.forward(x, t)
        dx = layer.backward()
    expected = (-np.log(1e-7) - np.log(1 / 3 + 1e-7)) / 2  # p = 0 costs -log(1e-7), as the book
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(dx, [[0.5, -0.5, 0.0], [1 / 6, 1 / 6, -1 / 3]], atol=1e-15)


def test_softmax_with_loss_single_sample_and_dout(rng):
    x = random_array(rng, (5,))
    layer = SoftmaxWithLoss()
    loss_1d = layer.forward(x, np.array(2))
    dx_1d = layer.backward()
    loss_2d, dx_2d = rl.softmax_with_loss(x[np.newaxis], np.array([2]))
    np.testing.assert_allclose(loss_1d, loss_2d, rtol=1e-12)
    assert dx_1d.shape == (5,)
    np.testing.assert_allclose(dx_1d, dx_2d[0], rtol=1e-12)
    np.testing.assert_allclose(layer.backward(2.5), 2.5 * dx_1d, rtol=1e-12)


def test_dropout_book_mask_from_global_random_state(rng, float_dtype):
    x = random_array(rng, (5, 6), float_dtype)
    dout = random_array(rng, x.shape, float_dtype)
    layer = Dropout(0.3)
    saved = np.random.get_state()
    try:
        np.random.seed(12)
        out = layer.forward(x)
        np.random.seed(12)
        noise = np.random.rand(*x.shape)  # the book's draw
    finally:
        np.random.set_state(saved)
    expected_out, expected_dx = rl.dropout(x, dout, noise, 0.3)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    assert out.dtype == dx.dtype == float_dtype
    assert 0 < layer.mask.sum() < layer.mask.size


def test_dropout_rng_is_reproducible_and_test_mode_scales(rng, float_dtype):
    x = random_array(rng, (40, 50), float_dtype)
    first = Dropout(0.5, rng=np.random.default_rng(3)).forward(x)
    second_layer = Dropout(0.5, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(second_layer.forward(x), first)
    np.testing.assert_array_equal(
        second_layer.mask, np.random.default_rng(3).random(x.shape) > 0.5
    )
    assert 0.4 < second_layer.mask.mean() < 0.6
    mask = second_layer.mask.copy()
    test_out = second_layer.forward(x, train_flg=False)
    assert test_out.dtype == float_dtype
    np.testing.assert_allclose(test_out, x * 0.5, rtol=1e-7)
    np.testing.assert_array_equal(second_layer.mask, mask)  # test mode keeps the training mask
    # a legacy RandomState works too
    legacy = Dropout(0.5, rng=np.random.RandomState(4)).forward(x)
    np.testing.assert_array_equal(legacy != 0, np.random.RandomState(4).random_sample(x.shape) > 0.5)


# --------------------------------------------------------------------------
# BatchNormalization
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 5), (4, 2, 3, 3)], ids=["fc", "conv"])
def test_batchnorm_train_matches_book(rng, float_dtype, shape):
    features = int(np.prod(shape[1:]))  # per (c, y, x) for 4-D input, as the book
    gamma = random_array(rng, (features,), float_dtype)
    beta = random_array(rng, (features,), float_dtype)
    layer = BatchNormalization(gamma, beta, momentum=0.8)
    running_mean = np.zeros(features)
    running_var = np.zeros(features)
    for _ in range(2):  # running statistics over two batches
        x = random_array(rng, shape, float_dtype)
        out = layer.forward(x, train_flg=True)
        expected, running_mean, running_var = rl.batchnorm_train(
            *as64(x, gamma, beta), 0.8, running_mean, running_var
        )
        assert out.shape == shape
        assert out.dtype == float_dtype
        assert_close(out, expected, terms=shape[0] * 4)
    assert layer.running_mean.dtype == layer.running_var.dtype == float_dtype
    assert_close(layer.running_mean, running_mean, terms=shape[0])
    assert_close(layer.running_var, running_var, terms=shape[0] * 4)

    dout = random_array(rng, shape, float_dtype)
    dx = layer.backward(dout)
    expected_dx, expected_dgamma, expected_dbeta = rl.batchnorm_backward(*as64(dout, x, gamma))
    assert dx.shape == shape
    assert dx.dtype == layer.dgamma.dtype == layer.dbeta.dtype == float_dtype
    assert_close(dx, expected_dx, terms=shape[0] * 40)
    assert_close(layer.dgamma, expected_dgamma, terms=shape[0] * 4)
    assert_close(layer.dbeta, expected_dbeta, terms=shape[0])


def test_batchnorm_test_mode_uses_running_statistics(rng, float_dtype):
    gamma, beta = random_array(rng, (4,), float_dtype), random_array(rng, (4,), float_dtype)
    running_mean, running_var = rng.standard_normal(4), rng.random(4) + 0.5  # float64 given
    layer = BatchNormalization(gamma, beta, running_mean=running_mean, running_var=running_var)
    x = random_array(rng, (3, 4), float_dtype)
    out = layer.forward(x, train_flg=False)
    expected = gamma.astype(F64) * (x - running_mean) / np.sqrt(running_var + 10e-7) + beta
    assert out.dtype == float_dtype  # float64 statistics do not upcast a float32 input
    assert_close(out, expected, terms=4)
    assert layer.running_mean is running_mean  # test mode does not touch them
    assert layer.running_var is running_var


def test_batchnorm_training_normalises_each_feature(rng):
    x = 3.0 + 2.0 * random_array(rng, (50, 2, 2, 2))
    layer = BatchNormalization(np.ones(8), np.zeros(8))
    out = layer.forward(x).reshape(50, -1)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------
# LRN
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, channels",
    [({}, 7), ({}, 3), ({"n": 4, "k": 1.0, "alpha": 0.3, "beta": 0.6}, 6), ({"n": 1}, 2)],
    ids=["alexnet", "fewer_channels_than_n", "even_n", "n1"],
)
def test_lrn_matches_loop_formula(rng, float_dtype, kwargs, channels):
    x = (3 * random_array(rng, (2, channels, 3, 2), F64)).astype(float_dtype)
    layer = LRN(**kwargs)
    out = layer.forward(x)
    assert out.dtype == float_dtype
    assert_close(out, rl.lrn_loops(x, **kwargs), terms=4)
    assert layer.x is x


def test_lrn_alexnet_defaults_and_bad_n():
    layer = LRN()
    assert (layer.n, layer.k, layer.alpha, layer.beta) == (5, 2.0, 1e-4, 0.75)
    with pytest.raises(ValueError, match="n must be"):
        LRN(n=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convolution_takes_an_empty_batch(rng, dtype):
    layer = Convolution(random_array(rng, (4, 3, 3, 3), dtype), random_array(rng, (4,), dtype), 1, 1)
    out = layer.forward(np.zeros((0, 3, 6, 5), dtype))
    assert out.shape == (0, 4, 6, 5) and out.dtype == dtype
    dx = layer.backward(np.zeros_like(out))
    assert dx.shape == (0, 3, 6, 5)
    np.testing.assert_array_equal(layer.dW, np.zeros((4, 3, 3, 3)))
    np.testing.assert_array_equal(layer.db, np.zeros(4))
