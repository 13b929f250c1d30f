"""The trainer's checkpoint files: one ``.npz`` per epoch holding everything a run needs to go on.

A checkpoint ``epoch-NNNN.npz`` is a plain NumPy archive (no pickle) with

* ``params/<key>``: the network's parameters;
* ``optimizer/<key>``: the optimizer's ``state_dict()`` (arrays, and Python
  scalars or ``None`` stored as 0-d arrays, their kinds recorded in the meta);
* ``meta``: JSON with the format name and version, the run's settings
  (training-set size, mini-batch size, epochs, steps, optimizer and network
  names) and the per-epoch history;
* ``rng_state``, ``global_rng_state``, ``network_rng_states``: JSON states of
  the generator that draws the batches (``null``: the global ``np.random``
  draws them), of the global ``np.random``, and of the network's own
  generators (dropout);
* ``current_iter``, ``current_epoch`` and the book's lists
  (``train_loss_list``, ``train_acc_list``, ``test_acc_list``).

:meth:`Checkpoint.write` writes atomically; :meth:`Checkpoint.read` reads each
member's ``.npy`` header before its data (:func:`cconv._npz.read_npz`), so a
parameter of the wrong shape or a forged size is refused before anything large
is decompressed, and the whole file is bounded by what the network's
parameters and their optimizer state can need.
"""

import contextlib
import dataclasses
import io
import json
import os
import re

import numpy as np

from cconv._atomic import atomic_save_npz, fsync_dir, write_npz
from cconv._npz import read_npz

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "checkpoint_files",
    "get_rng_state",
    "is_checkpoint_name",
    "latest_checkpoint",
    "prune_checkpoints",
    "set_rng_state",
]

FORMAT = "cconv.trainer.checkpoint"
VERSION = 1
_NAME = re.compile(r"^epoch-(\d+)\.npz$")
_BIT_GENERATORS = {
    cls.__name__: cls
    for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64)
}
# How a Python value in an optimizer's state_dict is stored and given back.
_SCALAR_KINDS = {"int": int, "float": float, "bool": bool, "str": str}
#: Members every checkpoint has besides ``params/*``, ``optimizer/*`` and ``meta``.
_COUNTERS_AND_STATES = (
    "rng_state", "global_rng_state", "network_rng_states", "current_iter", "current_epoch",
    "train_loss_list", "train_acc_list", "test_acc_list",
)
#: Bytes a checkpoint may hold beyond its parameters and their optimizer state
#: (the JSON meta and generator states, the loss and accuracy lists).
_EXTRA_BYTES = 64 << 20
#: Arrays of a parameter's size a checkpoint may hold per parameter: the
#: parameter and its optimizer state (Adam keeps two), with room to spare.
_COPIES_PER_PARAM = 5


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: unreadable, or made for another run or network."""


class _Misfit(ValueError):
    """A member that does not fit the network, found from its header alone."""


def is_checkpoint_name(name):
    """True for a checkpoint's file name, ``epoch-NNNN.npz``."""
    return _NAME.match(name) is not None


def checkpoint_path(directory, epoch):
    """The file of epoch ``epoch``'s checkpoint in ``directory``."""
    return os.path.join(directory, f"epoch-{epoch:04d}.npz")


