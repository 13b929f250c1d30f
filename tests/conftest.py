"""Shared fixtures for the cconv tests.

The tests run against the *installed* package (``pip install .`` or ``-e .``),
from the repository or from a copy of this folder elsewhere (cibuildwheel's
``test-sources``). This folder goes on ``sys.path`` first, so test modules
can ``import reference`` and ``import cconv_testutils`` whatever pytest's
import mode or working directory.
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
from cconv_testutils import FLOAT_DTYPES, INPUT_DTYPES, LAYOUTS, TOLERANCES  # noqa: E402

# The C API consumer is built by test_cimport.py, never imported by pytest.
collect_ignore_glob = ["kernels/cimport_consumer/*"]


def _dtype_id(dtype):
    return np.dtype(dtype).name


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test id: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=FLOAT_DTYPES, ids=_dtype_id)
def float_dtype(request):
    """float32 and float64, the dtypes the kernels compute in."""
    return np.dtype(request.param)


@pytest.fixture(params=INPUT_DTYPES, ids=_dtype_id)
def input_dtype(request):
    """Every accepted input dtype (floats, float16, integers, bool)."""
    return np.dtype(request.param)


@pytest.fixture
def tol(float_dtype):
    """``rtol``/``atol`` for ``float_dtype``, for ``np.testing.assert_allclose``."""
    return TOLERANCES[float_dtype]


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
