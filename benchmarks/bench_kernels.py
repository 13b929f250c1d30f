"""Kernel benchmark: cconv's im2col, col2im and pooling against NumPy (and PyTorch).

The benchmark ships with the package (:mod:`cconv._bench.kernels`, also run by
``cconv bench``); this script runs it from a source checkout::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_kernels.py --torch --threads 2
    python benchmarks/bench_kernels.py --quick
"""

import sys

from cconv._bench.kernels import main

if __name__ == "__main__":
    sys.exit(main())
