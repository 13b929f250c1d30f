"""The ``cconv`` command (:mod:`cconv.cli`), end to end and offline.

Most runs call ``cconv.cli.main([...])`` in-process (fast, output captured
with ``capsys``); a few run the real command as a subprocess, both as
``python -m cconv`` and as the ``cconv`` console script, in a temporary
working directory with ``$CCONV_DATA`` pointing into it and ``MPLBACKEND``
unset. Nothing is downloaded: training uses the bundled 5,000-image MNIST
sample (``--dataset sample``) or a tiny slice of it written as IDX files
(``--data-dir``, 300 train / 200 test images: 3 steps per epoch).

Picture sizes come from the docstrings of :mod:`cconv.plots` (100 dpi).
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time

import numpy as np
import pytest

import cconv
from cconv import cli, datasets
from cconv.trainer import Trainer

from cconv_testutils import command_env, run_cli, shared_data, write_sample_subset

matplotlib_image = pytest.importorskip("matplotlib.image")

TINY_TRAIN, TINY_TEST = 300, 200
SAMPLE_TRAIN, SAMPLE_TEST = 4000, 1000

#: PNG sizes (height, width) in pixels, from cconv.plots' docstrings.
ACCURACY_PX = (480, 640)  # 6.4 x 4.8 inches
FILTERS_PX = (320, 640)  # SimpleConvNet's 30 filters, 8 a row: 4 rows of 0.8 inch
CONFUSION_PX = (680, 680)  # 0.5 * 10 classes + 1.8 inches square


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def console_script():
    """The ``cconv`` console script of this interpreter (its scripts folder first), or None."""
    for name in ("cconv", "cconv.exe"):
        path = os.path.join(sysconfig.get_path("scripts"), name)
        if os.path.isfile(path):
            return path
    return shutil.which("cconv")


def run_command(args, cwd, *, script=False, timeout=300):
    """Run ``python -m cconv ARGS`` (or the console script) in ``cwd``; return the CompletedProcess."""
    if script:
        path = console_script()
        if path is None:
            pytest.skip("the cconv console script is not installed (pip install . puts it in the scripts folder)")
        prefix = [path]
    else:
        prefix = [sys.executable, "-m", "cconv"]
    return subprocess.run(
        prefix + [str(a) for a in args],
        cwd=cwd,
        env=command_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_usage_error(status, out, err, *words):
    """Exit status 2, nothing on stdout, exactly one line on stderr, naming ``words``, no traceback."""
    assert status == 2, (status, out, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("cconv: error: "), err
    for word in words:
        assert word in err, (word, err)


def read_png(path):
    """A PNG as an RGB(A) float array, checked to be a real picture (not blank)."""
    image = matplotlib_image.imread(str(path))
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    rgb = image[..., :3]
    assert rgb.std() > 0.02, f"{path} looks blank"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10, f"{path} has hardly any colours"
    return image


def assert_png_size(path, size):
    image = read_png(path)
    assert image.shape[:2] == size, (path, image.shape[:2], size)
    return image


def load_params(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def train_args(data_dir, out, *extra):
    """A cheap ``cconv train`` on the tiny data set (float32, seed 5)."""
    return ("train", "--data-dir", data_dir, "--out", out, "--dtype", "float32", "--seed", 5,
            "--eval-samples", 100, *extra)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """In-process runs: an empty data cache in tmp_path; MPLBACKEND as it was before."""
    monkeypatch.setenv("CCONV_DATA", str(tmp_path / "cconv-data"))
    before = os.environ.get("MPLBACKEND")
    yield
    assert os.environ.get("MPLBACKEND") == before, "cconv.cli.main changed MPLBACKEND of its caller"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The first 300 train and 200 test images of the bundled sample, as four IDX files."""
    return write_sample_subset(tmp_path_factory.mktemp("tiny-idx"), TINY_TRAIN, TINY_TEST)


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    """The first 100 train and 50 test images of the sample (2 steps of 50 per epoch)."""
    return write_sample_subset(tmp_path_factory.mktemp("micro-idx"), 100, 50)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """``cconv train --dataset sample --epochs 1 --out run`` run by the console script (~5-15 s).

    (By ``python -m cconv`` if the console script is not installed.)

    Shared by the tests of the files it writes and of evaluate / visualize.
    """
    cwd = tmp_path_factory.mktemp("sample-run")
    args = ["train", "--dataset", "sample", "--epochs", 1, "--out", "run", "--seed", 0,
            "--dtype", "float32", "--eval-samples", 200]
    result = run_command(args, cwd, script=console_script() is not None)
    assert result.returncode == 0, result.stderr
    out = cwd / "run"
    with open(out / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    return {"cwd": cwd, "out": out, "result": result, "metrics": metrics}


@pytest.fixture(scope="module")
def tiny_straight(tiny_data, tmp_path_factory):
    """A straight 2-epoch run on the tiny data (seed 5): the reference for --resume."""
    out = tmp_path_factory.mktemp("tiny-straight") / "run"
    status = cli.main([str(a) for a in train_args(tiny_data, out, "--epochs", 2, "--quiet")])
    assert status == 0
    with open(out / "metrics.json", encoding="utf-8") as f:
        return out, json.load(f)


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    """A 1-epoch run on the tiny data (seed 5), never modified by the tests (copy it first)."""
    out = tmp_path_factory.mktemp("tiny-one") / "run"
    status = cli.main([str(a) for a in train_args(tiny_data, out, "--epochs", 1, "--quiet")])
    assert status == 0
    return out


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """A copy of :func:`tiny_run` that a test may change."""
    return shutil.copytree(tiny_run, tmp_path / "run")


def timing_free(entry):
    return {k: v for k, v in entry.items() if k not in ("seconds", "train_seconds", "images_per_sec")}


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


def test_evaluate_reads_back_the_trained_params(sample_run, tmp_path):
    # python -m cconv, no --net and no --dataset: both are recorded beside params.npz.
    result = run_command(["evaluate", sample_run["out"] / "params.npz", "--out", tmp_path / "eval",
                          "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert report["network"] == "SimpleConvNet"
    assert report["dataset"] == "sample" and report["test_images"] == SAMPLE_TEST
    # The same params on the same test set: the accuracy train measured at the end.
    assert report["accuracy"] == sample_run["metrics"]["final_test_acc"]
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == SAMPLE_TEST
    assert np.trace(matrix) / SAMPLE_TEST == pytest.approx(report["accuracy"])
    assert report["classes"] == list("0123456789")

    assert_png_size(report["confusion_png"], CONFUSION_PX)
    wrong = SAMPLE_TEST - int(np.trace(matrix))
    shown = min(36, wrong)
    columns = min(6, shown)
    rows = math.ceil(shown / columns)
    # 1.2 inch per column (3 at least) by 1.5 per row plus 0.8 inch of header.
    expected = (round((rows * 1.5 + 0.8) * 100), round(max(columns * 1.2, 3.0) * 100))
    assert_png_size(report["misclassified_png"], expected)
    assert report["misclassified_png"] == str(tmp_path / "eval" / "misclassified.png")


def test_evaluate_prints_accuracy_and_confusion_matrix(sample_run, tmp_path, capsys):
    status, out, err = run_cli(capsys, "evaluate", sample_run["out"] / "params.npz", "--out", tmp_path)
    assert status == 0 and err == ""
    lines = out.splitlines()
    accuracy = sample_run["metrics"]["final_test_acc"]
    assert lines[0].startswith(f"SimpleConvNet on the sample test set (1000 images): accuracy {accuracy:.4f}")
    assert lines[1].split() == ["true\\pred", *map(str, range(10))]
    table = [line.split() for line in lines[2:12]]
    assert [row[0] for row in table] == list("0123456789")
    counts = np.array([[int(v) for v in row[1:]] for row in table])
    assert counts.sum() == SAMPLE_TEST
    assert np.trace(counts) == round(accuracy * SAMPLE_TEST)
    # The columns line up with the header.
    assert len({len(line) for line in lines[1:12]}) == 1
    assert f"wrote {tmp_path / 'misclassified.png'}" in lines


def test_visualize_reads_back_the_trained_params(sample_run, tmp_path, capsys):
    status, out, err = run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--out", tmp_path, "--json")
    assert status == 0 and err == ""
    report = json.loads(out)
    assert report["network"] == "SimpleConvNet" and report["dataset"] == "sample"
    assert report["index"] == 0 and report["label"] in "0123456789"
    # The filters of the file are those train drew after training.
    filters = assert_png_size(tmp_path / "filters.png", FILTERS_PX)
    assert np.array_equal(filters, read_png(sample_run["out"] / "filters_after.png"))
    # 1.5 + 0.6 * 16 maps wide; 0.1 + 0.4 (title) + 0.6 per row (the input and each layer) high.
    rows = 1 + len(report["layers"])
    assert rows == 3  # input, Conv1 (with its ReLU), Pool1
    assert_png_size(tmp_path / "activations.png", (round((0.5 + 0.6 * rows) * 100), 1110))


def test_visualize_human_output(sample_run, tmp_path, capsys):
    status, out, err = run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--out", tmp_path,
                           "--index", 7)
    assert status == 0 and err == ""
    assert out.splitlines() == [f"wrote {tmp_path / 'filters.png'}", f"wrote {tmp_path / 'activations.png'}"]


def test_evaluate_and_visualize_quiet(sample_run, tmp_path, capsys):
    params = sample_run["out"] / "params.npz"
    assert run_cli(capsys, "evaluate", params, "--out", tmp_path / "e", "--quiet") == (0, "", "")
    assert run_cli(capsys, "visualize", params, "--out", tmp_path / "v", "--quiet") == (0, "", "")
    assert (tmp_path / "e" / "misclassified.png").is_file()
    assert (tmp_path / "v" / "activations.png").is_file()


def test_evaluate_writes_beside_params_by_default(sample_run, tmp_path, capsys):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("params.npz", "metrics.json"):
        shutil.copy(sample_run["out"] / name, folder / name)
    status, _, _ = run_cli(capsys, "visualize", folder / "params.npz", "--quiet")
    assert status == 0
    assert (folder / "filters.png").is_file() and (folder / "activations.png").is_file()


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


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("--lr", "0.01"), "--lr"),
        (("--batch-size", "50"), "--batch-size"),
        (("--seed", "6"), "--seed"),
        (("--optimizer", "sgd"), "--optimizer"),
        (("--dtype", "float64"), "--dtype"),
        (("--net", "lenet"), "--net"),
        (("--dataset", "sample"), "--dataset"),
    ],
)
def test_resume_with_other_settings_is_refused(tiny_data, tiny_copy, capsys, change, named):
    args = list(train_args(tiny_data, tiny_copy, "--epochs", 2, "--resume"))
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    before = (tiny_copy / "params.npz").read_bytes()
    assert_usage_error(*run_cli(capsys, *args), "--resume", named)
    assert (tiny_copy / "params.npz").read_bytes() == before


