"""The book's ConvNets in plain NumPy: the baseline that ``bench_train.py`` times cconv against.

"Deep Learning from Scratch" (ch. 7-8), step by step: the layers of
``common/layers.py`` (Convolution and max Pooling on the book's im2col/col2im
and Pooling passes of ``tests/reference.py``, imported through ``_reference.py``;
Relu, Affine, SoftmaxWithLoss, Dropout), the functions of ``common/functions.py``,
the ``Adam`` of ``common/optimizer.py`` and the networks ``SimpleConvNet``
(``ch07/simple_convnet.py``) and ``DeepConvNet`` (``ch08/deep_convnet.py``).

Deliberate differences, all to keep a float32 network in float32 so that the
float32 rows compare like with like (the book always works in float64):

* the networks take a ``dtype`` (default float64, the book's) and cast the
  initial weights, drawn exactly as the book draws them from ``np.random``;
* the pooling backward's ``dmax`` and col2im's image have the dtype of
  ``dout`` (``tests/reference.py``), not float64;
* Adam's step size ``lr_t`` is a Python float: the book's NumPy float64
  scalar would, under NumPy 2's promotion rules, compute a float32 update in
  float64 (the result is the same in float64);
* parameters and methods the benchmark does not use (``accuracy``,
  ``numerical_gradient``, ``save_params``/``load_params``) are left out.

Nothing here depends on cconv.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from _reference import ref

__all__ = [
    "Adam",
    "Affine",
    "Convolution",
    "DeepConvNet",
    "Dropout",
    "Pooling",
    "Relu",
    "SimpleConvNet",
    "SoftmaxWithLoss",
    "cross_entropy_error",
    "softmax",
]


# --------------------------------------------------------------------------------------
# common/functions.py
# --------------------------------------------------------------------------------------


def softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)  # overflow guard
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:  # one-hot -> indices
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


# --------------------------------------------------------------------------------------
# common/layers.py
# --------------------------------------------------------------------------------------


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = (x <= 0)
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0  # in place, as the book
        return dout


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SoftmaxWithLoss:
    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        if self.t.size == self.y.size:  # one-hot labels
            return (self.y - self.t) / batch_size
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx / batch_size


class Dropout:
    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.x = None
        self.col = None
        self.col_W = None
        self.dW = None
        self.db = None

    def forward(self, x):
        FN, C, FH, FW = self.W.shape
        N, C, H, W = x.shape
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)

        col = ref.im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T
        out = np.dot(col, col_W) + self.b
        out = out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)

        self.x = x
        self.col = col
        self.col_W = col_W
        return out

    def backward(self, dout):
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)

        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout)
        self.dW = self.dW.transpose(1, 0).reshape(FN, C, FH, FW)

        dcol = np.dot(dout, self.col_W.T)
        return ref.col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad, copy=False)


class Pooling:
    """The book's max Pooling: im2col + argmax forward, dense dmax + col2im backward."""

    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x = None
        self.arg_max = None

    def forward(self, x):
        out, self.arg_max = ref.book_max_pool2d(x, self.pool_h, self.pool_w, self.stride, self.pad)
        self.x = x
        return out

    def backward(self, dout):
        return ref.book_max_pool2d_backward(dout, self.arg_max, self.x.shape, self.pool_h,
                                            self.pool_w, self.stride, self.pad)


# --------------------------------------------------------------------------------------
# common/optimizer.py
# --------------------------------------------------------------------------------------


class Adam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = {}, {}
            for key, val in params.items():
                self.m[key] = np.zeros_like(val)
                self.v[key] = np.zeros_like(val)

        self.iter += 1
        # float(): see the module docstring (the book leaves a NumPy float64 here).
        lr_t = float(self.lr * np.sqrt(1.0 - self.beta2 ** self.iter)
                     / (1.0 - self.beta1 ** self.iter))

        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


