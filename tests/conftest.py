"""Shared fixtures for the cconv tests.

The tests run against the *installed* package (``pip install .`` or ``-e .``),
from the repository or from a copy of this folder elsewhere (cibuildwheel's
``test-sources``). This folder goes on ``sys.path`` first, so test modules
can ``import reference`` and ``import cconv_testutils`` whatever pytest's
import mode or working directory.

Fixtures: ``rng`` (seeded per test), ``float_dtype`` / ``input_dtype``
(dtype parametrisation), ``layout`` (memory layouts) and ``n_threads`` (1 and
2 kernel threads). Tolerances per dtype (float32: rtol 1e-5, atol 1e-6;
float64: 1e-12) are ``cconv_testutils.TOLERANCES``, applied by
``cconv_testutils.assert_close``.
"""

import os
import sys
import zlib

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import cconv  # noqa: E402

from cconv_testutils import FLOAT_DTYPES, INPUT_DTYPES, LAYOUTS  # noqa: E402

# The C API consumer is built by test_cimport.py, never imported by pytest.
collect_ignore_glob = ["kernels/cimport_consumer/*"]


def _dtype_id(dtype):
    return np.dtype(dtype).name


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's module and name (with parameters).

    Reproducible, different per test, and the same wherever the tests folder is.
    """
    test_id = f"{request.node.module.__name__}::{request.node.name}"
    return np.random.default_rng(zlib.crc32(test_id.encode()))


@pytest.fixture(params=FLOAT_DTYPES, ids=_dtype_id)
def float_dtype(request):
    """float32 and float64, the dtypes the kernels compute in."""
    return np.dtype(request.param)


@pytest.fixture(params=INPUT_DTYPES, ids=_dtype_id)
def input_dtype(request):
    """Every accepted input dtype (floats, float16, integers, bool)."""
    return np.dtype(request.param)


@pytest.fixture(params=LAYOUTS)
def layout(request):
    """A memory layout for :func:`cconv_testutils.with_layout`."""
    return request.param


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads{n}")
def n_threads(request):
    """Run the test with 1 and with 2 kernel threads, then follow OMP_NUM_THREADS again."""
    cconv.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        cconv.set_num_threads(None)
