#!/usr/bin/env python
"""Benchmark cconv's CNN kernels against the book's NumPy algorithm (and PyTorch).

How to run, in a source checkout with cconv installed (``cconv bench`` runs
this file of the checkout with the same options: :mod:`cconv.cli.bench`)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_kernels.py --torch --threads 2

    python benchmarks/bench_kernels.py --quick     # smoke run, seconds
    python benchmarks/bench_kernels.py --dtype float32 --ops im2col,col2im
    python benchmarks/bench_kernels.py --torch --json results.json

As a module: :func:`main` takes the options as a list (``None``: the command
line), parses them with argparse (``--help`` and a bad option raise
``SystemExit``) and returns the exit status. The file imports the helpers
beside it (``_util.py``; ``_reference.py``, which finds the NumPy reference in
the checkout's ``tests/``) after putting its own folder on ``sys.path``, so it
also works loaded by path (``runpy.run_path``, ``importlib.util.spec_from_file_location``).

``--torch`` needs PyTorch (optional; ``pip install torch``).  The whole run with
``--torch`` takes about two minutes on 2 cores, plus four to five for the pauses
before the samples (``--pause``, 0.2 s each) and their untimed re-warm calls,
and peaks at about 1.2 GB of
resident memory (the largest single array is the float64 col of the
(32,64,56,56) 3x3 case, 462 MB, and the book's algorithm builds two of them).

What is measured
----------------
Cases, each in float32 and float64:

* conv  ``im2col`` / ``col2im``: (100,1,28,28) 5x5 s1 p0, (100,16,28,28) 3x3 s1 p1,
  (32,64,56,56) 3x3 s1 p1, (32,3,227,227) 11x11 s4 p0;
* pool  max and avg 2x2 s2, forward and backward: (100,30,24,24), (32,64,56,56).

For every row the implementations are timed *interleaved* in one run: each
repetition calls every implementation once, in turn (the starting point of the
turn rotates from one repetition to the next), after one untimed warm-up
repetition; the table reports medians.  Before each timed call the script
sleeps ``--pause`` seconds (default 0.2) and then calls the same implementation,
untimed, for ``--rewarm-ms`` (default 20 ms, at least one call): OpenBLAS's
worker threads spin about 0.1 s after a call and would slow down whichever
implementation runs next, and a core that idled through the pause takes a few
ms of work to wake up (one call of a 1 ms kernel is not enough).  The implementations are

* ``cconv``     -- the public API call as a user makes it (allocates its result);
* ``cc out=``   -- the same call writing into preallocated ``out=`` buffers;
* ``numpy``     -- the book's algorithm in the input's dtype (``tests/reference.py``:
  ``im2col``, ``col2im`` and the ``book_*`` pooling layers);
* ``torch``     -- (``--torch``) ``F.unfold`` / ``F.fold`` / ``F.max_pool2d(...,
  return_indices=True)`` / ``F.avg_pool2d`` and, for the backward passes, the
  ATen kernels ``aten.max_pool2d_with_indices_backward`` / ``aten.avg_pool2d_backward``
  called directly (no autograd).  ``F.unfold`` returns (N, C*kh*kw, L) -- another
  layout than cconv's, which is fine for timing; ``F.fold`` is fed that layout;
* ``copy``      -- ``np.copyto(dst, src)`` on preallocated uint8 buffers of half
  the operation's byte count each, i.e. the same number of bytes read + written.

Bandwidth: an operation's bytes are what it must read plus what it must write:
im2col reads x and writes col; col2im reads col and writes the image; pooling
forward reads x and writes out (+ the int64 argmax for max); backward reads dout
(+ argmax for max) and writes dx.  ``GB/s = bytes / t`` (1 GB = 1e9 bytes) and
``%copy`` is that over the copy's ``2 * (bytes/2) / t_copy`` measured in the same
run.  Note that the copy is single-threaded NumPy while cconv uses its threads.

Memory: "extra MB" is the peak memory allocated during one call minus the size
of the result(s) (out + argmax), in MB (1e6 bytes).  cconv and NumPy are measured
with ``tracemalloc`` (NumPy reports its data buffers to it); allocations that do
not go through NumPy or Python (e.g. a kernel's own malloc) are invisible to it.
PyTorch's allocator is not traced, so torch is measured as the rise of the
process's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs after malloc_trim) -- approximate, Linux only.

Before timing, every row runs a sanity check: cconv's output must equal the
NumPy reference (exactly for the copy-like kernels, to rounding where sums are
involved), max-pool argmax must agree, and with ``--torch`` torch's results must
agree too.  A failed check is reported, marked ``!`` in the table, and makes the
script exit with status 1.

The machine has few cores, so anything else running spoils the numbers: the
share of the CPUs that *other* processes used while each row was timed is
measured (from /proc/stat) and shown as ``busy%``; a row over 5% is re-timed
after a pause (``--retries``, ``--retry-wait``), the least contended measurement
is kept, and rows still over 5% are flagged ``~``.

After the table a "targets" section evaluates the project's performance targets
from the measured medians and prints MET / NOT MET per row.
"""

