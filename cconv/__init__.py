"""cconv: fast, safe CNN kernels for NumPy, and the book's CNN stack on top.

The kernels (convolution, im2col, col2im, max and average pooling, ReLU, forward and backward)
are typed Cython modules that release the GIL and run in parallel with OpenMP
where the build supports it. Batches are (N, C, H, W); :func:`im2col` returns
rows ordered (n, oy, ox) and columns (c, ky, kx), as the book "Deep Learning
from Scratch" lays them out, so cconv is a drop-in for its ``im2col`` and
``col2im``.

On top of them, as drop-ins for the book's ``common`` package: layers
(:mod:`cconv.layers`), optimizers (:mod:`cconv.optim`), functions
(:mod:`cconv.functions`), networks (:mod:`cconv.nets`) and :class:`Trainer`.
"""

try:
    from cconv.kernels._openmp import get_num_threads, openmp_enabled, set_num_threads
except ImportError as exc:  # a source checkout on sys.path shadows the install
    raise ImportError(
        "cconv's compiled kernels (cconv.kernels) were not found: install the "
        "package with `pip install .` (or `pip install -e .` for development) and "
        f"run Python outside the source folder, whose cconv/ lacks them ({exc})"
    ) from exc
from cconv import functions, gradient, layers, nets, optim  # noqa: F401  (cconv.layers etc.)
from cconv.kernels.activation import relu_backward, relu_with_mask
from cconv.kernels.col2im import col2im
from cconv.kernels.conv import conv2d, conv2d_backward
from cconv.kernels.im2col import im2col
from cconv.kernels.pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from cconv.nets import AlexNet, DeepConvNet, LeNet, SimpleConvNet, load_network
from cconv.trainer import CheckpointError, Trainer, TrainingDiverged

__version__ = "0.1.0"

__all__ = [
    "AlexNet",
    "CheckpointError",
    "DeepConvNet",
    "LeNet",
    "SimpleConvNet",
    "Trainer",
    "TrainingDiverged",
    "avg_pool2d",
    "avg_pool2d_backward",
    "col2im",
    "conv2d",
    "conv2d_backward",
    "get_num_threads",
    "im2col",
    "load_network",
    "max_pool2d",
    "max_pool2d_backward",
    "openmp_enabled",
    "relu_backward",
    "relu_with_mask",
    "set_num_threads",
]