def test_resume_to_fewer_epochs_is_refused(tiny_data, tiny_straight, tmp_path, capsys):
    out = shutil.copytree(tiny_straight[0], tmp_path / "run")
    assert_usage_error(*run_cli(capsys, *train_args(tiny_data, out, "--epochs", 1, "--resume")), "--epochs 1")


def test_training_over_old_checkpoints_is_refused(tiny_data, tiny_copy, capsys):
    before = (tiny_copy / "params.npz").read_bytes()
    assert_usage_error(*run_cli(capsys, *train_args(tiny_data, tiny_copy, "--epochs", 1)), "--resume", "checkpoints")
    assert (tiny_copy / "params.npz").read_bytes() == before


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
# The book's .pkl and params files of other networks
# --------------------------------------------------------------------------


@pytest.fixture
def book_simple_pkl():
    path = shared_data() / "book-params" / "simple_convnet_params.pkl"
    if not path.is_file():
        pytest.skip(f"the book's SimpleConvNet parameters are not at {path} (set CCONV_SHARED_DATA)")
    return path


def test_evaluate_book_pkl_needs_net(book_simple_pkl, tmp_path, capsys):
    assert_usage_error(*run_cli(capsys, "evaluate", book_simple_pkl, "--dataset", "sample", "--out", tmp_path),
                       "--net")
    assert_usage_error(*run_cli(capsys, "visualize", book_simple_pkl, "--dataset", "sample", "--out", tmp_path),
                       "--net")
    assert not list(tmp_path.iterdir())


