"""Optimizers of the book's ``common/optimizer.py``, with checkpointable state.

Every optimizer has the book's interface ``update(params, grads)``: for each
key of ``params`` it updates ``params[key]`` **in place** (``params[key] -=
...``), so a layer holding the same array sees the new values, using the
book's formulas in the book's order of operations (results are bit-identical
to the book's when gradients have the parameters' dtype, as the networks'
do; Adam runs as one pass of a compiled kernel, :mod:`cconv.kernels.adam`). Per-parameter state (velocity ``v``,
accumulator ``h``, moments ``m`` and ``v``) is made lazily with
``np.zeros_like``, so it has the parameter's dtype; hyperparameters are
Python floats, so float32 parameters are updated in float32.

:meth:`Optimizer.state_dict` and :meth:`Optimizer.load_state_dict` save and
restore that state as a flat dict, so a trainer can checkpoint and resume
with bit-identical updates. :data:`OPTIMIZERS` maps the lower-case names the
book's ``Trainer`` uses to the classes.
"""

import math

import numpy as np

from cconv._validation import as_counter
from cconv.kernels import adam as adam_kernel

__all__ = [
    "OPTIMIZERS",
    "AdaGrad",
    "Adam",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "SGD",
]

#: Added to the square root in the denominators of AdaGrad, RMSprop and Adam.
EPSILON = 1e-7


class Optimizer:
    """Base of the optimizers: lazy per-parameter state, the update loop, checkpoints.

    A subclass names its per-parameter state dicts in ``buffers`` (they are
    the book's attributes, ``None`` until the first update, then
    ``{key: array}``), its integer counters in ``counters``, and implements
    :meth:`_update_one`; :meth:`_begin_step` runs once per ``update`` before
    the parameters.

    Parameters
    ----------
    lr : float
        Learning rate.
    """

    buffers = ()
    counters = ()

    def __init__(self, lr):
        self.lr = float(lr)
        for name in self.buffers:
            setattr(self, name, None)
        for name in self.counters:
            setattr(self, name, 0)

    def update(self, params, grads):
        """Update every array of ``params`` in place from ``grads``.

        Parameters
        ----------
        params : dict of str to ndarray
            Parameters, updated in place (the dict's arrays stay the same
            objects).
        grads : dict of str to ndarray
            Gradients, same keys and shapes.
        """
        self._begin_step()
        for key in params.keys():
            param = params[key]
            state = [self._state(name, key, param) for name in self.buffers]
            self._update_one(param, grads[key], *state)

    def _state(self, name, key, param):
        """The state array ``name`` of parameter ``key``, made as zeros the first time."""
        table = getattr(self, name)
        if table is None:
            table = {}
            setattr(self, name, table)
        if key not in table:
            table[key] = np.zeros_like(param)
        return table[key]

    def _begin_step(self):
        """Per-update work before the parameters (none by default)."""

    def _update_one(self, param, grad, *state):
        raise NotImplementedError

    def state_dict(self):
        """The optimizer's state as a flat dict of copies.

        Returns
        -------
        dict of str to ndarray or int
            One entry per counter (e.g. ``"iter"``: int) and one per state
            array, keyed ``"<buffer>/<param key>"`` (e.g. ``"m/W1"``). Empty
            for :class:`SGD`. The arrays are copies: later updates do not
            change a saved state.

        Examples
        --------
        >>> import numpy as np
        >>> opt = Adam()
        >>> opt.update({"W": np.ones(2)}, {"W": np.ones(2)})
        >>> sorted(opt.state_dict())
        ['iter', 'm/W', 'v/W']
        """
        state = {name: int(getattr(self, name)) for name in self.counters}
        for name in self.buffers:
            for key, array in (getattr(self, name) or {}).items():
                state[f"{name}/{key}"] = array.copy()
        return state

    def load_state_dict(self, state):
        """Restore a state saved by :meth:`state_dict` (copies of the arrays).

        Parameters
        ----------
        state : mapping of str to array_like or int
            As :meth:`state_dict` returns it, or as read back from an
            ``.npz`` file (0-d arrays for the counters are accepted).

        Raises
        ------
        ValueError
            On an unknown key, a missing counter, a non-integer counter, or
            state arrays that do not cover the same parameters; the
            optimizer is then left unchanged.
        """
        counters = {}
        tables = {name: {} for name in self.buffers}
        for full_key, value in state.items():
            if full_key in self.counters:
                counters[full_key] = as_counter(value, full_key)
                continue
            name, sep, key = full_key.partition("/")
            if not sep or name not in tables or not key:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: unknown key {full_key!r}; "
                    f"expected {_expected_keys(self)}"
                )
            tables[name][key] = np.array(value, copy=True)
        missing = [name for name in self.counters if name not in counters]
        if missing:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: missing {', '.join(map(repr, missing))}"
            )
        key_sets = {name: set(table) for name, table in tables.items()}
        if len({frozenset(keys) for keys in key_sets.values()}) > 1:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state arrays do not cover "
                f"the same parameters: {key_sets}"
            )
        for name, value in counters.items():
            setattr(self, name, value)
        for name, table in tables.items():
            setattr(self, name, table or None)


