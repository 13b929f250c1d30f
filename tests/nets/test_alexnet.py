"""AlexNet-style network: the classic 227x227 layout, small inputs, gradients, dtypes."""

import numpy as np
import pytest

from cconv.layers import LRN, Dropout, Pooling
from cconv.nets import AlexNet

import nets_testutils as nu

TINY = dict(input_dim=(1, 16, 16), output_size=3, width=0.02, hidden_size=6)


def trace_shapes(net, x):
    """Output shape (without the batch axis) of every layer, in test mode."""
    shapes = {}
    for name, layer in net.layers.items():
        x = layer.forward(x, False) if isinstance(layer, Dropout) else layer.forward(x)
        shapes[name] = x.shape[1:]
    return shapes


def test_classic_227_layout():
    net = AlexNet(dtype=np.float32, seed=0)  # ~62M parameters: float32 keeps it light
    shapes = trace_shapes(net, np.zeros((1, 3, 227, 227), np.float32))
    assert shapes == {
        "Conv1": (96, 55, 55),
        "Relu1": (96, 55, 55),
        "LRN1": (96, 55, 55),
        "Pool1": (96, 27, 27),
        "Conv2": (256, 27, 27),
        "Relu2": (256, 27, 27),
        "LRN2": (256, 27, 27),
        "Pool2": (256, 13, 13),
        "Conv3": (384, 13, 13),
        "Relu3": (384, 13, 13),
        "Conv4": (384, 13, 13),
        "Relu4": (384, 13, 13),
        "Conv5": (256, 13, 13),
        "Relu5": (256, 13, 13),
        "Pool5": (256, 6, 6),
        "Affine6": (4096,),
        "Relu6": (4096,),
        "Dropout6": (4096,),
        "Affine7": (4096,),
        "Relu7": (4096,),
        "Dropout7": (4096,),
        "Affine8": (1000,),
    }
    convs = [net.layers[f"Conv{i}"] for i in range(1, 6)]
    assert [c.W.shape[1:] for c in convs] == [
        (3, 11, 11),
        (96, 5, 5),
        (256, 3, 3),
        (384, 3, 3),
        (384, 3, 3),
    ]
    assert [(c.stride, c.pad) for c in convs] == [(4, 0), (1, 2), (1, 1), (1, 1), (1, 1)]
    for name in ("Pool1", "Pool2", "Pool5"):
        pool = net.layers[name]
        assert type(pool) is Pooling and (pool.pool_h, pool.pool_w, pool.stride) == (3, 3, 2)
    lrn = net.layers["LRN1"]
    assert isinstance(lrn, LRN) and (lrn.n, lrn.k, lrn.alpha, lrn.beta) == (5, 2, 1e-4, 0.75)
    assert net.params["W6"].shape == (256 * 6 * 6, 4096)
    assert all(net.layers[f"Dropout{i}"].dropout_ratio == 0.5 for i in (6, 7))
    assert all(v.dtype == np.float32 for v in net.params.values())


@pytest.mark.parametrize(
    ("input_dim", "features"),
    [((1, 28, 28), (2, 2)), ((3, 32, 32), (3, 3)), ((3, 64, 64), (7, 7)), ((3, 67, 67), (1, 1))],
)
def test_small_inputs(input_dim, features):
    net = AlexNet(input_dim=input_dim, output_size=10, width=0.1, hidden_size=32, seed=0)
    classic = min(input_dim[1:]) >= 67
    assert net.config["conv1_param"] == (
        {"filter_size": 11, "stride": 4, "pad": 0}
        if classic
        else {"filter_size": 3, "stride": 1, "pad": 1}
    )
    shapes = trace_shapes(net, np.zeros((2, *input_dim)))
    assert shapes["Pool5"][1:] == features
    assert shapes["Affine8"] == (10,)


def test_width_scales_the_filters():
    net = AlexNet(input_dim=(1, 28, 28), output_size=10, width=0.25, hidden_size=64, seed=0)
    assert [net.params[f"W{i}"].shape[0] for i in range(1, 6)] == [24, 64, 96, 96, 64]
    assert net.params["W7"].shape == (64, 64)


@pytest.mark.parametrize(
    "lrn_param", [None, {"alpha": 0.5, "k": 1.0}], ids=["paper-lrn", "strong-lrn"]
)
def test_gradient_check(lrn_param):
    # The paper's alpha=1e-4 barely touches the gradient; a strong LRN exercises its backward too.
    net = AlexNet(**TINY, lrn_param=lrn_param, weight_init_std=0.3, seed=0)
    assert nu.fix_dropout_masks(net) == 2
    x = np.random.default_rng(1).standard_normal((2, 1, 16, 16))
    nu.check_gradients(net, x, np.array([0, 2]))


def test_float32_stays_float32(rng):
    net = AlexNet(**TINY, dtype=np.float32, seed=0)
    x, t = rng.standard_normal((2, 1, 16, 16)), np.array([0, 1])
    assert net.predict(x).dtype == np.float32
    assert all(g.dtype == np.float32 for g in net.gradient(x, t).values())


def test_options():
    net = AlexNet(
        **TINY,
        conv1_param={"filter_size": 5, "pad": 2, "stride": 1},
        dropout_ratio=0.25,
        lrn_param={"n": 3},
        seed=0,
    )
    assert net.params["W1"].shape[2:] == (5, 5)
    assert net.layers["Dropout6"].dropout_ratio == 0.25
    assert net.layers["LRN2"].n == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_dim": (1, 8, 8)}, "Pool"),
        ({"width": 0}, "width"),
        ({"dropout_ratio": 1.0}, "dropout_ratio"),
        ({"conv1_param": {"size": 3}}, "conv1_param"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AlexNet(**{**TINY, **kwargs})
