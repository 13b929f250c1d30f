"""An AlexNet-style network (Krizhevsky, Sutskever and Hinton, 2012), as the book sketches it.

conv1 - relu - LRN - maxpool 3x3/2 - conv2 (5x5, pad 2) - relu - LRN - maxpool 3x3/2 -
conv3 (3x3, pad 1) - relu - conv4 (3x3, pad 1) - relu - conv5 (3x3, pad 1) - relu - maxpool 3x3/2 -
affine - relu - dropout - affine - relu - dropout - affine - softmax

With ``input_dim=(3, 227, 227)`` and ``width=1`` this is the classic layout:
conv1 96@11x11 stride 4 (227 -> 55 -> 27), conv2 256, conv3 384, conv4 384,
conv5 256 (13 -> 6), fully connected 9216 -> 4096 -> 4096 -> classes.
Small images (28x28 MNIST, 32x32 CIFAR) get a 3x3, stride 1, pad 1 first
convolution instead of the 11x11 stride 4 one, which would shrink them to nothing.
"""

import numpy as np

from cconv._validation import check_input_dim, check_int, conv_output_size
from cconv.layers import LRN, Pooling, Relu, SoftmaxWithLoss
from cconv.nets._base import (
    Network,
    Weight,
    init_scale,
    make_layers,
)
from cconv.nets.simple_convnet import conv_param_dict

__all__ = ["AlexNet"]

#: Filters of conv1..conv5 at ``width=1``.
CLASSIC_FILTER_NUMS = (96, 256, 384, 384, 256)
CLASSIC_CONV1 = {"filter_size": 11, "stride": 4, "pad": 0}
SMALL_CONV1 = {"filter_size": 3, "stride": 1, "pad": 1}
#: (filter_size, stride, pad) of conv2..conv5.
_LATER_CONVS = ((5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))
#: conv indices followed by LRN, and by a 3x3 stride-2 max pool.
_LRN_AFTER = (1, 2)
_POOL_AFTER = (1, 2, 5)


def _conv_geometries(conv1):
    """(filter_size, stride, pad) of conv1..conv5, conv1 from its ``conv1_param`` dict."""
    return [(conv1["filter_size"], conv1["stride"], conv1["pad"]), *_LATER_CONVS]


def _feature_geometry(height, width, conv1):
    """(height, width) after the feature extractor; ``ValueError`` if a layer does not fit."""
    for i, (size, stride, pad) in enumerate(_conv_geometries(conv1), start=1):
        height, width = conv_output_size((height, width), (size, size), (stride, stride),
                                         (pad, pad), f"input of Conv{i}")
        if i in _POOL_AFTER:
            height, width = conv_output_size((height, width), (3, 3), (2, 2), (0, 0),
                                             f"input of Pool{i}")
    return height, width


def _default_conv1(height, width):
    try:
        _feature_geometry(height, width, CLASSIC_CONV1)
    except ValueError:
        return dict(SMALL_CONV1)
    return dict(CLASSIC_CONV1)