def checkpoint_files(directory):
    """``{epoch: path}`` of the checkpoints in ``directory`` (empty if it does not exist)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            found[int(match.group(1))] = os.path.join(directory, name)
    return found


def latest_checkpoint(directory):
    """Path of the newest checkpoint (highest epoch) in ``directory``, or ``None``."""
    found = checkpoint_files(directory)
    return found[max(found)] if found else None


def prune_checkpoints(directory, keep):
    """Delete all but the ``keep`` newest checkpoints in ``directory`` (``None``: keep all)."""
    if keep is None:
        return
    found = checkpoint_files(directory)
    removed = False
    for epoch in sorted(found)[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(found[epoch])
            removed = True
    if removed:
        fsync_dir(directory)


# -- generator states ---------------------------------------------------------


def get_rng_state(rng):
    """The state dict of a Generator, a RandomState or (``np.random``) the global one."""
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    return rng.get_state(legacy=False)


def set_rng_state(rng, state):
    """Put a state from :func:`get_rng_state` (also read back from JSON) into ``rng``, in place."""
    if isinstance(rng, np.random.Generator):
        rng.bit_generator.state = state
    else:
        rng.set_state(state)


def _generator_from_state(state):
    """A new Generator in ``state`` (a bit generator's state dict from :func:`get_rng_state`)."""
    rng = np.random.Generator(_BIT_GENERATORS[state["bit_generator"]]())
    set_rng_state(rng, state)
    return rng


def _json_array(obj):
    """``obj`` as JSON in a 0-d unicode array; arrays in it (MT19937's key) become lists."""
    return np.array(json.dumps(obj, default=lambda array: np.asarray(array).tolist()))


# -- optimizer state ----------------------------------------------------------


def _optimizer_arrays(state):
    """``(arrays, kinds)`` for an optimizer's ``state_dict()``: each value as an array, and its kind."""
    arrays, kinds = {}, {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            kind = "ndarray"
        elif isinstance(value, np.generic):
            kind = "numpy"
        elif type(value).__name__ in _SCALAR_KINDS:
            kind = type(value).__name__
        elif value is None:
            kind, value = "none", 0
        else:
            raise TypeError(
                f"optimizer state {key!r} is a {type(value).__name__}; a checkpoint holds "
                "numpy arrays, ints, floats, bools, strings and None only"
            )
        kinds[key] = kind
        arrays[key] = np.asarray(value)
    return arrays, kinds


def _optimizer_state(arrays, kinds):
    """The ``state_dict()`` that :func:`_optimizer_arrays` stored."""
    state = {}
    for key, kind in kinds.items():
        value = arrays[key]
        if kind == "ndarray":
            state[key] = value
        elif kind == "numpy":
            state[key] = value[()]
        elif kind == "none":
            state[key] = None
        else:
            state[key] = _SCALAR_KINDS[kind](value[()])
    return state


# -- the file -----------------------------------------------------------------


@dataclasses.dataclass
class Checkpoint:
    """The state of a training run after an epoch, as one checkpoint file holds it.

    ``run`` holds the settings the checkpoint was made with (``train_size``,
    ``mini_batch_size``, ``epochs``, ``max_iter``, ``optimizer`` and
    ``network`` class names); ``batch_rng_state`` is ``None`` when the
    batches come from the global ``np.random``.
    """

    run: dict
    params: dict
    optimizer_state: dict
    batch_rng_state: object
    global_rng_state: dict
    network_rng_states: list
    current_iter: int
    current_epoch: int
    train_loss_list: list
    train_acc_list: list
    test_acc_list: list
    history: list

    def write(self, path):
        """Write the checkpoint to ``path`` atomically (temporary file, fsync, rename)."""
        atomic_save_npz(path, self._arrays())

    def to_bytes(self):
        """The checkpoint file's contents, as :meth:`write` would write them (for sending elsewhere)."""
        buffer = io.BytesIO()
        write_npz(buffer, self._arrays())
        return buffer.getvalue()

    def _arrays(self):
        """The archive's members, ``{name: array}``."""
        optimizer_arrays, kinds = _optimizer_arrays(self.optimizer_state)
        meta = {"format": FORMAT, "version": VERSION, **self.run, "history": self.history,
                "optimizer_kinds": kinds}
        arrays = {f"params/{key}": np.asarray(value) for key, value in self.params.items()}
        arrays.update((f"optimizer/{key}", value) for key, value in optimizer_arrays.items())
        arrays["meta"] = np.array(json.dumps(meta))
        arrays["rng_state"] = _json_array(self.batch_rng_state)
        arrays["global_rng_state"] = _json_array(self.global_rng_state)
        arrays["network_rng_states"] = _json_array(self.network_rng_states)
        arrays["current_iter"] = np.array(self.current_iter, dtype=np.int64)
        arrays["current_epoch"] = np.array(self.current_epoch, dtype=np.int64)
        for name in ("train_loss_list", "train_acc_list", "test_acc_list"):
            values = getattr(self, name)
            arrays[name] = np.asarray(values) if values else np.zeros(0)
        return arrays

    @classmethod
    def read(cls, path, params, data=None):
        """Read the checkpoint at ``path`` for a network whose parameters are ``params``.

        ``data``: the file's contents (from :meth:`to_bytes`, or received
        from another process), read instead of the file; ``path`` then only
        names them in messages.

        Every member's header is checked before its data is read: a
        parameter of another shape or dtype than in ``params`` raises
        :class:`CheckpointError` ("does not fit") before it is decompressed,
        and the file may hold at most the bytes that ``params``, their
        optimizer state and the run's lists can need.

        Raises
        ------
        CheckpointError
            If the file cannot be read, is not a checkpoint of this format and
            version, or holds a parameter that does not fit.
        """
        def check_header(key, shape, dtype):
            name = key[len("params/"):] if key.startswith("params/") else None
            if name in params:
                have = np.asarray(params[name])
                if have.shape != shape or have.dtype != dtype:
                    raise _Misfit(
                        f"parameter {name!r}: the network has shape {have.shape} {have.dtype}, "
                        f"the checkpoint {shape} {dtype}"
                    )

        try:
            arrays = read_npz(path, check_header, max_bytes=_max_bytes(params),
                              what="checkpoint", fileobj=None if data is None else io.BytesIO(data))
        except _Misfit as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this training run: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise _unreadable(path, exc) from exc
        try:
            return cls._from_arrays(arrays)
        except (ValueError, KeyError, TypeError) as exc:
            raise _unreadable(path, exc) from exc

    @staticmethod
    def file_bytes(path, params):
        """The contents of the checkpoint file ``path`` (to send to other processes), unparsed.

        A file larger than what a checkpoint for ``params`` can hold is
        refused before it is read. Raises :class:`CheckpointError`.
        """
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > _max_bytes(params):  # its room for JSON and lists also covers the zip headers
                    raise ValueError(f"{size} bytes, more than a checkpoint of this network can hold")
                return f.read()
        except (OSError, ValueError) as exc:
            raise _unreadable(path, exc) from exc

    @classmethod
    def _from_arrays(cls, arrays):
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise ValueError(f"its meta is not a JSON object but a {type(meta).__name__}")
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(
                f"not a cconv trainer checkpoint of version {VERSION} "
                f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
            )
        kinds = meta.pop("optimizer_kinds")
        history = meta.pop("history")
        if not isinstance(kinds, dict) or not isinstance(history, list):
            raise ValueError("its meta's optimizer_kinds is not an object or its history not a list")
        needed = set(_COUNTERS_AND_STATES) | {f"optimizer/{key}" for key in kinds}
        if needed - set(arrays):
            raise KeyError(f"missing entries {sorted(needed - set(arrays))}")
        prefixed = {
            prefix: {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            for prefix in ("params/", "optimizer/")
        }
        meta.pop("format")
        meta.pop("version")
        return cls(
            run=meta,
            params=prefixed["params/"],
            optimizer_state=_optimizer_state(prefixed["optimizer/"], kinds),
            batch_rng_state=json.loads(str(arrays["rng_state"])),
            global_rng_state=json.loads(str(arrays["global_rng_state"])),
            network_rng_states=json.loads(str(arrays["network_rng_states"])),
            current_iter=int(arrays["current_iter"]),
            current_epoch=int(arrays["current_epoch"]),
            # list(array) gives numpy scalars, as the lists of a running trainer hold
            train_loss_list=list(arrays["train_loss_list"]),
            train_acc_list=list(arrays["train_acc_list"]),
            test_acc_list=list(arrays["test_acc_list"]),
            history=[dict(entry) for entry in history],
        )

    def misfits(self, run, params, network_rngs):
        """What keeps this checkpoint from continuing a run: a list of sentences (empty: it fits).

        ``run`` gives this run's ``train_size``, ``mini_batch_size`` and
        ``optimizer`` (class name); ``params`` the network's parameters;
        ``network_rngs`` its own generators.
        """
        problems = [
            f"{what} {self.run.get(key)!r} in the checkpoint, {run[key]!r} here"
            for key, what in (("train_size", "training-set size"), ("mini_batch_size", "mini_batch_size"),
                              ("optimizer", "optimizer"))
            if self.run.get(key) != run[key]
        ]
        for key in sorted(set(self.params) - set(params)):
            problems.append(f"parameter {key!r} is in the checkpoint but not in the network")
        for key in sorted(set(params) - set(self.params)):
            problems.append(f"parameter {key!r} of the network is missing from the checkpoint")
        if len(self.network_rng_states) != len(network_rngs):
            problems.append(
                f"the network draws from {len(network_rngs)} generator(s) of its own (rng of the network "
                f"or its layers), the checkpoint holds the state of {len(self.network_rng_states)}"
            )
        state = self.batch_rng_state
        if state is not None and (not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS):
            problems.append("the generator state names no known numpy bit generator")
        return problems

    def batch_rng(self):
        """A new Generator in the saved state of the batches' generator (``None``: ``np.random``)."""
        return None if self.batch_rng_state is None else _generator_from_state(self.batch_rng_state)

    def restore_rngs(self, network_rngs):
        """Put the saved states into the global ``np.random`` and into ``network_rngs``, in place."""
        set_rng_state(np.random, self.global_rng_state)
        for rng, state in zip(network_rngs, self.network_rng_states):
            set_rng_state(rng, state)


def _max_bytes(params):
    """Most data bytes a checkpoint of ``params`` may hold."""
    # 8 bytes an element: optimizer state may be kept in float64 for float32 parameters.
    elements = sum(np.asarray(value).size for value in params.values())
    return 8 * _COPIES_PER_PARAM * elements + _EXTRA_BYTES


def _unreadable(path, exc):
    return CheckpointError(
        f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); "
        "if it is damaged, delete it to resume from the one before"
    )