def test_evaluate_book_pkl_with_net(book_simple_pkl, tmp_path, capsys):
    status, out, err = run_cli(capsys, "evaluate", book_simple_pkl, "--net", "simple", "--dataset", "sample",
                           "--out", tmp_path, "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["network"] == "SimpleConvNet" and report["test_images"] == SAMPLE_TEST
    # The book's trained network (~99% on MNIST's test set); the sample's images are MNIST's.
    assert report["accuracy"] >= 0.95
    read_png(tmp_path / "misclassified.png")
    status, _, _ = run_cli(capsys, "visualize", book_simple_pkl, "--net", "simple", "--dataset", "sample",
                       "--out", tmp_path, "--quiet")
    assert status == 0
    assert_png_size(tmp_path / "filters.png", FILTERS_PX)


def test_book_pkl_of_another_net(book_simple_pkl, tmp_path, capsys):
    assert_usage_error(*run_cli(capsys, "evaluate", book_simple_pkl, "--net", "lenet", "--dataset", "sample",
                            "--out", tmp_path), "--net lenet")
    deep = shared_data() / "book-params" / "deep_convnet_params.pkl"
    if deep.is_file():
        assert_usage_error(*run_cli(capsys, "evaluate", deep, "--net", "simple", "--dataset", "sample",
                                "--out", tmp_path), "--net simple")


def test_params_file_of_another_net(tmp_path, capsys):
    path = tmp_path / "lenet.npz"
    cconv.LeNet(seed=0).save_params(path)
    for command in ("evaluate", "visualize"):
        assert_usage_error(*run_cli(capsys, command, path, "--net", "simple", "--dataset", "sample",
                                "--out", tmp_path / "out"), "LeNet", "--net lenet")
    # Without --net the file says what it is.
    status, out, err = run_cli(capsys, "visualize", path, "--dataset", "sample", "--out", tmp_path / "out", "--json")
    assert status == 0, err
    assert json.loads(out)["network"] == "LeNet"


def test_plain_npz_needs_net(sample_run, tmp_path, capsys):
    params = {k: v for k, v in load_params(sample_run["out"] / "params.npz").items() if k != "__meta__"}
    path = tmp_path / "plain.npz"
    np.savez(path, **params)
    assert_usage_error(*run_cli(capsys, "visualize", path, "--dataset", "sample", "--out", tmp_path), "--net")
    status, _, err = run_cli(capsys, "visualize", path, "--net", "simple", "--dataset", "sample",
                         "--out", tmp_path, "--quiet")
    assert status == 0, err


# --------------------------------------------------------------------------
# Bad arguments: status 2 and one line, never a traceback
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--net", "resnet"), "--net"),
        (("--dataset", "cifar10"), "--dataset"),
        (("--optimizer", "lbfgs"), "--optimizer"),
        (("--epochs", "-1"), "--epochs"),
        (("--epochs", "0"), "--epochs"),
        (("--epochs", "two"), "--epochs"),
        (("--epochs", "1.5"), "--epochs"),
        (("--lr", "abc"), "--lr"),
        (("--lr", "-0.1"), "--lr"),
        (("--lr", "0"), "--lr"),
        (("--lr", "nan"), "--lr"),
        (("--lr", "inf"), "--lr"),
        (("--batch-size", "-5"), "--batch-size"),
        (("--batch-size", "0"), "--batch-size"),
        (("--dtype", "float16"), "--dtype"),
        (("--seed", "-1"), "--seed"),
        (("--seed", str(2**32)), "--seed"),
        (("--eval-samples", "-1"), "--eval-samples"),
        (("--frobnicate",), "--frobnicate"),
        (("--epochs",), "--epochs"),
    ],
)
def test_train_bad_arguments(tmp_path, capsys, args, named):
    out = tmp_path / "run"
    assert_usage_error(*run_cli(capsys, "train", "--dataset", "sample", "--out", out, *args), named)
    assert not out.exists()  # refused before anything is written


