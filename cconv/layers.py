"""Layers of the book's ``common/layers.py``, with convolution and pooling on the cconv kernels.

Every layer has ``forward(x)`` (``forward(x, train_flg=True)`` for
:class:`Dropout` and :class:`BatchNormalization`, ``forward(x, t)`` for
:class:`SoftmaxWithLoss`) and ``backward(dout)``, and keeps the book's
attribute names (``W``, ``b``, ``dW``, ``db``, ``x``, ``col``, ``col_W``,
``arg_max``, ``mask``, ...), so a script written for the book runs unchanged.
The layers keep the book's convention that ``backward`` uses what the most
recent ``forward`` stored.

dtypes: a float32 input stays float32 through forward and backward (and the
gradients of float32 parameters are float32): constants are Python scalars
and no intermediate is promoted. Mixing dtypes (a float32 input with float64
parameters) follows NumPy's promotion. Convolution and pooling inputs follow
the kernels' policy (float16 becomes float32, integers become float64).

Memory: the convolution and pooling kernels read their inputs through
strides, so no input is copied to make it contiguous (the ReLU kernels copy a
non-contiguous input once), and the convolution keeps no unfolded copy of
its input between forward and backward. :class:`Convolution` returns a C-contiguous (N, FN,
out_h, out_w) array (the book returns a transposed view of an (N, out_h,
out_w, FN) product): the layers after it and their gradients then all keep
one memory order, which makes every pass a contiguous one.

Deviations from the book, all documented on the classes: :class:`Pooling`
pads with -inf instead of 0 (identical for ``pad=0``, which every book
network uses) and stores ``arg_max`` in the kernels' layout;
:class:`Relu` does not overwrite ``dout``; :class:`SoftmaxWithLoss` scales
its gradient by ``dout`` (the book ignores it; equal for the default 1);
:class:`BatchNormalization` makes its running statistics in the input's
floating dtype (the book: float64). :class:`AvgPooling` and :class:`LRN`
are not in the book's code (LRN follows the AlexNet paper).
"""

import numpy as np

from cconv._validation import (
    MAX_WINDOW_PARAM,
    as_layer_input,
    as_pair,
    check_bool,
    check_int,
    check_integral,
    check_pool_padding,
)
from cconv.functions import cross_entropy_error, sigmoid, softmax
from cconv.kernels.activation import relu_backward, relu_with_mask
from cconv.kernels.conv import conv2d, conv2d_backward
from cconv.kernels.im2col import im2col
from cconv.kernels.pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__all__ = [
    "LRN",
    "Affine",
    "AvgPooling",
    "BatchNormalization",
    "Convolution",
    "Dropout",
    "Pooling",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
]

#: Added to the variance before the square root, the book's ``10e-7``.
BN_EPSILON = 10e-7


