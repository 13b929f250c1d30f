"""The book's ``dataset/mnist.py``: :func:`cconv.datasets.load_mnist`.

``load_mnist(normalize=True, flatten=True, one_hot_label=False)`` returns the book's
``(x_train, t_train), (x_test, t_test)``. The IDX files come from cconv's cache folder
(``$CCONV_DATA``, else e.g. ``~/.cache/cconv``), downloaded and checked when missing,
not from the book's ``dataset/mnist.pkl``.
"""

from cconv.datasets import load_mnist

__all__ = ["load_mnist"]
