"""Compiled CNN kernels of cconv.

Python code uses the functions re-exported by :mod:`cconv`. Cython code can
``cimport`` the ``noexcept nogil`` cores declared in the installed ``.pxd`` files
(fused over ``float`` and ``double``; callers validate, the cores trust them):

- ``cconv.kernels.im2col``: ``im2col_core``
- ``cconv.kernels.col2im``: ``col2im_core``
- ``cconv.kernels.conv``: ``conv2d_core``, ``conv2d_backward_core`` (they call
  BLAS from every thread: run them with BLAS limited to one thread)
- ``cconv.kernels.pooling``: ``max_pool2d_core``, ``max_pool2d_backward_core``
  (returns the number of argmax entries outside the window, which route nothing),
  ``avg_pool2d_core``, ``avg_pool2d_backward_core``
- ``cconv.kernels.activation``: ``relu_core``, ``relu_backward_core``
- ``cconv.kernels.adam``: ``adam_update_core``

Example::

    from cconv.kernels.im2col cimport im2col_core
    with nogil:
        im2col_core[double](x, 3, 3, 1, 1, 1, 1, 1, 1, col, 1)
"""