class _Net:
    """What the two networks share: backprop through ``self.layers`` and the loss."""

    #: Indices in the layer list of the layers holding W1, W2, ...
    param_layer_indices: tuple = ()

    def _layer_list(self):
        return list(self.layers.values()) if isinstance(self.layers, dict) else self.layers

    def predict(self, x, train_flg=False):
        for layer in self._layer_list():
            if isinstance(layer, Dropout):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t):
        y = self.predict(x, train_flg=True)
        return self.last_layer.forward(y, t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self._layer_list()):
            dout = layer.backward(dout)
        layers = self._layer_list()
        grads = {}
        for i, index in enumerate(self.param_layer_indices):
            grads[f"W{i + 1}"] = layers[index].dW
            grads[f"b{i + 1}"] = layers[index].db
        return grads


class SimpleConvNet(_Net):
    """conv - relu - pool - affine - relu - affine - softmax (the book's ch07)."""

    param_layer_indices = (0, 3, 5)

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                 hidden_size=100, output_size=10, weight_init_std=0.01, dtype=np.float64):
        filter_num = conv_param["filter_num"]
        filter_size = conv_param["filter_size"]
        filter_pad = conv_param["pad"]
        filter_stride = conv_param["stride"]
        input_size = input_dim[1]
        conv_output_size = (input_size - filter_size + 2 * filter_pad) / filter_stride + 1
        pool_output_size = int(filter_num * (conv_output_size / 2) * (conv_output_size / 2))

        def randn(*shape):
            return (weight_init_std * np.random.randn(*shape)).astype(dtype)

        self.params = {
            "W1": randn(filter_num, input_dim[0], filter_size, filter_size),
            "b1": np.zeros(filter_num, dtype),
            "W2": randn(pool_output_size, hidden_size),
            "b2": np.zeros(hidden_size, dtype),
            "W3": randn(hidden_size, output_size),
            "b3": np.zeros(output_size, dtype),
        }
        p = self.params
        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(p["W1"], p["b1"], filter_stride, filter_pad)
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(p["W2"], p["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(p["W3"], p["b3"])
        self.last_layer = SoftmaxWithLoss()


def _conv_param(filter_num, pad):
    return {"filter_num": filter_num, "filter_size": 3, "pad": pad, "stride": 1}


class DeepConvNet(_Net):
    """The book's ch08 network: six 3x3 convs (pads 1,1,1,2,1,1), three pools, He init.

    conv-relu-conv-relu-pool (x3) - affine-relu-dropout - affine-dropout - softmax
    """

    param_layer_indices = (0, 2, 5, 7, 10, 12, 15, 18)

    def __init__(self, input_dim=(1, 28, 28),
                 conv_params=(_conv_param(16, 1), _conv_param(16, 1), _conv_param(32, 1),
                              _conv_param(32, 2), _conv_param(64, 1), _conv_param(64, 1)),
                 hidden_size=50, output_size=10, dtype=np.float64):
        pre_node_nums = np.array([1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3,
                                  64 * 3 * 3, 64 * 4 * 4, hidden_size])
        weight_init_scales = np.sqrt(2.0 / pre_node_nums)  # He

        self.params = {}
        pre_channel_num = input_dim[0]
        for idx, cp in enumerate(conv_params):
            self.params[f"W{idx + 1}"] = (weight_init_scales[idx] * np.random.randn(
                cp["filter_num"], pre_channel_num, cp["filter_size"], cp["filter_size"])
            ).astype(dtype)
            self.params[f"b{idx + 1}"] = np.zeros(cp["filter_num"], dtype)
            pre_channel_num = cp["filter_num"]
        self.params["W7"] = (weight_init_scales[6] * np.random.randn(64 * 4 * 4, hidden_size)
                             ).astype(dtype)
        self.params["b7"] = np.zeros(hidden_size, dtype)
        self.params["W8"] = (weight_init_scales[7] * np.random.randn(hidden_size, output_size)
                             ).astype(dtype)
        self.params["b8"] = np.zeros(output_size, dtype)

        p = self.params
        self.layers = []
        for idx, cp in enumerate(conv_params):
            self.layers.append(Convolution(p[f"W{idx + 1}"], p[f"b{idx + 1}"],
                                           cp["stride"], cp["pad"]))
            self.layers.append(Relu())
            if idx % 2 == 1:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        self.layers.append(Affine(p["W7"], p["b7"]))
        self.layers.append(Relu())
        self.layers.append(Dropout(0.5))
        self.layers.append(Affine(p["W8"], p["b8"]))
        self.layers.append(Dropout(0.5))
        self.last_layer = SoftmaxWithLoss()