def _float_dtype(dtype):
    """The floating dtype computations on ``dtype`` use: the kernels' policy.

    float32 and float16 give float32; float64, integers, bools and wider
    floats give float64.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


class _Checked:
    """A layer attribute checked when it is set (at construction or later).

    Reading it gives the value as set (the book's attributes: ``stride`` is
    what the caller passed); the checked, normalised value the kernels take
    is kept in the layer's ``_checked`` dict, so forward and backward check
    nothing again.
    """

    def __init__(self, check):
        self._check = check

    def __set_name__(self, owner, name):
        self._name = name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        return layer.__dict__[self._name]

    def __set__(self, layer, value):
        layer.__dict__.setdefault("_checked", {})[self._name] = self._check(value, self._name)
        layer.__dict__[self._name] = value


def _positive_pair(value, name):
    return as_pair(value, name, 1)


def _non_negative_pair(value, name):
    return as_pair(value, name, 0)


def _window_size(value, name):
    return check_int(value, name, maximum=MAX_WINDOW_PARAM)


# --------------------------------------------------------------------------
# Convolution and pooling (cconv kernels)
# --------------------------------------------------------------------------


class _WeightedLayer:
    """A layer with weights ``W`` and biases ``b``, kept by reference, and their gradients.

    Keeping the caller's arrays (no copy) is what lets an optimizer's in-place
    update of ``params['W1']`` reach the layer, as in the book.
    """

    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.dW = None
        self.db = None


class Convolution(_WeightedLayer):
    """2-D convolution (cross-correlation), forward and backward in compiled kernels.

    ``out[n, f] = sum_c W[f, c] * x[n, c] (windowed) + b[f]``: the book's
    im2col-and-matrix-product layer, run by :func:`cconv.conv2d` and
    :func:`cconv.conv2d_backward`, which unfold the windows tile by tile in
    cache and multiply each tile at once, so no batch-sized ``col`` is made.

    Parameters
    ----------
    W : ndarray, shape (FN, C, FH, FW)
        Filters. Kept by reference: an optimizer that updates it in place is
        seen by the next forward.
    b : ndarray, shape (FN,)
        Biases, kept by reference.
    stride : int or (int, int), default 1
    pad : int or (int, int), default 0
        Zero padding on each side.
    dilation : int or (int, int), default 1
        Step between a filter's taps (not in the book; 1 is the book's layer).

    Attributes
    ----------
    x : ndarray, shape (N, C, H, W)
        The last input (a reference, not a copy).
    dW, db : ndarray
        Gradients of ``W`` and ``b`` after :meth:`backward`, shapes of ``W``
        and ``b``.
    col : ndarray, shape (N*out_h*out_w, C*FH*FW)
        The book's unfolded last input, made by :func:`cconv.im2col` when
        read (the layer itself never needs it).
    col_W : ndarray, shape (C*FH*FW, FN)
        ``W.reshape(FN, -1).T``, a view of ``W``.

    Examples
    --------
    >>> import numpy as np
    >>> conv = Convolution(np.ones((2, 1, 3, 3), np.float32), np.zeros(2, np.float32), pad=1)
    >>> out = conv.forward(np.ones((4, 1, 5, 5), np.float32))
    >>> out.shape, out.dtype, float(out[0, 0, 2, 2]), float(out[0, 0, 0, 0])
    ((4, 2, 5, 5), dtype('float32'), 9.0, 4.0)
    >>> conv.backward(np.ones_like(out)).shape
    (4, 1, 5, 5)
    """

    stride = _Checked(_positive_pair)
    pad = _Checked(_non_negative_pair)
    dilation = _Checked(_positive_pair)

    def __init__(self, W, b, stride=1, pad=0, dilation=1):
        super().__init__(W, b)
        self.stride = stride
        self.pad = pad
        self.dilation = dilation

    def _window(self):
        """The checked (stride, pad, dilation) pairs."""
        checked = self._checked
        return checked["stride"], checked["pad"], checked["dilation"]

    @property
    def col(self):
        if self.x is None:
            return None
        FN, C, FH, FW = self.W.shape
        return im2col(self.x, FH, FW, *self._window())

    @property
    def col_W(self):
        return self.W.reshape(self.W.shape[0], -1).T

    def forward(self, x):
        """Convolve a batch.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W)
            Any strides (read in place).

        Returns
        -------
        out : ndarray, shape (N, FN, out_h, out_w)
            ``out_h = (H + 2*pad_h - FH) // stride_h + 1`` (likewise
            ``out_w``; with dilation, as :func:`cconv.conv2d`; the formula is
            :func:`cconv._validation.output_length`). C-contiguous
            (the book's is a transposed view of an (N, out_h, out_w, FN)
            array; the values are the same).

        Raises
        ------
        ValueError
            If ``x`` is not 4-D, its channels differ from ``W``'s, or the
            filter does not fit the padded input.
        """
        x = as_layer_input(x, 4, "Convolution", self.W.shape)
        out = conv2d(x, self.W, self.b, *self._window())
        self.x = x
        return out

    def backward(self, dout):
        """Gradients of the last forward; sets ``dW`` and ``db``.

        Parameters
        ----------
        dout : ndarray, shape (N, FN, out_h, out_w)

        Returns
        -------
        dx : ndarray, shape (N, C, H, W), C-contiguous
        """
        dx, self.dW, self.db = conv2d_backward(dout, self.x, self.W, *self._window())
        return dx

    def param_backward(self, dout):
        """Set ``dW`` and ``db`` as :meth:`backward` does, without the input's gradient.

        For the first layer of a network, whose input gradient nothing uses
        (:meth:`cconv.nets.Network.gradient` calls this on it): the products
        and the folding that make ``dx`` are skipped.
        """
        _, self.dW, self.db = conv2d_backward(dout, self.x, self.W, *self._window(),
                                              need_input_grad=False)


class _Pooling2d:
    """Window geometry, the stored input and forward/backward shared by the pooling layers.

    Subclasses implement ``_pool(x)`` and ``_unpool(dout)`` with the kernels.
    The window is checked at construction (pad at most half the window
    included) and each attribute again when set later.
    """

    pool_h = _Checked(_window_size)
    pool_w = _Checked(_window_size)
    stride = _Checked(_positive_pair)
    pad = _Checked(_non_negative_pair)

    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        checked = self._checked
        check_pool_padding((checked["pool_h"], checked["pool_w"]), checked["pad"])
        self.x = None

    def _window(self):
        """The checked pool_h, pool_w and (stride, pad) pairs."""
        checked = self._checked
        return checked["pool_h"], checked["pool_w"], checked["stride"], checked["pad"]

    def forward(self, x):
        """Pool each window of each channel.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W)
            Any strides (read in place by the kernel, not copied).

        Returns
        -------
        out : ndarray, shape (N, C, out_h, out_w), C-contiguous, dtype of x
            ``out_h = (H + 2*pad_h - pool_h) // stride_h + 1`` (likewise out_w).
        """
        out = self._pool(x)
        self.x = x
        return out

    def backward(self, dout):
        """Gradient of the last forward with respect to its input.

        Parameters
        ----------
        dout : ndarray, shape (N, C, out_h, out_w)

        Returns
        -------
        dx : ndarray, shape (N, C, H, W), C-contiguous
        """
        return self._unpool(dout, np.shape(self.x))


class Pooling(_Pooling2d):
    """Max pooling on :func:`cconv.max_pool2d` (the book's ``Pooling``).

    Forward takes the maximum of each window; backward routes each ``dout``
    value to the position of its maximum.

    Parameters
    ----------
    pool_h, pool_w : int
        Window height and width.
    stride : int or (int, int), default 1
    pad : int or (int, int), default 0
        At most half the window.

    Attributes
    ----------
    x : ndarray, shape (N, C, H, W)
        The last input (a reference).
    arg_max : ndarray of int64, shape (N, C, out_h, out_w)
        Position ``ky*pool_w + kx`` of each maximum inside its window. The
        book keeps a flat array in (n, oy, ox, c) order (this one transposed
        to (N, out_h, out_w, C) and raveled); only ``backward`` reads it.

    Notes
    -----
    Padding: the kernel pads with -inf, so a padded position is never the
    maximum. The book pads with 0, which differs where a whole window's
    real values are negative and it touches the padding (the book then
    outputs 0). With ``pad=0``, as in every network of the book, the results
    are identical. Ties go to the first position in the window, as
    ``np.argmax``; NaN propagates.

    Examples
    --------
    >>> import numpy as np
    >>> pool = Pooling(2, 2, stride=2)
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> pool.forward(x)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> pool.backward(np.ones((1, 1, 2, 2)))[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    """

    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        super().__init__(pool_h, pool_w, stride, pad)
        self.arg_max = None

    def _pool(self, x):
        out, self.arg_max = max_pool2d(x, *self._window())
        return out

    def _unpool(self, dout, input_shape):
        return max_pool2d_backward(dout, self.arg_max, input_shape, *self._window())


class AvgPooling(_Pooling2d):
    """Average pooling on :func:`cconv.avg_pool2d` (not in the book's code).

    Forward takes the mean of each window; backward spreads each ``dout``
    value evenly over its window.

    Parameters
    ----------
    pool_h, pool_w : int
        Window height and width.
    stride : int or (int, int), default 1
    pad : int or (int, int), default 0
        Zero padding, at most half the window.
    count_include_pad : bool, default True
        Divide by ``pool_h*pool_w`` (True) or by the number of real pixels
        in the window (False).

    Attributes
    ----------
    x : ndarray, shape (N, C, H, W)
        The last input (a reference).

    Examples
    --------
    >>> import numpy as np
    >>> pool = AvgPooling(2, 2, stride=2)
    >>> pool.forward(np.arange(16.0).reshape(1, 1, 4, 4))
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    >>> pool.backward(np.full((1, 1, 2, 2), 4.0))[0, 0, 0]
    array([1., 1., 1., 1.])
    """

    count_include_pad = _Checked(check_bool)

    def __init__(self, pool_h, pool_w, stride=1, pad=0, count_include_pad=True):
        super().__init__(pool_h, pool_w, stride, pad)
        self.count_include_pad = count_include_pad

    def _pool(self, x):
        return avg_pool2d(x, *self._window(), count_include_pad=self._checked["count_include_pad"])

    def _unpool(self, dout, input_shape):
        return avg_pool2d_backward(
            dout, input_shape, *self._window(), count_include_pad=self._checked["count_include_pad"]
        )


# --------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------


class Relu:
    """Rectified linear unit, ``max(0, x)``, on the :mod:`cconv.kernels.activation` kernels.

    Attributes
    ----------
    mask : ndarray of bool, shape of x
        ``x <= 0`` of the last input.

    Notes
    -----
    Unlike the book, :meth:`backward` returns a new array and leaves
    ``dout`` untouched (the book zeroes it in place). Each pass is one
    branch-free sweep of a kernel (the book's boolean indexing takes several,
    with a mispredicted branch per element). The values are the book's,
    NaN included; the output is C-contiguous, in the input's floating dtype
    (integer input gives float64, as the kernels' dtype policy).

    Examples
    --------
    >>> import numpy as np
    >>> relu = Relu()
    >>> relu.forward(np.array([-1.0, 2.0]))
    array([0., 2.])
    >>> dout = np.array([5.0, 5.0])
    >>> relu.backward(dout), dout
    (array([0., 5.]), array([5., 5.]))
    """

    def __init__(self):
        self.mask = None

    def forward(self, x):
        """``x`` with its non-positive entries set to 0 (NaN stays NaN).

        Parameters
        ----------
        x : ndarray, any shape and strides

        Returns
        -------
        out : ndarray, shape of ``x``, C-contiguous
        """
        out, self.mask = relu_with_mask(x)
        return out

    def backward(self, dout):
        """``dout`` where the input was positive, 0 elsewhere (a new array).

        Parameters
        ----------
        dout : ndarray, shape of the last input

        Returns
        -------
        dx : ndarray, shape of ``dout``, C-contiguous
            float32 or float64 (the kernels' dtype policy: float16 gives
            float32, integers float64).
            0 where the unit was off, even where ``dout`` is inf or NaN, as
            the book.
        """
        return relu_backward(dout, self.mask)


class Sigmoid:
    """Logistic function ``1 / (1 + exp(-x))``.

    Attributes
    ----------
    out : ndarray
        The last output, used by backward: ``dx = dout * (1 - out) * out``.

    Examples
    --------
    >>> import numpy as np
    >>> s = Sigmoid()
    >>> s.forward(np.zeros(2, np.float32))
    array([0.5, 0.5], dtype=float32)
    >>> s.backward(np.ones(2, np.float32))
    array([0.25, 0.25], dtype=float32)
    """

    def __init__(self):
        self.out = None

    def forward(self, x):
        """Elementwise sigmoid.

        Parameters
        ----------
        x : ndarray, any shape

        Returns
        -------
        out : ndarray, shape and dtype of ``x``
        """
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout):
        """``dout * (1 - out) * out``.

        Parameters
        ----------
        dout : ndarray, shape of the output

        Returns
        -------
        dx : ndarray
        """
        return dout * (1.0 - self.out) * self.out


# --------------------------------------------------------------------------
# Fully connected, loss and regularisation
# --------------------------------------------------------------------------


class Affine(_WeightedLayer):
    """Fully connected layer ``x @ W + b``; a 4-D input is flattened per sample.

    Parameters
    ----------
    W : ndarray, shape (D, M)
        Weights, kept by reference.
    b : ndarray, shape (M,)
        Biases, kept by reference.

    Attributes
    ----------
    x : ndarray, shape (N, D)
        The last input, flattened to 2-D.
    original_x_shape : tuple
        Shape of the last input (e.g. (N, C, H, W)); ``backward`` returns
        ``dx`` in this shape.
    dW, db : ndarray
        Gradients after :meth:`backward`.

    Examples
    --------
    >>> import numpy as np
    >>> fc = Affine(np.ones((12, 2)), np.zeros(2))
    >>> fc.forward(np.ones((5, 3, 2, 2))).shape
    (5, 2)
    >>> fc.backward(np.ones((5, 2))).shape
    (5, 3, 2, 2)
    """

    def __init__(self, W, b):
        super().__init__(W, b)
        self.original_x_shape = None

    def forward(self, x):
        """``x.reshape(N, -1) @ W + b``.

        Parameters
        ----------
        x : ndarray, shape (N, D) or (N, d1, d2, ...) with d1*d2*... = D

        Returns
        -------
        out : ndarray, shape (N, M)
        """
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        out = np.dot(x, self.W)
        out += self.b
        return out

    def backward(self, dout):
        """Sets ``dW`` and ``db``; returns ``dx`` in the input's shape.

        Parameters
        ----------
        dout : ndarray, shape (N, M)

        Returns
        -------
        dx : ndarray, shape ``original_x_shape``
        """
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SoftmaxWithLoss:
    """Softmax followed by the cross-entropy loss, averaged over the batch.

    The softmax subtracts each row's maximum (no overflow) and the loss
    adds the book's 1e-7 inside the log (a probability of 0 gives a finite
    loss), so the numbers are the book's.

    Attributes
    ----------
    y : ndarray, shape of x
        Softmax of the last input.
    t : ndarray
        The last labels, as given.
    loss : numpy scalar
        The last loss, dtype of ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> layer = SoftmaxWithLoss()
    >>> x = np.array([[0.0, 0.0], [0.0, 0.0]])
    >>> float(layer.forward(x, np.array([0, 1])))  # -log(0.5 + 1e-7)
    0.6931469805599654
    >>> layer.backward()
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])
    """

    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        """Loss of scores ``x`` for labels ``t``.

        Parameters
        ----------
        x : ndarray, shape (N, D) (or (D,) for one sample)
            Scores (logits).
        t : ndarray
            Labels: indices, shape (N,), or one-hot, shape of ``x``.

        Returns
        -------
        loss : numpy scalar, dtype of ``x``
        """
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        """Gradient of the loss with respect to the scores: ``(y - t) / N * dout``.

        Parameters
        ----------
        dout : scalar, default 1
            Gradient of the loss. The book ignores it (it always passes 1);
            here it scales the result, which is the same for 1.

        Returns
        -------
        dx : ndarray, shape and dtype of the last ``x``
        """
        y = self.y.reshape(-1, self.y.shape[-1])  # one sample -> a batch of 1
        batch_size = y.shape[0]
        t = np.asarray(self.t)
        if t.size == y.size:  # one-hot
            dx = y - t.reshape(y.shape).astype(y.dtype, copy=False)
        else:
            dx = y.copy()
            dx[np.arange(batch_size), t.reshape(batch_size)] -= 1
        dx /= batch_size
        if not (np.isscalar(dout) and dout == 1):
            dx *= dout
        return dx.reshape(self.y.shape)


class Dropout:
    """Dropout: drop each unit with probability ``dropout_ratio`` in training.

    As in the book, training multiplies by a 0/1 mask (no rescaling) and
    testing multiplies by ``1 - dropout_ratio``.

    Parameters
    ----------
    dropout_ratio : float, default 0.5
    rng : numpy.random.Generator or numpy.random.RandomState, optional
        Source of the mask, for reproducible runs. By default the mask comes
        from ``np.random.rand`` as in the book (so ``np.random.seed``
        applies).

    Attributes
    ----------
    mask : ndarray of bool
        The last training mask, True where the unit is kept.
    batch_rows : tuple of int or None
        ``None`` (the default): the input is a whole batch. ``(start,
        batch_size)``: the input is rows ``start, start + 1, ...`` of a batch
        of ``batch_size`` rows whose other rows other processes hold
        (data-parallel training, :mod:`cconv.distributed`). Training then
        draws the mask of the whole batch, so that the generator advances as
        for the whole batch, and applies its rows of it: each process drops
        exactly the units one process would drop in its rows.

    Examples
    --------
    >>> import numpy as np
    >>> drop = Dropout(0.5, rng=np.random.default_rng(0))
    >>> x = np.ones(6, np.float32)
    >>> out = drop.forward(x)
    >>> bool(np.array_equal(out, drop.mask)), out.dtype
    (True, dtype('float32'))
    >>> drop.forward(x, train_flg=False)
    array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], dtype=float32)
    """

    def __init__(self, dropout_ratio=0.5, rng=None):
        self.dropout_ratio = dropout_ratio
        self.rng = rng
        self.mask = None
        self.batch_rows = None

    def forward(self, x, train_flg=True):
        """Apply a fresh random mask (training) or the expected scale (test).

        Parameters
        ----------
        x : ndarray, any shape
        train_flg : bool, default True

        Returns
        -------
        out : ndarray, shape and dtype of ``x``
        """
        ratio = float(self.dropout_ratio)
        if train_flg:
            self.mask = self._noise(x.shape) > ratio
            return x * self.mask
        return x * (1.0 - ratio)

    def _noise(self, shape):
        """Uniform [0, 1) noise for an input of ``shape``: its rows of the whole batch's (``batch_rows``)."""
        rows = None
        if self.batch_rows is not None:
            start, batch_size = self.batch_rows
            if not shape or start + shape[0] > batch_size:
                raise ValueError(
                    f"Dropout.batch_rows: rows {start}.. of a batch of {batch_size} cannot hold an "
                    f"input of shape {tuple(shape)}"
                )
            rows = slice(start, start + shape[0])
            shape = (batch_size, *shape[1:])
        noise = np.random.rand(*shape) if self.rng is None else self.rng.random(shape)
        return noise if rows is None else noise[rows]

    def backward(self, dout):
        """``dout`` times the last training mask.

        Parameters
        ----------
        dout : ndarray, shape of the last input

        Returns
        -------
        dx : ndarray, shape and dtype of ``dout``
        """
        return dout * self.mask


