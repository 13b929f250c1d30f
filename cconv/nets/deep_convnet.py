"""The book's ``ch08/deep_convnet.py``: six 3x3 convolutions, He init, dropout; ~99.3% on MNIST.

conv - relu - conv - relu - pool -
conv - relu - conv - relu - pool -
conv - relu - conv - relu - pool -
affine - relu - dropout - affine - dropout - softmax
"""

import types

import numpy as np

from cconv._validation import check_input_dim, check_int, conv_output_size
from cconv.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from cconv.nets._base import (
    Network,
    Weight,
    init_scale,
)
from cconv.nets.simple_convnet import conv_param_dict

__all__ = ["DeepConvNet"]


def _conv(filter_num, pad):
    return types.MappingProxyType(
        {"filter_num": filter_num, "filter_size": 3, "pad": pad, "stride": 1}
    )


#: The book's six convolutions (read-only defaults): note the pad of 2 on the fourth.
DEFAULT_CONV_PARAMS = (
    _conv(16, 1),
    _conv(16, 1),
    _conv(32, 1),
    _conv(32, 2),
    _conv(64, 1),
    _conv(64, 1),
)

#: Indices in ``layers`` of the layers holding W1..W8 (the book's ``(0, 2, 5, 7, 10, 12, 15, 18)``).
PARAM_LAYER_INDICES = (0, 2, 5, 7, 10, 12, 15, 18)


class DeepConvNet(Network):
    """The book's deep ConvNet for MNIST (chapter 8), recognition rate over 99%.

    Parameters
    ----------
    input_dim : (C, H, W), default (1, 28, 28)
    conv_param_1 ... conv_param_6 : dict
        ``filter_num``, ``filter_size``, ``pad``, ``stride`` of each convolution;
        the book's defaults are 3x3 filters, stride 1, 16, 16, 32, 32, 64, 64
        filters and pads 1, 1, 1, 2, 1, 1 (so 28x28 inputs end in 64x4x4).
    hidden_size : int, default 50
    output_size : int, default 10
    dtype : float64 (default, as the book) or float32
    seed : int, optional
        Seed of a private generator; by default the weights come from the
        global ``np.random.randn``, exactly as the book draws them.

    Weights are He-initialised, ``sqrt(2 / fan_in)`` with the book's fan-ins
    ``[C*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3, 64*3*3, 64*4*4, hidden_size]``
    (computed from the actual settings, so other input sizes work).

    Attributes
    ----------
    params : dict
        ``W1``..``W8``, ``b1``..``b8``, the arrays the layers hold.
    layers : list
        As the book: a list of 20 layers; ``layers[i]`` for ``i`` in
        ``(0, 2, 5, 7, 10, 12, 15, 18)`` hold ``W1``..``W8``.
    last_layer : SoftmaxWithLoss
    """

    #: The name ``cconv train --net`` knows it by.
    short_name = "deep"

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param_1=DEFAULT_CONV_PARAMS[0],
        conv_param_2=DEFAULT_CONV_PARAMS[1],
        conv_param_3=DEFAULT_CONV_PARAMS[2],
        conv_param_4=DEFAULT_CONV_PARAMS[3],
        conv_param_5=DEFAULT_CONV_PARAMS[4],
        conv_param_6=DEFAULT_CONV_PARAMS[5],
        hidden_size=50,
        output_size=10,
        dtype=np.float64,
        seed=None,
    ):
        conv_params = [conv_param_1, conv_param_2, conv_param_3]
        conv_params += [conv_param_4, conv_param_5, conv_param_6]
        config = self._build(
            dtype,
            seed,
            input_dim=input_dim,
            hidden_size=hidden_size,
            output_size=output_size,
            **{f"conv_param_{i}": param for i, param in enumerate(conv_params, start=1)},
        )

        # Layers, a list as in the book.
        p = self.params
        self.layers = []
        for i in range(6):
            conv = config[f"conv_param_{i + 1}"]
            self.layers.append(
                Convolution(p[f"W{i + 1}"], p[f"b{i + 1}"], conv["stride"], conv["pad"])
            )
            self.layers.append(Relu())
            if i % 2 == 1:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        self.layers += [
            Affine(p["W7"], p["b7"]),
            Relu(),
            self._dropout(0.5),
            Affine(p["W8"], p["b8"]),
            self._dropout(0.5),
        ]
        for i, index in enumerate(PARAM_LAYER_INDICES):
            self._link(self.layers[index], W=f"W{i + 1}", b=f"b{i + 1}")
        self.last_layer = SoftmaxWithLoss()

    @classmethod
    def _plan(cls, input_dim, hidden_size, output_size, **conv_params):
        # conv_params: conv_param_1 ... conv_param_6, as the constructor's arguments
        input_dim = check_input_dim(input_dim)
        convs = [
            conv_param_dict(conv_params[f"conv_param_{i}"], default, f"conv_param_{i}")
            for i, default in enumerate(DEFAULT_CONV_PARAMS, start=1)
        ]
        hidden_size = check_int(hidden_size, "hidden_size", non_int_error=ValueError)
        output_size = check_int(output_size, "output_size", non_int_error=ValueError)
        config = {"input_dim": input_dim}
        config.update({f"conv_param_{i + 1}": conv for i, conv in enumerate(convs)})
        config.update(hidden_size=hidden_size, output_size=output_size)

        # Shapes through the three conv-conv-pool blocks.
        channels, height, width = input_dim
        pre_node_nums = []
        for i, conv in enumerate(convs):
            size, stride, pad = conv["filter_size"], conv["stride"], conv["pad"]
            pre_node_nums.append(channels * size * size)
            height, width = conv_output_size((height, width), (size, size), (stride, stride),
                                             (pad, pad), f"input of Conv{i + 1}")
            channels = conv["filter_num"]
            if i % 2 == 1:
                height, width = conv_output_size((height, width), (2, 2), (2, 2), (0, 0),
                                                 f"input of Pool{i // 2 + 1}")
        flat_size = channels * height * width  # 64*4*4 for the book's settings
        pre_node_nums += [flat_size, hidden_size]

        # Weights, drawn in the book's order: W1..W6, then W7, W8.
        weights = []
        in_channels = input_dim[0]
        for i, conv in enumerate(convs):
            size = conv["filter_size"]
            shape = (conv["filter_num"], in_channels, size, size)
            weights.append(Weight(i + 1, shape, init_scale("he", pre_node_nums[i])))
            in_channels = conv["filter_num"]
        weights.append(Weight(7, (flat_size, hidden_size), init_scale("he", pre_node_nums[6])))
        weights.append(Weight(8, (hidden_size, output_size), init_scale("he", pre_node_nums[7])))
        return config, weights
