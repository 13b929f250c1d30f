"""Run the book's own scripts on cconv: its ``common`` and ``dataset`` packages, made of cconv.

The scripts of "Deep Learning from Scratch" (ゼロから作るDeep Learning, 深度学习入门)
import the book's helper packages by their top-level names, after
``sys.path.append(os.pardir)``: ``from common.layers import *``, ``from common.util
import im2col, col2im``, ``from common.gradient import numerical_gradient``, ``from
common.trainer import Trainer``, ``from common.optimizer import *``, ``from
common.functions import *``, ``from dataset.mnist import load_mnist``. The folder that
:func:`shim_path` returns holds a ``common`` and a ``dataset`` package whose modules
re-export cconv's objects under the book's module and object names. With that folder
first on ``sys.path``, those imports give cconv's layers, kernels, optimizers, trainer
and MNIST loader, and the scripts run unchanged::

    cd ch07
    python -m cconv.book train_convnet.py        # runs it as `python train_convnet.py` would
    PYTHONPATH="$(python -m cconv.book --path)" python train_convnet.py   # the same by hand

``python -m cconv.book SCRIPT [ARG ...]`` runs ``SCRIPT`` as ``__main__`` with
``sys.argv`` set to the script and its arguments and the script's own folder on
``sys.path`` (so ``from simple_convnet import SimpleConvNet`` finds the chapter's
file), with the shim folder before it. Relative file names (``params.pkl``) stay
relative to the working directory, as with ``python SCRIPT``.

What the shim provides
----------------------
================================  ==========================================================
book module                       taken from
================================  ==========================================================
``common.layers``                 :mod:`cconv.layers` (``Relu``, ``Sigmoid``, ``Affine``,
                                  ``SoftmaxWithLoss``, ``Dropout``, ``BatchNormalization``,
                                  ``Convolution``, ``Pooling``), plus what the book's module
                                  star-imports: ``common.functions`` and ``im2col``/``col2im``
``common.util``                   :func:`cconv.im2col`, :func:`cconv.col2im`; the book's
                                  ``smooth_curve``, ``shuffle_dataset``, ``conv_output_size``
``common.functions``              :mod:`cconv.functions` (``sigmoid``, ``relu``, ``softmax``,
                                  ``cross_entropy_error``); the book's one-liners
                                  ``identity_function``, ``step_function``, ``sigmoid_grad``,
                                  ``relu_grad``, ``sum_squared_error``, ``softmax_loss``
``common.gradient``               :func:`cconv.gradient.numerical_gradient`
``common.optimizer``              :mod:`cconv.optim` (``SGD`` ... ``Adam``)
``common.trainer``                :class:`cconv.Trainer` (and, as the book's module, the
                                  optimizers)
``dataset.mnist``                 :func:`cconv.datasets.load_mnist`
================================  ==========================================================

The layers differ from the book's where :mod:`cconv.layers` says so (``Relu.backward``
leaves ``dout`` alone, max pooling pads with -inf, ``im2col`` keeps float32 float32,
...); the trainer adds a progress bar and prints no per-step loss when it shows one
(:class:`cconv.Trainer`). ``load_mnist`` reads the IDX files from cconv's cache
folder, downloading them when needed (:mod:`cconv.datasets`), instead of the book's
``dataset/mnist.pkl``. ``from common.layers import *`` does not export ``np``: the
book's scripts import NumPy themselves.

Modules of the book's ``common`` that the shim lacks (``multi_layer_net``,
``multi_layer_net_extend``, ``three_layer_net``) are imported from the book's own
``common/`` folder when one is on ``sys.path`` at the first import of ``common`` (the
scripts' ``sys.path.append(os.pardir)`` puts a checkout's there); they then build on
cconv's layers. The networks a script defines itself (``ch07/simple_convnet.py``,
``ch08/deep_convnet.py``) run as written, ``pickle`` in their ``save_params`` and
``load_params`` included: load only parameter files you trust that way, or read them
with :meth:`cconv.SimpleConvNet.load_params`, which refuses anything but arrays.
"""

import os

__all__ = ["shim_path"]


def shim_path():
    """The folder to put first on ``sys.path`` (or ``PYTHONPATH``) for the book's imports.

    It holds the ``common`` and ``dataset`` packages of the shim (it is not itself a
    package).

    Returns
    -------
    str
        Absolute path of the folder.

    Examples
    --------
    >>> import os
    >>> sorted(name for name in os.listdir(shim_path()) if not name.startswith("__"))
    ['common', 'dataset']
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat")