# No ``from __future__ import annotations``: the dataclasses' annotations are
# evaluated here, so the module also loads by path without a sys.modules entry.
import argparse
import contextlib
import ctypes
import gc
import json
import os
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# The helper modules beside this file, however it is run or loaded.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _reference import ref  # noqa: E402
from _util import (  # noqa: E402
    OtherCpuMeter,
    RowStats,
    add_pause_arg,
    add_retry_args,
    check_pause_args,
    env_lines,
    fmt_busy,
    fmt_f,
    fmt_ms,
    fmt_x,
    format_table,
    import_modules,
    parse_choices,
    results_text,
    time_interleaved,
)

# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    group: str  # "conv" or "pool"
    index: int  # 1-based position within its group
    shape: tuple  # (N, C, H, W)
    kh: int
    kw: int
    stride: int
    pad: int

    @property
    def label(self) -> str:
        s = "(" + ",".join(str(d) for d in self.shape) + ")"
        return f"{s} {self.kh}x{self.kw} s{self.stride} p{self.pad}"

    @property
    def out_hw(self) -> tuple:
        _, _, H, W = self.shape
        return (ref.output_size(H, self.kh, self.stride, self.pad),
                ref.output_size(W, self.kw, self.stride, self.pad))


CONV_CASES = [
    Case("conv", 1, (100, 1, 28, 28), 5, 5, 1, 0),
    Case("conv", 2, (100, 16, 28, 28), 3, 3, 1, 1),
    Case("conv", 3, (32, 64, 56, 56), 3, 3, 1, 1),
    Case("conv", 4, (32, 3, 227, 227), 11, 11, 4, 0),
]
POOL_CASES = [
    Case("pool", 1, (100, 30, 24, 24), 2, 2, 2, 0),
    Case("pool", 2, (32, 64, 56, 56), 2, 2, 2, 0),
]
CONV_OPS = ["im2col", "col2im"]
POOL_OPS = ["maxpool_fwd", "maxpool_bwd", "avgpool_fwd", "avgpool_bwd"]
ALL_OPS = CONV_OPS + POOL_OPS
OP_LABEL = {
    "im2col": "im2col", "col2im": "col2im",
    "maxpool_fwd": "maxpool fwd", "maxpool_bwd": "maxpool bwd",
    "avgpool_fwd": "avgpool fwd", "avgpool_bwd": "avgpool bwd",
}
TORCH_NAME = {
    "im2col": "F.unfold", "col2im": "F.fold",
    "maxpool_fwd": "F.max_pool2d", "maxpool_bwd": "aten.max_pool2d_with_indices_backward",
    "avgpool_fwd": "F.avg_pool2d", "avgpool_bwd": "aten.avg_pool2d_backward",
}

# Implementation keys, in the order they are run within a repetition (before rotation).
CC, CC_OUT, NP, TH, COPY = "cconv", "cc_out", "numpy", "torch", "copy"


# --------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------



