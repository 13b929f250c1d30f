"""Keep NumPy's BLAS threads out of the way of cconv's OpenMP kernels.

A network's forward and backward passes alternate BLAS matrix products
(``np.matmul`` in :class:`cconv.layers.Convolution` and
:class:`cconv.layers.Affine`) with cconv's OpenMP kernels. Each thread pool
keeps its threads spinning for a while after a call (OpenBLAS's for about
0.1 s), so with both multi-threaded the BLAS threads take the cores the
kernels' threads need, and every pass slows down. As scikit-learn does around
its own OpenMP loops, the networks run their passes with BLAS limited to one
thread whenever the kernels use more than one (``threadpoolctl``); the BLAS
thread count is restored on exit.
"""

import contextlib

from cconv.kernels._openmp import get_num_threads

__all__ = ["serial_blas"]

_controller = None


def _blas_controller():
    """A ``threadpoolctl`` controller of the BLAS libraries loaded (made once)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def serial_blas():
    """A context in which BLAS uses one thread, when cconv's kernels use several.

    With one kernel thread (``cconv.set_num_threads(1)``, ``OMP_NUM_THREADS=1``
    or a build without OpenMP), BLAS keeps its threads and this does nothing.
    """
    if get_num_threads() <= 1:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1)
