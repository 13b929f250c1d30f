"""cconv.optim: the book's update formulas, in-place updates, checkpointable state.

The reference steps below are the book's ``common/optimizer.py`` expressions,
one parameter at a time, written independently of cconv.optim; results must
be bit-identical. For float32 parameters, Adam's step size is a Python float
(as NumPy 1.x's scalar rules made it), so that nothing is promoted to float64.
"""

import io

import numpy as np
import pytest

from cconv.layers import Affine
from cconv.optim import OPTIMIZERS, SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

# --------------------------------------------------------------------------
# Reference steps: the book's formulas; ``s`` holds one parameter's state
# --------------------------------------------------------------------------


def sgd_step(p, g, s, lr=0.01):
    p -= lr * g


def momentum_step(p, g, s, lr=0.01, momentum=0.9):
    s["v"] = momentum * s.get("v", np.zeros_like(p)) - lr * g
    p += s["v"]


def nesterov_step(p, g, s, lr=0.01, momentum=0.9):
    v = s.setdefault("v", np.zeros_like(p))
    v *= momentum
    v -= lr * g
    p += momentum * momentum * v
    p -= (1 + momentum) * lr * g


def adagrad_step(p, g, s, lr=0.01):
    h = s.setdefault("h", np.zeros_like(p))
    h += g * g
    p -= lr * g / (np.sqrt(h) + 1e-7)


def rmsprop_step(p, g, s, lr=0.01, decay_rate=0.99):
    h = s.setdefault("h", np.zeros_like(p))
    h *= decay_rate
    h += (1 - decay_rate) * g * g
    p -= lr * g / (np.sqrt(h) + 1e-7)


def adam_step(p, g, s, lr=0.001, beta1=0.9, beta2=0.999):
    s["iter"] = s.get("iter", 0) + 1
    lr_t = float(lr * np.sqrt(1.0 - beta2 ** s["iter"]) / (1.0 - beta1 ** s["iter"]))
    m = s.setdefault("m", np.zeros_like(p))
    v = s.setdefault("v", np.zeros_like(p))
    m += (1 - beta1) * (g - m)
    v += (1 - beta2) * (g**2 - v)
    p -= lr_t * m / (np.sqrt(v) + 1e-7)


REFERENCE_STEPS = {
    "sgd": sgd_step,
    "momentum": momentum_step,
    "nesterov": nesterov_step,
    "adagrad": adagrad_step,
    "rmsprop": rmsprop_step,
    "adam": adam_step,
}

#: Non-default hyperparameters for each optimizer.
OTHER_HYPERPARAMETERS = {
    "sgd": {"lr": 0.3},
    "momentum": {"lr": 0.05, "momentum": 0.5},
    "nesterov": {"lr": 0.05, "momentum": 0.7},
    "adagrad": {"lr": 0.2},
    "rmsprop": {"lr": 0.02, "decay_rate": 0.9},
    "adam": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99},
}

STATE_KEYS = {
    "sgd": set(),
    "momentum": {"v/W1", "v/b1"},
    "nesterov": {"v/W1", "v/b1"},
    "adagrad": {"h/W1", "h/b1"},
    "rmsprop": {"h/W1", "h/b1"},
    "adam": {"iter", "m/W1", "m/b1", "v/W1", "v/b1"},
}

names = pytest.mark.parametrize("name", list(OPTIMIZERS))


def make_params(rng, dtype):
    return {
        "W1": rng.standard_normal((3, 4)).astype(dtype),
        "b1": rng.standard_normal(4).astype(dtype),
    }


