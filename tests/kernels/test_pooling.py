"""Max and average pooling, forward and backward, against tests/reference.py.

Max pooling pads with -inf and never selects padding; NaN propagates (argmax
= first NaN); ties go to the first position. Average pooling divides by
pool_h*pool_w or, with ``count_include_pad=False``, by the real elements.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cconv

import reference as ref
from cconv_testutils import (
    POOL_GEOMETRIES,
    PROPERTY_SETTINGS,
    Geometry,
    assert_close,
    distinct_values,
    geometries,
    input_dtypes,
    layouts,
    numerical_gradient,
    random_array,
    result_dtype,
    seeds,
    with_layout,
    with_special_values,
)

count_include_pad = pytest.mark.parametrize(
    "include_pad", [True, False], ids=["include_pad", "exclude_pad"]
)

# --------------------------------------------------------------------------
# Checks shared by the fixed and the property tests
# --------------------------------------------------------------------------


def assert_result_array(result, shape, dtype):
    assert result.shape == shape
    assert result.dtype == dtype
    assert result.flags.c_contiguous


def assert_argmax_real(argmax, geom):
    """Every argmax points at a real (non-padding) element of its window."""
    (sh, sw), (ph, pw) = ref.as_pair(geom.stride), ref.as_pair(geom.pad)
    oy, ox = np.indices(geom.out_hw)
    iy = oy * sh - ph + argmax // geom.filter_w
    ix = ox * sw - pw + argmax % geom.filter_w
    assert np.all((0 <= iy) & (iy < geom.shape[2]) & (0 <= ix) & (ix < geom.shape[3]))


def check_max_pool(x, geom):
    out, argmax = cconv.max_pool2d(x, *geom.args, **geom.kwargs)
    assert_result_array(out, geom.out_shape, result_dtype(np.asarray(x).dtype))
    assert_result_array(argmax, geom.out_shape, np.int64)
    expected_out, expected_argmax = ref.max_pool2d(
        np.asarray(x).astype(out.dtype), *geom.args, **geom.kwargs
    )
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(argmax, expected_argmax)
    assert_argmax_real(argmax, geom)


def check_avg_pool(x, geom, include_pad):
    out = cconv.avg_pool2d(x, *geom.args, **geom.kwargs, count_include_pad=include_pad)
    assert_result_array(out, geom.out_shape, result_dtype(np.asarray(x).dtype))
    expected = ref.avg_pool2d(
        np.asarray(x).astype(out.dtype), *geom.args, **geom.kwargs, count_include_pad=include_pad
    )
    assert_close(out, expected, terms=geom.filter_h * geom.filter_w)


def check_max_pool_backward(dout, argmax, geom):
    dx = cconv.max_pool2d_backward(dout, argmax, geom.shape, *geom.args, **geom.kwargs)
    assert_result_array(dx, geom.shape, result_dtype(np.asarray(dout).dtype))
    expected = ref.max_pool2d_backward(
        np.asarray(dout).astype(dx.dtype), argmax, geom.shape, *geom.args, **geom.kwargs
    )
    assert_close(dx, expected, terms=geom.overlap)


def check_avg_pool_backward(dout, geom, include_pad):
    dx = cconv.avg_pool2d_backward(
        dout, geom.shape, *geom.args, **geom.kwargs, count_include_pad=include_pad
    )
    assert_result_array(dx, geom.shape, result_dtype(np.asarray(dout).dtype))
    expected = ref.avg_pool2d_backward(
        np.asarray(dout).astype(dx.dtype),
        geom.shape,
        *geom.args,
        **geom.kwargs,
        count_include_pad=include_pad,
    )
    assert_close(dx, expected, terms=geom.overlap)


def random_argmax(rng, geom):
    """Argmax values anywhere in the window, padding positions included."""
    return rng.integers(0, geom.filter_h * geom.filter_w, size=geom.out_shape).astype(np.int64)


# --------------------------------------------------------------------------
# Against the reference: fixed cases, dtype policy, properties
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
def test_reference_agrees_with_brute_force(rng):
    """The vectorised references equal the explicit loops, special values included."""
    for geom in POOL_GEOMETRIES:
        x = rng.standard_normal(geom.shape)
        x.flat[::3] = rng.choice([np.nan, -np.inf, np.inf, 0.0], size=x.flat[::3].shape)
        dout = rng.standard_normal(geom.out_shape)
        for a, b in zip(
            ref.max_pool2d(x, *geom.args, **geom.kwargs),
            ref.max_pool2d_loops(x, *geom.args, **geom.kwargs),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
        argmax = random_argmax(rng, geom)
        np.testing.assert_allclose(
            ref.max_pool2d_backward(dout, argmax, geom.shape, *geom.args, **geom.kwargs),
            ref.max_pool2d_backward_loops(dout, argmax, geom.shape, *geom.args, **geom.kwargs),
            rtol=1e-12,
        )
        for include_pad in (True, False):
            window = dict(geom.kwargs, count_include_pad=include_pad)
            np.testing.assert_allclose(
                ref.avg_pool2d(x, *geom.args, **window),
                ref.avg_pool2d_loops(x, *geom.args, **window),
                rtol=1e-12,
            )
            np.testing.assert_allclose(
                ref.avg_pool2d_backward(dout, geom.shape, *geom.args, **window),
                ref.avg_pool2d_backward_loops(dout, geom.shape, *geom.args, **window),
                rtol=1e-12,
            )


@pytest.mark.parametrize("geom", POOL_GEOMETRIES, ids=str)
class TestAgainstReference:
    def test_max_pool(self, rng, geom, float_dtype, layout, n_threads):
        check_max_pool(with_layout(random_array(rng, geom.shape, float_dtype), layout), geom)

    def test_max_pool_backward(self, rng, geom, float_dtype, layout, n_threads):
        dout = with_layout(random_array(rng, geom.out_shape, float_dtype), layout)
        check_max_pool_backward(dout, with_layout(random_argmax(rng, geom), layout), geom)

    @count_include_pad
    def test_avg_pool(self, rng, geom, float_dtype, layout, n_threads, include_pad):
        check_avg_pool(
            with_layout(random_array(rng, geom.shape, float_dtype), layout), geom, include_pad
        )

    @count_include_pad
    def test_avg_pool_backward(self, rng, geom, float_dtype, layout, n_threads, include_pad):
        dout = with_layout(random_array(rng, geom.out_shape, float_dtype), layout)
        check_avg_pool_backward(dout, geom, include_pad)


@pytest.mark.parametrize("geom", POOL_GEOMETRIES[1:3], ids=str)
class TestDtypePolicy:
    """float16 -> float32, integers and bool -> float64, float32/64 kept."""

    def test_max_pool(self, rng, geom, input_dtype):
        check_max_pool(random_array(rng, geom.shape, input_dtype), geom)

    def test_max_pool_backward(self, rng, geom, input_dtype):
        check_max_pool_backward(
            random_array(rng, geom.out_shape, input_dtype), random_argmax(rng, geom), geom
        )

    def test_avg_pool(self, rng, geom, input_dtype):
        check_avg_pool(random_array(rng, geom.shape, input_dtype), geom, include_pad=False)

    def test_avg_pool_backward(self, rng, geom, input_dtype):
        check_avg_pool_backward(
            random_array(rng, geom.out_shape, input_dtype), geom, include_pad=False
        )


pool_geometries = geometries(pooling=True)


@PROPERTY_SETTINGS
@given(
    geom=pool_geometries,
    dtype=input_dtypes,
    layout=layouts,
    seed=seeds,
    special=st.sampled_from([0.0, 0.3, 0.9]),
)
def test_property_max_pool(geom, dtype, layout, seed, special):
    """Random values, with some -inf / inf / NaN: padding is never picked, NaN wins."""
    rng = np.random.default_rng(seed)
    x = with_special_values(rng, random_array(rng, geom.shape, dtype), special)
    check_max_pool(with_layout(x, layout), geom)


@PROPERTY_SETTINGS
@given(geom=pool_geometries, dtype=input_dtypes, layout=layouts, seed=seeds)
def test_property_max_pool_backward(geom, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    dout = with_layout(random_array(rng, geom.out_shape, dtype), layout)
    check_max_pool_backward(dout, with_layout(random_argmax(rng, geom), layout), geom)


@PROPERTY_SETTINGS
@given(
    geom=pool_geometries, dtype=input_dtypes, layout=layouts, seed=seeds, include_pad=st.booleans()
)
def test_property_avg_pool(geom, dtype, layout, seed, include_pad):
    x = random_array(np.random.default_rng(seed), geom.shape, dtype)
    check_avg_pool(with_layout(x, layout), geom, include_pad)


@PROPERTY_SETTINGS
@given(
    geom=pool_geometries, dtype=input_dtypes, layout=layouts, seed=seeds, include_pad=st.booleans()
)
def test_property_avg_pool_backward(geom, dtype, layout, seed, include_pad):
    dout = random_array(np.random.default_rng(seed), geom.out_shape, dtype)
    check_avg_pool_backward(with_layout(dout, layout), geom, include_pad)


# --------------------------------------------------------------------------
# Hand-computed cases: 2x2 image, 2x2 window, stride 1, pad 1 (3x3 output)
# --------------------------------------------------------------------------

SMALL = Geometry((1, 1, 2, 2), 2, 2, 1, 1)
#: Argmax when every real element ties: the first real element of each window.
FIRST_REAL = [[3, 2, 2], [1, 0, 0], [1, 0, 0]]


def small_image(values):
    return np.array(values, dtype=np.float64).reshape(SMALL.shape)


def max_pool_small(values):
    out, argmax = cconv.max_pool2d(small_image(values), *SMALL.args, **SMALL.kwargs)
    return out[0, 0], argmax[0, 0]


def test_max_pool_hand_computed():
    out, argmax = max_pool_small([[1, 2], [3, 4]])
    np.testing.assert_array_equal(out, [[1, 2, 2], [3, 4, 4], [3, 4, 4]])
    np.testing.assert_array_equal(argmax, [[3, 3, 2], [3, 3, 2], [1, 1, 0]])


def test_max_pool_negative_input_never_picks_padding():
    """All-negative input with pad: -inf padding never wins, not even against -4."""
    out, argmax = max_pool_small([[-1, -2], [-3, -4]])
    np.testing.assert_array_equal(out, [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]])
    np.testing.assert_array_equal(argmax, FIRST_REAL)


def test_max_pool_all_inf_window_picks_first_real_element():
    """A window of -inf picks its first real element, never a padding position."""
    out, argmax = max_pool_small(np.full((2, 2), -np.inf))
    assert np.all(out == -np.inf)
    np.testing.assert_array_equal(argmax, FIRST_REAL)
    # so the whole gradient reaches the image
    dx = cconv.max_pool2d_backward(
        np.ones((1, 1, 3, 3)), argmax[None, None], SMALL.shape, *SMALL.args, **SMALL.kwargs
    )
    assert dx.sum() == 9


def test_max_pool_ties_go_to_first_position():
    out, argmax = max_pool_small(np.ones((2, 2)))
    np.testing.assert_array_equal(argmax, FIRST_REAL)
    x = np.ones((1, 1, 3, 4))
    np.testing.assert_array_equal(cconv.max_pool2d(x, 2, 3)[1], np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize(
    "window, position",
    [
        ([1, np.nan, np.nan, 2], 1),
        ([5, 7, np.inf, np.nan], 3),
        ([np.nan, -np.inf, 9, np.nan], 0),
        ([-np.inf, -np.inf, np.nan, -np.inf], 2),
    ],
)
def test_max_pool_nan_propagates_first_nan_wins(float_dtype, window, position):
    x = np.array(window, dtype=float_dtype).reshape(1, 1, 2, 2)
    out, argmax = cconv.max_pool2d(x, 2, 2)
    assert np.isnan(out).all()
    assert argmax.item() == position


def test_max_pool_nan_only_affects_its_windows(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    x[0, 1, 2, 3] = np.nan
    x[1, 2, 5, 0] = np.nan
    geom = Geometry(x.shape, 3, 3, 1, 1)
    check_max_pool(x, geom)
    out, _ = cconv.max_pool2d(x, 3, 3, 1, 1)
    assert np.isnan(out).sum() == 9 + 4  # an interior NaN is in 3x3 windows, a corner one in 2x2


def test_max_pool_backward_hand_computed():
    _, argmax = max_pool_small([[1, 2], [3, 4]])
    dout = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    dx = cconv.max_pool2d_backward(
        dout, argmax[None, None], SMALL.shape, *SMALL.args, **SMALL.kwargs
    )
    # argmax [[3, 3, 2], [3, 3, 2], [1, 1, 0]] sends each dout to
    # [[x00, x01, x01], [x10, x11, x11], [x10, x11, x11]]
    np.testing.assert_array_equal(dx[0, 0], [[1, 2 + 3], [4 + 7, 5 + 6 + 8 + 9]])


def test_max_pool_backward_argmax_in_padding_contributes_nothing():
    """Argmax 0 is the top-left of every window; it is real only for 4 of the 9."""
    argmax = np.zeros((1, 1, 3, 3), dtype=np.int64)
    dx = cconv.max_pool2d_backward(
        np.ones((1, 1, 3, 3)), argmax, SMALL.shape, *SMALL.args, **SMALL.kwargs
    )
    np.testing.assert_array_equal(dx, np.ones(SMALL.shape))


@pytest.mark.parametrize(
    "include_pad, expected",
    [
        (True, [[0.25, 0.75, 0.5], [1.0, 2.5, 1.5], [0.75, 1.75, 1.0]]),
        (False, [[1.0, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]]),
    ],
    ids=["include_pad", "exclude_pad"],
)
def test_avg_pool_hand_computed(include_pad, expected):
    x = small_image([[1, 2], [3, 4]])
    out = cconv.avg_pool2d(x, *SMALL.args, **SMALL.kwargs, count_include_pad=include_pad)
    np.testing.assert_array_equal(out[0, 0], expected)


def test_avg_pool_default_counts_padding():
    x = small_image([[1, 2], [3, 4]])
    np.testing.assert_array_equal(
        cconv.avg_pool2d(x, 2, 2, 1, 1), cconv.avg_pool2d(x, 2, 2, 1, 1, count_include_pad=True)
    )


@pytest.mark.parametrize(
    "include_pad, expected",
    # each pixel is in 4 windows: 4 * 1/4, or 1/1 + 1/2 + 1/2 + 1/4
    [(True, 1.0), (False, 2.25)],
    ids=["include_pad", "exclude_pad"],
)
def test_avg_pool_backward_hand_computed(include_pad, expected):
    dx = cconv.avg_pool2d_backward(
        np.ones((1, 1, 3, 3)),
        SMALL.shape,
        *SMALL.args,
        **SMALL.kwargs,
        count_include_pad=include_pad,
    )
    np.testing.assert_array_equal(dx, np.full(SMALL.shape, expected))


# --------------------------------------------------------------------------
# Gradients: backward == central differences of forward (float64)
# --------------------------------------------------------------------------

GRADIENT_GEOMETRIES = (
    Geometry((2, 2, 4, 4), 2, 2, 2, 0),
    Geometry((1, 2, 5, 6), 3, 3, 1, 1),
    Geometry((2, 1, 6, 5), 3, 2, (2, 1), (1, 1)),
    Geometry((1, 1, 7, 7), 3, 3, 2, 1),
    Geometry((1, 2, 5, 4), 4, 2, (1, 2), (2, 0)),
)


def assert_gradient(forward, backward, x, dout):
    """``backward(dout)`` is the gradient of ``sum(forward(x) * dout)``."""
    numerical = numerical_gradient(lambda v: np.vdot(forward(v), dout), x, eps=0.25)
    np.testing.assert_allclose(backward(dout), numerical, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("geom", GRADIENT_GEOMETRIES, ids=str)
def test_max_pool_gradient(rng, geom):
    # distinct values spaced by 1, so steps of 0.25 never change the argmax
    x = distinct_values(rng, geom.shape)
    _, argmax = cconv.max_pool2d(x, *geom.args, **geom.kwargs)
    assert_gradient(
        lambda v: cconv.max_pool2d(v, *geom.args, **geom.kwargs)[0],
        lambda d: cconv.max_pool2d_backward(d, argmax, geom.shape, *geom.args, **geom.kwargs),
        x,
        rng.standard_normal(geom.out_shape),
    )


@count_include_pad
@pytest.mark.parametrize("geom", GRADIENT_GEOMETRIES, ids=str)
def test_avg_pool_gradient(rng, geom, include_pad):
    window = dict(geom.kwargs, count_include_pad=include_pad)
    assert_gradient(
        lambda v: cconv.avg_pool2d(v, *geom.args, **window),
        lambda d: cconv.avg_pool2d_backward(d, geom.shape, *geom.args, **window),
        rng.standard_normal(geom.shape),
        rng.standard_normal(geom.out_shape),
    )


# --------------------------------------------------------------------------
# Empty batch or channels
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5), (0, 0, 5, 5)])
def test_empty_batch_or_channels(float_dtype, shape):
    geom = Geometry(shape, 3, 2, (2, 1), 1)
    x, dout = np.zeros(shape, float_dtype), np.zeros(geom.out_shape, float_dtype)
    argmax = np.zeros(geom.out_shape, np.int64)
    out, argmax_out = cconv.max_pool2d(x, *geom.args, **geom.kwargs)
    assert_result_array(out, geom.out_shape, float_dtype)
    assert_result_array(argmax_out, geom.out_shape, np.int64)
    assert_result_array(cconv.avg_pool2d(x, *geom.args, **geom.kwargs), geom.out_shape, float_dtype)
    dx = cconv.max_pool2d_backward(dout, argmax, shape, *geom.args, **geom.kwargs)
    assert_result_array(dx, shape, float_dtype)
    assert_result_array(
        cconv.avg_pool2d_backward(dout, shape, *geom.args, **geom.kwargs), shape, float_dtype
    )
