"""LeNet-5 (LeCun et al., 1998), as the book's chapter 7 describes it.

conv 6@5x5 (pad 2) - act - pool 2x2 - conv 16@5x5 - act - pool 2x2 -
affine 120 - act - affine 84 - act - affine 10 - softmax

The original uses sigmoid activations and subsampling (average pooling);
"today's CNNs" use ReLU and max pooling: both are a constructor argument.
"""

import numpy as np

from cconv._validation import check_input_dim, check_int, conv_output_size
from cconv.layers import AvgPooling, Pooling, Relu, Sigmoid, SoftmaxWithLoss
from cconv.nets._base import (
    Network,
    Weight,
    init_scale,
    make_layers,
)

__all__ = ["LeNet"]

_ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}
_POOLINGS = {"max": Pooling, "avg": AvgPooling}
#: Filter size and pads of the two convolutions.
_SIZE = 5
_PADS = (2, 0)


def choose(value, options, name):
    """``options[value]`` or a ``ValueError`` naming ``name`` and the choices."""
    try:
        return options[value]
    except (KeyError, TypeError):
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}") from None


class LeNet(Network):
    """LeNet-5 for 28x28 (or other) images.

    Parameters
    ----------
    input_dim : (C, H, W), default (1, 28, 28)
        The first convolution pads by 2, so 28x28 images meet the classic
        32x32 geometry: 28 -> 28 -> 14 -> 10 -> 5, and 16*5*5 = 400 features.
    output_size : int, default 10
    activation : {'sigmoid', 'relu'}, default 'sigmoid' (the original)
    pooling : {'avg', 'max'}, default 'avg' (the original's subsampling)
    filter_nums : (int, int), default (6, 16)
        Filters of the two convolutions.
    hidden_sizes : (int, int), default (120, 84)
    weight_init_std : float or str, optional
        Default: He (``sqrt(2/fan_in)``) for ReLU, Xavier (``sqrt(1/fan_in)``)
        for sigmoid, as the book's ``MultiLayerNet``.
    dtype : float64 (default) or float32
    seed : int, optional
        Seed of a private generator (default: the global ``np.random``).

    Attributes
    ----------
    params : dict
        ``W1``, ``b1`` (conv1), ``W2``, ``b2`` (conv2), ``W3``..``W5``, ``b3``..``b5`` (affine).
    layers : OrderedDict
        ``Conv1``, ``Act1``, ``Pool1``, ``Conv2``, ``Act2``, ``Pool2``, ``Affine3``,
        ``Act3``, ``Affine4``, ``Act4``, ``Affine5``.
    """

    #: The name ``cconv train --net`` knows it by.
    short_name = "lenet"

    def __init__(
        self,
        input_dim=(1, 28, 28),
        output_size=10,
        activation="sigmoid",
        pooling="avg",
        filter_nums=(6, 16),
        hidden_sizes=(120, 84),
        weight_init_std=None,
        dtype=np.float64,
        seed=None,
    ):
        config = self._build(
            dtype,
            seed,
            input_dim=input_dim,
            output_size=output_size,
            activation=activation,
            pooling=pooling,
            filter_nums=filter_nums,
            hidden_sizes=hidden_sizes,
            weight_init_std=weight_init_std,
        )
        act_cls = _ACTIVATIONS[config["activation"]]
        pool_cls = _POOLINGS[config["pooling"]]
        layers = []
        for i, pad in enumerate(_PADS, start=1):
            layers += [
                (f"Conv{i}", self._conv(i, 1, pad)),
                (f"Act{i}", act_cls()),
                (f"Pool{i}", pool_cls(pool_h=2, pool_w=2, stride=2)),
            ]
        for i in range(3, 6):
            layers.append((f"Affine{i}", self._affine(i)))
            if i < 5:
                layers.append((f"Act{i}", act_cls()))
        self.layers = make_layers(layers)
        self.last_layer = SoftmaxWithLoss()

    @classmethod
    def _plan(
        cls, input_dim, output_size, activation, pooling, filter_nums, hidden_sizes, weight_init_std
    ):
        input_dim = check_input_dim(input_dim)
        output_size = check_int(output_size, "output_size", non_int_error=ValueError)
        choose(activation, _ACTIVATIONS, "activation")
        choose(pooling, _POOLINGS, "pooling")
        filter_nums = _pair_of_counts(filter_nums, "filter_nums")
        hidden_sizes = _pair_of_counts(hidden_sizes, "hidden_sizes")
        if weight_init_std is None:
            weight_init_std = "he" if activation == "relu" else "xavier"
        config = {
            "input_dim": input_dim,
            "output_size": output_size,
            "activation": activation,
            "pooling": pooling,
            "filter_nums": filter_nums,
            "hidden_sizes": hidden_sizes,
            "weight_init_std": weight_init_std,
        }

        channels, height, width = input_dim
        weights = []
        for i, (filter_num, pad) in enumerate(zip(filter_nums, _PADS), start=1):
            weights.append(
                Weight(
                    i,
                    (filter_num, channels, _SIZE, _SIZE),
                    init_scale(weight_init_std, channels * _SIZE * _SIZE),
                )
            )
            height, width = conv_output_size((height, width), (_SIZE, _SIZE), (1, 1), (pad, pad),
                                             f"input of Conv{i}")
            height, width = conv_output_size((height, width), (2, 2), (2, 2), (0, 0),
                                             f"input of Pool{i}")
            channels = filter_num
        sizes = (channels * height * width, *hidden_sizes, output_size)
        for i in range(3, 6):
            fan_in, fan_out = sizes[i - 3], sizes[i - 2]
            weights.append(Weight(i, (fan_in, fan_out), init_scale(weight_init_std, fan_in)))
        return config, weights


def _pair_of_counts(value, name):
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of integers >= 1, got {value!r}") from None
    return (check_int(first, f"{name}[0]", non_int_error=ValueError),
            check_int(second, f"{name}[1]", non_int_error=ValueError))
