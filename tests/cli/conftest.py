"""Fixtures of the ``cconv`` command's tests (:mod:`cconv.cli`), end to end and offline.

Most runs call ``cconv.cli.main([...])`` in-process (fast, output captured
with ``capsys``); a few run the real command as a subprocess, both as
``python -m cconv`` and as the ``cconv`` console script, in a temporary
working directory with ``$CCONV_DATA`` pointing into it and ``MPLBACKEND``
unset. Nothing is downloaded: training uses the bundled 5,000-image MNIST
sample (``--dataset sample``) or a tiny slice of it written as IDX files
(``--data-dir``, 300 train / 200 test images: 3 steps per epoch).

The runs that several test modules read (``sample_run``, ``tiny_run`` and
their data) are made once per session; the tests copy a run folder before
changing it. This folder goes on ``sys.path`` so the tests can
``import cli_testutils`` (the helpers) whatever pytest's import mode, as
``tests/nets/conftest.py`` does.
"""

import json
import os
import shutil
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import pytest  # noqa: E402

from cconv import cli  # noqa: E402

from cconv_testutils import write_sample_subset  # noqa: E402
from cli_testutils import TINY_TEST, TINY_TRAIN, console_script, run_command, train_args  # noqa: E402


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """In-process runs: an empty data cache in tmp_path; MPLBACKEND as it was before."""
    monkeypatch.setenv("CCONV_DATA", str(tmp_path / "cconv-data"))
    before = os.environ.get("MPLBACKEND")
    yield
    assert os.environ.get("MPLBACKEND") == before, "cconv.cli.main changed MPLBACKEND of its caller"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The first 300 train and 200 test images of the bundled sample, as four IDX files."""
    return write_sample_subset(tmp_path_factory.mktemp("tiny-idx"), TINY_TRAIN, TINY_TEST)


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    """The first 100 train and 50 test images of the sample (2 steps of 50 per epoch)."""
    return write_sample_subset(tmp_path_factory.mktemp("micro-idx"), 100, 50)


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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
