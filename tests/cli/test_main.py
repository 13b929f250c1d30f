"""The command as a whole (:func:`cconv.cli.main`, :mod:`cconv.cli._common`): bad arguments and exit statuses,
data sets and folders, --show, --version and --help.
"""

import dataclasses
import json
import os

import numpy as np
import pytest

import cconv
from cconv import datasets

from cconv_testutils import run_cli
from cli_testutils import FILTERS_PX, SAMPLE_TEST, assert_usage_error, closed_port_url, run_command, train_args

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
    status, out, err = run_cli(capsys, "train", "--dataset", "fashion-mnist", "--no-download",
                               "--out", tmp_path / "run")
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
# --version, --help
# --------------------------------------------------------------------------


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