def tracemalloc_peak(fn: Callable) -> int:
    """Peak bytes allocated (traced) during one call of ``fn``, result included."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        res = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del res
    return peak - base


_LIBC = None


def _malloc_trim():
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
    return int(m.group(1)) * 1024


def rss_peak(fn: Callable) -> int | None:
    """Rise of the resident-set high-water mark during one call (Linux), or None."""
    try:
        gc.collect()
        _malloc_trim()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _proc_status_kb("VmRSS")
        res = fn()
        peak = _proc_status_kb("VmHWM")
    except (OSError, AttributeError, ValueError):
        return None
    del res
    return max(peak - base, 0)


def _tol(dtype):
    # Sums of a handful of O(1) terms; only summation order may differ.
    return (1e-5, 1e-5) if np.dtype(dtype) == np.float32 else (1e-12, 1e-12)


def check_close(errors: list, what: str, got, want, exact: bool, dtype):
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        errors.append(f"{what}: shape {got.shape} != expected {want.shape}")
        return
    if exact:
        if not np.array_equal(got, want):
            bad = int(np.count_nonzero(got != want))
            errors.append(f"{what}: {bad} of {got.size} elements differ (exact comparison)")
        return
    rtol, atol = _tol(dtype)
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        errors.append(f"{what}: max abs error {err:.3g} (rtol={rtol}, atol={atol})")


def check_result_dtype(errors: list, what: str, arr, dtype):
    if np.asarray(arr).dtype != np.dtype(dtype):
        errors.append(f"{what}: dtype {np.asarray(arr).dtype}, expected {np.dtype(dtype)}")


# --------------------------------------------------------------------------------------
# Rows: the callables for one (case, op, dtype)
# --------------------------------------------------------------------------------------


@dataclass
class Row(RowStats):
    case: Case
    op: str
    dtype: str
    nbytes: int = 0  # bytes read + written by the operation
    out_bytes: int = 0  # bytes of the result(s)
    impls: dict = field(default_factory=dict)
    med: dict = field(default_factory=dict)  # name -> median seconds
    raw: dict = field(default_factory=dict)  # name -> [seconds]
    extra: dict = field(default_factory=dict)  # name -> extra bytes (or None)
    errors: list = field(default_factory=list)
    other_cpu: float | None = None  # share of the CPUs used by other processes

    @property
    def ok(self) -> bool:
        return not self.errors

    def gbps(self, name: str = CC) -> float | None:
        return self.nbytes / self.med[name] / 1e9 if name in self.med else None

    def copy_gbps(self) -> float | None:
        if COPY not in self.med:
            return None
        return 2 * (self.nbytes // 2) / self.med[COPY] / 1e9

    def pct_copy(self, name: str = CC) -> float | None:
        g, c = self.gbps(name), self.copy_gbps()
        return 100.0 * g / c if g is not None and c else None


def build_row(case: Case, op: str, dtype: str, cconv, torch, rng) -> Row:
    """Create the inputs of one row, run the sanity check, return the Row.

    ``torch`` is the torch module or None.  Inputs are closed over by the
    callables and freed with the Row.
    """
    row = Row(case, op, dtype)
    dt = np.dtype(dtype)
    N, C, H, W = case.shape
    kh, kw, s, p = case.kh, case.kw, case.stride, case.pad
    oh, ow = case.out_hw
    isz = dt.itemsize
    x_bytes = N * C * H * W * isz
    o_bytes = N * C * oh * ow * isz
    a_bytes = N * C * oh * ow * 8  # int64 argmax
    col_bytes = N * oh * ow * C * kh * kw * isz
    errs = row.errors
    F = torch.nn.functional if torch is not None else None
    aten = torch.ops.aten if torch is not None else None
    tag = f"{OP_LABEL[op]} {case.label} {dtype}"

    def fill(shape):
        return rng.standard_normal(shape, dtype=dt)

    if op == "im2col":
        x = fill(case.shape)
        row.nbytes, row.out_bytes = x_bytes + col_bytes, col_bytes
        col_buf = np.empty((N * oh * ow, C * kh * kw), dt)
        row.impls[CC] = lambda: cconv.im2col(x, kh, kw, s, p)
        row.impls[CC_OUT] = lambda: cconv.im2col(x, kh, kw, s, p, out=col_buf)
        row.impls[NP] = lambda: ref.im2col(x, kh, kw, s, p)
        want = ref.im2col(x, kh, kw, s, p)
        got = cconv.im2col(x, kh, kw, s, p)
        check_result_dtype(errs, f"{tag}: cconv", got, dt)
        check_close(errs, f"{tag}: cconv vs numpy", got, want, True, dt)
        col_buf.fill(np.nan)  # out= need not be clean: padding zeros must be written
        got = cconv.im2col(x, kh, kw, s, p, out=col_buf)
        if got is not col_buf:
            errs.append(f"{tag}: out= result is not the out array")
        check_close(errs, f"{tag}: cconv(out=) vs numpy", col_buf, want, True, dt)
        if torch is not None:
            xt = torch.from_numpy(x)
            row.impls[TH] = lambda: F.unfold(xt, (kh, kw), stride=s, padding=p)
            t = F.unfold(xt, (kh, kw), stride=s, padding=p).numpy()  # (N, CKK, L)
            check_close(errs, f"{tag}: torch vs numpy",
                        t.transpose(0, 2, 1).reshape(N * oh * ow, -1), want, True, dt)
        del want, got

    elif op == "col2im":
        col = fill((N * oh * ow, C * kh * kw))
        row.nbytes, row.out_bytes = col_bytes + x_bytes, x_bytes
        img_buf = np.empty(case.shape, dt)
        row.impls[CC] = lambda: cconv.col2im(col, case.shape, kh, kw, s, p)
        row.impls[CC_OUT] = lambda: cconv.col2im(col, case.shape, kh, kw, s, p, out=img_buf)
        row.impls[NP] = lambda: ref.col2im(col, case.shape, kh, kw, s, p, copy=False)
        want = ref.col2im(col, case.shape, kh, kw, s, p, copy=False)
        got = cconv.col2im(col, case.shape, kh, kw, s, p)
        check_result_dtype(errs, f"{tag}: cconv", got, dt)
        check_close(errs, f"{tag}: cconv vs numpy", got, want, False, dt)
        img_buf.fill(np.nan)  # out= need not be pre-zeroed
        got = cconv.col2im(col, case.shape, kh, kw, s, p, out=img_buf)
        if got is not img_buf:
            errs.append(f"{tag}: out= result is not the out array")
        check_close(errs, f"{tag}: cconv(out=) vs numpy", img_buf, want, False, dt)
        if torch is not None:
            colt = torch.from_numpy(
                np.ascontiguousarray(col.reshape(N, oh * ow, -1).transpose(0, 2, 1)))
            row.impls[TH] = lambda: F.fold(colt, (H, W), (kh, kw), stride=s, padding=p)
            t = F.fold(colt, (H, W), (kh, kw), stride=s, padding=p).numpy()
            check_close(errs, f"{tag}: torch vs numpy", t, want, False, dt)
        del want, got

    elif op == "maxpool_fwd":
        x = fill(case.shape)
        row.nbytes, row.out_bytes = x_bytes + o_bytes + a_bytes, o_bytes + a_bytes
        out_buf = np.empty((N, C, oh, ow), dt)
        am_buf = np.empty((N, C, oh, ow), np.int64)
        row.impls[CC] = lambda: cconv.max_pool2d(x, kh, kw, s, p)
        row.impls[CC_OUT] = lambda: cconv.max_pool2d(x, kh, kw, s, p, out=out_buf,
                                                     argmax_out=am_buf)
        row.impls[NP] = lambda: ref.book_max_pool2d(x, kh, kw, s, p)
        want, want_am = ref.book_max_pool2d(x, kh, kw, s, p)
        got, got_am = cconv.max_pool2d(x, kh, kw, s, p)
        check_result_dtype(errs, f"{tag}: cconv out", got, dt)
        check_result_dtype(errs, f"{tag}: cconv argmax", got_am, np.int64)
        check_close(errs, f"{tag}: cconv out vs numpy", got, want, True, dt)
        check_close(errs, f"{tag}: cconv argmax vs numpy", got_am,
                    ref.argmax_from_book(want_am, (N, C, oh, ow)), True, dt)
        out_buf.fill(np.nan)
        am_buf.fill(-1)
        cconv.max_pool2d(x, kh, kw, s, p, out=out_buf, argmax_out=am_buf)
        check_close(errs, f"{tag}: cconv(out=) vs numpy", out_buf, want, True, dt)
        check_close(errs, f"{tag}: cconv(argmax_out=) vs numpy", am_buf,
                    ref.argmax_from_book(want_am, (N, C, oh, ow)), True, dt)
        if torch is not None:
            xt = torch.from_numpy(x)
            row.impls[TH] = lambda: F.max_pool2d(xt, (kh, kw), s, p, return_indices=True)
            t, ti = F.max_pool2d(xt, (kh, kw), s, p, return_indices=True)
            check_close(errs, f"{tag}: torch out vs numpy", t.numpy(), want, True, dt)
            # torch indices are flat iy*W + ix; convert the book's window positions.
            am = ref.argmax_from_book(want_am, (N, C, oh, ow))
            iy = np.arange(oh)[:, None] * s - p + am // kw
            ix = np.arange(ow)[None, :] * s - p + am % kw
            check_close(errs, f"{tag}: torch indices vs numpy", ti.numpy(), iy * W + ix,
                        True, dt)
        del want, want_am, got, got_am

    elif op == "maxpool_bwd":
        x = fill(case.shape)
        dout = fill((N, C, oh, ow))
        row.nbytes, row.out_bytes = o_bytes + a_bytes + x_bytes, x_bytes
        # The book keeps its own argmax; cconv gets the same positions in its layout
        # (the maxpool_fwd rows check that cconv's forward produces exactly these).
        _, book_am = ref.book_max_pool2d(x, kh, kw, s, p)
        am = ref.argmax_from_book(book_am, (N, C, oh, ow))
        dx_buf = np.empty(case.shape, dt)
        row.impls[CC] = lambda: cconv.max_pool2d_backward(dout, am, case.shape, kh, kw, s, p)
        row.impls[CC_OUT] = lambda: cconv.max_pool2d_backward(dout, am, case.shape, kh, kw,
                                                              s, p, out=dx_buf)
        row.impls[NP] = lambda: ref.book_max_pool2d_backward(dout, book_am, case.shape,
                                                             kh, kw, s, p)
        want = ref.book_max_pool2d_backward(dout, book_am, case.shape, kh, kw, s, p)
        got = cconv.max_pool2d_backward(dout, am, case.shape, kh, kw, s, p)
        check_result_dtype(errs, f"{tag}: cconv", got, dt)
        check_close(errs, f"{tag}: cconv vs numpy", got, want, False, dt)
        dx_buf.fill(np.nan)  # out= need not be pre-zeroed
        cconv.max_pool2d_backward(dout, am, case.shape, kh, kw, s, p, out=dx_buf)
        check_close(errs, f"{tag}: cconv(out=) vs numpy", dx_buf, want, False, dt)
        if torch is not None:
            xt, doutt = torch.from_numpy(x), torch.from_numpy(dout)
            _, ti = F.max_pool2d(xt, (kh, kw), s, p, return_indices=True)
            ks, st, pd = [kh, kw], [s, s], [p, p]
            row.impls[TH] = lambda: aten.max_pool2d_with_indices_backward(
                doutt, xt, ks, st, pd, [1, 1], False, ti)
            t = aten.max_pool2d_with_indices_backward(doutt, xt, ks, st, pd, [1, 1], False, ti)
            check_close(errs, f"{tag}: torch vs numpy", t.numpy(), want, False, dt)
        del want, got

    elif op == "avgpool_fwd":
        x = fill(case.shape)
        row.nbytes, row.out_bytes = x_bytes + o_bytes, o_bytes
        out_buf = np.empty((N, C, oh, ow), dt)
        row.impls[CC] = lambda: cconv.avg_pool2d(x, kh, kw, s, p)
        row.impls[CC_OUT] = lambda: cconv.avg_pool2d(x, kh, kw, s, p, out=out_buf)
        row.impls[NP] = lambda: ref.book_avg_pool2d(x, kh, kw, s, p)
        want = ref.book_avg_pool2d(x, kh, kw, s, p)
        got = cconv.avg_pool2d(x, kh, kw, s, p)
        check_result_dtype(errs, f"{tag}: cconv", got, dt)
        check_close(errs, f"{tag}: cconv vs numpy", got, want, False, dt)
        out_buf.fill(np.nan)
        cconv.avg_pool2d(x, kh, kw, s, p, out=out_buf)
        check_close(errs, f"{tag}: cconv(out=) vs numpy", out_buf, want, False, dt)
        if torch is not None:
            xt = torch.from_numpy(x)
            row.impls[TH] = lambda: F.avg_pool2d(xt, (kh, kw), s, p)
            t = F.avg_pool2d(xt, (kh, kw), s, p).numpy()
            check_close(errs, f"{tag}: torch vs numpy", t, want, False, dt)
        del want, got

    elif op == "avgpool_bwd":
        x = fill(case.shape)
        dout = fill((N, C, oh, ow))
        row.nbytes, row.out_bytes = o_bytes + x_bytes, x_bytes
        dx_buf = np.empty(case.shape, dt)
        row.impls[CC] = lambda: cconv.avg_pool2d_backward(dout, case.shape, kh, kw, s, p)
        row.impls[CC_OUT] = lambda: cconv.avg_pool2d_backward(dout, case.shape, kh, kw, s, p,
                                                              out=dx_buf)
        row.impls[NP] = lambda: ref.book_avg_pool2d_backward(dout, case.shape, kh, kw, s, p)
        want = ref.book_avg_pool2d_backward(dout, case.shape, kh, kw, s, p)
        got = cconv.avg_pool2d_backward(dout, case.shape, kh, kw, s, p)
        check_result_dtype(errs, f"{tag}: cconv", got, dt)
        check_close(errs, f"{tag}: cconv vs numpy", got, want, False, dt)
        dx_buf.fill(np.nan)  # out= need not be pre-zeroed
        cconv.avg_pool2d_backward(dout, case.shape, kh, kw, s, p, out=dx_buf)
        check_close(errs, f"{tag}: cconv(out=) vs numpy", dx_buf, want, False, dt)
        if torch is not None:
            xt, doutt = torch.from_numpy(x), torch.from_numpy(dout)
            ks, st, pd = [kh, kw], [s, s], [p, p]
            row.impls[TH] = lambda: aten.avg_pool2d_backward(doutt, xt, ks, st, pd,
                                                             False, True, None)
            t = aten.avg_pool2d_backward(doutt, xt, ks, st, pd, False, True, None)
            check_close(errs, f"{tag}: torch vs numpy", t.numpy(), want, False, dt)
        del want, got
    else:  # pragma: no cover
        raise ValueError(op)

    # Plain copy of the same number of bytes (read + written), preallocated and touched.
    half = row.nbytes // 2
    src = np.ones(half, np.uint8)
    dst = np.zeros(half, np.uint8)
    np.copyto(dst, src)
    row.impls[COPY] = lambda: np.copyto(dst, src)
    return row


def measure_row(row: Row, repeat: int, torch, pause: float, rewarm_s: float) -> None:
    """Time the row's implementations (interleaved) and measure their peak memory."""
    for name in (CC, NP):
        peak = tracemalloc_peak(row.impls[name])
        row.extra[name] = peak - row.out_bytes
    if TH in row.impls:
        peak = rss_peak(row.impls[TH])
        row.extra[TH] = None if peak is None else peak - row.out_bytes
    ctx = torch.inference_mode() if torch is not None else contextlib.nullcontext()
    with ctx, OtherCpuMeter() as meter:
        row.raw = time_interleaved(row.impls, repeat, pause=pause, rewarm_s=rewarm_s)
    row.other_cpu = meter.value
    row.med = {k: statistics.median(v) for k, v in row.raw.items()}


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def fmt_mb(b: int | None) -> str:
    if b is None:
        return "n/a"
    return f"{max(b, 0) / 1e6:.1f}"  # the RSS method can under-count slightly below 0


