"""``cconv evaluate`` (:mod:`cconv.cli.evaluate`) of the params that ``cconv train`` wrote.

Picture sizes come from the docstrings of :mod:`cconv.plots` (100 dpi).
"""

import json
import math

import numpy as np
import pytest

from cconv_testutils import run_cli
from cli_testutils import CONFUSION_PX, SAMPLE_TEST, assert_png_size, run_command


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


def test_evaluate_and_visualize_quiet(sample_run, tmp_path, capsys):
    params = sample_run["out"] / "params.npz"
    assert run_cli(capsys, "evaluate", params, "--out", tmp_path / "e", "--quiet") == (0, "", "")
    assert run_cli(capsys, "visualize", params, "--out", tmp_path / "v", "--quiet") == (0, "", "")
    assert (tmp_path / "e" / "misclassified.png").is_file()
    assert (tmp_path / "v" / "activations.png").is_file()
