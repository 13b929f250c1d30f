"""DeepConvNet: the book's ch08 network, its gradients, dtypes and the book's trained parameters."""

import numpy as np
import pytest

from cconv.layers import Affine, Convolution, Dropout, Pooling, Relu
from cconv.nets import DeepConvNet

import nets_testutils as nu

BOOK_SHAPES = {
    "W1": (16, 1, 3, 3),
    "W2": (16, 16, 3, 3),
    "W3": (32, 16, 3, 3),
    "W4": (32, 32, 3, 3),
    "W5": (64, 32, 3, 3),
    "W6": (64, 64, 3, 3),
    "W7": (64 * 4 * 4, 50),
    "W8": (50, 10),
}
BOOK_PARAM_LAYERS = (0, 2, 5, 7, 10, 12, 15, 18)


def small_net(**kwargs):
    """A DeepConvNet on 8x8 images with 2-4 filters: 8 -> 8 -> 4 -> 4 -> 6 -> 3 -> 3 -> 3 -> 1."""
    convs = {
        f"conv_param_{i}": {"filter_num": n} for i, n in enumerate((2, 2, 3, 3, 4, 4), start=1)
    }
    return DeepConvNet(input_dim=(1, 8, 8), **convs, hidden_size=5, output_size=3, **kwargs)


def test_defaults_are_the_books():
    net = DeepConvNet(seed=0)
    assert list(net.params) == [f"{p}{i}" for i in range(1, 9) for p in "Wb"]
    assert {k: v.shape for k, v in net.params.items() if k[0] == "W"} == BOOK_SHAPES
    kinds = [Convolution, Relu, Convolution, Relu, Pooling] * 3 + [
        Affine,
        Relu,
        Dropout,
        Affine,
        Dropout,
    ]
    assert [type(layer) for layer in net.layers] == kinds
    convs = [layer for layer in net.layers if isinstance(layer, Convolution)]
    assert [c.pad for c in convs] == [1, 1, 1, 2, 1, 1]
    assert [c.stride for c in convs] == [1] * 6
    assert all(layer.dropout_ratio == 0.5 for layer in net.layers if isinstance(layer, Dropout))
    for i, index in enumerate(BOOK_PARAM_LAYERS, start=1):
        assert net.layers[index].W is net.params[f"W{i}"]
        assert net.layers[index].b is net.params[f"b{i}"]


def test_initial_weights_are_the_books_draws():
    state = np.random.get_state()
    try:
        np.random.seed(11)
        net = DeepConvNet()
        np.random.seed(11)
        pre_node_nums = np.array(
            [1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3, 64 * 4 * 4, 50]
        )
        scales = np.sqrt(2.0 / pre_node_nums)
        for i in range(8):
            key = f"W{i + 1}"
            assert np.array_equal(
                net.params[key], scales[i] * np.random.randn(*BOOK_SHAPES[key])
            ), key
    finally:
        np.random.set_state(state)


def test_gradient_check():
    net = small_net(seed=0)
    assert nu.fix_dropout_masks(net) == 2
    x = np.random.default_rng(5).standard_normal((2, 1, 8, 8))
    t = np.array([0, 2])
    nu.check_gradients(net, x, t)
    masks = [layer.mask for layer in net.layers if isinstance(layer, Dropout)]
    assert all(not m.all() for m in masks), "the check ran without dropping anything"


def test_predict_is_deterministic_and_train_flg_drops(rng):
    net = small_net(seed=0)
    x = rng.standard_normal((4, 1, 8, 8))
    assert np.array_equal(net.predict(x), net.predict(x))
    assert not np.allclose(net.predict(x, train_flg=True), net.predict(x))


def test_seed_drives_dropout_masks(rng):
    x, t = rng.standard_normal((4, 1, 8, 8)), np.array([0, 1, 2, 0])
    a, b = small_net(seed=4), small_net(seed=4)
    assert [a.loss(x, t) for _ in range(3)] == [b.loss(x, t) for _ in range(3)]


def test_float32_stays_float32(rng):
    net = small_net(dtype=np.float32, seed=0)
    assert all(value.dtype == np.float32 for value in net.params.values())
    x, t = rng.standard_normal((3, 1, 8, 8)), np.array([0, 1, 2])
    assert net.predict(x).dtype == np.float32
    assert all(g.dtype == np.float32 for g in net.gradient(x, t).values())


def test_other_input_sizes(rng):
    net = DeepConvNet(input_dim=(3, 32, 32), output_size=7, seed=0)  # 32 -> 16 -> 18 -> 9 -> 4
    assert net.params["W1"].shape == (16, 3, 3, 3)
    assert net.params["W7"].shape == (64 * 4 * 4, 50)
    assert net.predict(rng.standard_normal((2, 3, 32, 32))).shape == (2, 7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="conv_param_3"):
        DeepConvNet(conv_param_3={"filter_num": 0})
    with pytest.raises(ValueError, match="Pool1"):
        DeepConvNet(input_dim=(1, 1, 1))


@nu.requires_shared_data
def test_book_params_reproduce_the_books_predictions():
    # The longest test (about a minute on 2 cores): 10,000 images through cconv and the reference.
    accuracy = nu.check_book_params(DeepConvNet, "deep_convnet", nu.book_deep_convnet_scores, 250)
    # These shared parameters score 97.97% (the book's own run reports ~99.3%).
    assert accuracy > 0.975
