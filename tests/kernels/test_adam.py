"""cconv.kernels.adam: the book's Adam update in one pass, bit-identical to NumPy."""

import numpy as np
import pytest

import cconv
from cconv.kernels.adam import adam_update, adam_update_accepts
from cconv.optim import Adam

from cconv_testutils import random_array, with_layout, with_special_values

EPS = 1e-7


def numpy_adam(p, g, m, v, lr_t, beta1, beta2, eps=EPS):
    """The book's expressions (``common/optimizer.py``)."""
    with np.errstate(all="ignore"):  # inf and NaN gradients of the last step
        m += (1 - beta1) * (g - m)
        v += (1 - beta2) * (g**2 - v)
        p -= lr_t * m / (np.sqrt(v) + eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (0,), (1,), (7, 3), (30, 1, 5, 5), (4320, 100)])
@pytest.mark.parametrize("threads", [1, 2])
def test_bit_identical_to_numpy(rng, dtype, shape, threads):
    p = random_array(rng, shape, dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    want_p, want_m, want_v = p.copy(), m.copy(), v.copy()
    cconv.set_num_threads(threads)
    try:
        for step in range(1, 5):
            g = with_special_values(rng, random_array(rng, shape, dtype), 0.01 if step == 4 else 0)
            lr_t = float(0.001 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step))  # a Python float, as Adam
            adam_update(p, g, m, v, lr_t, 0.9, 0.999, EPS)
            numpy_adam(want_p, g, want_m, want_v, lr_t, 0.9, 0.999)
            for got, want in ((p, want_p), (m, want_m), (v, want_v)):
                assert got.dtype == dtype
                np.testing.assert_array_equal(got, want)
    finally:
        cconv.set_num_threads(None)


def test_fits_and_refusals():
    p = np.zeros((4, 5))
    g, m, v = np.ones_like(p), np.zeros_like(p), np.zeros_like(p)
    assert adam_update_accepts(p, g, m, v)
    assert not adam_update_accepts(p.T, g.T, m.T, v.T)  # not C-contiguous
    assert not adam_update_accepts(p, g.astype(np.float32), m, v)
    assert not adam_update_accepts(p.astype(np.float16), g, m, v)
    assert not adam_update_accepts(p, g, p, v)  # m is param
    assert not adam_update_accepts(p, g, m, v[:2])
    assert not adam_update_accepts(p, g.tolist(), m, v)
    readonly = p.copy()
    readonly.flags.writeable = False
    assert not adam_update_accepts(readonly, g, m, v)
    with pytest.raises(ValueError, match="C-contiguous float32 or float64"):
        adam_update(p.T, g.T, m.T, v.T, 0.001, 0.9, 0.999, EPS)
    # C-contiguous but one byte off alignment: the core loads whole doubles
    for i in range(4):
        arrays = [p.copy(), g, m.copy(), v.copy()]
        arrays[i] = with_layout(arrays[i], "unaligned")
        assert not adam_update_accepts(*arrays)
        with pytest.raises(ValueError, match="aligned"):
            adam_update(*arrays, 0.001, 0.9, 0.999, EPS)


@pytest.mark.parametrize(
    "value, exc", [(10**400, ValueError), ("0.1", TypeError), (1j, TypeError), (None, TypeError)]
)
@pytest.mark.parametrize("name", ["lr_t", "beta1", "beta2", "eps"])
def test_bad_constants_are_refused(value, exc, name):
    p = np.zeros(3)
    arrays = (p, np.ones_like(p), np.zeros_like(p), np.zeros_like(p))
    constants = {"lr_t": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": EPS, name: value}
    with pytest.raises(exc, match=name):
        adam_update(*arrays, *constants.values())
    assert not p.any()  # nothing updated


def test_optimizer_falls_back_to_numpy_for_other_arrays(rng):
    # A strided parameter (a view of a bigger array) takes the numpy path: same numbers.
    base = random_array(rng, (6, 8))
    strided = {"W": base[:, ::2]}
    contiguous = {"W": strided["W"].copy()}
    kernel, fallback = Adam(lr=0.01), Adam(lr=0.01)
    for _ in range(3):
        g = {"W": random_array(rng, (6, 4))}
        fallback.update(strided, g)
        kernel.update(contiguous, g)
    np.testing.assert_array_equal(strided["W"], contiguous["W"])
    assert np.shares_memory(strided["W"], base)  # updated in place


@pytest.mark.parametrize("name", ["lr_t", "beta1", "beta2", "eps"])
def test_constants_must_fit_the_arrays_dtype(name):
    """1e39 fits a double but not a float: converting it for float32 arrays is undefined in C."""
    p = np.zeros(3, np.float32)
    arrays = (p, np.ones_like(p), np.zeros_like(p), np.zeros_like(p))
    constants = {"lr_t": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": EPS, name: 1e39}
    with pytest.raises(ValueError, match=f"{name} must fit float32"):
        adam_update(*arrays, *constants.values())
    constants[name] = np.inf  # inf is a float32 too: the update yields what numpy's would
    adam_update(*arrays, *constants.values())
