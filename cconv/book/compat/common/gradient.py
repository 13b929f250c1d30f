"""The book's ``common/gradient.py``: :func:`cconv.gradient.numerical_gradient`.

Central differences with the book's ``h = 1e-4``, perturbing ``x`` in place as the
book's ``lambda W: net.loss(x, t)`` needs; the result is float64.
"""

from cconv.gradient import numerical_gradient

__all__ = ["numerical_gradient"]
