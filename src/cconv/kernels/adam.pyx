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

import numpy as np

# adam_update_accepts is part of this module's API too: callers ask it before adam_update.
from cconv._validation import adam_update_accepts, as_float_constant, check_adam_arrays  # no-cython-lint

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

cdef void _adam_update_with_gil_released(floating[::1] param, const floating[::1] grad,
                                         floating[::1] m, floating[::1] v, double lr_t,
                                         double beta1, double beta2, double eps):
    cdef int num_threads = effective_num_threads()
    with nogil:
        adam_update_core(param, grad, m, v, lr_t, beta1, beta2, eps, num_threads)


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
        When the arrays do not satisfy :func:`adam_update_accepts`, or a
        constant is not a real number that the arrays' dtype can hold (inf
        and NaN can be).
    """
    check_adam_arrays(param, grad, m, v)
    lr_t, beta1, beta2, eps = (as_float_constant(value, name, param.dtype) for value, name in
                               ((lr_t, "lr_t"), (beta1, "beta1"), (beta2, "beta2"), (eps, "eps")))
    if param.dtype == np.float32:
        _adam_update_with_gil_released[float](param.reshape(-1), grad.reshape(-1), m.reshape(-1),
                                              v.reshape(-1), lr_t, beta1, beta2, eps)
    else:
        _adam_update_with_gil_released[double](param.reshape(-1), grad.reshape(-1), m.reshape(-1),
                                               v.reshape(-1), lr_t, beta1, beta2, eps)
