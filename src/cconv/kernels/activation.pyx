"""ReLU forward and backward, each in one pass over contiguous arrays of any shape.

The book's ``Relu`` makes ``mask = x <= 0`` and ``out = x`` with the masked
entries set to 0 in forward, and zeroes ``dout`` where the mask is set in
backward. These kernels do each pass in one sweep of branch-free selects,
split into blocks over the OpenMP threads (each element written by one
thread, so the result does not depend on the thread count).
"""

from cython cimport floating
from cython.parallel cimport prange

from cconv.kernels._common cimport clamp_threads
from cconv.kernels._openmp cimport effective_num_threads

import numpy as np

from cconv._validation import as_float_array, check_mask, check_out

cdef enum:
    # Elements per task of the parallel loops: a few pages of each array.
    BLOCK = 16384


cdef inline void _zero_masked_block(const floating* src, const unsigned char* mask,
                                    floating* dst, Py_ssize_t n) noexcept nogil:
    """``dst = 0 where mask else src``: relu's output from its mask, and its gradient."""
    cdef Py_ssize_t i
    cdef floating v
    for i in range(n):
        v = src[i]  # loaded unconditionally, so that the select needs no branch
        dst[i] = 0 if mask[i] else v


cdef inline void _relu_block(const floating* x, floating* out, unsigned char* mask,
                             Py_ssize_t n) noexcept nogil:
    # Two vectorisable sweeps of a block that stays in cache (one fused loop
    # compiles to a branch per element for double).
    cdef Py_ssize_t i
    for i in range(n):
        mask[i] = x[i] <= 0
    _zero_masked_block(x, mask, out, n)


cdef void relu_core(const floating[::1] x, floating[::1] out, unsigned char[::1] mask,
                    int num_threads) noexcept nogil:
    """``mask = x <= 0``; ``out = 0 where mask else x`` (NaN stays NaN, as the book).

    ``x``, ``out`` and ``mask`` have one length; ``out`` and ``mask`` share no
    memory with ``x`` or with each other.
    """
    cdef Py_ssize_t n = x.shape[0], blocks = (n + BLOCK - 1) // BLOCK, block, start
    if n == 0:
        return
    cdef const floating* x_data = &x[0]
    cdef floating* out_data = &out[0]
    cdef unsigned char* mask_data = &mask[0]
    for block in prange(blocks, schedule="static",
                        num_threads=clamp_threads(num_threads, blocks, n)):
        start = block * BLOCK
        _relu_block(x_data + start, out_data + start, mask_data + start, min(BLOCK, n - start))


cdef void relu_backward_core(const floating[::1] dout, const unsigned char[::1] mask,
                             floating[::1] dx, int num_threads) noexcept nogil:
    """``dx = 0 where mask else dout`` (also where ``dout`` is inf or NaN, as the book).

    The arrays have one length; ``dx`` may be ``dout`` itself (in place).
    """
    cdef Py_ssize_t n = dout.shape[0], blocks = (n + BLOCK - 1) // BLOCK, block, start
    if n == 0:
        return
    cdef const floating* dout_data = &dout[0]
    cdef const unsigned char* mask_data = &mask[0]
    cdef floating* dx_data = &dx[0]
    for block in prange(blocks, schedule="static",
                        num_threads=clamp_threads(num_threads, blocks, n)):
        start = block * BLOCK
        _zero_masked_block(dout_data + start, mask_data + start, dx_data + start,
                           min(BLOCK, n - start))


# ---------------------------------------------------------------- Python API

cdef void _relu_with_gil_released(const floating[::1] x, floating[::1] out, unsigned char[::1] mask):
    cdef int num_threads = effective_num_threads()
    with nogil:
        relu_core(x, out, mask, num_threads)


cdef void _relu_backward_with_gil_released(const floating[::1] dout, const unsigned char[::1] mask,
                                           floating[::1] dx):
    cdef int num_threads = effective_num_threads()
    with nogil:
        relu_backward_core(dout, mask, dx, num_threads)


