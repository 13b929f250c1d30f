"""cconv.col2im against the book's col2im (tests/reference.py), and its adjointness,
dilated filters included."""

import numpy as np
import pytest
from hypothesis import given

import cconv

import reference as ref
from cconv_testutils import (
    CONV_GEOMETRIES,
    DILATED_GEOMETRIES,
    PROPERTY_SETTINGS,
    assert_close,
    geometries,
    input_dtypes,
    layouts,
    random_array,
    result_dtype,
    seeds,
    with_layout,
)


def check_col2im(col, geom):
    """col2im of ``col`` matches the reference up to summation order."""
    img = cconv.col2im(col, geom.shape, *geom.args, **geom.kwargs)
    expected_dtype = result_dtype(np.asarray(col).dtype)
    assert img.dtype == expected_dtype
    assert img.shape == geom.shape
    assert img.flags.c_contiguous
    expected = ref.col2im(np.asarray(col, dtype=np.float64), geom.shape, *geom.args, **geom.kwargs)
    assert_close(img, expected, terms=geom.overlap)


def test_book_shapes(rng):
    """The book's 5x5 example maps (9, 75) back to (1, 3, 7, 7)."""
    col = rng.random((9, 75))
    img = cconv.col2im(col, (1, 3, 7, 7), 5, 5, stride=1, pad=0)
    assert img.shape == (1, 3, 7, 7)
    assert_close(img, ref.col2im(col, (1, 3, 7, 7), 5, 5), terms=25)


def test_hand_computed_overlap_counts():
    """col2im of ones counts how many windows cover each pixel."""
    col = np.ones((4, 4))  # 2x2 windows, stride 1, over a 3x3 image
    expected = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    np.testing.assert_array_equal(cconv.col2im(col, (1, 1, 3, 3), 2, 2)[0, 0], expected)


def test_hand_computed_padding_is_dropped():
    """Column entries that fall on padding are discarded."""
    col = np.arange(1.0, 10.0).reshape(1, 9)  # one 3x3 window over a 1x1 image, pad 1
    np.testing.assert_array_equal(cconv.col2im(col, (1, 1, 1, 1), 3, 3, pad=1), [[[[5.0]]]])


@pytest.mark.parametrize("geom", CONV_GEOMETRIES, ids=str)
def test_matches_reference(rng, geom, float_dtype, layout, n_threads):
    check_col2im(with_layout(random_array(rng, geom.col_shape, float_dtype), layout), geom)


@pytest.mark.parametrize("geom", CONV_GEOMETRIES[2:5], ids=str)
def test_dtype_policy(rng, geom, input_dtype):
    """float16 -> float32, integers and bool -> float64, float32/64 kept."""
    check_col2im(random_array(rng, geom.col_shape, input_dtype), geom)


def test_matches_brute_force(rng):
    geom = CONV_GEOMETRIES[4]
    col = rng.standard_normal(geom.col_shape)
    assert_close(
        cconv.col2im(col, geom.shape, *geom.args, **geom.kwargs),
        ref.col2im_loops(col, geom.shape, *geom.args, **geom.kwargs),
        terms=geom.overlap,
    )


def test_inverts_im2col_without_overlap(rng, float_dtype):
    """With stride == filter and no pad, windows tile the image: col2im(im2col(x)) == x."""
    x = random_array(rng, (2, 3, 6, 8), float_dtype)
    col = cconv.im2col(x, 3, 2, stride=(3, 2))
    np.testing.assert_array_equal(cconv.col2im(col, x.shape, 3, 2, stride=(3, 2)), x)


def test_input_shape_accepts_any_int_sequence(rng):
    """input_shape may be a tuple, a list or an ndarray of integers."""
    geom = CONV_GEOMETRIES[2]
    col = rng.standard_normal(geom.col_shape)
    expected = cconv.col2im(col, geom.shape, *geom.args, **geom.kwargs)
    for shape in (list(geom.shape), np.array(geom.shape), tuple(np.int64(s) for s in geom.shape)):
        np.testing.assert_array_equal(cconv.col2im(col, shape, *geom.args, **geom.kwargs), expected)


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5)])
def test_empty_batch_or_channels(float_dtype, shape):
    n, c = shape[:2]
    col = np.zeros((n * 5 * 3, c * 3 * 2), float_dtype)
    img = cconv.col2im(col, shape, 3, 2, stride=(1, 2), pad=1)
    assert img.shape == shape
    assert img.dtype == float_dtype


