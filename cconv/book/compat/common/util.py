"""The book's ``common/util.py``: cconv's ``im2col``/``col2im``, and the book's small helpers.

:func:`cconv.im2col` and :func:`cconv.col2im` take the book's arguments
(``im2col(input_data, filter_h, filter_w, stride=1, pad=0)``, ``col2im(col,
input_shape, filter_h, filter_w, stride=1, pad=0)``) and give its layout (rows (n, oy,
ox), columns (c, ky, kx)); unlike the book's, they keep float32 float32.
``smooth_curve``, ``shuffle_dataset`` and ``conv_output_size`` follow the book.
"""

import operator

import numpy as np

from cconv import col2im, im2col
from cconv._validation import output_length

__all__ = ["col2im", "conv_output_size", "im2col", "shuffle_dataset", "smooth_curve"]

#: Taps of the window of :func:`smooth_curve` (odd), as the book.
_SMOOTH_WINDOW = 11


def smooth_curve(x):
    """Smooth a curve (a loss history) for plotting, as the book does.

    A normalised Kaiser window of 11 taps (beta 2) slid over ``x``, whose ends are
    mirrored so that the result has ``len(x)`` points.

    Parameters
    ----------
    x : 1-D array_like
        At least 11 values.

    Returns
    -------
    ndarray of float64, shape (len(x),)
    """
    n = _SMOOTH_WINDOW
    x = np.asarray(x)
    padded = np.r_[x[n - 1 : 0 : -1], x, x[-1:-n:-1]]
    window = np.kaiser(n, 2)
    y = np.convolve(window / window.sum(), padded, mode="valid")
    half = n // 2
    return y[half : len(y) - half]


def shuffle_dataset(x, t):
    """``x`` and ``t`` in one random order (drawn from the global ``np.random``, as the book).

    Parameters
    ----------
    x : ndarray, shape (N, ...)
        Samples.
    t : ndarray, shape (N, ...)
        Their labels.

    Returns
    -------
    x, t : ndarray
        Shuffled copies, still paired.
    """
    permutation = np.random.permutation(x.shape[0])
    return x[permutation], t[permutation]


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """``(input_size + 2*pad - filter_size) / stride + 1``, a float as the book's (true division)."""
    return output_length(input_size, filter_size, stride, pad, divide=operator.truediv)
