"""Plain-NumPy references of the book's layers, for tests/test_layers.py.

Each function follows the book's ``common/layers.py`` algorithm with the
NumPy im2col/col2im of ``reference.py`` (never the cconv kernels), and
returns what the layer's forward or backward returns (backward ones also
the parameter gradients). They compute in the dtype they are given. The
convolution and pooling layers are ``reference.py``'s ``book_*`` functions
(the benchmarks time them too), under the names the tests use.

Two references are independent formulations rather than the book's code,
so that they check the layer's algorithm too: :func:`batchnorm_backward`
uses the closed form of the batch-norm gradient, and :func:`lrn_loops`
evaluates the LRN formula one element at a time.
"""

import itertools

import numpy as np

import reference as ref

__all__ = [
    "affine",
    "affine_backward",
    "avg_pool",
    "batchnorm_backward",
    "batchnorm_train",
    "conv",
    "conv_backward",
    "dropout",
    "lrn_loops",
    "max_pool",
    "relu_book",
    "sigmoid",
    "softmax_with_loss",
]


# --------------------------------------------------------------------------
# Convolution and pooling: the book's layers of reference.py
# --------------------------------------------------------------------------

#: The book's ``Convolution.forward``: ``(N, FN, out_h, out_w)``.
conv = ref.book_conv2d
#: The book's ``Convolution.backward``: ``(dx, dW, db)``.
conv_backward = ref.book_conv2d_backward
#: The book's ``Pooling.forward``: ``(out, arg_max)``, arg_max flat in (n, oy, ox, c) order;
#: ``pad_value`` (the book's 0; cconv's documented padding is -inf).
max_pool = ref.book_max_pool2d
#: Average pooling in the book's style (im2col, mean of each window; zeros count).
avg_pool = ref.book_avg_pool2d


# --------------------------------------------------------------------------
# Activations, affine, loss, dropout
# --------------------------------------------------------------------------


def relu_book(x, dout):
    """The book's ``Relu`` forward then backward: ``(out, dx)``; zeroes ``dout`` in place."""
    mask = x <= 0
    out = x.copy()
    out[mask] = 0
    dout[mask] = 0
    return out, dout


def sigmoid(x, dout):
    """The book's ``Sigmoid`` forward then backward: ``(out, dx)``."""
    out = 1 / (1 + np.exp(-x))
    return out, dout * (1.0 - out) * out


def affine(x, W, b):
    """The book's ``Affine.forward``."""
    return np.dot(x.reshape(x.shape[0], -1), W) + b


def affine_backward(dout, x, W):
    """The book's ``Affine.backward``: ``(dx, dW, db)``, dx in the shape of ``x``."""
    dx = np.dot(dout, W.T)
    dW = np.dot(x.reshape(x.shape[0], -1).T, dout)
    return dx.reshape(*x.shape), dW, np.sum(dout, axis=0)


def softmax_with_loss(x, t):
    """The book's ``SoftmaxWithLoss`` forward then ``backward(1)``: ``(loss, dx)``.

    ``softmax`` as the book's (a transposed max-subtraction), one-hot labels
    recognised by ``t.size == y.size``.
    """
    z = x.T - np.max(x.T, axis=0)
    y = (np.exp(z) / np.sum(np.exp(z), axis=0)).T
    batch_size = y.shape[0]
    index = t.argmax(axis=1) if t.size == y.size else t
    loss = -np.sum(np.log(y[np.arange(batch_size), index] + 1e-7)) / batch_size
    if t.size == y.size:
        dx = (y - t) / batch_size
    else:
        dx = y.copy()
        dx[np.arange(batch_size), t] -= 1
        dx = dx / batch_size
    return loss, dx


def dropout(x, dout, noise, dropout_ratio):
    """The book's ``Dropout`` in training, given its uniform ``noise``: ``(out, dx)``."""
    mask = noise > dropout_ratio
    return x * mask, dout * mask


# --------------------------------------------------------------------------
# Batch normalisation and LRN
# --------------------------------------------------------------------------


def batchnorm_train(x, gamma, beta, momentum, running_mean, running_var):
    """The book's training forward on ``x.reshape(N, -1)``: ``(out, running_mean, running_var)``."""
    x2 = x.reshape(x.shape[0], -1)
    mu = x2.mean(axis=0)
    xc = x2 - mu
    var = np.mean(xc**2, axis=0)
    out = gamma * (xc / np.sqrt(var + 10e-7)) + beta
    running_mean = momentum * running_mean + (1 - momentum) * mu
    running_var = momentum * running_var + (1 - momentum) * var
    return out.reshape(x.shape), running_mean, running_var


def batchnorm_backward(dout, x, gamma):
    """Closed-form batch-norm gradient: ``(dx, dgamma, dbeta)``.

    ``dx = gamma / (N * std) * (N * dout - sum(dout) - xn * sum(dout * xn))``,
    an independent formulation of the book's step-by-step backward.
    """
    x2 = x.reshape(x.shape[0], -1)
    d2 = dout.reshape(x2.shape)
    n = x2.shape[0]
    std = np.sqrt(x2.var(axis=0) + 10e-7)
    xn = (x2 - x2.mean(axis=0)) / std
    dgamma = np.sum(d2 * xn, axis=0)
    dbeta = np.sum(d2, axis=0)
    dx = gamma / (n * std) * (n * d2 - dbeta - xn * dgamma)
    return dx.reshape(x.shape), dgamma, dbeta


def lrn_loops(x, n=5, k=2.0, alpha=1e-4, beta=0.75):
    """LRN by its formula, one element at a time, in float64.

    ``out[b, c, ...] = x[b, c, ...] / (k + alpha * sum_j x[b, j, ...]**2) ** beta``
    over ``j`` from ``max(0, c - n//2)`` to ``min(C-1, c + (n-1)//2)``.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    channels = x.shape[1]
    for index in itertools.product(*(range(s) for s in x.shape)):
        b, c, rest = index[0], index[1], index[2:]
        lo, hi = max(0, c - n // 2), min(channels - 1, c + (n - 1) // 2)
        energy = sum(x[(b, j) + rest] ** 2 for j in range(lo, hi + 1))
        out[index] = x[index] / (k + alpha * energy) ** beta
    return out
