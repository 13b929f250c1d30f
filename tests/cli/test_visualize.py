"""``cconv visualize`` (:mod:`cconv.cli.visualize`) of the params that ``cconv train`` wrote.

Picture sizes come from the docstrings of :mod:`cconv.plots` (100 dpi).
"""

import json
import shutil

import numpy as np

from cconv_testutils import run_cli
from cli_testutils import FILTERS_PX, SAMPLE_TEST, assert_png_size, assert_usage_error, read_png


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


def test_evaluate_writes_beside_params_by_default(sample_run, tmp_path, capsys):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("params.npz", "metrics.json"):
        shutil.copy(sample_run["out"] / name, folder / name)
    status, _, _ = run_cli(capsys, "visualize", folder / "params.npz", "--quiet")
    assert status == 0
    assert (folder / "filters.png").is_file() and (folder / "activations.png").is_file()


def test_visualize_index_out_of_range(sample_run, tmp_path, capsys):
    assert_usage_error(*run_cli(capsys, "visualize", sample_run["out"] / "params.npz", "--index", SAMPLE_TEST,
                            "--out", tmp_path), "--index")