def assert_adjoint(geom, seed):
    """<im2col(x), y> == <x, col2im(y)> in float64."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(geom.shape), rng.standard_normal(geom.col_shape)
    col = cconv.im2col(x, *geom.args, **geom.kwargs)
    lhs = np.vdot(col, y)
    rhs = np.vdot(x, cconv.col2im(y, geom.shape, *geom.args, **geom.kwargs))
    # atol covers rounding when the sum happens to cancel to nearly zero
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-13 * np.vdot(abs(col), abs(y)))


@pytest.mark.parametrize("geom", CONV_GEOMETRIES, ids=str)
def test_adjoint_identity(geom):
    assert_adjoint(geom, seed=0)


@PROPERTY_SETTINGS
@given(geom=geometries(), seed=seeds)
def test_property_adjoint_identity(geom, seed):
    assert_adjoint(geom, seed)


@PROPERTY_SETTINGS
@given(geom=geometries(), dtype=input_dtypes, layout=layouts, seed=seeds)
def test_property_matches_reference(geom, dtype, layout, seed):
    col = random_array(np.random.default_rng(seed), geom.col_shape, dtype)
    check_col2im(with_layout(col, layout), geom)


# --------------------------------------------------------------------------
# Dilation
# --------------------------------------------------------------------------


def test_hand_computed_dilated_overlap_counts():
    """col2im of ones with a 2x2 filter of dilation 2 over 4x4: each pixel is seen once
    per window that has a tap on it."""
    col = np.ones((4, 4))
    np.testing.assert_array_equal(cconv.col2im(col, (1, 1, 4, 4), 2, 2, dilation=2), np.ones((1, 1, 4, 4)))
    # 3x3 image, 2x2 filter, dilation 2, pad 1: 3x3 windows, taps at -1 and 1 from each start
    counts = cconv.col2im(np.ones((9, 4)), (1, 1, 3, 3), 2, 2, pad=1, dilation=2)[0, 0]
    np.testing.assert_array_equal(counts, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize("geom", DILATED_GEOMETRIES, ids=str)
def test_dilated_matches_reference(rng, geom, float_dtype, layout, n_threads):
    check_col2im(with_layout(random_array(rng, geom.col_shape, float_dtype), layout), geom)


@pytest.mark.parametrize("geom", DILATED_GEOMETRIES[1:4], ids=str)
def test_dilated_matches_brute_force(rng, geom):
    col = rng.standard_normal(geom.col_shape)
    assert_close(
        cconv.col2im(col, geom.shape, *geom.args, **geom.kwargs),
        ref.col2im_loops(col, geom.shape, *geom.args, **geom.kwargs),
        terms=geom.overlap,
    )


def test_dilated_inverts_im2col_when_windows_interleave(rng, float_dtype):
    """A 2x3 filter with dilation 2 over 4x6 images: the windows at (0, 0), (0, 1),
    (1, 0) and (1, 1) interleave their taps and cover every pixel once, so
    col2im(im2col(x)) == x exactly."""
    x = random_array(rng, (2, 3, 4, 6), float_dtype)
    col = cconv.im2col(x, 2, 3, dilation=2)
    assert col.shape == (2 * 2 * 2, 3 * 2 * 3)
    np.testing.assert_array_equal(cconv.col2im(col, x.shape, 2, 3, dilation=2), x)


@pytest.mark.parametrize("geom", DILATED_GEOMETRIES, ids=str)
def test_dilated_adjoint_identity(geom):
    assert_adjoint(geom, seed=1)


@PROPERTY_SETTINGS
@given(geom=geometries(max_dilation=3), seed=seeds)
def test_property_dilated_adjoint_identity(geom, seed):
    assert_adjoint(geom, seed)


@PROPERTY_SETTINGS
@given(geom=geometries(max_dilation=3), dtype=input_dtypes, layout=layouts, seed=seeds)
def test_property_dilated_matches_reference(geom, dtype, layout, seed):
    col = random_array(np.random.default_rng(seed), geom.col_shape, dtype)
    check_col2im(with_layout(col, layout), geom)
