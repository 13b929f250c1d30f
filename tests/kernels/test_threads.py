"""Threads: OpenMP thread count, results independent of it, and GIL release.

The kernels run their cores under ``with nogil`` (OpenMP ``prange`` when built
with OpenMP): several Python threads may call them at once, and the result
never depends on the number of threads (col2im and the backward passes split
the work so that no element is written by two threads; conv2d_backward sums
dW and db over fixed chunks of the batch, added in order).
"""

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cconv
from cconv.kernels.adam import adam_update

from cconv_testutils import CONV_KERNEL_NAMES, KERNEL_NAMES, kernel_call, random_array

#: Large enough that three threads get real work each (the kernels run
#: serially below 32768 elements of work per thread), small enough to be quick.
SHAPE = (8, 8, 48, 40)


#: Every kernel of the package: the window kernels and the convolution of
#: ``kernel_call`` and the element-wise ones (ReLU forward and backward, the
#: Adam update).
THREADED_KERNELS = KERNEL_NAMES + CONV_KERNEL_NAMES + ("relu", "relu_backward", "adam_update")


def threaded_call(name, rng, dtype=np.float64, shape=SHAPE):
    """A call of kernel ``name`` on fresh random data that returns its results as a tuple.

    ``adam_update`` updates its arrays in place: each call starts from copies
    of the same initial arrays and returns the updated parameter and moments.
    """
    if name not in ("relu", "relu_backward", "adam_update"):
        return kernel_call(name, rng, dtype, shape=shape)
    x, dout = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    if name == "relu":
        return lambda: cconv.relu_with_mask(x)
    if name == "relu_backward":
        mask = x <= 0
        return lambda: (cconv.relu_backward(dout, mask),)
    param, grad, m = (random_array(rng, shape, dtype) for _ in range(3))
    v = np.abs(random_array(rng, shape, dtype))

    def update():
        state = [param.copy(), m.copy(), v.copy()]
        adam_update(state[0], grad, state[1], state[2], 1e-3, 0.9, 0.999, 1e-7)
        return tuple(state)

    return update


@pytest.fixture
def restore_threads():
    """Follow OMP_NUM_THREADS again after the test."""
    yield
    cconv.set_num_threads(None)


def test_openmp_enabled_is_a_bool():
    enabled = cconv.openmp_enabled()
    assert type(enabled) is bool
    if os.environ.get("CCONV_EXPECT_OPENMP") == "1":
        assert enabled, "CCONV_EXPECT_OPENMP=1 but cconv was built without OpenMP"


def test_get_num_threads_is_a_positive_int():
    n = cconv.get_num_threads()
    assert type(n) is int
    assert n >= 1


def test_set_num_threads(restore_threads):
    cconv.set_num_threads(3)
    if cconv.openmp_enabled():
        assert cconv.get_num_threads() == 3
    cconv.set_num_threads(None)
    assert cconv.get_num_threads() >= 1


@pytest.mark.parametrize(
    "n, exc", [(0, ValueError), (-2, ValueError), (1.5, (TypeError, ValueError)), ("2", TypeError)]
)
def test_set_num_threads_rejects(restore_threads, n, exc):
    with pytest.raises(exc):
        cconv.set_num_threads(n)


