"""Benchmarks shipped with cconv: ``cconv bench`` runs :mod:`cconv._bench.kernels`.

:mod:`cconv._bench.numpy_reference` holds the book's NumPy kernels that the
benchmarks time side by side with cconv's; :mod:`cconv._bench.util` the
timing, contention and environment helpers the benchmark scripts share.
"""
