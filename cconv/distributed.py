"""Data-parallel training over MPI: how processes share a batch and agree on everything else.

:class:`cconv.trainer.Trainer` takes an MPI communicator (``comm=``, an
:mod:`mpi4py` ``Comm`` such as ``MPI.COMM_WORLD``); the processes (ranks) it
joins, started by ``mpiexec``, then train one network together along the
trajectory one process follows:

* every rank draws the same mini-batch from the same generator and computes
  the gradient of its share of its rows (:func:`batch_share`: contiguous,
  sizes differing by at most one, so any number of ranks works);
* the gradients, each weighted by its rank's share of the batch, are summed
  by one ``Allreduce`` of one flat buffer per step (:meth:`Collective.
  weighted_sum`): the gradient of the whole batch, given to the same
  optimizer on every rank;
* a Dropout layer draws the mask of the whole batch and applies its rows of
  it (:func:`dropout_rows`), so each rank drops what one process would;
* what one process does with files (checkpoints) rank 0 alone does, and
  tells the others how it went (:meth:`Collective.on_root`); what every rank
  does that may fail on one of them (loading a state) ends with the ranks
  agreeing on the outcome (:meth:`Collective.on_every_rank`). Either way an
  error stops every rank at the same point, with the same exception, marked
  by :func:`mark_raised_on_every_rank` so that a command can tell it from an
  error of one rank (after which the others cannot go on).

A layer whose forward pass depends on the whole batch (BatchNormalization)
cannot be split this way; :func:`check_distributable` refuses it.
"""

import contextlib
import json

import numpy as np

from cconv.checkpoint import CheckpointError
from cconv.layers import BatchNormalization, Dropout
from cconv.nets._base import layers_of

__all__ = [
    "Collective",
    "batch_share",
    "check_distributable",
    "dropout_rows",
    "mark_raised_on_every_rank",
    "raised_on_every_rank",
]

#: Exceptions an error on rank 0 is raised as on every rank (others: RuntimeError).
_AGREED_ERRORS = {
    cls.__name__: cls
    for cls in (ValueError, TypeError, OSError, FileNotFoundError, FileExistsError, PermissionError,
                IsADirectoryError, NotADirectoryError, CheckpointError)
}