def test_huge_thread_count_does_not_crash(tmp_path):
    """set_num_threads accepts any n >= 1; kernel calls must then still work.

    Run in a child process: a crash there fails this test instead of pytest.
    """
    code = (
        "import numpy as np, cconv\n"
        "x = np.arange(64.0).reshape(1, 1, 8, 8)\n"
        "expected = cconv.avg_pool2d(x, 2, 2, stride=2)\n"
        "W = np.ones((3, 1, 2, 2))\n"
        "conv = cconv.conv2d(x, W, pad=1, dilation=2)\n"
        "grads = cconv.conv2d_backward(conv, x, W, pad=1, dilation=2)\n"
        "cconv.set_num_threads(2**20)\n"
        "assert np.array_equal(cconv.avg_pool2d(x, 2, 2, stride=2), expected)\n"
        "col = cconv.im2col(x, 2, 2, stride=2)\n"
        "assert np.array_equal(cconv.col2im(col, x.shape, 2, 2, stride=2), x)\n"
        "assert np.array_equal(cconv.conv2d(x, W, pad=1, dilation=2), conv)\n"
        "for got, want in zip(cconv.conv2d_backward(conv, x, W, pad=1, dilation=2), grads):\n"
        "    assert np.array_equal(got, want)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, f"exit status {child.returncode}\n{child.stderr[-2000:]}"


@pytest.mark.parametrize("kernel", THREADED_KERNELS)
def test_results_independent_of_thread_count(restore_threads, rng, float_dtype, kernel):
    """1, 2 and 3 OpenMP threads give bit-identical results."""
    call = threaded_call(kernel, rng, float_dtype)
    cconv.set_num_threads(1)
    serial = call()
    for n in (2, 3):
        cconv.set_num_threads(n)
        for got, expected in zip(call(), serial, strict=True):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kernel", THREADED_KERNELS)
def test_concurrent_python_threads(rng, n_threads, kernel):
    """Python threads calling one kernel at once get the serial results, bit for bit."""
    n_workers, n_tasks = 4, 12
    calls = [threaded_call(kernel, rng) for _ in range(n_tasks)]
    serial = [call() for call in calls]
    barrier = threading.Barrier(n_workers)

    def run(call):
        try:  # start together so the calls overlap
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        return call()

    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        parallel = list(pool.map(run, calls))
    for got_results, expected_results in zip(parallel, serial, strict=True):
        for got, expected in zip(got_results, expected_results, strict=True):
            np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------
# GIL release, measured: while a long kernel runs in one thread, Python code
# in another keeps running. Holding the GIL would stall it for the whole call.
# --------------------------------------------------------------------------

#: 7x7 windows with stride 1 and pad 3: much more kernel work than validation.
WINDOW = {"stride": 1, "pad": 3}


def _long_call(kernel, x):
    """A long call of ``kernel`` on ``x`` (7x7 stride 1 pad 3 keeps H and W)."""
    n, c, h, w = x.shape
    if kernel == "im2col":
        return lambda: cconv.im2col(x, 7, 7, **WINDOW)
    if kernel == "col2im":
        col = np.ones((n * h * w, c * 49))
        return lambda: cconv.col2im(col, x.shape, 7, 7, **WINDOW)
    if kernel == "avg_pool2d_backward":
        return lambda: cconv.avg_pool2d_backward(x, x.shape, 7, 7, **WINDOW)
    if kernel in CONV_KERNEL_NAMES:  # 8 filters of 7x7
        W = np.ones((8, c, 7, 7))
        if kernel == "conv2d":
            return lambda: cconv.conv2d(x, W, **WINDOW)
        dout = np.ones((n, 8, h, w))
        return lambda: cconv.conv2d_backward(dout, x, W, **WINDOW)
    return lambda: getattr(cconv, kernel)(x, 7, 7, **WINDOW)


def _timed(func):
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _longest_stall_while(func):
    """Run ``func`` in a thread; return the longest pause of this thread meanwhile."""
    done = threading.Event()
    errors = []

    def work():
        try:
            func()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    last = time.perf_counter()
    longest = 0.0
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    worker.join()
    if errors:
        raise errors[0]
    return longest


@pytest.mark.parametrize(
    "kernel",
    ["im2col", "col2im", "max_pool2d", "avg_pool2d", "avg_pool2d_backward", "conv2d", "conv2d_backward"],
)
def test_kernel_releases_the_gil(restore_threads, rng, kernel):
    """max_pool2d_backward is left out: its argmax check costs as much as the kernel."""
    cconv.set_num_threads(1)
    expansion = 49 if kernel in ("im2col", "col2im") else 1  # col is 49 times x
    batch = 1
    while True:  # grow the input until one call takes 0.05 s (or col would pass 128 MB)
        x = rng.standard_normal((batch, 4, 64, 64))
        func = _long_call(kernel, x)
        duration = _timed(func)
        if duration >= 0.05 or 2 * x.nbytes * expansion > 2**27:
            break
        batch *= 2
    # A kernel that held the GIL would stall this thread for the whole call
    # on every attempt; a busy machine may stall it now and then, so one
    # clean attempt out of three is enough.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        stalls = []
        for _ in range(3):
            stalls.append(_longest_stall_while(func))
            if stalls[-1] < max(0.5 * duration, 0.005):
                break
    finally:
        sys.setswitchinterval(switch_interval)
    assert min(stalls) < max(0.5 * duration, 0.005), (
        f"the Python thread stalled {min(stalls):.3f} s (best of 3) during a {duration:.3f} s call"
    )
