"""Numerical gradient by central differences, as the book's ``common/gradient.py``.

For checking backpropagation, not for training: it calls ``f`` twice per
element of ``x``.
"""

import numpy as np

from cconv._validation import check_perturbable

__all__ = ["numerical_gradient"]


def numerical_gradient(f, x, h=1e-4):
    """Gradient of the scalar function ``f`` at ``x`` by central differences.

    Each element of ``x`` in turn is set to ``x + h`` and ``x - h`` **in place**
    and ``f(x)`` is evaluated; the element is then restored to its exact old
    value. Because ``x`` itself is perturbed, ``f`` may ignore its argument
    and read ``x`` through a layer or network that holds the same array, as
    the book's ``lambda W: net.loss(x, t)`` does.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a real scalar (a Python or NumPy number, or a
        one-element array).
    x : ndarray, any shape
        Writeable floating array; float64 for accurate checks (a float32
        ``x`` is perturbed in float32, which loses most digits of ``h``).
    h : float, default 1e-4
        Step, the book's value.

    Returns
    -------
    grad : ndarray of float64, shape of ``x``
        ``(f(x + h e_i) - f(x - h e_i)) / (2 h)`` for every element ``i``,
        computed in float64.

    Raises
    ------
    TypeError
        If ``x`` is not a writeable NumPy array of a floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> g = numerical_gradient(lambda v: np.sum(v ** 2), x)
    >>> np.allclose(g, 2 * x), x.tolist()
    (True, [1.0, 2.0, 3.0])
    """
    check_perturbable(x)
    grad = np.zeros(x.shape, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readonly"]])
    while not it.finished:
        idx = it.multi_index
        saved = x[idx].copy()
        try:
            x[idx] = float(saved) + h
            upper = float(np.asarray(f(x)).item())
            x[idx] = float(saved) - h
            lower = float(np.asarray(f(x)).item())
        finally:
            x[idx] = saved
        grad[idx] = (upper - lower) / (2 * h)
        it.iternext()
    return grad