@pytest.mark.parametrize(
    "args",
    [(), ("frobnicate",), ("evaluate",), ("visualize",), ("--frobnicate",)],
    ids=["nothing", "unknown-command", "evaluate-no-params", "visualize-no-params", "unknown-option"],
)
def test_command_line_errors(capsys, args):
    assert_usage_error(*run_cli(capsys, *args))


def test_bad_arguments_as_real_processes(tmp_path):
    # The console script and python -m cconv: status 2, one line, no traceback.
    for script, args, named in [
        (True, ["train", "--epochs", "-3"], "--epochs"),
        (False, ["train", "--net", "resnet"], "--net"),
        (True, ["evaluate", "missing.npz"], "missing.npz"),
    ]:
        result = run_command(args, tmp_path, script=script)
        assert_usage_error(result.returncode, result.stdout, result.stderr, named)
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("command", ["evaluate", "visualize"])
def test_missing_params_file(tmp_path, capsys, command):
    assert_usage_error(*run_cli(capsys, command, tmp_path / "nothing.npz", "--dataset", "sample"),
                       "PARAMS", "nothing.npz")
    assert_usage_error(*run_cli(capsys, command, tmp_path, "--dataset", "sample"), "PARAMS")  # a folder


@pytest.mark.parametrize("command", ["evaluate", "visualize"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "text"])
def test_corrupt_params_file(sample_run, tmp_path, capsys, command, damage):
    good = (sample_run["out"] / "params.npz").read_bytes()
    content = {
        "truncated": good[: len(good) // 2],
        "garbage": os.urandom(2048),
        "empty": b"",
        "text": b"W1,b1\n1,2\n",
    }[damage]
    path = tmp_path / "params.npz"
    path.write_bytes(content)
    assert_usage_error(*run_cli(capsys, command, path, "--dataset", "sample", "--out", tmp_path / "out"),
                       "PARAMS")
    assert not (tmp_path / "out").exists()


def test_visualize_index_out_of_range(sample_run, tmp_path, capsys):
    assert_usage_error(*run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--index", SAMPLE_TEST,
                            "--out", tmp_path), "--index")