def _expected_keys(optimizer):
    keys = [repr(name) for name in optimizer.counters]
    keys += [f"'{name}/<param key>'" for name in optimizer.buffers]
    return ", ".join(keys) or "no keys (this optimizer has no state)"


class SGD(Optimizer):
    """Stochastic gradient descent: ``p -= lr * g``.

    Parameters
    ----------
    lr : float, default 0.01

    Examples
    --------
    >>> import numpy as np
    >>> params = {"W": np.array([1.0, 2.0])}
    >>> SGD(lr=0.5).update(params, {"W": np.array([1.0, -1.0])})
    >>> params["W"]
    array([0.5, 2.5])
    """

    def __init__(self, lr=0.01):
        super().__init__(lr)

    def _update_one(self, param, grad):
        param -= self.lr * grad


class Momentum(Optimizer):
    """Momentum SGD: ``v = momentum*v - lr*g; p += v``.

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.9

    Attributes
    ----------
    v : dict of str to ndarray, or None
        Velocities, made at the first update.
    """

    buffers = ("v",)

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        self.momentum = float(momentum)

    def _step_velocity(self, v, grad):
        """``v = momentum*v - lr*g`` in place (the same rounding as the book's expression)."""
        v *= self.momentum
        v -= self.lr * grad

    def _update_one(self, param, grad, v):
        self._step_velocity(v, grad)
        param += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, in the book's form.

    ``v = momentum*v - lr*g; p += momentum*momentum*v; p -= (1+momentum)*lr*g``.
    Parameters (``lr=0.01``, ``momentum=0.9``) and the velocities ``v`` as
    :class:`Momentum`, whose velocity step it shares.
    """

    def _update_one(self, param, grad, v):
        self._step_velocity(v, grad)
        param += self.momentum * self.momentum * v
        param -= (1 + self.momentum) * self.lr * grad


class AdaGrad(Optimizer):
    """AdaGrad: ``h += g*g; p -= lr*g / (sqrt(h) + 1e-7)``.

    Parameters
    ----------
    lr : float, default 0.01

    Attributes
    ----------
    h : dict of str to ndarray, or None
        Accumulated squared gradients, made at the first update.
    """

    buffers = ("h",)

    def __init__(self, lr=0.01):
        super().__init__(lr)

    def _accumulate(self, h, grad):
        h += grad * grad

    def _update_one(self, param, grad, h):
        self._accumulate(h, grad)
        param -= self.lr * grad / (np.sqrt(h) + EPSILON)


class RMSprop(AdaGrad):
    """RMSprop: AdaGrad with a decaying accumulator, ``h = decay*h + (1-decay)*g*g``.

    Parameters
    ----------
    lr : float, default 0.01
    decay_rate : float, default 0.99

    Attributes
    ----------
    h : dict of str to ndarray, or None
        Running mean of the squared gradients, made at the first update.
    """

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr)
        self.decay_rate = float(decay_rate)

    def _accumulate(self, h, grad):
        h *= self.decay_rate
        h += (1 - self.decay_rate) * grad * grad


class Adam(Optimizer):
    """Adam, in the book's form (bias correction folded into the step size).

    ``iter += 1; lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter);
    m += (1-beta1)*(g - m); v += (1-beta2)*(g**2 - v);
    p -= lr_t * m / (sqrt(v) + 1e-7)``.

    Parameters
    ----------
    lr : float, default 0.001
    beta1 : float, default 0.9
    beta2 : float, default 0.999

    Attributes
    ----------
    iter : int
        Number of updates so far.
    m, v : dict of str to ndarray, or None
        First and second moment estimates, made at the first update.
    """

    buffers = ("m", "v")
    counters = ("iter",)

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self._lr_t = None

    def _begin_step(self):
        self.iter += 1
        # A Python float (the value np.sqrt gives in float64), so that it does
        # not promote float32 parameters.
        self._lr_t = (
            self.lr * math.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        )

    def _update_one(self, param, grad, m, v):
        if adam_kernel.adam_update_accepts(param, grad, m, v):  # the usual case: one pass, same bits
            adam_kernel.adam_update(param, grad, m, v, self._lr_t, self.beta1, self.beta2, EPSILON)
            return
        # The formula's operations in its order, through two scratch arrays
        # instead of a temporary per operation (bit-identical, fewer passes).
        step = np.subtract(grad, m)
        step *= 1 - self.beta1
        m += step
        np.multiply(grad, grad, out=step)  # grad**2
        step -= v
        step *= 1 - self.beta2
        v += step
        denominator = np.sqrt(v)
        denominator += EPSILON
        np.multiply(m, self._lr_t, out=step)
        step /= denominator
        param -= step


#: Optimizer classes by the lower-case names the book's ``Trainer`` looks up.
OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}
