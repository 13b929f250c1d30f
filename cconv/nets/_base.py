"""What every cconv network shares: prediction, loss, accuracy, gradients, parameter files.

A network subclass has a classmethod ``_plan(**settings)`` that checks its
constructor settings (all but ``dtype`` and ``seed``) and returns them as the
``config`` dict together with its weights in drawing order, a list of
:class:`Weight` ``(index, shape, scale)``: plain arithmetic, nothing allocated.
:meth:`Network.param_shapes` gives the parameter shapes from it alone (so a
file's settings can be checked against its arrays before anything is built).
The constructor calls :meth:`Network._build` (plan, then create the weights)
and builds

* ``self.params``: a dict of parameter arrays (``W1``, ``b1``, ...), created in
  ``self.dtype`` by ``_build``;
* ``self.layers``: an ``OrderedDict`` of layers (or a list, as the book's
  ``DeepConvNet``) whose ``W``/``b`` (``gamma``/``beta``) attributes are the
  *same* arrays as in ``params``, registered with :meth:`Network._link`, so
  that an optimizer updating ``params`` in place updates the layers;
* ``self.last_layer``: a ``SoftmaxWithLoss``;
* ``self.config``: the constructor settings (JSON-serialisable), saved with the
  parameters so that :func:`cconv.nets.load_network` can rebuild the network.

Beyond the book's interface, every network walks its own layers for others:
:meth:`Network.named_layers`, :meth:`Network.forward_layers` (each layer's
output, for the activations picture), :meth:`Network.predict_labels` (batched)
and :meth:`Network.rngs` (its generators, for checkpoints). The functions
behind them (:func:`named_layers`, :func:`forward_layers`,
:func:`network_rngs`) also take the book's own networks.
"""

import inspect
import math
import numbers
import os
import warnings
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from cconv import params_io
from cconv._blas import serial_blas
from cconv._validation import check_dtype, check_int
from cconv.gradient import numerical_gradient
from cconv.layers import Affine, AvgPooling, BatchNormalization, Convolution, Dropout, Pooling

__all__ = [
    "Network",
    "Weight",
    "WeightInit",
    "forward_layers",
    "init_scale",
    "layers_of",
    "named_layers",
    "network_rngs",
]

#: Layers whose ``forward`` takes ``train_flg``.
_TRAIN_FLG_LAYERS = (Dropout, BatchNormalization)
#: Name prefixes of the layers of a network whose ``layers`` is a list (DeepConvNet).
_LIST_LAYER_PREFIXES = {Convolution: "Conv", Pooling: "Pool", AvgPooling: "Pool"}

#: Default file of save_params/load_params, and the book's, which load_params falls back to.
_DEFAULT_PARAMS_FILE = "params.npz"
_BOOK_PARAMS_FILE = "params.pkl"

#: Config entries that may differ between a file and the network loading it.
_NON_ARCHITECTURE_CONFIG = frozenset({"weight_init_std", "dtype"})


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


class Weight(NamedTuple):
    """A weight of a network's plan: ``W<index>`` of ``shape``, drawn with std ``scale``."""

    index: int
    shape: tuple
    scale: float


def bias_shape(w_shape):
    """Shape of the bias of a weight: one per filter (4-D, conv) or per output unit (affine)."""
    return (w_shape[0] if len(w_shape) == 4 else w_shape[1],)


class WeightInit:
    """Random initial weights in a dtype.

    With ``seed=None`` the draws come from NumPy's global ``np.random.randn``,
    as in the book, so ``np.random.seed(s)`` before building a float64 network
    gives exactly the book's initial weights; with a seed, from a private
    ``np.random.default_rng(seed)``. With ``draw=False`` the weights are zeros
    and nothing is drawn (for a network whose parameters are loaded next).
    """

    def __init__(self, dtype, seed=None, draw=True):
        self.dtype = dtype
        #: The private generator (``None``: the global ``np.random``), also given to Dropout layers.
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.draw = draw

    def normal(self, scale, shape):
        if not self.draw:
            return self.zeros(shape)
        draw = np.random.randn(*shape) if self.rng is None else self.rng.standard_normal(shape)
        return (scale * draw).astype(self.dtype, copy=False)

    def zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)


