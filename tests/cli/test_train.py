"""``cconv train`` (:mod:`cconv.cli.train`): end to end, output modes, dtypes, --resume, Ctrl-C, divergence.

Picture sizes come from the docstrings of :mod:`cconv.plots` (100 dpi).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cconv
from cconv.trainer import Trainer

from cconv_testutils import command_env, run_cli
from cli_testutils import (
    ACCURACY_PX,
    FILTERS_PX,
    SAMPLE_TEST,
    SAMPLE_TRAIN,
    TINY_TEST,
    assert_png_size,
    assert_usage_error,
    load_params,
    read_png,
    run_command,
    timing_free,
    train_args,
)

# --------------------------------------------------------------------------
# cconv train on the bundled sample, end to end (console script)
# --------------------------------------------------------------------------


def test_train_writes_every_file(sample_run):
    out, result = sample_run["out"], sample_run["result"]
    for name in ("params.npz", "metrics.json", "accuracy.png", "filters_before.png",
                 "filters_after.png", "checkpoints/epoch-0001.npz"):
        assert (out / name).is_file(), name
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    lines = result.stdout.splitlines()
    assert "===" not in result.stdout  # not the book's line, printed after the epoch's first step
    assert lines[0].startswith("training SimpleConvNet (float32) on sample: 4000 train / 1000 test images, 1 epoch,")
    # The progress bar (stderr): steps, loss, images/s and the ETA.
    bar = [line for line in result.stderr.splitlines() if line.startswith("epoch 1/1")]
    assert bar and "loss" in bar[0] and "img/s" in bar[0] and "ETA" in bar[0]
    assert bar[-1].startswith("epoch 1/1  40/40")
    # One summary line after the epoch, with the accuracies metrics.json records.
    entry = sample_run["metrics"]["epochs"][0]
    summary = [line for line in lines if line.startswith("epoch ")]
    assert summary == [
        f"epoch 1/1: loss {entry['loss']:.4f}, train acc {entry['train_acc']:.4f}, "
        f"test acc {entry['test_acc']:.4f} (200 train / 200 test images), "
        f"{entry['seconds']:.1f} s, {entry['images_per_sec']:.0f} images/s"
    ]
    final = sample_run["metrics"]["final_test_acc"]
    assert f"final test accuracy {final:.4f} (1000 test images)" in lines
    for name in ("params.npz", "metrics.json", "filters_before.png", "accuracy.png", "filters_after.png"):
        assert f"wrote {out / name}" in lines


def test_train_metrics_json(sample_run):
    metrics = sample_run["metrics"]
    assert metrics["settings"] == {
        "net": "simple", "dataset": "sample", "data_dir": None, "epochs": 1, "batch_size": 100,
        "optimizer": "adam", "lr": 0.001, "dtype": "float32", "seed": 0, "eval_samples": 200,
    }
    assert metrics["network"]["name"] == "SimpleConvNet"
    assert metrics["network"]["config"]["dtype"] == "float32"
    dataset = metrics["dataset"]
    assert (dataset["name"], dataset["requested"], dataset["fallback_reason"]) == ("sample", "sample", None)
    assert (dataset["train_images"], dataset["test_images"]) == (SAMPLE_TRAIN, SAMPLE_TEST)
    assert metrics["eval_images"] == {"train": 200, "test": 200}
    assert metrics["iterations"] == 40 and len(metrics["train_loss_list"]) == 40
    assert metrics["seconds"] > 0

    (entry,) = metrics["epochs"]
    assert set(entry) == {"epoch", "loss", "train_acc", "test_acc", "seconds", "train_seconds",
                          "images_per_sec"}
    assert entry["epoch"] == 1
    assert entry["loss"] == pytest.approx(np.mean(metrics["train_loss_list"]))
    assert 0 < entry["train_seconds"] <= entry["seconds"]
    assert entry["images_per_sec"] == pytest.approx(SAMPLE_TRAIN / entry["train_seconds"])
    # The epoch's accuracies are measured at its end: one epoch of Adam on the sample reaches
    # ~0.8, far above the book's measurement after the epoch's first step (train_acc_list).
    assert 0.6 <= entry["train_acc"] <= 1 and 0.6 <= entry["test_acc"] <= 1
    assert metrics["train_acc_list"][0] < 0.5 and metrics["test_acc_list"][0] < 0.5
    assert entry["test_acc"] > metrics["test_acc_list"][0] + 0.2
    assert 0.6 <= metrics["final_test_acc"] <= 1
    assert abs(metrics["final_test_acc"] - entry["test_acc"]) < 0.1  # 1000 vs 200 test images


def test_train_pictures(sample_run):
    out = sample_run["out"]
    assert_png_size(out / "accuracy.png", ACCURACY_PX)
    before = assert_png_size(out / "filters_before.png", FILTERS_PX)
    after = assert_png_size(out / "filters_after.png", FILTERS_PX)
    assert not np.array_equal(before, after)  # the filters learned something


def test_train_params_record_the_network(sample_run):
    network = cconv.load_network(sample_run["out"] / "params.npz")
    assert type(network).__name__ == "SimpleConvNet"
    assert network.params["W1"].dtype == np.float32


# --------------------------------------------------------------------------
# --json, --quiet, the default --out, dtypes (tiny data)
# --------------------------------------------------------------------------


def test_train_json_prints_only_json(tiny_data, tmp_path, capsys):
    status, out, err = run_cli(capsys, *train_args(tiny_data, tmp_path / "run", "--epochs", 1, "--json"))
    assert status == 0
    report = json.loads(out)  # nothing else on stdout
    assert report["params"] == str(tmp_path / "run" / "params.npz")
    assert report["out"] == str(tmp_path / "run")
    assert report["dataset"] == "mnist"  # --data-dir with the default --dataset
    assert len(report["epochs"]) == 1 and 0 <= report["final_test_acc"] <= 1
    with open(tmp_path / "run" / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert report["final_test_acc"] == metrics["final_test_acc"]
    assert report["epochs"] == metrics["epochs"]
    # stderr has the progress bar only.
    assert "Traceback" not in err
    assert all(line.startswith("epoch 1/1 ") for line in err.splitlines()), err


def test_train_quiet_prints_nothing_and_uses_the_default_out(tiny_data, tmp_path):
    # A real process: nothing at all on stdout or stderr; --out defaults to ./cconv-train.
    result = run_command(["train", "--data-dir", tiny_data, "--epochs", 1, "--dtype", "float32",
                          "--quiet"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert (tmp_path / "cconv-train" / "params.npz").is_file()
    assert (tmp_path / "cconv-train" / "filters_after.png").is_file()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_train_dtype(tiny_data, tmp_path, capsys, dtype):
    args = ["train", "--data-dir", tiny_data, "--out", tmp_path / "run", "--epochs", 1, "--seed", 5,
            "--eval-samples", 100, "--quiet"]
    if dtype == "float64":
        args += ["--dtype", "float64"]  # float32 is the default, as PyTorch
    assert run_cli(capsys, *args) == (0, "", "")
    params = load_params(tmp_path / "run" / "params.npz")
    assert {params[k].dtype for k in ("W1", "b1", "W2", "b2", "W3", "b3")} == {np.dtype(dtype)}
    network = cconv.load_network(tmp_path / "run" / "params.npz")
    assert network.dtype == np.dtype(dtype)
    with open(tmp_path / "run" / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["settings"]["dtype"] == dtype
    # evaluate rebuilds the net in its dtype and reads the recorded --data-dir back.
    status, out, _ = run_cli(capsys, "evaluate", tmp_path / "run" / "params.npz", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["test_images"] == TINY_TEST
    assert report["accuracy"] == metrics["final_test_acc"]


# --------------------------------------------------------------------------
# --resume
# --------------------------------------------------------------------------


def test_resume_continues_the_same_trajectory(tiny_data, tiny_straight, tiny_copy, capsys):
    straight_out, straight = tiny_straight
    with open(tiny_copy / "metrics.json", encoding="utf-8") as f:
        first = json.load(f)
    (tiny_copy / "filters_before.png").unlink()  # redrawn from the initial weights, not the checkpoint's
    status, out, err = run_cli(capsys, *train_args(tiny_data, tiny_copy, "--epochs", 2, "--resume"))
    assert status == 0, err
    assert f"resumed from {tiny_copy / 'checkpoints' / 'epoch-0001.npz'}: 1 epoch done" in out.splitlines()
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("epoch ")] == ["epoch 2/2"]
    with open(tiny_copy / "metrics.json", encoding="utf-8") as f:
        resumed = json.load(f)
    # Two epochs, the first exactly as the first run recorded it (timings included: it is
    # read back from the checkpoint).
    assert len(resumed["epochs"]) == 2
    assert resumed["epochs"][0] == first["epochs"][0]
    assert resumed["train_loss_list"][:3] == first["train_loss_list"]
    # ... and the whole run is the straight 2-epoch run, bit for bit.
    for key in ("train_loss_list", "train_acc_list", "test_acc_list", "final_test_acc", "iterations"):
        assert resumed[key] == straight[key], key
    assert [timing_free(e) for e in resumed["epochs"]] == [timing_free(e) for e in straight["epochs"]]
    resumed_params = load_params(tiny_copy / "params.npz")
    straight_params = load_params(straight_out / "params.npz")
    assert resumed_params.keys() == straight_params.keys()
    for key in resumed_params:
        np.testing.assert_array_equal(resumed_params[key], straight_params[key], err_msg=key)
        assert resumed_params[key].dtype == straight_params[key].dtype
    # The pictures of the resumed run are those of the straight run.
    assert np.array_equal(read_png(tiny_copy / "filters_before.png"),
                          read_png(straight_out / "filters_before.png"))
    assert np.array_equal(read_png(tiny_copy / "filters_after.png"),
                          read_png(straight_out / "filters_after.png"))


def test_resume_to_fewer_epochs_is_refused(tiny_data, tiny_straight, tmp_path, capsys):
    out = shutil.copytree(tiny_straight[0], tmp_path / "run")
    assert_usage_error(*run_cli(capsys, *train_args(tiny_data, out, "--epochs", 1, "--resume")), "--epochs 1")


def test_resume_without_checkpoints_starts_from_the_beginning(tiny_data, tiny_run, tmp_path, capsys):
    status, out, err = run_cli(capsys, *train_args(tiny_data, tmp_path / "run", "--epochs", 1, "--resume"))
    assert status == 0
    assert "cconv: --resume: no checkpoint in" in err
    # The very run of tiny_run (same settings and seed).
    np.testing.assert_array_equal(load_params(tmp_path / "run" / "params.npz")["W1"],
                                  load_params(tiny_run / "params.npz")["W1"])


def test_other_networks_train_resume_and_read_back(micro_data, tmp_path, capsys):
    # LeNet, and DeepConvNet whose dropout draws random numbers: --resume restores them too.
    def train(net, out, *extra):
        args = ["train", "--data-dir", micro_data, "--net", net, "--out", out, "--batch-size", 50,
                "--eval-samples", 20, "--dtype", "float32", "--seed", 1, "--quiet", *extra]
        assert run_cli(capsys, *args) == (0, "", "")

    train("lenet", tmp_path / "lenet", "--epochs", 1)
    train("deep", tmp_path / "deep-straight", "--epochs", 2)
    train("deep", tmp_path / "deep", "--epochs", 1)
    train("deep", tmp_path / "deep", "--epochs", 2, "--resume")
    straight = load_params(tmp_path / "deep-straight" / "params.npz")
    resumed = load_params(tmp_path / "deep" / "params.npz")
    assert resumed.keys() == straight.keys()
    for key in resumed:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    for folder, name, layers in [("lenet", "LeNet", 4), ("deep", "DeepConvNet", 9)]:
        status, out, err = run_cli(capsys, "visualize", tmp_path / folder / "params.npz", "--json")
        assert status == 0, err
        report = json.loads(out)
        assert report["network"] == name and len(report["layers"]) == layers
        read_png(tmp_path / folder / "activations.png")
    assert_usage_error(*run_cli(capsys, "evaluate", tmp_path / "deep" / "params.npz", "--net", "lenet"),
                       "DeepConvNet", "--net deep")


# --------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------


def test_interrupt_keeps_the_completed_epochs(tiny_data, tiny_straight, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    calls = []
    original = Trainer.train_step

    def interrupted_step(self):
        calls.append(self.current_iter)
        if self.current_iter == 4:  # the second step of epoch 2
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    status, stdout, err = run_cli(capsys, *train_args(tiny_data, out, "--epochs", 2))
    assert status == 130
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"cconv: interrupted during epoch 2: 1 epoch done, saved in "
        f"{out / 'checkpoints' / 'epoch-0001.npz'}; run the same command with --resume to continue"
    )
    assert "epoch 1/2:" in stdout and "epoch 2/2:" not in stdout
    with open(out / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert len(metrics["epochs"]) == 1 and metrics["final_test_acc"] is None
    assert not (out / "params.npz").exists()

    monkeypatch.setattr(Trainer, "train_step", original)
    status, _, _ = run_cli(capsys, *train_args(tiny_data, out, "--epochs", 2, "--resume", "--quiet"))
    assert status == 0
    straight = load_params(tiny_straight[0] / "params.npz")
    for key, value in load_params(out / "params.npz").items():
        np.testing.assert_array_equal(value, straight[key], err_msg=key)


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a child process (POSIX)")
def test_sigint_exits_130_with_one_line(tiny_data, tmp_path):
    out = tmp_path / "run"
    err_path = tmp_path / "stderr.txt"
    args = [sys.executable, "-m", "cconv", *map(str, train_args(tiny_data, out, "--epochs", 50))]
    with open(err_path, "w") as err_file:
        process = subprocess.Popen(
            args, cwd=tmp_path, env=command_env(tmp_path), stdout=subprocess.PIPE,
            stderr=err_file, text=True,
            # A child started from a shell job may inherit SIGINT ignored; Python keeps that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            for line in process.stdout:
                if line.startswith("epoch 1/50:"):
                    time.sleep(0.2)
                    process.send_signal(signal.SIGINT)
                    break
            process.stdout.read()
            status = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    err = err_path.read_text()
    assert status == 130, err
    assert "Traceback" not in err
    messages = [line for line in err.splitlines() if line.startswith("cconv:")]
    assert len(messages) == 1 and messages[0].startswith("cconv: interrupted during epoch "), err
    assert "--resume" in messages[0]
    with open(out / "metrics.json", encoding="utf-8") as f:
        done = len(json.load(f)["epochs"])
    assert 1 <= done < 50
    assert (out / "checkpoints" / f"epoch-{done:04d}.npz").is_file()


# --------------------------------------------------------------------------
# A loss that diverges
# --------------------------------------------------------------------------


def test_training_that_diverges(tiny_data, tmp_path, capsys):
    # float32 SGD with lr 1e30 overflows at the first step: the loss is NaN.
    status, out, err = run_cli(capsys, *train_args(tiny_data, tmp_path / "run", "--epochs", 2, "--optimizer", "sgd",
                                               "--lr", "1e30", "--quiet"))
    assert_usage_error(status, out, err, "diverged", "--lr")
    assert "RuntimeWarning" not in err
    assert not (tmp_path / "run" / "params.npz").exists()
