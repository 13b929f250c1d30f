"""Adam's update of one parameter array, in one pass.

The book's Adam (``common/optimizer.py``) updates each parameter with
numpy expressions that sweep the arrays about ten times::

    m += (1 - beta1) * (grad - m)
    v += (1 - beta2) * (grad**2 - v)
    param -= lr_t * m / (sqrt(v) + eps)

:func:`adam_update` does the same operations, in the same order and in the
arrays' precision (the constants rounded to it once, as numpy rounds a Python
float scalar), element by element in one parallel sweep: the results are
bit-identical to the numpy expressions. The build turns off the contraction
of a product and a sum into one fused multiply-add, which would round once
instead of twice.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from cconv.kernels._common cimport clamp_threads
from cconv.kernels._openmp cimport effective_num_threads

import math
import numbers

import numpy as np

cdef enum:
    # Elements per task of the parallel loop.
    BLOCK = 8192


cdef inline void _adam_block(floating* param, const floating* grad, floating* m, floating* v,
                             floating lr_t, floating keep1, floating keep2, floating eps,
                             Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, step
    for i in range(n):
        g = grad[i]
        step = (g - m[i]) * keep1
        m[i] = m[i] + step
        step = (g * g - v[i]) * keep2
        v[i] = v[i] + step
        param[i] = param[i] - (m[i] * lr_t) / (<floating>sqrt(v[i]) + eps)


cdef void adam_update_core(floating[::1] param, const floating[::1] grad, floating[::1] m,
                           floating[::1] v, double lr_t, double beta1, double beta2, double eps,
                           int num_threads) noexcept nogil:
    """One Adam step on ``param`` (updating ``m`` and ``v``), element-wise.

    The four arrays have one length and ``param``, ``m`` and ``v`` share no
    memory with each other or with ``grad``. The constants are rounded to the
    arrays' precision first: ``(floating)(1 - beta1)``, ``(floating)lr_t``, ...
    """
    cdef Py_ssize_t n = param.shape[0], blocks = (n + BLOCK - 1) // BLOCK, block, start
    if n == 0:
        return
    cdef floating c_lr = <floating>lr_t, keep1 = <floating>(1 - beta1)
    cdef floating keep2 = <floating>(1 - beta2), c_eps = <floating>eps
    cdef floating* p_data = &param[0]
    cdef const floating* g_data = &grad[0]
    cdef floating* m_data = &m[0]
    cdef floating* v_data = &v[0]
    for block in prange(blocks, schedule="static",
                        num_threads=clamp_threads(num_threads, blocks, n)):
        start = block * BLOCK
        _adam_block(p_data + start, g_data + start, m_data + start, v_data + start,
                    c_lr, keep1, keep2, c_eps, min(BLOCK, n - start))


# ---------------------------------------------------------------- Python API

cdef void _adam_nogil(floating[::1] param, const floating[::1] grad, floating[::1] m,
                      floating[::1] v, double lr_t, double beta1, double beta2, double eps):
    cdef int num_threads = effective_num_threads()
    with nogil:
        adam_update_core(param, grad, m, v, lr_t, beta1, beta2, eps, num_threads)


def fits(param, grad, m, v):
    """True when :func:`adam_update` takes these arrays (else use the numpy expressions).

    All four are aligned, C-contiguous ndarrays of one shape and one dtype,
    float32 or float64; ``param``, ``m`` and ``v`` are writeable and share no
    memory with each other or with ``grad``.
    """
    arrays = (param, grad, m, v)
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return False
    if param.dtype not in (np.float32, np.float64) or not param.dtype.isnative:
        return False
    if any(a.dtype != param.dtype or a.shape != param.shape or not a.flags.c_contiguous
           or not a.flags.aligned for a in arrays):
        return False
    if not (param.flags.writeable and m.flags.writeable and v.flags.writeable):
        return False
    return not any(np.may_share_memory(a, b)
                   for i, a in enumerate(arrays) for b in arrays[i + 1:])


def _as_real(value, name, dtype):
    """``value`` as a Python float that ``dtype`` can hold, or TypeError/ValueError naming ``name``.

    inf and NaN pass (the update then yields them, as the numpy expressions do);
    a finite value beyond ``dtype``'s range is refused: converting it is undefined in C.
    """
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        real = float(value)
    except OverflowError:  # an int or a fraction beyond a double
        real = math.inf
    too_large_for_a_double = math.isinf(real) and not isinstance(value, (float, np.floating))
    if too_large_for_a_double or (math.isfinite(real) and abs(real) > float(np.finfo(dtype).max)):
        raise ValueError(f"{name} must fit {np.dtype(dtype).name}, got {value!r}")
    return real


def adam_update(param, grad, m, v, lr_t, beta1, beta2, eps):
    """One Adam step, in place: the book's update, bit for bit, in one pass.

    Parameters
    ----------
    param : ndarray, float32 or float64, aligned, C-contiguous, writeable
        Updated in place: ``param -= lr_t * m / (sqrt(v) + eps)``.
    grad : ndarray, shape and dtype of param, C-contiguous
    m, v : ndarray, shape and dtype of param, C-contiguous, writeable
        First and second moments, updated in place first.
    lr_t, beta1, beta2, eps : float
        The step size (bias correction folded in) and Adam's constants.

    Raises
    ------
    TypeError, ValueError
        When the arrays do not satisfy :func:`fits`, or a constant is not a
        real number that the arrays' dtype can hold (inf and NaN can be).
    """
    if not fits(param, grad, m, v):
        raise ValueError(
            "param, grad, m and v must be aligned, C-contiguous float32 or float64 ndarrays of "
            "one shape and dtype, param, m and v writeable and no two sharing memory"
        )
    lr_t, beta1, beta2, eps = (_as_real(value, name, param.dtype) for value, name in
                               ((lr_t, "lr_t"), (beta1, "beta1"), (beta2, "beta2"), (eps, "eps")))
    if param.dtype == np.float32:
        _adam_nogil[float](param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                           lr_t, beta1, beta2, eps)
    else:
        _adam_nogil[double](param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                            lr_t, beta1, beta2, eps)