def env_header(args, cconv, torch, threads: int) -> str:
    lines = ["cconv kernel benchmark", "=" * 22]
    lines += env_lines(cconv, torch, args.torch)
    lines.append(f"method       : {args.repeat} repetitions (+1 warm-up), implementations "
                 f"interleaved, medians; before each sample a {args.pause:g} s pause, then "
                 f"untimed calls for {args.rewarm_ms:g} ms (at least one); threads={threads}; "
                 f"seed={args.seed}")
    return "\n".join(lines)


def table(rows: list, with_torch: bool) -> str:
    cols = [("op", "<"), ("case", "<"), ("dtype", "<"), ("cconv ms", ">"),
            ("cc out= ms", ">"), ("numpy ms", ">"), ("np/cc", ">")]
    if with_torch:
        cols += [("torch ms", ">"), ("th/cc", ">")]
    cols += [("cc GB/s", ">"), ("copy GB/s", ">"), ("%copy", ">"), ("%copy out=", ">"),
             ("extra MB cc", ">"), ("np", ">")]
    if with_torch:
        cols += [("th", ">")]
    cols += [("busy%", ">")]
    body = []
    for r in rows:
        line = [OP_LABEL[r.op] + ("" if r.ok else " !"), r.case.label, r.dtype,
                fmt_ms(r.med.get(CC)), fmt_ms(r.med.get(CC_OUT)), fmt_ms(r.med.get(NP)),
                fmt_x(r.ratio(NP))]
        if with_torch:
            line += [fmt_ms(r.med.get(TH)), fmt_x(r.ratio(TH))]
        line += [fmt_f(r.gbps()), fmt_f(r.copy_gbps()), fmt_f(r.pct_copy(), 0),
                 fmt_f(r.pct_copy(CC_OUT), 0), fmt_mb(r.extra.get(CC)),
                 fmt_mb(r.extra.get(NP))]
        if with_torch:
            line += [fmt_mb(r.extra.get(TH))]
        line += [fmt_busy(r.other_cpu)]
        body.append(line)
    return format_table(cols, body, [(r.case.group, r.case.index) for r in rows])