class Network:
    """Base class of the cconv networks (see the module docstring for what subclasses build)."""

    @classmethod
    def _plan(cls, **settings):
        """``(config, weights)`` for the constructor ``settings`` (all but ``dtype`` and ``seed``).

        Checks the settings (``ValueError`` naming the bad one) and computes,
        without allocating anything, the ``config`` to save and the list of
        :class:`Weight` in the order they are drawn. Subclasses implement it;
        the constructor and :meth:`param_shapes` both use it.
        """
        raise NotImplementedError

    @classmethod
    def param_shapes(cls, **settings):
        """``{key: shape}`` of the parameters of ``cls(**settings)``, computed without building it.

        Takes the constructor's keyword arguments (defaults for the missing
        ones; ``dtype`` and ``seed`` are ignored) and computes the shapes from
        them with the constructor's own code, allocating nothing, so huge
        settings cost nothing. Raises ``TypeError`` on an unknown argument and
        ``ValueError`` on a bad value, as the constructor does.
        """
        bound = inspect.signature(cls.__init__).bind(None, **settings)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for name in ("self", "dtype", "seed"):
            arguments.pop(name, None)
        _, weights = cls._plan(**arguments)
        shapes = {}
        for weight in weights:
            shapes[f"W{weight.index}"] = tuple(weight.shape)
            shapes[f"b{weight.index}"] = bias_shape(weight.shape)
        return shapes

    @classmethod
    def _for_loading(cls, settings):
        """``cls(**settings)`` with zero weights: nothing is drawn, ``np.random`` is left alone.

        For a network whose parameters are loaded right after. Without a
        ``seed`` in ``settings`` its Dropout layers draw from ``np.random``, as
        the book's.
        """
        net = cls.__new__(cls)
        net._zero_weights = True  # read (and removed) by _build
        net.__init__(**settings)
        return net

    def _build(self, dtype, seed, **settings):
        """Common constructor prologue: plan, dtype, weight initialiser, config, the weights.

        Returns the checked ``config`` (also ``self.config``, with ``dtype``).
        """
        config, weights = self._plan(**settings)
        self.dtype = check_dtype(dtype)
        self._init = WeightInit(
            self.dtype, seed, draw=not self.__dict__.pop("_zero_weights", False)
        )
        self.params = {}
        self.config = dict(config, dtype=self.dtype.name)
        self._links = []
        for weight in weights:
            self._add_weights(*weight)
        return config

    @property
    def rng(self):
        """The network's generator (from ``seed``; ``None``: the global ``np.random``).

        It drew the initial weights and draws the Dropout masks.
        """
        return self._init.rng

    def _add_weights(self, index, w_shape, scale):
        """Create ``W<index>`` (normal, std ``scale``) and ``b<index>`` (zeros); return both."""
        w = self.params[f"W{index}"] = self._init.normal(scale, w_shape)
        b = self.params[f"b{index}"] = self._init.zeros(bias_shape(w_shape))
        return w, b

    def _conv(self, index, stride, pad):
        """A Convolution holding ``W<index>`` and ``b<index>``, linked."""
        p = self.params
        layer = Convolution(p[f"W{index}"], p[f"b{index}"], stride, pad)
        return self._link(layer, W=f"W{index}", b=f"b{index}")

    def _affine(self, index):
        """An Affine layer holding ``W<index>`` and ``b<index>``, linked."""
        layer = Affine(self.params[f"W{index}"], self.params[f"b{index}"])
        return self._link(layer, W=f"W{index}", b=f"b{index}")

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
        with serial_blas():
            for _, layer in self.named_layers():
                x = run_layer(layer, x, train_flg)
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
        correct = int(np.sum(self.predict_labels(x, batch_size) == t))
        return correct / x.shape[0]

    # ------------------------------------------------------------------
    # Beyond the book: what plots, the trainer and the command use
    # ------------------------------------------------------------------

    def named_layers(self):
        """The layers in forward order as ``(name, layer)`` pairs (see :func:`named_layers`)."""
        return named_layers(self.layers)

    def forward_layers(self, x, train_flg=False):
        """Run ``x`` through the layers; yield ``(name, layer, output)`` after each one.

        ``x`` (N, C, H, W) is converted to the network's dtype; the last
        output is :meth:`predict`'s scores. A caller may stop early (after
        the feature maps, say). Like ``predict``, this overwrites the state
        the layers keep for backward.
        """
        return forward_layers(self.named_layers(), self._as_input(x), train_flg)

    def predict_labels(self, x, batch_size=100):
        """Predicted class indices of ``x``, int64 of shape (N,), ``batch_size`` images at a time.

        In test mode (``train_flg=False``); a last partial batch is predicted too.
        """
        batch_size = check_int(batch_size, "batch_size", non_int_error=ValueError)
        labels = np.empty(x.shape[0], dtype=np.int64)
        for start in range(0, x.shape[0], batch_size):
            scores = self.predict(x[start : start + batch_size], train_flg=False)
            labels[start : start + batch_size] = np.argmax(scores, axis=1)
        return labels

    def rngs(self):
        """The network's own generators (its ``rng`` and its layers'), each once (see :func:`network_rngs`)."""
        return network_rngs(self)

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation: a dict with the keys of ``params``."""
        with serial_blas():
            self.loss(x, t)
            dout = self.last_layer.backward(1)
            first, *rest = [layer for _, layer in self.named_layers()]
            for layer in reversed(rest):
                dout = layer.backward(dout)
            # Nothing uses the gradient of the input images: a first layer that
            # can skip it (Convolution.param_backward) does.
            getattr(first, "param_backward", first.backward)(dout)
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

    def save_params(self, file_name=_DEFAULT_PARAMS_FILE):
        """Save the parameters and the constructor settings to ``file_name`` (``.npz``, atomic).

        The file is an ``.npz`` archive whatever its name (the book's
        ``save_params("params.pkl")`` keeps working and writes no pickle).
        """
        params_io.save_params(
            file_name, self.params, {"net": type(self).__name__, "config": self.config}
        )

    def load_params(self, file_name=None, cast=False):
        """Load parameters saved by :meth:`save_params`, or a book-style params ``.pkl``.

        Without ``file_name``: ``params.npz`` (the default name of
        :meth:`save_params`) if it exists, else the book's default
        ``params.pkl`` if that exists (a file written by the book's
        ``save_params()``); with neither, ``FileNotFoundError`` names
        ``params.npz``.

        Every key, shape and dtype must match the network (``cast=True``
        accepts another float dtype and converts); the values are copied into
        the existing arrays, so the layers (and any optimizer state keyed on
        them) stay linked. Raises ``ValueError`` naming the key on a mismatch.
        """
        if file_name is None:
            file_name = _DEFAULT_PARAMS_FILE
            if not os.path.exists(file_name) and os.path.exists(_BOOK_PARAMS_FILE):
                file_name = _BOOK_PARAMS_FILE
        source = os.fspath(file_name)
        meta = params_io.read_meta(file_name)  # another network's file is named before its arrays are read
        if meta is not None:
            self._check_meta(meta, source)
        # Each array's header is checked against the network before its data is read.
        loaded, _ = params_io.read_params(file_name, params_io.param_specs(self.params, cast))
        self._assign(loaded, None, source, cast)  # None: the meta is checked already

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


def named_layers(layers):
    """``(name, layer)`` pairs in forward order, for ``layers`` as a dict or a list (the book has both).

    A dict (the book's ``OrderedDict``) gives its keys. A list (the book's
    ``DeepConvNet``) gets names by kind and rank: ``Conv1``, ``Relu1``,
    ``Conv2``, ..., ``Pool1``, ``Affine1`` (each pooling kind counts as ``Pool``).
    ``TypeError`` for anything else.
    """
    if isinstance(layers, dict):
        return list(layers.items())
    if not isinstance(layers, (list, tuple)):
        raise TypeError(
            "a network's layers must be an OrderedDict or a list (a cconv or book network), "
            f"got {type(layers).__name__}"
        )
    counts = {}
    named = []
    for layer in layers:
        prefix = _LIST_LAYER_PREFIXES.get(type(layer), type(layer).__name__)
        counts[prefix] = counts.get(prefix, 0) + 1
        named.append((f"{prefix}{counts[prefix]}", layer))
    return named


def forward_layers(named, x, train_flg=False):
    """Yield ``(name, layer, output)`` for each ``(name, layer)`` of ``named``, feeding each output on.

    ``train_flg`` reaches the layers whose forward takes it (Dropout,
    BatchNormalization), as the book's ``predict`` does.
    """
    for name, layer in named:
        x = run_layer(layer, x, train_flg)
        yield name, layer, x


def run_layer(layer, x, train_flg):
    """``layer.forward(x)``, with ``train_flg`` for the layers that take it (Dropout, BatchNormalization)."""
    if isinstance(layer, _TRAIN_FLG_LAYERS):
        return layer.forward(x, train_flg)
    return layer.forward(x)


def layers_of(network):
    """The layers of ``network`` in forward order (its book-style ``layers``, a dict or a list).

    An empty list without ``layers``; ``None`` when ``layers`` is something
    else (layers of the network's own making, which cannot be walked).
    """
    try:
        return [layer for _, layer in named_layers(getattr(network, "layers", None) or ())]
    except TypeError:
        return None


def network_rngs(network):
    """The generators a network draws from itself: ``network.rng`` and its layers' ``rng``, each once.

    Only numpy ``Generator`` and ``RandomState`` objects count (``None``
    means the global ``np.random``). Works for any object with the book's
    ``layers`` (a dict or a list), not only cconv networks.
    """
    layers = layers_of(network) or []  # layers of its own making: only the network's rng is known
    found = {}
    for owner in (network, *layers):
        rng = getattr(owner, "rng", None)
        if isinstance(rng, (np.random.Generator, np.random.RandomState)):
            found.setdefault(id(rng), rng)
    return list(found.values())


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
