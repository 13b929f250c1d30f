"""Helpers of the ``cconv`` command's tests (``tests/cli``).

* :func:`run_command`: the real command as a subprocess, ``python -m cconv``
  or the console script (:func:`console_script`), with ``$CCONV_DATA`` inside
  its working directory and ``MPLBACKEND`` unset; in-process runs use
  ``cconv_testutils.run_cli``.
* :func:`assert_usage_error`: exit status 2 and one line on stderr.
* :func:`read_png` / :func:`assert_png_size`: pictures checked to be real
  ones, of the sizes :mod:`cconv.plots` documents (``*_PX``, 100 dpi).
* :func:`train_args`: a cheap ``cconv train`` on the tiny data set
  (``TINY_TRAIN`` / ``TINY_TEST`` images, see ``conftest.py``).
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from cconv_testutils import command_env

matplotlib_image = pytest.importorskip("matplotlib.image")

TINY_TRAIN, TINY_TEST = 300, 200
SAMPLE_TRAIN, SAMPLE_TEST = 4000, 1000

#: PNG sizes (height, width) in pixels, from cconv.plots' docstrings.
ACCURACY_PX = (480, 640)  # 6.4 x 4.8 inches
FILTERS_PX = (320, 640)  # SimpleConvNet's 30 filters, 8 a row: 4 rows of 0.8 inch
CONFUSION_PX = (680, 680)  # 0.5 * 10 classes + 1.8 inches square


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


def timing_free(entry):
    return {k: v for k, v in entry.items() if k not in ("seconds", "train_seconds", "images_per_sec")}
