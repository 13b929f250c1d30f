"""What every cconv network shares: prediction, loss, accuracy, gradients, parameter files.

A network subclass builds, in its constructor,

* ``self.params``: a dict of parameter arrays (``W1``, ``b1``, ...), created in
  ``self.dtype``;
* ``self.layers``: an ``OrderedDict`` of layers (or a list, as the book's
  ``DeepConvNet``) whose ``W``/``b`` (``gamma``/``beta``) attributes are the
  *same* arrays as in ``params``, registered with :meth:`Network._link`, so
  that an optimizer updating ``params`` in place updates the layers;
* ``self.last_layer``: a ``SoftmaxWithLoss``;
* ``self.config``: the constructor settings (JSON-serialisable), saved with the
  parameters so that :func:`cconv.nets.load_network` can rebuild the network.
"""

import math
import numbers
import os
import warnings
from collections import OrderedDict

import numpy as np

from cconv import params_io
from cconv.gradient import numerical_gradient
from cconv.layers import BatchNormalization, Dropout

__all__ = ["Network", "WeightInit", "check_dtype", "conv_output_size", "init_scale"]

#: Layers whose ``forward`` takes ``train_flg``.
_TRAIN_FLG_LAYERS = (Dropout, BatchNormalization)

#: Config entries that may differ between a file and the network loading it.
_NON_ARCHITECTURE_CONFIG = frozenset({"weight_init_std", "dtype"})


def check_dtype(dtype):
    """Return ``dtype`` as a NumPy dtype, float32 or float64, or raise ``TypeError``."""
    try:
        result = np.dtype(dtype)
    except TypeError:
        result = None
    if result not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return result


def check_positive_int(value, name):
    """Return ``value`` as an int >= 1, or raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_input_dim(input_dim):
    """Return ``input_dim`` as a ``(C, H, W)`` tuple of ints >= 1."""
    try:
        dims = tuple(input_dim)
    except TypeError:
        dims = ()
    if len(dims) != 3:
        raise ValueError(f"input_dim must be (channels, height, width), got {input_dim!r}")
    return tuple(check_positive_int(d, "input_dim entries") for d in dims)


def conv_output_size(size, filter_size, stride, pad, where):
    """``(size + 2*pad - filter_size) // stride + 1``; ``ValueError`` naming ``where`` if < 1."""
    out = (size + 2 * pad - filter_size) // stride + 1
    if out < 1:
        raise ValueError(
            f"{where}: a {filter_size}-wide window with stride {stride} and pad {pad} does not fit "
            f"an input of size {size}; use a larger input_dim or smaller filters"
        )
    return out


def init_scale(weight_init_std, fan_in):
    """Standard deviation of a weight with ``fan_in`` inputs, as the book's ``MultiLayerNet``.

    ``'relu'`` or ``'he'``: ``sqrt(2 / fan_in)``; ``'sigmoid'`` or ``'xavier'``:
    ``sqrt(1 / fan_in)``; a number: that number.
    """
    if isinstance(weight_init_std, str):
        key = weight_init_std.lower()
        if key in ("relu", "he"):
            return math.sqrt(2.0 / fan_in)
        if key in ("sigmoid", "xavier"):
            return math.sqrt(1.0 / fan_in)
        raise ValueError(
            "weight_init_std must be a number, 'he'/'relu' or 'xavier'/'sigmoid', "
            f"got {weight_init_std!r}"
        )
    if (
        isinstance(weight_init_std, bool)
        or not isinstance(weight_init_std, numbers.Real)
        or weight_init_std < 0
    ):
        raise ValueError(
            f"weight_init_std must be a number >= 0 or a scheme name, got {weight_init_std!r}"
        )
    return float(weight_init_std)


class WeightInit:
    """Random initial weights in a dtype.

    With ``seed=None`` the draws come from NumPy's global ``np.random.randn``,
    as in the book, so ``np.random.seed(s)`` before building a float64 network
    gives exactly the book's initial weights; with a seed, from a private
    ``np.random.default_rng(seed)``.
    """

    def __init__(self, dtype, seed=None):
        self.dtype = dtype
        #: The private generator (``None``: the global ``np.random``), also given to Dropout layers.
        self.rng = None if seed is None else np.random.default_rng(seed)

    def normal(self, scale, shape):
        draw = np.random.randn(*shape) if self.rng is None else self.rng.standard_normal(shape)
        return (scale * draw).astype(self.dtype, copy=False)

    def zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)


