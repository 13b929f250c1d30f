"""``mpiexec -n K cconv train --distributed``: the one-process result, resume, and every rank ending on a fault."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cconv.checkpoint import Checkpoint, checkpoint_files
from cconv.cli import main
from cconv.nets import SimpleConvNet

from mpi_testutils import WORKER, job_env, mpiexec, run_job

#: 20 steps an epoch (4000 sample images, batch 200); faults come at step 6 of epoch 2.
FAULT_STEP = 25


def train_args(out, epochs):
    return ["train", "--dataset", "sample", "--epochs", str(epochs), "--batch-size", "200",
            "--dtype", "float64", "--seed", "3", "--eval-samples", "100", "--out", str(out)]


def cconv_command(*args):
    return [sys.executable, "-m", "cconv", *map(str, args)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The run folder of a 2-epoch run in one process."""
    out = tmp_path_factory.mktemp("one-process") / "run"
    assert main(train_args(out, 2) + ["--quiet"]) == 0
    return out


def read_params(out):
    with np.load(os.path.join(out, "params.npz")) as archive:
        return {key: archive[key] for key in archive.files if archive[key].dtype.kind == "f"}


def assert_same_run(out, expected_out):
    """params.npz and the losses of metrics.json equal those of ``expected_out`` (1e-9 relative)."""
    got, expected = read_params(out), read_params(expected_out)
    assert set(got) == set(expected) and len(expected) == 6
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-12 * np.max(np.abs(value)), err_msg=key)
    with open(os.path.join(out, "metrics.json")) as f, open(os.path.join(expected_out, "metrics.json")) as g:
        got_metrics, expected_metrics = json.load(f), json.load(g)
    np.testing.assert_allclose(got_metrics["train_loss_list"], expected_metrics["train_loss_list"], rtol=1e-9)
    assert got_metrics["final_test_acc"] == expected_metrics["final_test_acc"]
    assert got_metrics["test_acc_list"] == expected_metrics["test_acc_list"]


def assert_checkpoint_of_epoch(out, epoch):
    """The newest checkpoint of ``out`` is a readable one of ``epoch``."""
    found = checkpoint_files(os.path.join(out, "checkpoints"))
    assert max(found) == epoch, found
    network = SimpleConvNet(dtype="float64")
    saved = Checkpoint.read(found[epoch], network.params)
    assert saved.current_epoch == epoch and saved.current_iter == 20 * epoch


def test_three_ranks_then_two_resumed_give_the_one_process_run(tmp_path, one_process):
    out = tmp_path / "run"
    done, _ = run_job(3, cconv_command(*train_args(out, 1), "--distributed"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("final test accuracy") == 1  # rank 0 alone prints
    assert "3 processes on this machine" not in done.stderr  # OMP_NUM_THREADS is set: no share of cores
    assert_checkpoint_of_epoch(out, 1)

    done, _ = run_job(2, cconv_command(*train_args(out, 2), "--distributed", "--resume", "--json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["epochs"]) == 2  # one JSON object: rank 0's
    assert_same_run(out, one_process)
    with open(out / "metrics.json") as f:
        assert json.load(f)["processes"] == 2
    assert_checkpoint_of_epoch(out, 2)


def run_with_fault(tmp_path, ranks, fault, rank, *extra):
    out = tmp_path / "run"
    command = [sys.executable, str(WORKER), "cli", str(tmp_path), fault, str(rank), str(FAULT_STEP), "--",
               *train_args(out, 2), "--distributed", *extra]
    done, seconds = run_job(ranks, command, cwd=tmp_path)
    return out, done, seconds


def test_an_error_on_one_rank_ends_every_rank_and_the_run_resumes(tmp_path, one_process):
    out, done, seconds = run_with_fault(tmp_path, 2, "raise", 1)
    assert done.returncode != 0
    assert "cconv: error: rank 1 of 2: [Errno 28] No space left on device (injected)" in done.stderr
    assert seconds < 60, f"the job took {seconds:.0f} s to end"
    assert_checkpoint_of_epoch(out, 1)

    done, _ = run_job(2, cconv_command(*train_args(out, 2), "--distributed", "--resume"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_run(out, one_process)


def test_a_rank_killed_ends_every_rank(tmp_path):
    out, done, seconds = run_with_fault(tmp_path, 3, "kill", 2)
    assert done.returncode != 0
    assert seconds < 60, f"the job took {seconds:.0f} s to end"
    assert not os.path.exists(out / "params.npz")
    assert_checkpoint_of_epoch(out, 1)


def test_a_nan_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    out, done, seconds = run_with_fault(tmp_path, 3, "nan", 1)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("training diverged") == 1, done.stderr  # said once, by rank 0
    assert f"at epoch 2 (step {FAULT_STEP + 1})" in done.stderr
    assert "Abort" not in done.stderr  # an agreed stop: every rank saw the NaN in the summed loss
    assert seconds < 60
    with open(out / "metrics.json") as f:
        assert len(json.load(f)["train_loss_list"]) == FAULT_STEP + 1
    assert_checkpoint_of_epoch(out, 1)


def test_a_full_disk_at_rank_0s_checkpoint_stops_every_rank_with_one_line(tmp_path):
    out, done, seconds = run_with_fault(tmp_path, 3, "disk-full", 0)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("No space left on device (injected)") == 1, done.stderr  # rank 0's line alone
    assert "Abort" not in done.stderr  # rank 0 told the others: an agreed stop
    assert seconds < 60
    assert_checkpoint_of_epoch(out, 1)


def test_a_batch_smaller_than_the_ranks_is_refused_in_one_line(tmp_path):
    done, _ = run_job(3, cconv_command(*train_args(tmp_path / "run", 1), "--distributed", "--batch-size", "2"),
                      cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "cconv: error: --batch-size 2: expected at least the number of processes (3); "
        "each computes at least one image of a batch"
    ]


def test_ctrl_c_on_mpiexec_ends_every_rank_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    job = subprocess.Popen([mpiexec(), "-n", "2", *cconv_command(*train_args(out, 5), "--distributed")],
                           cwd=tmp_path, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint_files(out / "checkpoints") and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.1)
        time.sleep(0.5)  # into epoch 2
        job.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert time.monotonic() - sent < 30
    assert job.returncode == 130, stderr
    # Every rank stopped after the same step; rank 0 alone says what is saved.
    assert stderr.count("cconv: interrupted during epoch") == 1, stderr
    assert "Abort" not in stderr
    epochs = checkpoint_files(out / "checkpoints")
    assert epochs and max(epochs) < 5
    assert_checkpoint_of_epoch(out, max(epochs))


def test_distributed_without_mpi4py_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    assert main(train_args(tmp_path / "run", 1) + ["--distributed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--distributed needs mpi4py and an MPI library" in err and "pip install 'cconv[mpi]'" in err


def test_distributed_outside_mpiexec_trains_as_one_process(tmp_path):
    mpiexec()  # skips without MPI
    out = tmp_path / "run"
    done = subprocess.run(cconv_command(*train_args(out, 1), "--distributed", "--batch-size", "400"),
                          cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "--distributed: one process (start it with 'mpiexec -n K' to train with K)" in done.stderr
    assert os.path.exists(out / "params.npz")
