"""relu_with_mask / relu_backward: the book's Relu semantics, any shape and layout, bad input refused."""

import numpy as np
import pytest

import cconv
from cconv.kernels.activation import relu_backward, relu_with_mask

from cconv_testutils import LAYOUTS, random_array, with_layout, with_special_values


def book_relu(x):
    """The book's Relu.forward."""
    mask = x <= 0
    out = x.copy()
    out[mask] = 0
    return out, mask


def book_relu_backward(dout, mask):
    """The book's Relu.backward (on a copy: the book writes into dout)."""
    dx = dout.copy()
    dx[mask] = 0
    return dx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (2, 3, 4, 5), (40000,), (5, 3, 70, 50)])
def test_matches_the_book(rng, dtype, shape):
    x = with_special_values(rng, random_array(rng, shape, dtype), 0.05)
    out, mask = relu_with_mask(x)
    want_out, want_mask = book_relu(x)
    assert out.dtype == dtype and mask.dtype == np.bool_
    assert out.shape == mask.shape == x.shape
    assert out.flags.c_contiguous and mask.flags.c_contiguous
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(out, want_out)  # NaN where x is NaN
    dout = with_special_values(rng, random_array(rng, shape, dtype), 0.05)
    dx = relu_backward(dout, mask)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, book_relu_backward(dout, mask))


def test_special_values():
    x = np.array([-1.0, -0.0, 0.0, 2.0, np.nan, np.inf, -np.inf])
    out, mask = relu_with_mask(x)
    np.testing.assert_array_equal(mask, [True, True, True, False, False, False, True])
    np.testing.assert_array_equal(out, [0, 0, 0, 2, np.nan, np.inf, 0])
    # inf and NaN gradients of units that were off give 0, as the book.
    dout = np.array([np.inf, np.nan, -np.inf, 1.0, np.nan, np.inf, 5.0])
    np.testing.assert_array_equal(relu_backward(dout, mask), [0, 0, 0, 1, np.nan, np.inf, 0])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_any_layout(rng, layout):
    x = random_array(rng, (3, 4, 6, 5))
    strided = with_layout(x, layout)
    out, mask = relu_with_mask(strided)
    np.testing.assert_array_equal(out, book_relu(x)[0])
    dout = random_array(rng, x.shape)
    np.testing.assert_array_equal(
        relu_backward(with_layout(dout, layout), with_layout(mask, layout)),
        book_relu_backward(dout, mask),
    )


@pytest.mark.parametrize(
    "dtype, result", [(np.float16, np.float32), (np.int32, np.float64), (np.bool_, np.float64)]
)
def test_dtype_policy(dtype, result):
    x = np.array([[-2, 0, 3]]).astype(dtype)
    out, _ = relu_with_mask(x)
    assert out.dtype == result
    np.testing.assert_array_equal(out, np.maximum(x.astype(result), 0))


def test_out_buffers_and_in_place_backward(rng):
    x = random_array(rng, (4, 9))
    out, mask = np.empty_like(x), np.empty(x.shape, bool)
    got_out, got_mask = relu_with_mask(x, out=out, mask_out=mask)
    assert got_out is out and got_mask is mask
    np.testing.assert_array_equal(out, book_relu(x)[0])
    dout = random_array(rng, x.shape)
    want = book_relu_backward(dout, mask)
    assert relu_backward(dout, mask, out=dout) is dout  # the book's in-place update
    np.testing.assert_array_equal(dout, want)


def test_thread_counts_give_identical_results(rng):
    x = random_array(rng, (8, 16, 40, 40), np.float32)
    dout = random_array(rng, x.shape, np.float32)
    results = []
    try:
        for threads in (1, 2, 3):
            cconv.set_num_threads(threads)
            out, mask = relu_with_mask(x)
            results.append((out, mask, relu_backward(dout, mask)))
    finally:
        cconv.set_num_threads(None)
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: relu_with_mask(np.ones(3, complex)), TypeError, "x must have a real dtype"),
        (lambda: relu_with_mask(["a", "b"]), TypeError, "x must"),
        (lambda: relu_with_mask(np.ones(3), out=np.ones(4)), ValueError, "out must have shape"),
        (lambda: relu_with_mask(np.ones(3), out=np.ones(3, np.float32)), TypeError, "out must have dtype"),
        (lambda: relu_with_mask(np.ones(3), mask_out=np.ones(3)), TypeError, "mask_out must have dtype bool"),
        (lambda: relu_with_mask(np.ones((3, 2)), out=np.ones((2, 3)).T), ValueError, "C-contiguous"),
        (lambda: relu_backward(np.ones(3), np.ones(3)), TypeError, "mask must be a numpy.ndarray of bool"),
        (lambda: relu_backward(np.ones(3), [True] * 3), TypeError, "mask must be a numpy.ndarray of bool"),
        (lambda: relu_backward(np.ones(3), np.ones(4, bool)), ValueError, "mask must have the shape"),
        (lambda: relu_backward(np.ones(3, complex), np.ones(3, bool)), TypeError, "dout must have a real dtype"),
    ],
)
def test_bad_input(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_out_overlapping_the_input_is_refused():
    x = np.ones(6)
    with pytest.raises(ValueError, match="share memory"):
        relu_with_mask(x, out=x)
    mask = np.zeros(6, bool)
    with pytest.raises(ValueError, match="share memory"):
        relu_backward(x, mask, out=x[:])  # a view of dout, not dout itself
