"""Helpers for the network tests: gradient checks, the shared data, the book's forward pass.

* :func:`check_gradients`: backprop against central differences, per parameter.
* :data:`requires_shared_data`: tests that need the read-only shared data
  (``cconv_testutils.shared_data()``: ``../shared/data`` or
  ``$CCONV_SHARED_DATA``, with the MNIST test set and the book's trained
  parameters) skip with the reason when it is absent;
  ``cconv_testutils.load_mnist_test()`` reads the images (re-exported here).
* :func:`book_simple_convnet_scores` / :func:`book_deep_convnet_scores`: the
  book's forward passes in plain NumPy (its layers of ``reference.py`` and
  ``reference_layers.py``: im2col, matmul, relu, pooling by im2col and max),
  float64, independent of the cconv layers.
"""

import numpy as np
import pytest

from cconv.params_io import read_params

import reference as ref
import reference_layers as rl
from cconv_testutils import load_mnist_test, shared_data

#: Relative error allowed between backprop and numerical gradients (float64).
GRAD_RTOL = 1e-6


# --------------------------------------------------------------------------
# Gradient checks
# --------------------------------------------------------------------------


def relative_error(a, b):
    """``max|a - b| / max(|a| + |b|)`` over the array (0 for two zero arrays)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(a) + np.abs(b))
    return float(np.max(np.abs(a - b)) / max(scale, 1e-300))


def check_gradients(net, x, t, rtol=GRAD_RTOL):
    """Assert ``net.gradient`` matches ``net.numerical_gradient`` for every parameter.

    The floor of the relative error is set by the book's loss, which takes
    ``log(y + 1e-7)``: central differences see the ``1e-7``, backprop (``y - t``)
    does not, so they differ by about ``1e-7 / y`` for a true-class probability
    ``y``. Checks use small nets with few classes and moderate weights, where
    ``y`` is 0.2-0.5 and the error about 3e-7.
    """
    backprop = net.gradient(x, t)
    numerical = net.numerical_gradient(x, t)
    assert set(backprop) == set(net.params) == set(numerical)
    errors = {key: relative_error(backprop[key], numerical[key]) for key in net.params}
    for key, value in backprop.items():
        assert value.shape == net.params[key].shape, key
        assert np.max(np.abs(value)) > 0, f"{key}: zero gradient, the check proves nothing"
    bad = {key: err for key, err in errors.items() if not err < rtol}
    assert not bad, f"relative errors above {rtol}: {bad}"
    return errors


class FixedNoise:
    """A stand-in for a Dropout layer's ``rng``: the same noise for every call of a shape.

    Lets a network with dropout in training mode give the same loss on every
    evaluation, as a numerical gradient needs.
    """

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)
        self._noise = {}

    def random(self, shape):
        shape = tuple(shape)
        if shape not in self._noise:
            self._noise[shape] = self._rng.random(shape)
        return self._noise[shape]


def fix_dropout_masks(net, seed=0):
    """Give every Dropout layer of ``net`` a :class:`FixedNoise`; return how many there are."""
    from cconv.layers import Dropout

    layers = net.layers.values() if isinstance(net.layers, dict) else net.layers
    drops = [layer for layer in layers if isinstance(layer, Dropout)]
    for i, layer in enumerate(drops):
        layer.rng = FixedNoise(seed + i)
    return len(drops)


# --------------------------------------------------------------------------
# Shared data
# --------------------------------------------------------------------------


def book_params_path(name):
    return shared_data() / "book-params" / f"{name}_params.pkl"


requires_shared_data = pytest.mark.skipif(
    not (shared_data() / "mnist-test").is_dir() or not (shared_data() / "book-params").is_dir(),
    reason=f"shared data not found at {shared_data()} (set CCONV_SHARED_DATA to the folder "
    "holding mnist-test/ and book-params/)",
)


# --------------------------------------------------------------------------
# The book's forward pass in plain NumPy (float64)
# --------------------------------------------------------------------------


#: The book's ``Convolution.forward``: ``book_conv(x, W, b, stride, pad)``.
book_conv = ref.book_conv2d


def book_max_pool(x, size=2, stride=2):
    """The book's ``Pooling.forward`` (no padding), without its argmax."""
    return ref.book_max_pool2d(x, size, size, stride)[0]


def book_relu(x):
    return np.maximum(x, 0)


#: The book's ``Affine.forward``.
book_affine = rl.affine


def book_simple_convnet_scores(x, p):
    """The book's SimpleConvNet.predict (conv 5x5 - relu - pool - affine - relu - affine)."""
    h = book_max_pool(book_relu(book_conv(x, p["W1"], p["b1"])))
    return book_affine(book_relu(book_affine(h, p["W2"], p["b2"])), p["W3"], p["b3"])


#: The book's DeepConvNet conv pads.
DEEP_PADS = (1, 1, 1, 2, 1, 1)


def book_deep_convnet_scores(x, p):
    """The book's DeepConvNet.predict(train_flg=False): dropout scales by 0.5 at test time."""
    h = x
    for i, pad in enumerate(DEEP_PADS, start=1):
        h = book_relu(book_conv(h, p[f"W{i}"], p[f"b{i}"], 1, pad))
        if i % 2 == 0:
            h = book_max_pool(h)
    h = book_relu(book_affine(h, p["W7"], p["b7"])) * 0.5
    return book_affine(h, p["W8"], p["b8"]) * 0.5


def book_predictions(scores_fn, x, params, batch_size=500):
    """Argmax predictions of ``scores_fn`` over ``x`` in float64 batches."""
    out = [
        np.argmax(scores_fn(np.asarray(x[i : i + batch_size], dtype=np.float64), params), axis=1)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def net_predictions(net, x, batch_size=500):
    """Argmax predictions of ``net.predict`` over ``x`` in batches."""
    out = [
        np.argmax(net.predict(x[i : i + batch_size]), axis=1) for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def check_book_params(cls, name, scores_fn, batch_size=500):
    """Load the book's ``<name>_params.pkl`` into ``cls()``; compare with the book's forward pass.

    Asserts that the loaded parameters are the file's and that the network's
    predictions on the 10,000 MNIST test images equal those of
    ``scores_fn`` (the book's algorithm in plain NumPy). Returns the accuracy.
    """
    path = book_params_path(name)
    x, t = load_mnist_test()
    net = cls()
    net.load_params(path)
    expected_params, _ = read_params(path)
    assert all(np.array_equal(net.params[k], expected_params[k]) for k in expected_params)
    predicted = net_predictions(net, x, batch_size)
    reference = book_predictions(scores_fn, x, expected_params, batch_size)
    assert np.array_equal(predicted, reference)
    accuracy = net.accuracy(x, t, batch_size)
    assert accuracy == np.mean(reference == t)
    return accuracy