LEGEND = """\
Legend: times are medians in ms.  cconv = public call (allocates its result);
cc out= = same call into preallocated out= buffers; numpy = the book's algorithm
(tests/reference.py, dtype-preserving); np/cc and th/cc = other time /
cconv time (higher = cconv faster).  cc GB/s = (bytes read + written) / cconv time;
copy GB/s = single-threaded np.copyto of the same byte count (preallocated);
%copy = cc GB/s / copy GB/s (%copy out= uses the cc out= time).  extra MB = peak
memory allocated during one call minus the result size (out + argmax):
tracemalloc for cconv and numpy, rise of the RSS high-water mark for torch.
busy% = share of the CPUs that OTHER processes used while the row was timed
('~' = over 5%: the row's times are suspect; rerun on a quiet machine).
A '!' after the op name marks a failed sanity check."""


@dataclass
class Target:
    title: str
    rows: list  # (row, value, threshold, unit, note)


def evaluate_targets(rows: list, threads: int, torch_threads: int | None) -> list:
    def conv_big(r):  # conv cases 2-4
        return r.case.group == "conv" and r.case.index >= 2

    def larger(r):  # conv cases 2-4 and the pooling cases
        return conv_big(r) or r.case.group == "pool"

    targets = []

    t = Target("T1  every kernel >= 5x faster than the numpy algorithm "
               "(conv cases 2-4 and all pooling cases)", [])
    for r in rows:
        if larger(r):
            t.rows.append((r, r.ratio(NP), 5.0, "x", ""))
    targets.append(t)

    t = Target("T2  im2col and col2im >= 40% of copy bandwidth (conv cases 2-4)", [])
    for r in rows:
        if conv_big(r):
            note = (f"out= variant: {r.pct_copy(CC_OUT):.0f}%"
                    if r.pct_copy(CC_OUT) is not None else "")
            t.rows.append((r, r.pct_copy(), 40.0, "%", note))
    targets.append(t)

    t = Target("T3  im2col >= 2x torch unfold, col2im >= 1.5x torch fold (all conv cases)", [])
    for r in rows:
        if r.case.group == "conv":
            t.rows.append((r, r.ratio(TH), 2.0 if r.op == "im2col" else 1.5, "x", ""))
    targets.append(t)

    t = Target("T4  pooling forward and backward >= 1.5x torch with 2 threads "
               "(every pooling case)", [])
    two = threads == 2 and torch_threads == 2
    for r in rows:
        if r.case.group == "pool":
            val = r.ratio(TH) if two else None
            if torch_threads is None:
                note = "not evaluated: needs --torch"
            elif not two:
                note = (f"not evaluated: needs --threads 2 (ran cconv with {threads}, "
                        f"torch with {torch_threads})")
            else:
                note = ""
            t.rows.append((r, val, 1.5, "x", note))
    targets.append(t)
    return targets


