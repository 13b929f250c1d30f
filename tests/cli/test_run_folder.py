"""The run folder (:mod:`cconv.cli.run_folder`): what ``--resume`` and a new run accept, and the params files
that ``evaluate`` and ``visualize`` open (missing, corrupt, the book's .pkl, files of other networks, plain .npz).
"""

import json
import os
import struct
import zipfile

import numpy as np
import pytest

import cconv

from cconv_testutils import run_cli, shared_data
from cli_testutils import (
    FILTERS_PX,
    SAMPLE_TEST,
    assert_png_size,
    assert_usage_error,
    load_params,
    read_png,
    train_args,
)

# --------------------------------------------------------------------------
# Starting or resuming a run in a folder
# --------------------------------------------------------------------------


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


def test_training_over_old_checkpoints_is_refused(tiny_data, tiny_copy, capsys):
    before = (tiny_copy / "params.npz").read_bytes()
    assert_usage_error(*run_cli(capsys, *train_args(tiny_data, tiny_copy, "--epochs", 1)), "--resume", "checkpoints")
    assert (tiny_copy / "params.npz").read_bytes() == before


# --------------------------------------------------------------------------
# Missing and corrupt params files
# --------------------------------------------------------------------------


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


@pytest.mark.parametrize("command", ["evaluate", "visualize"])
def test_corrupt_array_of_a_recorded_network_is_reported_before_the_data(sample_run, tmp_path, capsys, command):
    # W2's stored bytes damaged (its CRC no longer matches); the data folder is empty: the
    # params file is refused first, naming it, and no data set is looked for.
    path = tmp_path / "params.npz"
    data = bytearray((sample_run["out"] / "params.npz").read_bytes())
    with zipfile.ZipFile(sample_run["out"] / "params.npz") as archive:
        info = archive.getinfo("W2.npy")
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    last_byte = info.header_offset + 30 + name_length + extra_length + info.compress_size - 1
    data[last_byte] ^= 0xFF
    path.write_bytes(bytes(data))
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert_usage_error(*run_cli(capsys, command, path, "--data-dir", empty, "--out", tmp_path / "out"),
                       "PARAMS", "'W2'", "corrupt")
    assert not (tmp_path / "out").exists()
