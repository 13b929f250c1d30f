"""What each rank runs in the tests under ``mpiexec`` (tests/test_distributed.py, tests/cli/test_train_distributed.py).

``mpiexec -n K python mpi_worker.py SCENARIO OUT [ARGS...]``:

* ``train OUT NET LOSS_MODE SEED_MODE``: a few steps of :class:`cconv.trainer.Trainer`
  with ``comm``; each rank saves its parameters and losses to ``OUT/rank-R.npz``.
* ``combine OUT``: rank-valued gradients through :meth:`Collective.weighted_sum`
  and :meth:`Collective.sum_counts`; each rank saves what it got.
* ``count OUT LOSS_MODE``: the collective calls and their sizes during 4 steps
  of a trainer (after its first, which measures accuracies), and the rows of
  each gradient computed, in ``OUT/rank-R.json``.
* ``machine-first OUT``: :meth:`cconv.cli._mpi.World.machine_first` of a
  function that records when it ran, rank 0's taking a second.
* ``cli OUT FAULT RANK STEP -- ARGS...``: ``cconv train ARGS`` with the fault
  ``FAULT`` (``none``, ``raise``, ``kill``, ``nan``) injected on rank ``RANK``
  before step ``STEP`` (0-based, over the run), or ``disk-full``: rank
  ``RANK``'s checkpoint writes after the first fail.
"""

import json
import os
import signal
import sys
import time

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cconv.distributed import Collective  # noqa: E402
from cconv.trainer import Trainer  # noqa: E402

from mpi_testutils import TRAIN_SETTINGS, make_network, training_data  # noqa: E402

COMM = MPI.COMM_WORLD


def train(out, net_name, loss_mode, seed_mode):
    """The trajectory scenario: see the module docstring."""
    if seed_mode == "global":
        # Different global states on every rank: the trainer must adopt rank 0's.
        np.random.seed(TRAIN_SETTINGS["seed"] + COMM.rank)
    network = make_network(net_name, seed_mode)
    x_train, t_train, x_test, t_test = training_data()
    trainer = Trainer(
        network, x_train, t_train, x_test, t_test,
        **TRAIN_SETTINGS["trainer"],
        verbose=False,
        seed=None if seed_mode == "global" else TRAIN_SETTINGS["seed"],
        loss_from_gradient_pass=loss_mode == "gradient-pass",
        comm=COMM,
    )
    trainer.train()
    np.savez(
        os.path.join(out, f"rank-{COMM.rank}.npz"),
        losses=np.asarray(trainer.train_loss_list, dtype=np.float64),
        train_acc=np.asarray(trainer.train_acc_list), test_acc=np.asarray(trainer.test_acc_list),
        final_test_acc=np.asarray(trainer.final_test_acc),
        **{f"param_{key}": value for key, value in network.params.items()},
    )


def combine(out):
    """Each rank's gradient is its rank + 1 everywhere; its weight its share of a batch of 10."""
    collective = Collective(COMM)
    start, stop = collective.share(10)
    grads = {"W": np.full((3, 4), COMM.rank + 1.0), "b": np.full(5, -(COMM.rank + 1.0))}
    sums, (loss,) = collective.weighted_sum(grads, (stop - start) / 10, [10.0 * (COMM.rank + 1)])
    counts = collective.sum_counts([stop - start, COMM.rank])
    np.savez(os.path.join(out, f"rank-{COMM.rank}.npz"), W=sums["W"], b=sums["b"], loss=loss,
             counts=np.asarray(counts), share=np.asarray([start, stop]))


class CountingComm:
    """A communicator that records its collective calls (name, elements) and passes them on."""

    def __init__(self, comm):
        self.comm, self.calls = comm, []

    def Get_rank(self):
        return self.comm.Get_rank()

    def Get_size(self):
        return self.comm.Get_size()

    def Allreduce(self, send, recv, **kwargs):
        self.calls.append(("Allreduce", int(np.asarray(recv).size)))
        return self.comm.Allreduce(send, recv, **kwargs)

    def Bcast(self, buffer, **kwargs):
        self.calls.append(("Bcast", int(np.asarray(buffer).size)))
        return self.comm.Bcast(buffer, **kwargs)


def count(out, loss_mode):
    """The collective calls of 4 steps: see the module docstring."""
    comm = CountingComm(COMM)
    network = make_network("deep", "seeded")
    trainer = Trainer(network, *training_data(), **TRAIN_SETTINGS["trainer"], verbose=False,
                      seed=TRAIN_SETTINGS["seed"], loss_from_gradient_pass=loss_mode == "gradient-pass",
                      comm=comm)
    rows = []
    gradient = network.gradient

    def counting_gradient(x, t):
        rows.append(len(x))
        return gradient(x, t)

    network.gradient = counting_gradient
    trainer.train_step()
    comm.calls.clear()
    for _ in range(4):
        trainer.train_step()
    with open(os.path.join(out, f"rank-{COMM.rank}.json"), "w") as f:
        json.dump({"calls": comm.calls, "rows": rows, "params": sum(p.size for p in network.params.values())}, f)


def machine_first(out):
    """Rank 0 of the machine runs first (for a second); the others after it."""
    from cconv.cli._mpi import World

    world = World(MPI)

    def record():
        start = time.time()
        if world.machine.Get_rank() == 0:
            time.sleep(1.0)
        return start, time.time()

    start, end = world.machine_first(record)
    with open(os.path.join(out, f"rank-{COMM.rank}.json"), "w") as f:
        json.dump({"start": start, "end": end}, f)


def cli(out, fault, fault_rank, fault_step, argv):
    """``cconv train`` with a fault on one rank: see the module docstring."""
    if COMM.rank == fault_rank and fault != "none":
        original = Trainer.train_step

        def train_step(trainer):
            if trainer.current_iter == fault_step:
                if fault == "raise":
                    raise OSError(28, "No space left on device (injected)")
                if fault == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if fault == "nan":  # (disk-full: below)
                    trainer.network.last_layer.forward = _nan_loss(trainer.network.last_layer.forward)
            return original(trainer)

        Trainer.train_step = train_step
    if COMM.rank == fault_rank and fault == "disk-full":  # the checkpoints after the first fail
        from cconv.checkpoint import Checkpoint

        write = Checkpoint.write
        written = []

        def write_once(checkpoint, path):
            if written:
                raise OSError(28, "No space left on device (injected)", path)
            written.append(path)
            return write(checkpoint, path)

        Checkpoint.write = write_once
    from cconv.cli import main

    return main(argv)


def _nan_loss(forward):
    """A loss layer forward whose next loss is NaN (once)."""
    def nan_once(*args, **kwargs):
        forward(*args, **kwargs)
        layer = forward.__self__
        layer.forward = forward
        layer.loss = float("nan")
        return layer.loss

    return nan_once


def main(argv):
    scenario, out = argv[0], argv[1]
    if scenario == "train":
        train(out, *argv[2:5])
        return 0
    if scenario == "combine":
        combine(out)
        return 0
    if scenario == "count":
        count(out, argv[2])
        return 0
    if scenario == "machine-first":
        machine_first(out)
        return 0
    if scenario == "cli":
        fault, rank, step = argv[2], int(argv[3]), int(argv[4])
        return cli(out, fault, rank, step, argv[argv.index("--") + 1:])
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
