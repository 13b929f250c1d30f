#!/usr/bin/env python
"""Data-parallel training with MPI on this machine, and a model of it on K machines.

How to run (from the repository root, with cconv installed with its ``mpi``
extra, ``pip install -e ".[mpi]"``, on a quiet machine)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_distributed.py
    python benchmarks/bench_distributed.py --quick              # smoke run, under a minute

The full run takes under a minute on 2 cores.

What is measured
----------------
Training steps of ``Trainer`` (Adam, lr 0.001, the loss of the gradient pass,
as ``cconv train``) of the book's SimpleConvNet and DeepConvNet on the
bundled MNIST sample (4,000 training images), float32 (``--dtype``), global
batch 100 (``--batch-size``), done two ways on the same cores:

* ``1 process x 2 threads``: one process, ``OMP_NUM_THREADS=2`` (cconv's
  kernels on two threads, BLAS on one during the passes, as always);
* ``mpiexec -n 2 x 1 thread``: ``Trainer(comm=MPI.COMM_WORLD)`` with two ranks
  of ``OMP_NUM_THREADS=1``, each computing half of every batch; one
  ``Allreduce`` of the gradients per step.

Each sample is a fresh job (process start-up not timed) that runs 3 untimed
steps, then times ``--steps`` steps one by one (40 = one epoch of the sample);
the epoch time is the sum for 4,000 images. Samples of the two ways
alternate, their order switching every round, with a ``--pause`` (0.2 s)
before each. Under MPI the ``allreduce`` column is the median time rank 0
spends in the step's ``Allreduce`` call (its wait for the other rank
included: the two halves do not take exactly as long), ``share`` the sum of
those over the sum of the steps, and ``pure`` the median of 30 lone
``Allreduce`` calls of the same buffer after a barrier (the cost of moving
the bytes, here through shared memory).

The scaling model
-----------------
For K machines like this one, one process of two threads each, training the
same global batch B (the trajectory is that of one process, whatever K):
compute per step ``t1 / K`` (``t1``: the measured one-process step; the batch
of each machine is B/K, so this is optimistic for small shares), and a ring
allreduce of the gradient buffer of ``G`` bytes, ``2 (K-1)/K G / bandwidth +
2 (K-1) latency`` (latency ``--latency-us``, 20 us by default, a TCP message
over Ethernet), at 10 and 25 Gb/s. cconv sums the gradients after the
backward pass (no overlap), so the communication share of a step is
``comm / (t1/K + comm)``. The table gives it for K = 2, 4, ..., and the
first K where it reaches 10%.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _util import DEFAULT_PAUSE, env_lines, fmt_f, fmt_ms, format_table  # noqa: E402

NETS = ("simple", "deep")
BANDWIDTHS_GBPS = (10, 25)
SCALING_KS = (2, 4, 8, 16, 32, 64)
SETUPS = {"one": "1 process x 2 threads", "mpi": "mpiexec -n 2 x 1 thread"}


# -- the job each sample runs --------------------------------------------------


class TimedComm:
    """An mpi4py communicator whose ``Allreduce`` calls are timed (``allreduce_seconds``)."""

    def __init__(self, comm):
        self.comm, self.allreduce_seconds = comm, []

    def Get_rank(self):
        return self.comm.Get_rank()

    def Get_size(self):
        return self.comm.Get_size()

    def Bcast(self, *args, **kwargs):
        return self.comm.Bcast(*args, **kwargs)

    def Allreduce(self, *args, **kwargs):
        start = time.perf_counter()
        self.comm.Allreduce(*args, **kwargs)
        self.allreduce_seconds.append(time.perf_counter() - start)


def worker(args):
    """Train ``--steps`` timed steps; rank 0 prints one JSON line of timings."""
    comm = None
    if args.comm:
        from mpi4py import MPI

        comm = TimedComm(MPI.COMM_WORLD)
    from cconv import datasets
    from cconv.nets import DeepConvNet, SimpleConvNet
    from cconv.trainer import Trainer

    data = datasets.load_dataset("sample", download=False)
    network = {"simple": SimpleConvNet, "deep": DeepConvNet}[args.worker](dtype=args.dtype, seed=0)
    trainer = Trainer(
        network, data.x_train.astype(args.dtype), data.t_train, data.x_test[:100].astype(args.dtype),
        data.t_test[:100], epochs=100, mini_batch_size=args.batch_size, optimizer="adam",
        optimizer_param={"lr": 0.001}, evaluate_sample_num_per_epoch=100, verbose=False, seed=0,
        loss_from_gradient_pass=True, comm=comm,
    )
    for _ in range(3):  # warm-up (the first step also measures the epoch's accuracies)
        trainer.train_step()
    in_allreduce = comm.allreduce_seconds if comm is not None else []
    in_allreduce.clear()
    steps = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step()
        steps.append(time.perf_counter() - start)
    result = {"steps": steps, "allreduce": in_allreduce,
              "grad_bytes": sum(p.nbytes for p in network.params.values()) + np.dtype(args.dtype).itemsize,
              "params": sum(p.size for p in network.params.values())}
    if comm is not None:
        buffer = np.zeros(result["grad_bytes"] // np.dtype(args.dtype).itemsize, dtype=args.dtype)
        pure = []
        for _ in range(30):
            comm.comm.Barrier()
            start = time.perf_counter()
            comm.comm.Allreduce(MPI.IN_PLACE, buffer)
            pure.append(time.perf_counter() - start)
        result["pure_allreduce"] = statistics.median(pure)
    if comm is None or comm.Get_rank() == 0:
        print(json.dumps(result), flush=True)


def run_sample(setup, net, args):
    """One job of ``setup`` (``"one"`` or ``"mpi"``); its worker's JSON result."""
    here = os.path.abspath(__file__)
    command = [sys.executable, here, "--worker", net, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--dtype", args.dtype]
    env = dict(os.environ)
    if setup == "one":
        env["OMP_NUM_THREADS"] = "2"
    else:
        env["OMP_NUM_THREADS"] = "1"
        command = [args.mpiexec, "-n", "2", *command, "--comm"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the tables ----------------------------------------------------------------


def measure(args):
    """``{net: {setup: [result, ...]}}``, samples of the setups alternating."""
    results = {}
    for net in args.nets:
        results[net] = {setup: [] for setup in SETUPS}
        for round_ in range(args.repeat):
            order = list(SETUPS) if round_ % 2 == 0 else list(SETUPS)[::-1]
            for setup in order:
                time.sleep(args.pause)
                results[net][setup].append(run_sample(setup, net, args))
    return results


def measured_table(results, args):
    body = []
    for net, by_setup in results.items():
        epoch = {setup: statistics.median(sum(r["steps"]) for r in samples) * 4000 / (args.steps * args.batch_size)
                 for setup, samples in by_setup.items()}
        for setup, samples in by_setup.items():
            step = statistics.median(s for r in samples for s in r["steps"])
            if setup == "mpi":
                share = statistics.median(sum(r["allreduce"]) / sum(r["steps"]) for r in samples)
                allreduce = statistics.median(a for r in samples for a in r["allreduce"])
                pure = statistics.median(r["pure_allreduce"] for r in samples)
                cells = [fmt_ms(allreduce), f"{100 * share:.1f}%", fmt_ms(pure)]
            else:
                cells = ["-", "-", "-"]
            body.append([net, SETUPS[setup], fmt_f(epoch[setup], 2), f"{4000 / epoch[setup]:.0f}", fmt_ms(step),
                         *cells, f"{epoch['one'] / epoch[setup]:.2f}x"])
    cols = [("net", "<"), ("setup", "<"), ("epoch s", ">"), ("images/s", ">"), ("step ms", ">"),
            ("allreduce ms", ">"), ("share", ">"), ("pure ms", ">"), ("speed vs 1 process", ">")]
    return format_table(cols, body, groups=[row[0] for row in body])


def ring_allreduce_seconds(k, grad_bytes, bandwidth, latency):
    """Time of a ring allreduce of ``grad_bytes`` over ``k`` machines (bytes/s, s a message)."""
    return 2 * (k - 1) / k * grad_bytes / bandwidth + 2 * (k - 1) * latency


def scaling_table(results, args):
    latency = args.latency_us * 1e-6
    body = []
    for net, by_setup in results.items():
        t1 = statistics.median(s for r in by_setup["one"] for s in r["steps"])
        grad_bytes = by_setup["one"][0]["grad_bytes"]
        for gbps in BANDWIDTHS_GBPS:
            bandwidth = gbps * 1e9 / 8
            comm = {k: ring_allreduce_seconds(k, grad_bytes, bandwidth, latency)
                    for k in range(2, max(args.batch_size, *SCALING_KS) + 1)}
            share = {k: comm[k] / (t1 / k + comm[k]) for k in comm}
            k10 = next((k for k in range(2, args.batch_size + 1) if share[k] >= 0.10), None)
            cells = [f"{100 * share[k]:.0f}% {t1 / (t1 / k + comm[k]):.1f}x" for k in SCALING_KS]
            body.append([net, f"{grad_bytes / 1e6:.2f} MB", fmt_ms(t1), f"{gbps} Gb/s", fmt_ms(comm[64]),
                         *cells, "-" if k10 is None else str(k10)])
    cols = [("net", "<"), ("gradients", ">"), ("t1 step ms", ">"), ("link", ">"), ("ring K=64 ms", ">"),
            *((f"K={k}: comm, speed-up", ">") for k in SCALING_KS), ("K at 10%", ">")]
    return format_table(cols, body, groups=[row[0] for row in body])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per sample (default 40: an epoch)")
    ap.add_argument("--repeat", type=int, default=4, help="samples of each setup (default 4)")
    ap.add_argument("--pause", type=float, default=DEFAULT_PAUSE)
    ap.add_argument("--latency-us", type=float, default=20.0, help="per-message latency of the model (us)")
    ap.add_argument("--mpiexec", default=os.path.join(os.path.dirname(sys.executable), "mpiexec"))
    ap.add_argument("--quick", action="store_true", help="2 samples of 10 steps")
    ap.add_argument("--worker", choices=NETS, help=argparse.SUPPRESS)
    ap.add_argument("--comm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.quick:
        args.repeat, args.steps = 2, 10
    if not os.path.exists(args.mpiexec):
        ap.error(f"--mpiexec {args.mpiexec} not found (pip install 'cconv[mpi]', or give its path)")
    import cconv

    print("\n".join(env_lines(cconv, None, False)))
    print(f"mpiexec      : {args.mpiexec}")
    print(f"training     : {args.dtype}, global batch {args.batch_size}, Adam, {args.steps} timed steps "
          f"a sample, {args.repeat} samples a setup, alternating\n")
    start = time.perf_counter()
    results = measure(args)
    print("On this machine: one epoch of the sample (4,000 images); medians")
    print(measured_table(results, args))
    print(f"\nScaling model: K machines of this one's compute, global batch {args.batch_size}, ring allreduce, "
          f"{args.latency_us:g} us a message; 'comm' is its share of a step, 'speed-up' against one machine")
    print(scaling_table(results, args))
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