def grad_sequence(rng, params, steps):
    return [{k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
            for _ in range(steps)]


def run(optimizer, params, grads_list):
    for grads in grads_list:
        optimizer.update(params, grads)
    return params


def copy_params(params):
    return {k: p.copy() for k, p in params.items()}


# --------------------------------------------------------------------------
# Formulas
# --------------------------------------------------------------------------


@names
@pytest.mark.parametrize("hyper", ["default", "other"])
def test_update_equals_book_formula(name, hyper, rng, float_dtype):
    kwargs = {} if hyper == "default" else OTHER_HYPERPARAMETERS[name]
    params = make_params(rng, float_dtype)
    initial = copy_params(params)
    expected = copy_params(params)
    states = {k: {} for k in params}
    optimizer = OPTIMIZERS[name](**kwargs)
    for grads in grad_sequence(rng, params, 6):
        optimizer.update(params, grads)
        for key in expected:
            REFERENCE_STEPS[name](expected[key], grads[key], states[key], **kwargs)
        for key in params:
            assert params[key].dtype == float_dtype
            np.testing.assert_array_equal(params[key], expected[key])  # bit-identical
    assert not np.array_equal(params["W1"], initial["W1"])


def test_optimizers_by_book_trainer_names():
    """The book's Trainer looks up ``optimizer.lower()`` of 'SGD', 'Momentum', ..., 'Adam'."""
    classes = (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)
    assert len(OPTIMIZERS) == len(classes)
    for cls in classes:
        assert OPTIMIZERS[cls.__name__.lower()] is cls
    adam = OPTIMIZERS["Adam".lower()](**{"lr": 0.002})  # the book's Trainer lookup
    assert (adam.lr, adam.beta1, adam.beta2, adam.iter) == (0.002, 0.9, 0.999, 0)
    assert (Momentum().lr, Momentum().momentum) == (0.01, 0.9)
    assert (RMSprop().lr, RMSprop().decay_rate) == (0.01, 0.99)
    assert SGD().lr == AdaGrad().lr == Nesterov().lr == 0.01


# --------------------------------------------------------------------------
# In place, lazy state
# --------------------------------------------------------------------------


@names
def test_update_is_in_place_and_seen_by_layers(name, rng):
    params = make_params(rng, np.float64)
    W, b = params["W1"], params["b1"]
    layer = Affine(W, b)
    before = W.copy()
    x = rng.standard_normal((2, 3))
    OPTIMIZERS[name]().update(params, grad_sequence(rng, params, 1)[0])
    assert params["W1"] is W and params["b1"] is b
    assert not np.array_equal(W, before)
    np.testing.assert_array_equal(layer.forward(x), x @ W + b)


@names
def test_state_is_lazy_and_keeps_dtype(name, rng):
    optimizer = OPTIMIZERS[name]()
    for attribute in ("v", "h", "m"):
        assert getattr(optimizer, attribute, None) is None  # the book's attributes, unset
    params = make_params(rng, np.float32)
    optimizer.update(params, grad_sequence(rng, params, 1)[0])
    state = optimizer.state_dict()
    assert set(state) == STATE_KEYS[name]
    for key, value in state.items():
        if key == "iter":
            assert value == 1 and isinstance(value, int)
        else:
            assert value.dtype == np.float32
            assert value.shape == params[key.split("/", 1)[1]].shape


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------


def _npz_round_trip(state):
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@names
@pytest.mark.parametrize("via_npz", [False, True], ids=["dict", "npz"])
def test_state_dict_resume_is_bit_identical(name, via_npz, rng, float_dtype):
    kwargs = OTHER_HYPERPARAMETERS[name]
    params = make_params(rng, float_dtype)
    grads_list = grad_sequence(rng, params, 7)

    optimizer = OPTIMIZERS[name](**kwargs)
    run(optimizer, params, grads_list[:3])
    checkpoint = optimizer.state_dict()
    params_at_checkpoint = copy_params(params)
    run(optimizer, params, grads_list[3:])  # the uninterrupted run

    if via_npz:
        checkpoint = _npz_round_trip(checkpoint)
    resumed = OPTIMIZERS[name](**kwargs)
    resumed.load_state_dict(checkpoint)
    run(resumed, params_at_checkpoint, grads_list[3:])
    for key in params:
        np.testing.assert_array_equal(params_at_checkpoint[key], params[key])
    final, again = optimizer.state_dict(), resumed.state_dict()
    assert set(final) == set(again)
    for key in final:
        np.testing.assert_array_equal(final[key], again[key])


def test_state_dict_is_a_snapshot(rng):
    params = make_params(rng, np.float64)
    grads_list = grad_sequence(rng, params, 2)
    optimizer = Adam()
    run(optimizer, params, grads_list[:1])
    state = optimizer.state_dict()
    saved = {k: np.copy(v) for k, v in state.items()}
    run(optimizer, params, grads_list[1:])  # in-place updates must not reach the snapshot
    for key in state:
        np.testing.assert_array_equal(state[key], saved[key])
    assert state["iter"] == 1 and optimizer.iter == 2

    loaded = Adam()
    loaded.load_state_dict(state)
    state["m/W1"][...] = 0.0  # nor may later changes to the dict reach the optimizer
    assert np.any(loaded.m["W1"] != 0)


def test_empty_state_round_trip():
    for name in OPTIMIZERS:
        optimizer = OPTIMIZERS[name]()
        state = optimizer.state_dict()
        assert state == ({"iter": 0} if name == "adam" else {})
        optimizer.load_state_dict(state)
        assert optimizer.state_dict() == state


@pytest.mark.parametrize(
    "state, message",
    [
        ({"iter": 1, "m/W1": np.ones(2), "v/W1": np.ones(2), "x/W1": np.ones(2)}, "unknown key"),
        ({"iter": 1, "m": np.ones(2)}, "unknown key"),
        ({"m/W1": np.ones(2), "v/W1": np.ones(2)}, "missing 'iter'"),
        ({"iter": 1.5, "m/W1": np.ones(2), "v/W1": np.ones(2)}, "iter must be an integer"),
        ({"iter": 1, "m/W1": np.ones(2), "v/b1": np.ones(2)}, "same parameters"),
    ],
    ids=["unknown_buffer", "no_param_key", "missing_iter", "float_iter", "mismatched"],
)
def test_load_state_dict_refuses_bad_state(state, message, rng):
    optimizer = Adam()
    params = make_params(rng, np.float64)
    optimizer.update(params, grad_sequence(rng, params, 1)[0])
    before = optimizer.state_dict()
    with pytest.raises(ValueError, match=message):
        optimizer.load_state_dict(state)
    after = optimizer.state_dict()  # left unchanged
    assert set(after) == set(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_sgd_has_no_state():
    with pytest.raises(ValueError, match="no state"):
        SGD().load_state_dict({"v/W1": np.ones(2)})