class AlexNet(Network):
    """AlexNet-style ConvNet: conv-relu-LRN-pool blocks, dropout in the classifier.

    Parameters
    ----------
    input_dim : (C, H, W), default (3, 227, 227)
        Any size from 28x28 up.
    output_size : int, default 1000
    width : float, default 1.0
        Scales the conv filter counts (96, 256, 384, 384, 256); e.g. ``width=0.25``
        for a network that trains quickly on MNIST or CIFAR-10.
    hidden_size : int, default 4096
        Units of the two hidden fully connected layers.
    dropout_ratio : float, default 0.5
    conv1_param : dict, optional
        ``filter_size``, ``stride``, ``pad`` of the first convolution. Default:
        11x11 stride 4 when the input is large enough for it (>= 67 pixels),
        else 3x3 stride 1 pad 1.
    lrn_param : dict, optional
        Arguments of the LRN layers (default ``n=5, k=2, alpha=1e-4, beta=0.75``, as the paper).
    weight_init_std : float or str, default 'he'
    dtype : float64 (default) or float32
    seed : int, optional
        Seed of a private generator (default: the global ``np.random``).

    Attributes
    ----------
    params : dict
        ``W1``..``W5`` (convolutions), ``W6``..``W8`` (affine) and ``b1``..``b8``.
    layers : OrderedDict
        ``Conv1``, ``Relu1``, ``LRN1``, ``Pool1``, ``Conv2``, ``Relu2``, ``LRN2``, ``Pool2``,
        ``Conv3``, ``Relu3``, ``Conv4``, ``Relu4``, ``Conv5``, ``Relu5``, ``Pool5``,
        ``Affine6``, ``Relu6``, ``Dropout6``, ``Affine7``, ``Relu7``, ``Dropout7``, ``Affine8``.
    """

    #: The name ``cconv train --net`` knows it by.
    short_name = "alexnet"

    def __init__(
        self,
        input_dim=(3, 227, 227),
        output_size=1000,
        width=1.0,
        hidden_size=4096,
        dropout_ratio=0.5,
        conv1_param=None,
        lrn_param=None,
        weight_init_std="he",
        dtype=np.float64,
        seed=None,
    ):
        config = self._build(
            dtype,
            seed,
            input_dim=input_dim,
            output_size=output_size,
            width=width,
            hidden_size=hidden_size,
            dropout_ratio=dropout_ratio,
            conv1_param=conv1_param,
            lrn_param=lrn_param,
            weight_init_std=weight_init_std,
        )
        layers = []
        for i, (_, stride, pad) in enumerate(_conv_geometries(config["conv1_param"]), start=1):
            layers += [(f"Conv{i}", self._conv(i, stride, pad)), (f"Relu{i}", Relu())]
            if i in _LRN_AFTER:
                layers.append((f"LRN{i}", LRN(**config["lrn_param"])))
            if i in _POOL_AFTER:
                layers.append((f"Pool{i}", Pooling(pool_h=3, pool_w=3, stride=2)))
        for i in range(6, 9):
            layers.append((f"Affine{i}", self._affine(i)))
            if i < 8:
                dropout = self._dropout(config["dropout_ratio"])
                layers += [(f"Relu{i}", Relu()), (f"Dropout{i}", dropout)]
        self.layers = make_layers(layers)
        self.last_layer = SoftmaxWithLoss()

    @classmethod
    def _plan(
        cls,
        input_dim,
        output_size,
        width,
        hidden_size,
        dropout_ratio,
        conv1_param,
        lrn_param,
        weight_init_std,
    ):
        input_dim = check_input_dim(input_dim)
        output_size = check_int(output_size, "output_size", non_int_error=ValueError)
        hidden_size = check_int(hidden_size, "hidden_size", non_int_error=ValueError)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
            raise ValueError(f"width must be a number > 0, got {width!r}")
        if (
            isinstance(dropout_ratio, bool)
            or not isinstance(dropout_ratio, (int, float))
            or not 0 <= dropout_ratio < 1
        ):
            raise ValueError(f"dropout_ratio must be a number in [0, 1), got {dropout_ratio!r}")
        channels, height, width_px = input_dim
        if conv1_param is None:
            conv1_param = _default_conv1(height, width_px)
        conv1 = conv_param_dict(
            {"filter_num": 1, **conv1_param}, {"filter_num": 1, **CLASSIC_CONV1}, "conv1_param"
        )
        del conv1["filter_num"]
        lrn_param = dict(lrn_param or {})
        filter_nums = tuple(max(1, round(n * width)) for n in CLASSIC_FILTER_NUMS)
        config = {
            "input_dim": input_dim,
            "output_size": output_size,
            "width": width,
            "hidden_size": hidden_size,
            "dropout_ratio": dropout_ratio,
            "conv1_param": conv1,
            "lrn_param": lrn_param,
            "weight_init_std": weight_init_std,
        }
        feature_h, feature_w = _feature_geometry(height, width_px, conv1)

        weights = []
        for i, ((size, _, _), filter_num) in enumerate(
            zip(_conv_geometries(conv1), filter_nums), start=1
        ):
            shape = (filter_num, channels, size, size)
            weights.append(Weight(i, shape, init_scale(weight_init_std, channels * size * size)))
            channels = filter_num
        sizes = (channels * feature_h * feature_w, hidden_size, hidden_size, output_size)
        for i in range(6, 9):
            fan_in, fan_out = sizes[i - 6], sizes[i - 5]
            weights.append(Weight(i, (fan_in, fan_out), init_scale(weight_init_std, fan_in)))
        return config, weights
