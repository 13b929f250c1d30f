"""Networks run their passes with BLAS on one thread while the kernels use several."""

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

import cconv
from cconv._blas import serial_blas, single_threaded_blas


def blas_threads():
    return [lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers]


@pytest.fixture
def two_blas_threads():
    controller = ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("no BLAS library that threadpoolctl can control is loaded")
    with controller.limit(limits=2):
        yield
    cconv.set_num_threads(None)


def test_serial_blas_limits_only_while_the_kernels_are_parallel(two_blas_threads):
    cconv.set_num_threads(2)
    with serial_blas():
        assert blas_threads() == [1] * len(blas_threads())
    assert set(blas_threads()) == {2}  # restored
    cconv.set_num_threads(1)
    with serial_blas():
        assert set(blas_threads()) == {2}  # one kernel thread: BLAS keeps its threads


def test_network_passes_run_with_serial_blas(two_blas_threads, monkeypatch):
    cconv.set_num_threads(2)
    seen = []
    real_dot = np.dot

    def recording_dot(*args, **kwargs):
        seen.append(tuple(blas_threads()))
        return real_dot(*args, **kwargs)

    monkeypatch.setattr(cconv.layers.np, "dot", recording_dot)
    net = cconv.SimpleConvNet(seed=0)
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    net.gradient(x, np.arange(4))
    net.predict(x)
    assert seen and all(set(threads) == {1} for threads in seen)
    assert set(blas_threads()) == {2}


def test_serial_blas_nests_and_overlaps_across_threads(two_blas_threads):
    # Two passes from two threads that enter and leave out of order: BLAS is
    # serial while either runs, and its count is restored after both.
    cconv.set_num_threads(2)
    first, second = serial_blas(), serial_blas()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert set(blas_threads()) == {1}  # the second pass is still running
    second.__exit__(None, None, None)
    assert set(blas_threads()) == {2}


def test_serial_blas_can_be_turned_off(two_blas_threads, monkeypatch):
    cconv.set_num_threads(2)
    monkeypatch.setenv("CCONV_SERIAL_BLAS", "0")
    with serial_blas():
        assert set(blas_threads()) == {2}


def test_single_threaded_blas_limits_whatever_the_kernel_threads(two_blas_threads):
    for kernel_threads in (1, 2):
        cconv.set_num_threads(kernel_threads)
        with single_threaded_blas():
            assert set(blas_threads()) == {1}
            with serial_blas():  # nested
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {2}


def test_convolution_kernels_restore_the_blas_threads(two_blas_threads, rng):
    # The kernels call BLAS from their own threads with BLAS limited to one
    # thread, and give BLAS its count back afterwards.
    cconv.set_num_threads(2)
    x, W = rng.standard_normal((4, 3, 9, 9)), rng.standard_normal((5, 3, 3, 3))
    out = cconv.conv2d(x, W)
    assert set(blas_threads()) == {2}
    cconv.conv2d_backward(np.ones_like(out), x, W)
    assert set(blas_threads()) == {2}
