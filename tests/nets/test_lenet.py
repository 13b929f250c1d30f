"""LeNet-5: layout, activations and pooling variants, gradients, dtypes."""

import numpy as np
import pytest

from cconv.layers import AvgPooling, Pooling, Relu, Sigmoid
from cconv.nets import LeNet

import nets_testutils as nu

SMALL = dict(input_dim=(1, 12, 12), filter_nums=(2, 3), hidden_sizes=(5, 4), output_size=3)


def test_default_layout_is_lenet5():
    net = LeNet(seed=0)
    shapes = {k: v.shape for k, v in net.params.items() if k[0] == "W"}
    assert shapes == {
        "W1": (6, 1, 5, 5),
        "W2": (16, 6, 5, 5),
        "W3": (400, 120),
        "W4": (120, 84),
        "W5": (84, 10),
    }
    assert list(net.layers) == [
        "Conv1",
        "Act1",
        "Pool1",
        "Conv2",
        "Act2",
        "Pool2",
        "Affine3",
        "Act3",
        "Affine4",
        "Act4",
        "Affine5",
    ]
    assert (net.layers["Conv1"].pad, net.layers["Conv2"].pad) == (2, 0)
    # The original: sigmoid and subsampling (average pooling), 2x2 stride 2.
    assert isinstance(net.layers["Act1"], Sigmoid)
    assert type(net.layers["Pool1"]) is AvgPooling
    assert (net.layers["Pool2"].pool_h, net.layers["Pool2"].stride) == (2, 2)
    for name, i in [("Conv1", 1), ("Conv2", 2), ("Affine3", 3), ("Affine4", 4), ("Affine5", 5)]:
        assert net.layers[name].W is net.params[f"W{i}"]


@pytest.mark.parametrize(("activation", "act_cls"), [("relu", Relu), ("sigmoid", Sigmoid)])
@pytest.mark.parametrize(("pooling", "pool_cls"), [("max", Pooling), ("avg", AvgPooling)])
def test_variants(activation, act_cls, pooling, pool_cls):
    net = LeNet(activation=activation, pooling=pooling, seed=0)
    acts = [layer for name, layer in net.layers.items() if name.startswith("Act")]
    pools = [layer for name, layer in net.layers.items() if name.startswith("Pool")]
    assert len(acts) == 4 and all(type(a) is act_cls for a in acts)
    assert len(pools) == 2 and all(type(p) is pool_cls for p in pools)
    assert net.predict(np.zeros((2, 1, 28, 28))).shape == (2, 10)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_gradient_check(activation, pooling):
    # Moderate weights keep every class probability well above the loss's 1e-7
    # (see check_gradients).
    net = LeNet(**SMALL, activation=activation, pooling=pooling, weight_init_std=0.3, seed=2)
    x = np.random.default_rng(3).standard_normal((3, 1, 12, 12))
    nu.check_gradients(net, x, np.array([0, 1, 2]))


@pytest.mark.parametrize(("activation", "gain"), [("relu", 2.0), ("sigmoid", 1.0)])
def test_default_init_follows_the_activation(activation, gain):
    net = LeNet(activation=activation, seed=0)
    assert np.std(net.params["W3"]) == pytest.approx(np.sqrt(gain / 400), rel=0.05)
    assert np.std(net.params["W2"]) == pytest.approx(np.sqrt(gain / 150), rel=0.05)
    assert LeNet(weight_init_std=0.01, seed=0).params["W3"].std() == pytest.approx(0.01, rel=0.05)


def test_32x32_input():
    net = LeNet(input_dim=(3, 32, 32), seed=0)  # 32 -> 32 -> 16 -> 12 -> 6
    assert net.params["W1"].shape == (6, 3, 5, 5)
    assert net.params["W3"].shape == (16 * 6 * 6, 120)


def test_float32_stays_float32(rng):
    net = LeNet(**SMALL, activation="relu", pooling="max", dtype=np.float32, seed=0)
    x, t = rng.standard_normal((2, 1, 12, 12)), np.array([0, 2])
    assert net.predict(x).dtype == np.float32
    assert all(g.dtype == np.float32 for g in net.gradient(x, t).values())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "tanh"}, "activation"),
        ({"pooling": "min"}, "pooling"),
        ({"filter_nums": (6,)}, "filter_nums"),
        ({"hidden_sizes": (120, 0)}, "hidden_sizes"),
        ({"input_dim": (1, 8, 8)}, "Pool2|Conv2"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LeNet(**kwargs)
