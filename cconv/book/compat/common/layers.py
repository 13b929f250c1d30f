"""The book's ``common/layers.py``: cconv's layers, under the book's names.

As the book's module, it also exports what that module star-imports: the functions
of ``common.functions`` and ``im2col``/``col2im`` of ``common.util`` (not ``np``).
"""

from cconv.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)

from . import functions
from .functions import *  # noqa: F403  (the book's module star-imports them too)
from .util import col2im, im2col

__all__ = [
    "Affine",
    "BatchNormalization",
    "Convolution",
    "Dropout",
    "Pooling",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
    "col2im",
    "im2col",
    *functions.__all__,
]
