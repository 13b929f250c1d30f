"""cconv.im2col against the book's im2col (tests/reference.py), dilated filters included."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cconv

import reference as ref
from cconv_testutils import (
    CONV_GEOMETRIES,
    DILATED_GEOMETRIES,
    PROPERTY_SETTINGS,
    geometries,
    input_dtypes,
    layouts,
    random_array,
    result_dtype,
    seeds,
    with_layout,
    with_special_values,
)


def check_im2col(x, geom):
    """im2col of ``x`` equals the reference exactly (it only copies values)."""
    col = cconv.im2col(x, *geom.args, **geom.kwargs)
    expected_dtype = result_dtype(np.asarray(x).dtype)
    assert col.dtype == expected_dtype
    assert col.shape == geom.col_shape
    assert col.flags.c_contiguous
    expected = ref.im2col(np.asarray(x).astype(expected_dtype), *geom.args, **geom.kwargs)
    np.testing.assert_array_equal(col, expected)


@pytest.mark.parametrize("shape, expected", [((1, 3, 7, 7), (9, 75)), ((10, 3, 7, 7), (90, 75))])
def test_book_shapes(rng, shape, expected):
    """The book's examples: a 5x5 filter over 3x7x7 images gives 9 (or 90) rows of 75."""
    x = rng.random(shape)
    col = cconv.im2col(x, 5, 5, stride=1, pad=0)
    assert col.shape == expected
    np.testing.assert_array_equal(col, ref.im2col(x, 5, 5, stride=1, pad=0))


def test_hand_computed():
    """A 2x2 filter with stride 2 cuts a 4x4 image into its four quadrants."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    expected = [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    np.testing.assert_array_equal(cconv.im2col(x, 2, 2, stride=2), expected)


def test_hand_computed_padding_and_column_order():
    """Columns run (c, ky, kx), rows (n, oy, ox); padding reads as zero."""
    x = np.array([1.0, 2.0]).reshape(1, 2, 1, 1)  # two channels, one pixel
    col = cconv.im2col(x, 1, 3, stride=1, pad=(0, 1))
    # One row per output pixel (out_w = 1 + 2*1 - 3 + 1 = 1), columns c0:[0,1,0] c1:[0,2,0]
    np.testing.assert_array_equal(col, [[0, 1, 0, 0, 2, 0]])


@pytest.mark.parametrize("geom", CONV_GEOMETRIES, ids=str)
def test_matches_reference(rng, geom, float_dtype, layout, n_threads):
    check_im2col(with_layout(random_array(rng, geom.shape, float_dtype), layout), geom)


@pytest.mark.parametrize("geom", CONV_GEOMETRIES[2:5], ids=str)
def test_dtype_policy(rng, geom, input_dtype):
    """float16 -> float32, integers and bool -> float64, float32/64 kept."""
    check_im2col(random_array(rng, geom.shape, input_dtype), geom)


def test_matches_brute_force(rng):
    geom = CONV_GEOMETRIES[3]
    x = rng.standard_normal(geom.shape)
    np.testing.assert_array_equal(
        cconv.im2col(x, *geom.args, **geom.kwargs), ref.im2col_loops(x, *geom.args, **geom.kwargs)
    )


def test_array_like_input():
    """Nested lists are array_like input (integers -> float64)."""
    x = np.arange(2 * 2 * 3 * 3).reshape(2, 2, 3, 3)
    col = cconv.im2col(x.tolist(), 2, 2, stride=1, pad=1)
    assert col.dtype == np.float64
    np.testing.assert_array_equal(col, ref.im2col(x.astype(np.float64), 2, 2, 1, 1))


def test_zero_stride_broadcast_input():
    """A read-only view with zero strides (np.broadcast_to) is valid input."""
    row = np.arange(5.0)
    x = np.broadcast_to(row, (2, 3, 4, 5))
    np.testing.assert_array_equal(cconv.im2col(x, 3, 2, pad=1), ref.im2col(np.array(x), 3, 2, 1, 1))


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5), (0, 0, 5, 5)])
def test_empty_batch_or_channels(float_dtype, shape):
    col = cconv.im2col(np.zeros(shape, float_dtype), 3, 2, stride=(1, 2), pad=1)
    n, c = shape[:2]
    assert col.shape == (n * 5 * 3, c * 3 * 2)
    assert col.dtype == float_dtype


def test_integer_stride_and_pad_forms_agree(rng):
    """``stride=s, pad=p`` is the same as ``stride=(s, s), pad=(p, p)``."""
    x = rng.standard_normal((2, 2, 7, 6))
    np.testing.assert_array_equal(
        cconv.im2col(x, 3, 3, stride=2, pad=1), cconv.im2col(x, 3, 3, stride=(2, 2), pad=(1, 1))
    )


@PROPERTY_SETTINGS
@given(
    geom=geometries(),
    dtype=input_dtypes,
    layout=layouts,
    seed=seeds,
    special=st.sampled_from([0.0, 0.3]),
)
def test_property_matches_reference(geom, dtype, layout, seed, special):
    """Random geometry, dtype and layout; inf and NaN are copied like any value."""
    rng = np.random.default_rng(seed)
    x = with_special_values(rng, random_array(rng, geom.shape, dtype), special)
    check_im2col(with_layout(x, layout), geom)


# --------------------------------------------------------------------------
# Dilation: tap (ky, kx) reads pixel (oy*sh - ph + ky*dh, ox*sw - pw + kx*dw)
# --------------------------------------------------------------------------


def test_hand_computed_dilation():
    """The docstring's example: a 2x2 filter with dilation 2 takes every other pixel."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    expected = [[0, 2, 8, 10], [1, 3, 9, 11], [4, 6, 12, 14], [5, 7, 13, 15]]
    np.testing.assert_array_equal(cconv.im2col(x, 2, 2, dilation=2), expected)