def test_unwritable_out(sample_run, tiny_data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    assert_usage_error(*run_cli(capsys, *train_args(tiny_data, out, "--epochs", 1)), "--out", str(out))
    params = sample_run["out"] / "params.npz"
    assert_usage_error(*run_cli(capsys, "evaluate", params, "--out", out), "--out", str(out))
    assert_usage_error(*run_cli(capsys, "visualize", params, "--out", out), "--out", str(out))
    assert blocker.read_text() == "not a folder"


def test_data_dir_problems(sample_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    params = sample_run["out"] / "params.npz"
    assert_usage_error(*run_cli(capsys, "train", "--data-dir", empty, "--out", tmp_path / "run"), "--data-dir")
    assert_usage_error(*run_cli(capsys, "evaluate", params, "--data-dir", empty, "--out", tmp_path), "--data-dir")
    assert_usage_error(*run_cli(capsys, "evaluate", params, "--data-dir", tmp_path / "absent", "--out", tmp_path),
                       "--data-dir")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in datasets.IDX_NAMES:
        (corrupt / name).write_bytes(b"\x00\x00\x08\x03" + os.urandom(100))
    assert_usage_error(*run_cli(capsys, "visualize", params, "--data-dir", corrupt, "--out", tmp_path), "IDX")


def test_training_that_diverges(tiny_data, tmp_path, capsys):
    # float32 SGD with lr 1e30 overflows at the first step: the loss is NaN.
    status, out, err = run_cli(capsys, *train_args(tiny_data, tmp_path / "run", "--epochs", 2, "--optimizer", "sgd",
                                               "--lr", "1e30", "--quiet"))
    assert_usage_error(status, out, err, "diverged", "--lr")
    assert "RuntimeWarning" not in err
    assert not (tmp_path / "run" / "params.npz").exists()


# --------------------------------------------------------------------------
# Data sets: MNIST falls back to the sample offline
# --------------------------------------------------------------------------


def test_mnist_falls_back_to_the_sample_without_download(sample_run, tmp_path):
    # A real process, nothing in $CCONV_DATA, --no-download: one line on stderr.
    result = run_command(["evaluate", sample_run["out"] / "params.npz", "--dataset", "mnist", "--no-download",
                          "--out", tmp_path / "eval", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("cconv: MNIST is not available")
    assert "sample" in result.stderr
    report = json.loads(result.stdout)
    assert report["dataset"] == "sample" and report["test_images"] == SAMPLE_TEST
    assert report["accuracy"] == sample_run["metrics"]["final_test_acc"]


def test_mnist_falls_back_when_the_mirrors_fail(sample_run, tmp_path, capsys, monkeypatch):
    info = dataclasses.replace(datasets.DATASETS["mnist"], mirrors=(closed_port_url(),), system_dirs=())
    monkeypatch.setitem(datasets.DATASETS, "mnist", info)
    status, out, err = run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--dataset", "mnist",
                           "--out", tmp_path, "--json")
    assert status == 0
    assert json.loads(out)["dataset"] == "sample"
    notes = [line for line in err.splitlines() if line.startswith("cconv:")]
    assert len(notes) == 1 and "sample" in notes[0], err
    # Besides the note, only the download attempt (cconv.datasets' progress) is reported.
    others = [line for line in err.splitlines() if not line.startswith("cconv:")]
    assert all(line.startswith(("Downloading MNIST", "  failed: ")) for line in others), err
    assert "Traceback" not in err
    status, out, err = run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--dataset", "mnist",
                           "--out", tmp_path, "--quiet")
    assert (status, out, err) == (0, "", "")


def test_unavailable_fashion_mnist_exits_1(tmp_path, capsys, monkeypatch):
    info = dataclasses.replace(datasets.DATASETS["fashion-mnist"], mirrors=(closed_port_url(),), system_dirs=())
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", info)
    status, out, err = run_cli(capsys, "train", "--dataset", "fashion-mnist", "--no-download", "--out", tmp_path / "run")
    assert status == 1 and out == ""
    assert err.startswith("cconv: error: Fashion-MNIST") and "Traceback" not in err


# --------------------------------------------------------------------------
# --show
# --------------------------------------------------------------------------


@pytest.fixture
def pyplot(monkeypatch):
    """pyplot with show() recorded, never blocking; its figures closed afterwards."""
    plt = pytest.importorskip("matplotlib.pyplot")
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(list(plt.get_fignums())))
    plt.close("all")
    yield plt, shown
    plt.close("all")


def test_show_without_a_display(sample_run, tmp_path, capsys, pyplot, monkeypatch):
    plt, shown = pyplot
    monkeypatch.setattr(plt, "get_backend", lambda: "agg")
    status, out, err = run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--out", tmp_path, "--show")
    assert status == 0
    assert err.count("\n") == 1 and err.startswith("cconv: --show: ") and "agg" in err
    assert shown == [] and (tmp_path / "filters.png").is_file()


@pytest.mark.parametrize("adopts", [True, False], ids=["adopting-pyplot", "older-pyplot"])
def test_show_opens_a_window_per_picture(sample_run, tmp_path, capsys, pyplot, monkeypatch, adopts):
    plt, shown = pyplot
    monkeypatch.setattr(plt, "get_backend", lambda: "qtagg")
    if not adopts:  # matplotlib < 3.11: plt.figure(fig) refuses a figure made without pyplot
        from matplotlib.figure import FigureBase

        original = plt.figure

        def figure(num=None, *args, **kwargs):
            if isinstance(num, FigureBase):
                raise ValueError("The passed figure is not managed by pyplot")
            return original(num, *args, **kwargs)

        monkeypatch.setattr(plt, "figure", figure)
    status, out, err = run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--out", tmp_path, "--show")
    assert status == 0, err
    assert err == ""
    assert len(shown) == 1 and len(shown[0]) == 2  # one show() of two windows
    sizes = sorted(tuple(np.round(plt.figure(n).get_size_inches() * plt.figure(n).dpi).astype(int))
                   for n in shown[0])
    assert sizes == sorted([FILTERS_PX[::-1], (1110, 230)])


# --------------------------------------------------------------------------
# bench, --version, --help
# --------------------------------------------------------------------------


def test_bench_prints_a_table(capsys):
    status, out, err = run_cli(capsys, "bench", "--quick", "--ops", "im2col", "--dtype", "float32",
                           "--repeat", "1", "--retries", "0")
    assert status == 0, err
    assert "cconv kernel benchmark" in out
    rows = [line for line in out.splitlines() if line.startswith("im2col ")]
    assert len(rows) == 1 and "float32" in rows[0]
    assert "Sanity check" in out and "all passed" in out


def test_bench_bad_option(capsys):
    status, out, err = run_cli(capsys, "bench", "--ops", "convolve")
    assert status == 2 and "Traceback" not in err and "convolve" in err


def test_version(capsys, tmp_path):
    assert run_cli(capsys, "--version") == (0, f"cconv {cconv.__version__}\n", "")
    result = run_command(["--version"], tmp_path, script=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"cconv {cconv.__version__}\n", "")


def test_help(tmp_path, capsys):
    result = run_command(["--help"], tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: cconv")
    for command in ("train", "evaluate", "visualize", "bench"):
        assert command in result.stdout
    status, out, err = run_cli(capsys, "train", "--help")
    assert status == 0 and err == ""
    for option in ("--net", "--dataset", "--data-dir", "--epochs", "--batch-size", "--optimizer", "--lr",
                   "--dtype", "--seed", "--out", "--resume", "--quiet", "--json", "--show"):
        assert option in out, option
