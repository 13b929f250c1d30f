"""cconv.functions: softmax, cross_entropy_error, sigmoid, relu (the book's formulas)."""

import warnings

import numpy as np
import pytest

from cconv.functions import cross_entropy_error, relu, sigmoid, softmax

from cconv_testutils import assert_close, random_array


def test_softmax_matches_definition(rng, float_dtype):
    x = random_array(rng, (4, 6), float_dtype)
    y = softmax(x)
    x64 = x.astype(np.float64)
    expected = np.exp(x64) / np.exp(x64).sum(axis=1, keepdims=True)
    assert y.dtype == float_dtype
    assert y.shape == x.shape
    assert_close(y, expected, terms=6)
    assert_close(y.sum(axis=1), np.ones(4), terms=6)


def test_softmax_one_sample_equals_a_row(rng, float_dtype):
    x = random_array(rng, (5,), float_dtype)
    np.testing.assert_array_equal(softmax(x), softmax(x[np.newaxis])[0])


def test_softmax_is_shift_invariant_and_stable(float_dtype):
    x = np.array([[1000.0, 999.0, -1000.0], [-5000.0, -5000.0, -5000.0]], dtype=float_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow
        y = softmax(x)
    e = np.exp(-1.0)
    assert_close(y[0], np.array([1 / (1 + e), e / (1 + e), 0.0]), terms=3)
    assert_close(y[1], np.full(3, 1 / 3), terms=3)


def test_softmax_leaves_input_untouched(rng):
    x = random_array(rng, (3, 4))
    before = x.copy()
    softmax(x)
    np.testing.assert_array_equal(x, before)


def test_cross_entropy_error_book_formula(rng, float_dtype):
    y = softmax(random_array(rng, (5, 4), float_dtype))
    t = rng.integers(0, 4, 5)
    loss = cross_entropy_error(y, t)
    y64 = y.astype(np.float64)
    expected = -np.sum(np.log(y64[np.arange(5), t] + 1e-7)) / 5
    assert loss.dtype == float_dtype
    assert_close(np.asarray(loss), expected, terms=5)
    # one-hot labels, of any integer or float dtype, give the same loss
    for one_hot in (np.eye(4, dtype=np.uint8)[t], np.eye(4)[t]):
        assert cross_entropy_error(y, one_hot) == loss


def test_cross_entropy_error_one_sample(rng):
    y = softmax(random_array(rng, (6,)))
    expected = -np.log(y[3] + 1e-7)
    np.testing.assert_allclose(cross_entropy_error(y, 3), expected, rtol=1e-15)
    np.testing.assert_allclose(cross_entropy_error(y, np.eye(6)[3]), expected, rtol=1e-15)


def test_cross_entropy_error_zero_probability_is_finite():
    y = np.array([[1.0, 0.0]])
    assert cross_entropy_error(y, np.array([1])) == pytest.approx(-np.log(1e-7))


def test_sigmoid(float_dtype):
    x = np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0], dtype=float_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp overflow for -1000 is silenced
        y = sigmoid(x)
    assert y.dtype == float_dtype
    assert_close(y, np.array([0.0, 1 / (1 + np.exp(2.0)), 0.5, 1 / (1 + np.exp(-2.0)), 1.0]))


def test_relu(float_dtype):
    x = np.array([-3.0, -0.0, 0.0, 2.5, np.nan], dtype=float_dtype)
    y = relu(x)
    assert y.dtype == float_dtype
    np.testing.assert_array_equal(y, np.array([0.0, 0.0, 0.0, 2.5, np.nan]))