def test_hand_computed_dilation_into_padding():
    """A 1x3 filter, dilation 2, pad 2 over a 1x3 row: taps at -2, 0, 2 then -1, 1, 3, ..."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    col = cconv.im2col(x, 1, 3, pad=(0, 2), dilation=(1, 2))
    # out_w = 3 + 4 - 5 + 1 = 3; window ox starts at ox - 2
    np.testing.assert_array_equal(col, [[0, 1, 3], [0, 2, 0], [1, 3, 0]])


def test_dilation_one_is_the_default(rng):
    x = rng.standard_normal((2, 3, 7, 6))
    expected = cconv.im2col(x, 3, 2, stride=(2, 1), pad=1)
    for dilation in (1, (1, 1), np.int64(1), np.array([1, 1])):
        np.testing.assert_array_equal(cconv.im2col(x, 3, 2, (2, 1), 1, dilation), expected)


def test_dilated_equals_undilated_filter_with_zero_taps(rng):
    """Dilation d is a (d*(k-1)+1)-wide filter of which only every d-th column is kept."""
    x = rng.standard_normal((2, 2, 9, 8))
    dilated = cconv.im2col(x, 3, 2, stride=(1, 2), pad=(1, 0), dilation=(3, 2))
    wide = cconv.im2col(x, 7, 3, stride=(1, 2), pad=(1, 0)).reshape(dilated.shape[0], 2, 7, 3)
    np.testing.assert_array_equal(dilated, wide[:, :, ::3, ::2].reshape(dilated.shape))


@pytest.mark.parametrize("geom", DILATED_GEOMETRIES, ids=str)
def test_dilated_matches_reference(rng, geom, float_dtype, layout, n_threads):
    check_im2col(with_layout(random_array(rng, geom.shape, float_dtype), layout), geom)


@pytest.mark.parametrize("geom", DILATED_GEOMETRIES[1:4], ids=str)
def test_dilated_matches_brute_force(rng, geom):
    x = rng.standard_normal(geom.shape)
    np.testing.assert_array_equal(
        cconv.im2col(x, *geom.args, **geom.kwargs), ref.im2col_loops(x, *geom.args, **geom.kwargs)
    )


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5), (2, 3, 0, 5), (2, 3, 5, 0)])
def test_dilated_empty_input(float_dtype, shape):
    """Empty batch, no channels, or (with padding) no pixels: all-zero windows."""
    col = cconv.im2col(np.zeros(shape, float_dtype), 2, 2, stride=1, pad=2, dilation=(2, 3))
    n, c, h, w = shape
    out_h, out_w = h + 4 - 2, w + 4 - 3
    assert col.shape == (n * out_h * out_w, c * 4)
    assert col.dtype == float_dtype
    assert not col.any()


@PROPERTY_SETTINGS
@given(
    geom=geometries(max_dilation=3),
    dtype=input_dtypes,
    layout=layouts,
    seed=seeds,
    special=st.sampled_from([0.0, 0.3]),
)
def test_property_dilated_matches_reference(geom, dtype, layout, seed, special):
    rng = np.random.default_rng(seed)
    x = with_special_values(rng, random_array(rng, geom.shape, dtype), special)
    check_im2col(with_layout(x, layout), geom)