class Network:
    """Base class of the cconv networks (see the module docstring for what subclasses build)."""

    def _start(self, dtype, seed, config):
        """Common constructor prologue: dtype, weight initialiser, empty params, config."""
        self.dtype = check_dtype(dtype)
        self._init = WeightInit(self.dtype, seed)
        self.params = {}
        self.config = dict(config, dtype=self.dtype.name)
        self._links = []

    @property
    def rng(self):
        """The network's generator (from ``seed``; ``None``: the global ``np.random``).

        It drew the initial weights and draws the Dropout masks.
        """
        return self._init.rng

    def _add_weights(self, index, w_shape, scale):
        """Create ``W<index>`` (normal, std ``scale``) and ``b<index>`` (zeros); return both."""
        w = self.params[f"W{index}"] = self._init.normal(scale, w_shape)
        b = self.params[f"b{index}"] = self._init.zeros(
            w_shape[0] if len(w_shape) == 4 else w_shape[1]
        )
        return w, b

    def _dropout(self, dropout_ratio):
        """A Dropout layer drawing its masks from the ``seed`` generator, else from np.random."""
        return Dropout(dropout_ratio, rng=self._init.rng)

    def _link(self, layer, **attrs):
        """Record that ``layer.<attr>`` is ``self.params[key]`` for each ``attr=key``."""
        for attr, key in attrs.items():
            if getattr(layer, attr) is not self.params[key]:
                raise RuntimeError(
                    f"layer {type(layer).__name__}.{attr} does not hold params[{key!r}]"
                )
            self._links.append((layer, attr, key))
        return layer

    def _layer_list(self):
        return list(self.layers.values()) if isinstance(self.layers, dict) else list(self.layers)

    def _as_input(self, x):
        x = np.asarray(x)
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    # ------------------------------------------------------------------
    # The book's interface
    # ------------------------------------------------------------------

    def predict(self, x, train_flg=False):
        """Scores before softmax, shape ``(N, output_size)``, in ``self.dtype``.

        ``x`` is converted to the network's dtype. ``train_flg`` reaches the
        layers that behave differently in training (Dropout, BatchNormalization).
        """
        x = self._as_input(x)
        for layer in self._layer_list():
            if isinstance(layer, _TRAIN_FLG_LAYERS):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=True):
        """Softmax cross-entropy loss of ``x`` against labels ``t`` (indices or one-hot)."""
        y = self.predict(x, train_flg)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of ``x`` classified as ``t``, predicting ``batch_size`` images at a time.

        Unlike the book, a last partial batch is counted too.
        """
        t = np.asarray(t)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        batch_size = check_positive_int(batch_size, "batch_size")
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            y = self.predict(x[start : start + batch_size], train_flg=False)
            correct += int(np.sum(np.argmax(y, axis=1) == t[start : start + batch_size]))
        return correct / x.shape[0]

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation: a dict with the keys of ``params``."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self._layer_list()):
            dout = layer.backward(dout)
        return {key: getattr(layer, "d" + attr) for layer, attr, key in self._links}

    def numerical_gradient(self, x, t):
        """Gradients of :meth:`loss` by central differences (slow; for checks).

        The loss is evaluated in training mode: a network with Dropout needs
        masks that repeat from call to call (Dropout layers with a generator
        that gives the same noise each time) for the result to mean anything.
        """
        x = self._as_input(x)

        def loss_w(_):
            return self.loss(x, t)

        return {key: numerical_gradient(loss_w, self.params[key]) for key in self.params}

    # ------------------------------------------------------------------
    # Parameter files
    # ------------------------------------------------------------------

    def save_params(self, file_name="params.npz"):
        """Save the parameters and the constructor settings to ``file_name`` (``.npz``, atomic).

        The file is an ``.npz`` archive whatever its name (the book's
        ``save_params("params.pkl")`` keeps working and writes no pickle).
        """
        params_io.save_params(
            file_name, self.params, {"net": type(self).__name__, "config": self.config}
        )

    def load_params(self, file_name="params.npz", cast=False):
        """Load parameters saved by :meth:`save_params`, or a book-style params ``.pkl``.

        Every key, shape and dtype must match the network (``cast=True``
        accepts another float dtype and converts); the values are copied into
        the existing arrays, so the layers (and any optimizer state keyed on
        them) stay linked. Raises ``ValueError`` naming the key on a mismatch.
        """
        loaded, meta = params_io.read_params(file_name)
        self._assign(loaded, meta, os.fspath(file_name), cast)

    def _assign(self, loaded, meta, source, cast):
        if meta is not None:
            self._check_meta(meta, source)
        params_io.assign_params(loaded, self.params, source, cast)
        # Relink, as the book does, in case a caller replaced an array in params.
        for layer, attr, key in self._links:
            setattr(layer, attr, self.params[key])

    def _check_meta(self, meta, source):
        name = type(self).__name__
        if meta.get("net") != name:
            raise ValueError(
                f"{source}: parameters of a {meta.get('net')!r} network cannot be loaded "
                f"into a {name}"
            )
        saved = meta.get("config", {})
        differ = sorted(
            key
            for key in set(saved) | set(self.config)
            if key not in _NON_ARCHITECTURE_CONFIG
            and _jsonable(saved.get(key)) != _jsonable(self.config.get(key))
        )
        if differ:
            warnings.warn(
                f"{source}: saved by a {name} built with different settings ({', '.join(differ)}): "
                f"file {[saved.get(k) for k in differ]}, "
                f"this network {[self.config.get(k) for k in differ]}",
                UserWarning,
                stacklevel=3,
            )


def _jsonable(value):
    """``value`` as it reads back from JSON (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def make_layers(pairs):
    """An ``OrderedDict`` from ``(name, layer)`` pairs, refusing duplicate names."""
    layers = OrderedDict()
    for name, layer in pairs:
        if name in layers:
            raise RuntimeError(f"duplicate layer name {name!r}")
        layers[name] = layer
    return layers