def _flat(a):
    """``a`` as a 1-D view (a copy only when ``a`` is not C-contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


def relu_with_mask(x, *, out=None, mask_out=None):
    """Rectified linear unit, returning the mask the backward pass needs with the output.

    (:func:`cconv.functions.relu` is the book's function: the output alone.)

    Parameters
    ----------
    x : array_like, any shape
        Follows the kernels' dtype policy (float32/float64 kept, float16 to
        float32, integers and bools to float64). Read in place when
        C-contiguous, else copied once.
    out : ndarray, optional
        C-contiguous, writeable array of ``x``'s shape and result dtype,
        sharing no memory with ``x``.
    mask_out : ndarray of bool, optional
        Likewise for the mask.

    Returns
    -------
    out : ndarray, shape of x, float32 or float64, C-contiguous
        ``x`` with the entries ``<= 0`` set to 0 (NaN stays NaN).
    mask : ndarray of bool, shape of x, C-contiguous
        ``x <= 0``.

    Raises
    ------
    TypeError
        ``x`` is not a real-valued array, or ``out``/``mask_out`` has the
        wrong type or dtype.
    ValueError
        ``out``/``mask_out`` has the wrong shape, is not C-contiguous or
        writeable, or shares memory with ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> out, mask = relu_with_mask(np.array([-1.0, 0.0, 2.0, np.nan]))
    >>> out, mask
    (array([ 0.,  0.,  2., nan]), array([ True,  True, False, False]))
    >>> relu_backward(np.array([5.0, 5.0, 5.0, np.inf]), mask)
    array([ 0.,  0.,  5., inf])
    """
    x = as_float_array(x, "x", None)
    out = check_out(out, x.shape, x.dtype, (x,))
    mask_out = check_out(mask_out, x.shape, np.bool_, (x, out), "mask_out")
    if x.size == 0:
        return out, mask_out
    flat_x, flat_out, flat_mask = _flat(x), out.reshape(-1), mask_out.reshape(-1).view(np.uint8)
    if x.dtype == np.float32:
        _relu_with_gil_released[float](flat_x, flat_out, flat_mask)
    else:
        _relu_with_gil_released[double](flat_x, flat_out, flat_mask)
    return out, mask_out


def relu_backward(dout, mask, *, out=None):
    """Gradient of :func:`relu_with_mask`: ``dout`` with the entries under ``mask`` set to 0.

    Parameters
    ----------
    dout : array_like, any shape
        Follows the kernels' dtype policy.
    mask : ndarray of bool, shape of dout
        The mask :func:`relu_with_mask` returned.
    out : ndarray, optional
        C-contiguous, writeable array of ``dout``'s shape and result dtype; it
        may be ``dout`` itself (the book's in-place update), but no other
        array sharing memory with ``dout`` or ``mask``.

    Returns
    -------
    dx : ndarray, shape of dout, float32 or float64, C-contiguous

    Raises
    ------
    TypeError
        ``dout`` is not a real-valued array, ``mask`` is not a bool ndarray,
        or ``out`` has the wrong type or dtype.
    ValueError
        ``mask`` has another shape than ``dout``, or ``out`` has the wrong
        shape, is not C-contiguous or writeable, or shares memory with the
        inputs (other than being ``dout`` itself).
    """
    in_place = out is not None and out is dout
    dout = as_float_array(dout, "dout", None)
    check_mask(mask, dout.shape)
    out = check_out(out, dout.shape, dout.dtype, (mask,) if in_place else (dout, mask))
    if dout.size == 0:
        return out
    flat_dout, flat_mask, flat_out = _flat(dout), _flat(mask).view(np.uint8), out.reshape(-1)
    if dout.dtype == np.float32:
        _relu_backward_with_gil_released[float](flat_dout, flat_mask, flat_out)
    else:
        _relu_backward_with_gil_released[double](flat_dout, flat_mask, flat_out)
    return out