def batch_share(batch_size, size, rank):
    """Rows ``(start, stop)`` of a batch of ``batch_size`` that rank ``rank`` of ``size`` computes.

    Contiguous shares in rank order; the first ``batch_size % size`` ranks
    get one row more (as :func:`numpy.array_split`).

    >>> [batch_share(10, 3, rank) for rank in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    base, extra = divmod(batch_size, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def mark_raised_on_every_rank(error):
    """Mark ``error`` as raised by every rank at the same point (an agreed stop); return it."""
    error.raised_on_every_rank = True
    return error


def raised_on_every_rank(error):
    """True if ``error``, or an exception it was raised from or while handling, is so marked."""
    seen = set()
    while error is not None and id(error) not in seen:
        if getattr(error, "raised_on_every_rank", False):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def check_distributable(network):
    """Raise ``ValueError`` if ``network`` cannot be trained with its batch split across processes.

    Refused: a BatchNormalization layer (its forward pass normalises with
    statistics of the whole batch), a dropout layer other than
    :class:`cconv.layers.Dropout` (its mask cannot be drawn for the whole
    batch, so the trajectory would change with the number of processes), and
    layers that cannot be walked to check this (``layers`` neither a dict nor
    a list).
    """
    layers = layers_of(network)
    if layers is None:
        raise ValueError(
            f"comm: the layers of {type(network).__name__} cannot be walked (its layers is a "
            f"{type(network.layers).__name__}, not an OrderedDict or a list as the book's networks), so "
            "it cannot be checked to train the same with its batch split across processes"
        )
    for layer in layers:
        kind = type(layer).__name__
        if isinstance(layer, BatchNormalization) or "BatchNorm" in kind:
            raise ValueError(
                f"comm: {type(network).__name__} has a {kind} layer, whose forward pass uses the "
                "statistics of the whole batch; it cannot be trained with the batch split across "
                "processes (train it in one process)"
            )
        if hasattr(layer, "dropout_ratio") and not isinstance(layer, Dropout):
            raise ValueError(
                f"comm: {type(network).__name__} has a dropout layer ({kind}) that is not "
                "cconv.layers.Dropout: its masks cannot be drawn for the whole batch, so the "
                "run would depend on the number of processes"
            )


@contextlib.contextmanager
def dropout_rows(network, start, batch_size):
    """Within the block, the network's Dropout layers take rows ``start..`` of a batch of ``batch_size``.

    See :attr:`cconv.layers.Dropout.batch_rows`.
    """
    layers = [layer for layer in layers_of(network) or () if isinstance(layer, Dropout)]
    for layer in layers:
        layer.batch_rows = (start, batch_size)
    try:
        yield
    finally:
        for layer in layers:
            layer.batch_rows = None


class Collective:
    """The collective operations the trainer needs, on an mpi4py communicator.

    Every method is collective: all ranks of ``comm`` call it, in the same
    order. Nothing goes through pickle: arrays travel as buffers and small
    records as JSON.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        An intracommunicator (``MPI.COMM_WORLD``, or one split from it).
    """

    def __init__(self, comm):
        if not all(callable(getattr(comm, name, None)) for name in ("Get_rank", "Get_size", "Allreduce", "Bcast")):
            raise TypeError(f"comm: expected an mpi4py communicator (MPI.COMM_WORLD), got {comm!r}")
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._buffers = {}  # (elements, dtype) -> the flat buffer of weighted_sum

    @property
    def is_root(self):
        """True on rank 0, the rank that writes files and prints."""
        return self.rank == 0

    def share(self, n):
        """This rank's rows ``(start, stop)`` of ``n`` (see :func:`batch_share`)."""
        return batch_share(n, self.size, self.rank)

    def weighted_sum(self, arrays, weight, extra=()):
        """Sum ``weight * a`` over the ranks, for each array of ``arrays`` and each number of ``extra``.

        One ``Allreduce`` of one flat buffer in the arrays' dtype. Returns
        ``(sums, extra_sums)``: ``sums`` has the keys of ``arrays`` (views of
        the buffer, valid until the next call), ``extra_sums`` one float per
        number of ``extra``.
        """
        keys = list(arrays)
        dtype = np.result_type(*(arrays[key] for key in keys)) if keys else np.float64
        sizes = [arrays[key].size for key in keys]
        total = sum(sizes) + len(extra)
        buffer = self._buffers.get((total, dtype))
        if buffer is None:
            buffer = self._buffers[total, dtype] = np.empty(total, dtype=dtype)
        views, offset = {}, 0
        for key, size in zip(keys, sizes):
            view = buffer[offset : offset + size]
            np.multiply(np.ravel(arrays[key]), weight, out=view)
            views[key] = view.reshape(np.shape(arrays[key]))
            offset += size
        buffer[offset:] = [weight * float(value) for value in extra]
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        return views, [float(value) for value in buffer[offset:]]

    def sum_counts(self, counts):
        """The sum over the ranks of each integer of ``counts`` (a list of ints)."""
        buffer = np.asarray(counts, dtype=np.int64)
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        return [int(value) for value in buffer]

    def broadcast_bytes(self, data, root=0):
        """Rank ``root``'s ``data`` (bytes; ignored on the other ranks) on every rank."""
        mine = self.rank == root
        size = np.array([len(data) if mine else 0], dtype=np.int64)
        self.comm.Bcast(size, root=root)
        buffer = np.frombuffer(bytearray(data), dtype=np.uint8) if mine else np.empty(size[0], np.uint8)
        self.comm.Bcast(buffer, root=root)
        return buffer.tobytes()

    def broadcast_json(self, obj, root=0):
        """Rank ``root``'s ``obj`` (JSON-serialisable; ignored on the other ranks) on every rank."""
        data = json.dumps(obj).encode() if self.rank == root else b""
        return json.loads(self.broadcast_bytes(data, root))

    def on_root(self, function):
        """Run ``function()`` on rank 0 alone; return its JSON-serialisable result on every rank.

        If it raises, every rank raises the same exception type (an
        ``OSError`` or ``ValueError`` kind, else ``RuntimeError``) with the same
        message, marked raised on every rank; rank 0 raises the original.
        """
        outcome, error = None, None
        if self.is_root:
            try:
                outcome = {"result": function()}
            except Exception as exc:
                error = exc
                outcome = _error_record(exc)
        outcome = self.broadcast_json(outcome)
        if error is not None:
            raise mark_raised_on_every_rank(error)
        if "error" in outcome:
            raise _agreed_error(outcome)
        return outcome["result"]

    def on_every_rank(self, function):
        """Run ``function()`` on every rank; if it raised on any, raise on all.

        The lowest rank that failed raises its exception; the others raise
        one of the same type (as :meth:`on_root`) whose message begins with
        ``"rank R: "``. All are marked raised on every rank. Returns what
        ``function`` returned here.
        """
        result, error = None, None
        try:
            result = function()
        except Exception as exc:
            error = exc
        first = np.array([self.size if error is None else self.rank], dtype=np.int64)
        self.comm.Allreduce(self._mpi.IN_PLACE, first, op=self._mpi.MIN)
        first = int(first[0])
        if first == self.size:
            return result
        outcome = self.broadcast_json(_error_record(error) if self.rank == first else None, root=first)
        if self.rank == first:
            raise mark_raised_on_every_rank(error)
        outcome["message"] = f"rank {first}: {outcome['message']}"
        raise _agreed_error(outcome)


def _error_record(error):
    """An exception as JSON: its type name and message."""
    return {"error": type(error).__name__, "message": str(error)}


def _agreed_error(record):
    """The exception of an :func:`_error_record`, marked raised on every rank."""
    return mark_raised_on_every_rank(_AGREED_ERRORS.get(record["error"], RuntimeError)(record["message"]))