class BatchNormalization:
    """Batch normalisation, exactly as the book's ``BatchNormalization``.

    A 2-D input (N, D) is normalised per feature. A 4-D input (N, C, H, W)
    is flattened to (N, C*H*W) and normalised per feature too (the book's
    semantics: one mean and variance per (c, y, x), not per channel), so
    ``gamma``, ``beta`` and the running statistics have C*H*W entries.

    Parameters
    ----------
    gamma, beta : ndarray, shape (D,)
        Scale and shift, kept by reference.
    momentum : float, default 0.9
        ``running = momentum * running + (1 - momentum) * batch_statistic``.
    running_mean, running_var : ndarray, shape (D,), optional
        Start values; by default zeros, made at the first forward in the
        input's floating dtype (the book makes float64 zeros).

    Attributes
    ----------
    input_shape : tuple
        Shape of the last input.
    batch_size : int
    xc, xn, std : ndarray
        Centred input, normalised input, and ``sqrt(var + 10e-7)`` of the
        last training batch.
    dgamma, dbeta : ndarray
        Gradients after :meth:`backward`.

    Examples
    --------
    >>> import numpy as np
    >>> bn = BatchNormalization(np.ones(2), np.zeros(2))
    >>> out = bn.forward(np.array([[1.0, 10.0], [3.0, 30.0]]))
    >>> np.round(out, 3)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> bn.running_mean
    array([0.2, 2. ])
    """

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def forward(self, x, train_flg=True):
        """Normalise with the batch's statistics (training) or the running ones (test).

        Parameters
        ----------
        x : ndarray, shape (N, D) or (N, C, H, W)
        train_flg : bool, default True
            Training also updates ``running_mean`` and ``running_var``.

        Returns
        -------
        out : ndarray, shape of ``x``
        """
        self.input_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        out = self._forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def _forward(self, x, train_flg):
        dtype = _float_dtype(x.dtype)
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1], dtype=dtype)
            self.running_var = np.zeros(x.shape[1], dtype=dtype)
        momentum = float(self.momentum)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + BN_EPSILON)
            xn = xc / std

            self.batch_size = x.shape[0]
            self.xc = xc
            self.xn = xn
            self.std = std
            self.running_mean = momentum * self.running_mean + (1 - momentum) * mu
            self.running_var = momentum * self.running_var + (1 - momentum) * var
        else:
            # The running statistics are cast to the input's dtype, so that
            # float64 statistics (e.g. given by the caller) do not upcast.
            xc = x - np.asarray(self.running_mean, dtype=dtype)
            xn = xc / np.sqrt(np.asarray(self.running_var, dtype=dtype) + BN_EPSILON)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        """Gradient through the last training forward; sets ``dgamma`` and ``dbeta``.

        Parameters
        ----------
        dout : ndarray, shape of the last input

        Returns
        -------
        dx : ndarray, shape of the last input
        """
        if dout.ndim != 2:
            dout = dout.reshape(dout.shape[0], -1)
        dx = self._backward(dout)
        return dx.reshape(*self.input_shape)

    def _backward(self, dout):
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size

        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx


