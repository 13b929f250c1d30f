"""Activation and loss functions of the book's ``common/functions.py``, in NumPy.

Every function keeps the floating dtype of its input: float32 in, float32
out (constants are Python scalars, which NumPy does not let promote an
array). Integer inputs follow NumPy's usual rules (they become float64).
"""

import numpy as np

__all__ = ["cross_entropy_error", "relu", "sigmoid", "softmax"]

#: Added to the probability of the right class before the log, as the book
#: does, so that a probability of 0 gives a large finite loss, not inf.
LOG_EPSILON = 1e-7


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, elementwise.

    The book's formula. For very negative ``x`` the exponential overflows to
    inf and the result is the correct limit 0; the overflow warning is
    silenced.

    Parameters
    ----------
    x : ndarray, any shape
        float32 or float64 (kept).

    Returns
    -------
    ndarray, shape and dtype of ``x``
        Values in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> sigmoid(np.array([0.0, -1000.0, 1000.0]))
    array([0.5, 0. , 1. ])
    """
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def relu(x):
    """Rectified linear unit ``max(0, x)``, elementwise (NaN propagates).

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    ndarray, shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np
    >>> relu(np.array([-2.0, 0.0, 3.0], dtype=np.float32))
    array([0., 0., 3.], dtype=float32)
    """
    return np.maximum(x, 0)


def softmax(x):
    """Softmax over the last axis, numerically stable.

    The maximum of each row is subtracted before the exponential (the book's
    overflow guard), so large scores give no overflow.

    Parameters
    ----------
    x : ndarray, shape (D,) or (N, D)
        Scores; a 1-D array is one sample, a 2-D array a batch (any leading
        axes are treated as batch axes). float32 or float64 (kept).

    Returns
    -------
    ndarray, shape and dtype of ``x``
        Probabilities; each row sums to 1.

    Examples
    --------
    >>> import numpy as np
    >>> softmax(np.array([1000.0, 1000.0]))
    array([0.5, 0.5])
    >>> softmax(np.zeros((2, 4), dtype=np.float32))
    array([[0.25, 0.25, 0.25, 0.25],
           [0.25, 0.25, 0.25, 0.25]], dtype=float32)
    """
    x = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(x)
    e /= np.sum(e, axis=-1, keepdims=True)
    return e


def cross_entropy_error(y, t):
    """Mean cross-entropy of a batch, ``-sum(log(y[n, t_n] + 1e-7)) / N``, as the book.

    Parameters
    ----------
    y : ndarray, shape (D,) or (N, D)
        Probabilities (the output of :func:`softmax`); 1-D is one sample.
    t : ndarray
        The right classes, either as indices (shape (N,), or a scalar / shape
        (1,) for one sample) or one-hot (the shape of ``y``). One-hot labels
        are recognised as the book does: ``t.size == y.size``.

    Returns
    -------
    loss : numpy scalar, dtype of ``y``

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[0.5, 0.5], [0.25, 0.75]])
    >>> bool(np.isclose(cross_entropy_error(y, np.array([0, 1])),
    ...                 cross_entropy_error(y, np.array([[1, 0], [0, 1]]))))
    True
    """
    y = np.asarray(y)
    t = np.asarray(t)
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:  # one-hot labels -> indices
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t.reshape(batch_size)] + LOG_EPSILON)) / batch_size
