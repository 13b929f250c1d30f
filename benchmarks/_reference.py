"""The NumPy reference of the book's algorithms for the benchmarks: the tests' ``tests/reference.py``.

The benchmarks and the tests share it; it lives with the tests: it is not installed with
cconv, and the tests must find it in a copy of ``tests/`` alone (the wheel's
test run). Importing this module puts the checkout's ``tests/`` folder (beside
this ``benchmarks/`` folder) first on ``sys.path`` and imports it::

    from _reference import ref

    ref.im2col(x, 3, 3, 1, 1)       # the book's im2col, in the dtype of x
    ref.book_max_pool2d(x, 2, 2, 2)  # the book's Pooling.forward: (out, arg_max)
"""

import os
import sys

#: The checkout's tests folder, which holds ``reference.py``.
TESTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")

if not os.path.isfile(os.path.join(TESTS_DIR, "reference.py")):
    raise ImportError(
        f"the benchmarks need the NumPy reference tests/reference.py of a cconv checkout; "
        f"it is not at {os.path.join(TESTS_DIR, 'reference.py')}"
    )
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import reference as ref  # noqa: E402

__all__ = ["TESTS_DIR", "ref"]
