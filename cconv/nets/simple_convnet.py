"""The book's ``ch07/simple_convnet.py``: conv - relu - pool - affine - relu - affine - softmax."""

import types

import numpy as np

from cconv._validation import check_input_dim, check_int, conv_output_size
from cconv.layers import Pooling, Relu, SoftmaxWithLoss
from cconv.nets._base import (
    Network,
    Weight,
    init_scale,
    make_layers,
)

__all__ = ["SimpleConvNet"]

#: The book's default convolution (read-only; pass a dict to change it).
DEFAULT_CONV_PARAM = types.MappingProxyType(
    {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
)


def conv_param_dict(conv_param, default, name="conv_param"):
    """``conv_param`` completed from ``default``; filter_num, filter_size, stride >= 1, pad >= 0."""
    unknown = set(conv_param) - set(default)
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {sorted(unknown)}; expected {sorted(default)}")
    param = {**default, **conv_param}
    for key in ("filter_num", "filter_size", "stride", "pad"):
        check_int(param[key], f"{name}[{key!r}]", minimum=0 if key == "pad" else 1,
                  non_int_error=ValueError)
    return {key: int(value) for key, value in param.items()}


class SimpleConvNet(Network):
    """A simple ConvNet, as the book's chapter 7.

    conv - relu - pool - affine - relu - affine - softmax

    Parameters
    ----------
    input_dim : (C, H, W), default (1, 28, 28)
    conv_param : dict
        ``filter_num`` (30), ``filter_size`` (5), ``pad`` (0), ``stride`` (1).
    hidden_size : int, default 100
    output_size : int, default 10
    weight_init_std : float or str, default 0.01
        Standard deviation of the initial weights, or ``'he'``/``'xavier'``
        (per layer, from its fan-in).
    dtype : float64 (default, as the book) or float32
    seed : int, optional
        Seed of a private generator; by default the weights come from the
        global ``np.random.randn``, exactly as the book draws them.

    Attributes
    ----------
    params : dict
        ``W1`` (conv filters), ``b1``, ``W2``, ``b2``, ``W3``, ``b3``: the very
        arrays the layers hold.
    layers : OrderedDict
        ``Conv1``, ``Relu1``, ``Pool1`` (2x2, stride 2), ``Affine1``, ``Relu2``, ``Affine2``.
    last_layer : SoftmaxWithLoss
    """

    #: The name ``cconv train --net`` knows it by.
    short_name = "simple"

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param=DEFAULT_CONV_PARAM,
        hidden_size=100,
        output_size=10,
        weight_init_std=0.01,
        dtype=np.float64,
        seed=None,
    ):
        config = self._build(
            dtype,
            seed,
            input_dim=input_dim,
            conv_param=conv_param,
            hidden_size=hidden_size,
            output_size=output_size,
            weight_init_std=weight_init_std,
        )
        conv = config["conv_param"]
        self.layers = make_layers(
            [
                ("Conv1", self._conv(1, conv["stride"], conv["pad"])),
                ("Relu1", Relu()),
                ("Pool1", Pooling(pool_h=2, pool_w=2, stride=2)),
                ("Affine1", self._affine(2)),
                ("Relu2", Relu()),
                ("Affine2", self._affine(3)),
            ]
        )
        self.last_layer = SoftmaxWithLoss()

    @classmethod
    def _plan(cls, input_dim, conv_param, hidden_size, output_size, weight_init_std):
        input_dim = check_input_dim(input_dim)
        conv = conv_param_dict(conv_param, DEFAULT_CONV_PARAM)
        hidden_size = check_int(hidden_size, "hidden_size", non_int_error=ValueError)
        output_size = check_int(output_size, "output_size", non_int_error=ValueError)
        config = {
            "input_dim": input_dim,
            "conv_param": conv,
            "hidden_size": hidden_size,
            "output_size": output_size,
            "weight_init_std": weight_init_std,
        }
        channels, height, width = input_dim
        size = conv["filter_size"]
        stride, pad = (conv["stride"],) * 2, (conv["pad"],) * 2
        conv_hw = conv_output_size((height, width), (size, size), stride, pad, "input of Conv1")
        pool_h, pool_w = conv_output_size(conv_hw, (2, 2), (2, 2), (0, 0), "input of Pool1")
        pool_output_size = conv["filter_num"] * pool_h * pool_w
        fan_ins = (channels * size * size, pool_output_size, hidden_size)
        weights = [
            Weight(
                1,
                (conv["filter_num"], channels, size, size),
                init_scale(weight_init_std, fan_ins[0]),
            ),
            Weight(2, (pool_output_size, hidden_size), init_scale(weight_init_std, fan_ins[1])),
            Weight(3, (hidden_size, output_size), init_scale(weight_init_std, fan_ins[2])),
        ]
        return config, weights