class LRN:
    """Local response normalisation across channels, as AlexNet uses.

    ``out[:, c] = x[:, c] / (k + alpha * S[:, c]) ** beta`` with
    ``S[:, c] = sum(x[:, j]**2 for j in window(c))``, where the window holds
    the ``n`` channels ``c - n//2, ..., c + (n-1)//2`` that exist (clipped
    at the first and last channel). This is the formula of Krizhevsky et al.
    (2012), whose ``alpha`` multiplies the sum itself; Caffe and PyTorch
    divide ``alpha`` by ``n`` (pass ``alpha * n`` here for theirs).

    Parameters
    ----------
    n : int, default 5
        Number of channels in the window, >= 1.
    k, alpha, beta : float, defaults 2, 1e-4, 0.75
        AlexNet's values.

    Attributes
    ----------
    x : ndarray
        The last input.
    scale : ndarray, shape of x
        ``k + alpha * S``.
    out : ndarray
        The last output, ``x * scale ** -beta``.

    Examples
    --------
    >>> import numpy as np
    >>> lrn = LRN(n=3, k=1.0, alpha=1.0, beta=1.0)
    >>> lrn.forward(np.ones((1, 3, 1, 1))).ravel()  # 1/(1+2), 1/(1+3), 1/(1+2)
    array([0.33333333, 0.25      , 0.33333333])
    """

    def __init__(self, n=5, k=2, alpha=1e-4, beta=0.75):
        self.n = check_integral(n, "n")
        self.k = float(k)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.x = None
        self.scale = None
        self.out = None

    def _window_sum(self, a, reverse=False):
        """Sum of ``a`` over each channel window (axis 1), clipped at the ends.

        ``reverse`` sums over the transposed window (the channels whose
        window holds c), which backward needs when ``n`` is even.
        """
        before, after = self.n // 2, (self.n - 1) // 2
        if reverse:
            before, after = after, before
        s = a.copy()
        for d in range(1, before + 1):
            s[:, d:] += a[:, :-d]
        for d in range(1, after + 1):
            s[:, :-d] += a[:, d:]
        return s

    def forward(self, x):
        """Normalise each value by the energy of its neighbouring channels.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W) (or (N, C))

        Returns
        -------
        out : ndarray, shape and dtype of ``x``
        """
        if np.ndim(x) < 2:
            raise ValueError(f"LRN expects channels on axis 1, got shape {np.shape(x)}")
        self.scale = self.k + self.alpha * self._window_sum(x * x)
        self.out = x * self.scale ** -self.beta
        self.x = x
        return self.out

    def backward(self, dout):
        """Exact gradient of the last forward.

        ``dx[c] = dout[c] * scale[c]**-beta - 2*alpha*beta * x[c] *
        sum(dout[j] * out[j] / scale[j] for j whose window holds c)``.

        Parameters
        ----------
        dout : ndarray, shape of the last input

        Returns
        -------
        dx : ndarray, shape of the last input
        """
        through_scale = self._window_sum(dout * self.out / self.scale, reverse=True)
        return dout * self.scale ** -self.beta - (2 * self.alpha * self.beta) * self.x * through_scale
