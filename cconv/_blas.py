"""Keep NumPy's BLAS threads out of the way of cconv's OpenMP kernels.

A network's forward and backward passes alternate BLAS matrix products
(``np.matmul`` in :class:`cconv.layers.Convolution`, ``np.dot`` in
:class:`cconv.layers.Affine`) with cconv's OpenMP kernels. Each thread pool
keeps its threads spinning for a while after a call (OpenBLAS's for about
0.1 s), so with both multi-threaded the BLAS threads take the cores the
kernels' threads need, and every pass slows down (SimpleConvNet training on 2
cores: 67 ms per iteration before, 31 ms after, with the other changes of the
layers). As scikit-learn does around its own OpenMP loops, the networks run
their passes with BLAS limited to one thread whenever the kernels use more
than one (``threadpoolctl``); the BLAS thread count is restored on exit.

``CCONV_SERIAL_BLAS=0`` in the environment turns this off (BLAS then keeps its
threads, e.g. on a machine with many cores where big matrix products dominate).
The convolution kernels, which call BLAS from their own threads, always run
with BLAS on one thread (:func:`single_threaded_blas`).
"""

import contextlib
import os
import threading

from cconv.kernels._openmp import get_num_threads

__all__ = ["serial_blas", "single_threaded_blas"]

_controller = None
_lock = threading.Lock()
_depth = 0  # passes inside serial_blas, over all threads
_limit = None  # the threadpoolctl limit of the outermost one


def _blas_controller():
    """A ``threadpoolctl`` controller of the BLAS libraries loaded (made once)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def _enabled():
    return os.environ.get("CCONV_SERIAL_BLAS", "1") != "0" and get_num_threads() > 1


@contextlib.contextmanager
def single_threaded_blas():
    """A context in which BLAS uses one thread, always.

    The convolution kernels call BLAS from each of their OpenMP threads and
    run inside it. Safe to nest and to enter from several threads at once:
    the first entry sets the limit, the last exit restores the thread counts
    it found.
    """
    global _depth, _limit
    with _lock:
        if _depth == 0:
            _limit = _blas_controller().limit(limits=1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limit.restore_original_limits()
                _limit = None


def serial_blas():
    """A context in which BLAS uses one thread, when cconv's kernels use several.

    Safe to nest and to enter from several threads at once: the first entry
    sets the limit, the last exit restores the thread counts it found. With one
    kernel thread (``cconv.set_num_threads(1)``, ``OMP_NUM_THREADS=1``, a build
    without OpenMP) or ``CCONV_SERIAL_BLAS=0``, it does nothing.
    """
    return single_threaded_blas() if _enabled() else contextlib.nullcontext()
