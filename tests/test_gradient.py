"""cconv.gradient.numerical_gradient: central differences, in place, as the book."""

import numpy as np
import pytest

from cconv.gradient import numerical_gradient

from cconv_testutils import random_array


def test_gradient_of_known_functions(rng):
    x = random_array(rng, (3, 4))
    A = random_array(rng, (4, 4))
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(v**2), x), 2 * x, rtol=1e-8)
    expected = x @ (A + A.T)  # d/dx sum_i x_i^T A x_i
    grad = numerical_gradient(lambda v: np.einsum("ij,jk,ik->", v, A, v), x)
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-9)


def test_central_difference_with_the_book_step():
    # for a cubic the central difference has error h^2 exactly: d/dx x^3 = 3x^2 + h^2
    x = np.array([2.0])
    np.testing.assert_allclose(numerical_gradient(lambda v: v[0] ** 3, x), [12.0 + 1e-8], rtol=1e-10)
    np.testing.assert_allclose(
        numerical_gradient(lambda v: v[0] ** 3, x, h=1e-2), [12.0 + 1e-4], rtol=1e-10
    )


def test_perturbs_in_place_and_restores_exactly(rng):
    """f may ignore its argument and read the shared array, as the book's networks do."""
    x = rng.standard_normal((2, 3, 2)).T  # non-contiguous, 3-D: every element visited
    before = x.copy()
    params = {"W": x}
    grad = numerical_gradient(lambda _: np.sum(np.sin(params["W"])), x)
    np.testing.assert_allclose(grad, np.cos(before), rtol=1e-7)
    np.testing.assert_array_equal(x, before)  # bit-identical after


def test_float32_input_gives_float64_gradient(rng):
    x = random_array(rng, (5,), np.float32)
    before = x.copy()
    grad = numerical_gradient(lambda v: float(np.sum(v.astype(np.float64) * 3.0)), x)
    assert grad.dtype == np.float64
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(grad, 3.0, rtol=1e-2)  # float32 perturbation loses digits


def test_restores_x_when_f_raises(rng):
    x = random_array(rng, (3,))
    before = x.copy()
    calls = []

    def failing(v):
        calls.append(v.copy())
        if len(calls) == 2:
            raise RuntimeError("boom")
        return 0.0

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(failing, x)
    np.testing.assert_array_equal(x, before)
    assert calls[1][0] == pytest.approx(before[0] - 1e-4)  # the second call saw x - h


def test_refuses_arrays_it_cannot_perturb():
    with pytest.raises(TypeError, match="floating"):
        numerical_gradient(np.sum, np.arange(3))
    with pytest.raises(TypeError, match="floating"):
        numerical_gradient(np.sum, [1.0, 2.0])
    readonly = np.ones(3)
    readonly.flags.writeable = False
    with pytest.raises(TypeError, match="writeable"):
        numerical_gradient(np.sum, readonly)
