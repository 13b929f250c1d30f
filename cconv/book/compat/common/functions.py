"""The book's ``common/functions.py``: cconv's functions, and the book's one-liners cconv lacks.

``sigmoid``, ``relu``, ``softmax`` and ``cross_entropy_error`` are
:mod:`cconv.functions`' (dtype-preserving, same values). The others are the book's
formulas, here because cconv has no use for them.
"""

import numpy as np

from cconv.functions import cross_entropy_error, relu, sigmoid, softmax

__all__ = [
    "cross_entropy_error",
    "identity_function",
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "softmax_loss",
    "step_function",
    "sum_squared_error",
]


def identity_function(x):
    """``x`` itself (the book's output activation for regression)."""
    return x


def step_function(x):
    """1 where ``x > 0``, else 0, as a Python-``int`` array (the book's)."""
    return np.array(x > 0, dtype=int)


def sigmoid_grad(x):
    """Derivative of :func:`sigmoid` at ``x``: ``(1 - sigmoid(x)) * sigmoid(x)``."""
    s = sigmoid(x)
    return (1.0 - s) * s


def relu_grad(x):
    """Derivative of :func:`relu` as the book takes it: 1 where ``x >= 0``, else 0 (dtype of ``x``)."""
    grad = np.zeros_like(x)
    grad[x >= 0] = 1
    return grad


def sum_squared_error(y, t):
    """``0.5 * sum((y - t)**2)`` over all entries (the book's, not averaged over the batch)."""
    return 0.5 * np.sum((y - t) ** 2)


def softmax_loss(X, t):
    """``cross_entropy_error(softmax(X), t)``."""
    return cross_entropy_error(softmax(X), t)
