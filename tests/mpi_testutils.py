"""Running the tests' MPI jobs: ``mpiexec -n K`` of tests/mpi_worker.py or of ``cconv``.

The MPI tests need mpi4py and an ``mpiexec`` (``pip install "cconv[mpi]"``
gives both); without them they are skipped, unless ``CCONV_EXPECT_MPI=1``
(set by .ci/run), where a missing MPI fails them.
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from cconv import datasets
from cconv.nets import AlexNet, DeepConvNet, LeNet, SimpleConvNet

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")

#: The trajectory runs: 2 epochs of 5 steps on 100 sample images (batch 20:
#: shares 10/10 with 2 ranks, 7/7/6 with 3), Adam, accuracies on 50 images.
TRAIN_SETTINGS = {
    "seed": 7,
    "train_images": 100,
    "test_images": 60,
    "trainer": {"epochs": 2, "mini_batch_size": 20, "optimizer": "adam", "optimizer_param": {"lr": 0.01},
                "evaluate_sample_num_per_epoch": 50},
}
NETS = {"simple": SimpleConvNet, "deep": DeepConvNet, "lenet": LeNet, "alexnet": AlexNet}
#: Longest an MPI job of the tests may take before it counts as hung (s).
JOB_TIMEOUT = 180


def mpiexec():
    """The ``mpiexec`` beside this Python (a venv's, from the mpich wheel), else on PATH; skip without one."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        _missing("mpi4py is not installed (pip install 'cconv[mpi]')")
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        _missing("no mpiexec beside this Python or on PATH (pip install 'cconv[mpi]')")
    return found


def _missing(reason):
    if os.environ.get("CCONV_EXPECT_MPI") == "1":
        pytest.fail(f"CCONV_EXPECT_MPI=1 but {reason}")
    pytest.skip(reason)


def job_env():
    """The environment of a job: one kernel thread per rank (the machine has few cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_job(ranks, command, timeout=JOB_TIMEOUT, **popen):
    """Run ``mpiexec -n ranks command``; ``(CompletedProcess, seconds)``. A hang fails the test."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            [mpiexec(), "-n", str(ranks), *command], capture_output=True, text=True,
            timeout=timeout, env=job_env(), **popen,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n {ranks} {' '.join(command)} still ran after {timeout} s: {exc.stderr}")
    return done, time.monotonic() - start


def run_worker(ranks, *args, timeout=JOB_TIMEOUT):
    """``mpiexec -n ranks python mpi_worker.py args``; ``(CompletedProcess, seconds)``."""
    return run_job(ranks, [sys.executable, WORKER, *map(str, args)], timeout=timeout)


def training_data():
    """``(x_train, t_train, x_test, t_test)``: the first sample images, float64."""
    data = datasets.load_dataset("sample", download=False)
    n, m = TRAIN_SETTINGS["train_images"], TRAIN_SETTINGS["test_images"]
    return (data.x_train[:n].astype(np.float64), data.t_train[:n],
            data.x_test[:m].astype(np.float64), data.t_test[:m])


def make_network(name, seed_mode):
    """The net ``name`` in float64: seeded (``"seeded"``), or from ``np.random`` (``"global"``)."""
    seed = None if seed_mode == "global" else TRAIN_SETTINGS["seed"]
    small = {"width": 0.125, "hidden_size": 64} if name == "alexnet" else {}  # AlexNet's classifier has dropout
    return NETS[name](input_dim=(1, 28, 28), output_size=10, dtype="float64", seed=seed, **small)