def targets_report(targets: list) -> tuple:
    lines = ["Targets", "======="]
    met = notmet = na = 0
    for t in targets:
        lines.append(t.title)
        if not t.rows:
            lines.append("  (no row measured for this target; run without --quick / --ops)")
        for r, val, thr, unit, note in t.rows:
            what = f"{OP_LABEL[r.op]:<12} {r.case.label:<26} {r.dtype:<8}"
            if val is None:
                status, shown = "n/a", "-"
                na += 1
                if not note:
                    note = "not measured (torch needs --torch)" if "torch" in t.title else \
                        "not measured"
            else:
                ok = val >= thr and r.ok
                status = "MET" if ok else "NOT MET"
                met += ok
                notmet += not ok
                shown = f"{val:.0f}%" if unit == "%" else f"{val:.2f}x"
                if not r.ok:
                    note = "sanity check FAILED" + (f"; {note}" if note else "")
                if r.contended:
                    note = (f"timed under CPU contention: others used "
                            f"{100 * r.other_cpu:.0f}%" + (f"; {note}" if note else ""))
            need = f"{thr:.0f}%" if unit == "%" else f"{thr:g}x"
            extra = f"  ({note})" if note else ""
            lines.append(f"  {status:<8} {what} {shown:>7}  (need >= {need}){extra}")
        lines.append("")
    lines.append(f"Summary: {met} MET, {notmet} NOT MET, {na} not evaluated")
    return "\n".join(lines), notmet


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Benchmark cconv's im2col/col2im/pooling kernels against the book's "
                    "NumPy algorithm and, optionally, PyTorch.",
        epilog="Example: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
               "cconv bench --torch --threads 2")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed repetitions per row (default 7, or 3 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions and only the first case of each group")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for cconv (cconv.set_num_threads) and torch "
                         "(default: cconv's current setting)")
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    ap.add_argument("--torch", action="store_true",
                    help="also time PyTorch (if installed) side by side")
    ap.add_argument("--ops", default="all",
                    help="comma-separated subset of: " + ",".join(ALL_OPS) + " (default all)")
    add_pause_arg(ap)
    add_retry_args(ap, default_retries=2)
    ap.add_argument("--seed", type=int, default=0, help="random seed of the inputs")
    ap.add_argument("--json", metavar="PATH", help="also write all raw timings to PATH")
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.retries < 0 or args.retry_wait < 0:
        ap.error("--retries and --retry-wait must be >= 0")
    check_pause_args(ap, args)
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.ops == "all":
        args.ops = list(ALL_OPS)
    else:
        args.ops = parse_choices(ap, args.ops, ALL_OPS, "op")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    modules = import_modules("im2col", args.torch, args.threads)
    if modules is None:
        return 2
    cconv, torch = modules
    threads = cconv.get_num_threads()

    print(env_header(args, cconv, torch, threads))
    print(flush=True)

    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    cases = (CONV_CASES[:1] + POOL_CASES[:1]) if args.quick else (CONV_CASES + POOL_CASES)
    rng = np.random.default_rng(args.seed)

    rows = []
    t_start = time.perf_counter()
    run_meter = OtherCpuMeter().__enter__()
    for case in cases:
        ops = [o for o in (CONV_OPS if case.group == "conv" else POOL_OPS) if o in args.ops]
        for op in ops:
            for dtype in dtypes:
                print(f"  ... {OP_LABEL[op]:<12} {case.label:<26} {dtype}", end="",
                      file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                row = build_row(case, op, dtype, cconv, torch, rng)
                measure_row(row, args.repeat, torch, args.pause, args.rewarm_ms / 1e3)
                best = (row.other_cpu, row.raw, row.med, row.extra)
                for _ in range(args.retries):
                    if not row.contended:
                        break
                    # Timed while other processes competed for the CPUs: wait, time again
                    # and keep the least contended measurement.
                    print(f"  [busy {100 * row.other_cpu:.0f}%, retrying]", end="",
                          file=sys.stderr, flush=True)
                    time.sleep(args.retry_wait)
                    measure_row(row, args.repeat, torch, args.pause, args.rewarm_ms / 1e3)
                    if row.other_cpu is not None and row.other_cpu < best[0]:
                        best = (row.other_cpu, row.raw, row.med, row.extra)
                row.other_cpu, row.raw, row.med, row.extra = best
                row.impls.clear()  # free the inputs and buffers
                rows.append(row)
                status = "ok" if row.ok else "SANITY CHECK FAILED"
                print(f"  {time.perf_counter() - t0:6.1f} s  {status}", file=sys.stderr,
                      flush=True)
                gc.collect()
    elapsed = time.perf_counter() - t_start
    run_meter.__exit__(None, None, None)

    print(results_text(table(rows, torch is not None), LEGEND, elapsed, run_meter.value, rows))
    print()

    failed = [e for r in rows for e in r.errors]
    print("Sanity check (cconv == numpy reference" +
          (", torch == numpy reference" if torch is not None else "") + " on every row): " +
          ("all passed" if not failed else f"{len(failed)} FAILURE(S)"))
    for e in failed:
        print(f"  FAIL {e}")
    print()

    report, _ = targets_report(
        evaluate_targets(rows, threads, torch.get_num_threads() if torch is not None else None))
    print(report)

    if args.json:
        payload = {
            "cconv_version": getattr(cconv, "__version__", None),
            "threads": threads,
            "numpy": np.__version__,
            "torch": None if torch is None else torch.__version__,
            "repeat": args.repeat,
            "pause_s": args.pause,
            "rewarm_ms": args.rewarm_ms,
            "rows": [{
                "op": r.op, "case": r.case.label, "group": r.case.group,
                "case_index": r.case.index, "dtype": r.dtype, "nbytes": r.nbytes,
                "median_s": r.med, "times_s": r.raw,
                "extra_bytes": r.extra, "errors": r.errors,
            } for r in rows],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
        print(f"\nraw timings written to {args.json}")

    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
