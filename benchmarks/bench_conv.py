#!/usr/bin/env python
"""Benchmark cconv's convolution kernels against ``torch.nn.functional.conv2d``, layer by layer.

How to run (from the repository root, with cconv installed)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_conv.py --threads 2

    python benchmarks/bench_conv.py --quick               # smoke run, float32 only
    python benchmarks/bench_conv.py --dtype float64 --batch 32 --no-torch
    python benchmarks/bench_conv.py --json conv.json      # also the raw timings

(Unset ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``: they slow NumPy's and
scipy's OpenBLAS down.)  The full run should take about 6-8 minutes on 2 quiet
cores (``--quick``, float32 with 2 samples, takes under a minute); the largest
arrays are a few hundred MB (the float64 (32,64,56,56) and (32,3,227,227)
cases: inputs, results and torch's buffers); the memory measurements add a short
child process per row.

What is measured
----------------
Layers (``--batch`` images, default 100, except the kernel cases):

* every convolution of ``cconv.DeepConvNet()`` (the book's ch. 8 net: 1x28x28 ->
  conv1 16@3x3 p1, conv2 16@3x3 p1, pool, conv3 32@3x3 p1, conv4 32@3x3 p2, pool,
  conv5 64@3x3 p1, conv6 64@3x3 p1, pool), its shapes read off the network by
  running a batch through its layers;
* the convolution of ``cconv.SimpleConvNet()`` (ch. 7: 30@5x5 p0 on 1x28x28);
* the four im2col cases of the kernel benchmark (``bench_kernels.CONV_CASES``,
  their own batch sizes) with a filter count chosen here (they have none): 30, 16,
  64 and 96 (AlexNet's conv1).  A case that is the same convolution as a network
  layer at the chosen batch is measured once, under both names.

Passes, each in float32 and float64:

* ``fwd``         -- cconv: ``cconv.conv2d(x, W, b, stride, pad)``; torch:
  ``F.conv2d(x, W, b, stride, padding)`` under ``torch.no_grad()``;
* ``bwd``         -- cconv: ``cconv.conv2d_backward(dout, x, W, stride, pad)`` ->
  (dx, dW, db); torch: ``torch.ops.aten.convolution_backward`` with
  ``output_mask=[True, True, True]`` -> (dx, dW, db) given dout, x and W: the
  ATen op that autograd's ConvolutionBackward0 calls, timed alone (no forward,
  no autograd graph).  Where that op is missing the script falls back to autograd
  (forward + ``torch.autograd.grad``) and the table says ``autograd fwd+bwd``;
* ``bwd no dx``   -- (a network's first layer) the same without the input's
  gradient: ``need_input_grad=False`` / ``output_mask=[False, True, True]``.

All results are allocated by the call, as a user calls them.

Timing: for each row the two implementations are timed interleaved
(``_util.time_interleaved``): each repetition takes one sample of
each, the order alternating; before each sample the script sleeps ``--pause``
seconds (default 0.2: OpenBLAS's worker threads spin about 0.1 s after a call
and would slow the next implementation down), then calls the same
implementation, untimed, for ``--rewarm-ms`` (default 20, at least one call: a
core that idled for 0.2 s takes a few ms of work to wake up).  A sample is
the mean of a few consecutive calls (enough for about ``--sample-ms``,
the same count for both implementations of a row).  The table reports medians.

Throughput: ``flops = 2*N*FN*out_h*out_w*C*FH*FW`` for a forward pass; a backward
pass does twice that with dx (dW and dx products), once without (dW only); the
bias terms are left out.  ``GFLOP/s = flops / time / 1e9``.  ``%peak`` is that over
``threads x`` this machine's 1-thread GEMM peak, measured in the same run: the
best of ``np.matmul`` (NumPy's OpenBLAS) and ``scipy.linalg.blas.sgemm/dgemm``
(scipy's OpenBLAS, the library whose ``sgemm``/``dgemm`` cconv's kernels call from
each thread) on ``--peak-size`` square matrices with BLAS limited to one thread
(threadpoolctl).  The multi-threaded ``np.matmul`` rate is printed beside it.

Memory: ``cc MB`` is the peak extra memory of cconv's call, measured in a fresh
child process (this script with a private option) that imports only NumPy and
cconv, allocates the row's inputs, starts the thread pools with a tiny
convolution, then runs the row's pass once -- for ``fwd`` rows ``conv2d``, for
``bwd`` rows ``conv2d`` followed by ``conv2d_backward`` -- and reports the rise of
its resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs;
where that is refused, ``ru_maxrss``) above the resident size before the call,
minus the bytes of the results (out, dx, dW, db): the tile buffers and anything
else the kernels allocate, which ``tracemalloc`` does not see.  ``book MB`` is
what the book's layer needs for the same work: its ``col`` (``N*out_h*out_w*C*FH*FW``
elements) for a forward pass, ``col + dcol`` (twice that) for forward + backward.

Sanity check: before timing, every row compares cconv's results with torch's
(with ``--no-torch``: with the book's im2col algorithm in NumPy), within float
tolerance; a failure is marked ``!`` and makes the exit status 1.

Busy machine: the share of the CPUs that *other* processes used while each row
was timed is shown as ``busy%``; a row over 5% is re-timed after a pause
(``--retries``, ``--retry-wait``), the least contended measurement kept, and rows
still over 5% are flagged ``~``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

# The helper modules beside this file (and, through _reference, tests/reference.py).
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
    least_contended,
    results_text,
    time_interleaved,
)

CC, TH = "cconv", "torch"
FWD, BWD, BWD_NODX = "fwd", "bwd", "bwd no dx"
#: Filter counts given to the kernel benchmark's im2col cases (which have none).
KERNEL_CASE_FILTERS = {1: 30, 2: 16, 3: 64, 4: 96}
#: Sanity tolerance: max |cconv - reference| over max |reference|.
TOL = {"float32": 2e-4, "float64": 1e-10}


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


@dataclass
class Layer:
    names: list  # e.g. ["DeepConvNet conv1"], or two names for a shared case
    shape: tuple  # (N, C, H, W)
    FN: int
    FH: int
    FW: int
    stride: tuple
    pad: tuple
    dilation: tuple = (1, 1)
    first: bool = False  # a network's first layer: also "bwd no dx"

    @property
    def key(self) -> tuple:
        return (self.shape, self.FN, self.FH, self.FW, self.stride, self.pad, self.dilation)

    @property
    def label(self) -> str:
        return " = ".join(self.names)

    @property
    def out_hw(self) -> tuple:
        _, _, H, W = self.shape
        return (ref.output_size(H, self.FH, self.stride[0], self.pad[0], self.dilation[0]),
                ref.output_size(W, self.FW, self.stride[1], self.pad[1], self.dilation[1]))

    @property
    def geometry(self) -> str:
        s = self.stride[0] if self.stride[0] == self.stride[1] else self.stride
        p = self.pad[0] if self.pad[0] == self.pad[1] else self.pad
        x = "(" + ",".join(map(str, self.shape)) + ")"
        return f"{x} {self.FN}@{self.FH}x{self.FW} s{s} p{p}"

    def fwd_flops(self) -> int:
        N, C, _, _ = self.shape
        oh, ow = self.out_hw
        return 2 * N * self.FN * oh * ow * C * self.FH * self.FW

    def col_elements(self) -> int:
        N, C, _, _ = self.shape
        oh, ow = self.out_hw
        return N * oh * ow * C * self.FH * self.FW


def net_layers(cconv, net_cls, net_name: str, batch: int) -> list:
    """The convolutions of a cconv network, their input shapes traced with a 1-image batch."""
    net = net_cls()
    c, h, w = net.config.get("input_dim", (1, 28, 28))
    layers = list(net.layers.values()) if isinstance(net.layers, dict) else list(net.layers)
    convs = [i for i, layer in enumerate(layers) if type(layer).__name__ == "Convolution"]
    x = np.zeros((1, c, h, w), net.dtype)
    out = []
    for i, layer in enumerate(layers[: convs[-1] + 1]):
        kind = type(layer).__name__
        if kind == "Convolution":
            fn, ch, fh, fw = layer.W.shape
            out.append(Layer([f"{net_name} conv{len(out) + 1}"], (batch,) + x.shape[1:], fn, fh,
                             fw, ref.as_pair(layer.stride), ref.as_pair(layer.pad),
                             ref.as_pair(getattr(layer, "dilation", 1)), first=(i == 0)))
        try:
            x = layer.forward(x)
        except TypeError:  # Dropout, BatchNormalization take train_flg
            x = layer.forward(x, False)
    return out


def all_layers(cconv, batch: int) -> list:
    from bench_kernels import CONV_CASES

    layers = net_layers(cconv, cconv.DeepConvNet, "DeepConvNet", batch)
    layers += net_layers(cconv, cconv.SimpleConvNet, "SimpleConvNet", batch)
    by_key = {layer.key: layer for layer in layers}
    for case in CONV_CASES:
        layer = Layer([f"kernels case {case.index}"], tuple(case.shape),
                      KERNEL_CASE_FILTERS[case.index], case.kh, case.kw,
                      ref.as_pair(case.stride), ref.as_pair(case.pad))
        if layer.key in by_key:
            by_key[layer.key].names.append(layer.names[0])
        else:
            by_key[layer.key] = layer
            layers.append(layer)
    return layers


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------


@dataclass
class Row(RowStats):
    layer: Layer
    dtype: str
    kind: str  # FWD, BWD, BWD_NODX
    flops: int = 0
    number: int = 1  # calls per sample
    impls: dict = field(default_factory=dict)
    med: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    other_cpu: float | None = None
    torch_what: str = ""  # what the torch column times
    torch_backend: str = ""
    cc_extra: int | None = None  # bytes, from the child process
    mem_method: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    def gflops(self, impl: str) -> float | None:
        return self.flops / self.med[impl] / 1e9 if impl in self.med else None

    def time_ratio(self) -> float | None:
        """cconv time / torch time (< 1: cconv faster)."""
        r = self.ratio(TH)
        return None if r is None else 1.0 / r

    def book_bytes(self) -> int:
        col = self.layer.col_elements() * np.dtype(self.dtype).itemsize
        return col if self.kind == FWD else 2 * col


def rel_error(got, want) -> float:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-30)
    return float(np.max(np.abs(got - want))) / scale if want.size else 0.0


def numpy_reference(x, W, b, dout, layer: Layer):
    """The book's Convolution layer: out and (dx, dW, db) through im2col / col2im."""
    out = ref.book_conv2d(x, W, b, layer.stride, layer.pad)
    return out, ref.book_conv2d_backward(dout, x, W, layer.stride, layer.pad)


def build_rows(layer: Layer, dtype: str, cconv, torch, rng) -> list:
    """The rows of one layer in one dtype (fwd, bwd, and bwd no dx for a first layer)."""
    dt = np.dtype(dtype)
    N, C, H, Wd = layer.shape
    FN, FH, FW = layer.FN, layer.FH, layer.FW
    oh, ow = layer.out_hw
    s, p, d = layer.stride, layer.pad, layer.dilation
    x = rng.standard_normal(layer.shape, dtype=dt)
    W = (rng.standard_normal((FN, C, FH, FW), dtype=dt) / math.sqrt(C * FH * FW)).astype(dt)
    b = rng.standard_normal(FN, dtype=dt)
    dout = rng.standard_normal((N, FN, oh, ow), dtype=dt)
    kinds = [FWD, BWD] + ([BWD_NODX] if layer.first else [])
    rows = [Row(layer, dtype, k) for k in kinds]
    fwd_flops = layer.fwd_flops()

    cc = {
        FWD: lambda: cconv.conv2d(x, W, b, s, p, d),
        BWD: lambda: cconv.conv2d_backward(dout, x, W, s, p, d),
        BWD_NODX: lambda: cconv.conv2d_backward(dout, x, W, s, p, d, need_input_grad=False),
    }
    th, th_what, backend = {}, {}, ""
    if torch is not None:
        F = torch.nn.functional
        xt, Wt, bt, doutt = (torch.from_numpy(a) for a in (x, W, b, dout))
        sl, pl, dl = list(s), list(p), list(d)
        th[FWD] = lambda: F.conv2d(xt, Wt, bt, s, p, d)
        th_what[FWD] = "F.conv2d, no_grad"
        aten = torch.ops.aten
        if hasattr(aten, "convolution_backward"):
            def th_bwd(mask):
                return lambda: aten.convolution_backward(doutt, xt, Wt, [FN], sl, pl, dl, False,
                                                         [0, 0], 1, mask)

            th[BWD] = th_bwd([True, True, True])
            th[BWD_NODX] = th_bwd([False, True, True])
            th_what[BWD] = th_what[BWD_NODX] = "aten.convolution_backward"
        else:  # autograd: forward + backward
            xr = xt.clone().requires_grad_(True)
            Wr, br = Wt.clone().requires_grad_(True), bt.clone().requires_grad_(True)

            def th_autograd(inputs):
                def run():
                    with torch.enable_grad():
                        out = F.conv2d(inputs[0] if len(inputs) == 3 else xt, Wr, br, s, p, d)
                        return torch.autograd.grad(out, inputs, doutt)
                return run

            th[BWD] = th_autograd((xr, Wr, br))
            th[BWD_NODX] = th_autograd((Wr, br))
            th_what[BWD] = th_what[BWD_NODX] = "autograd fwd+bwd"
        try:
            backend = str(torch._C._select_conv_backend(xt, Wt, bt, sl, pl, dl, False, [0, 0], 1,
                                                        None)).split(".")[-1]
        except Exception:  # a private API: only informative
            backend = "?"

    # Sanity check: cconv against torch (or the book's algorithm without torch).
    got_out = cc[FWD]()
    got_bwd = cc[BWD]()
    got_nodx = cc[BWD_NODX]() if layer.first else None
    if torch is not None:
        with torch.no_grad():
            want_out = th[FWD]().numpy()
            want_bwd = tuple(t.detach().numpy() for t in th[BWD]())
        ref_name = "torch"
    else:
        want_out, want_bwd = numpy_reference(x, W, b, dout, layer)
        ref_name = "numpy"
    tol = TOL[dtype]
    tag = f"{layer.label} {dtype}"
    checks = {FWD: [("out", got_out, want_out)],
              BWD: list(zip(("dx", "dW", "db"), got_bwd, want_bwd))}
    if layer.first:
        checks[BWD_NODX] = list(zip(("dW", "db"), got_nodx[1:], want_bwd[1:]))
        if got_nodx[0] is not None:
            rows[2].errors.append(f"{tag} {BWD_NODX}: dx is not None")
    for row in rows:
        for name, got, want in checks[row.kind]:
            if np.asarray(got).dtype != dt:
                row.errors.append(f"{tag} {row.kind}: {name} dtype {np.asarray(got).dtype}")
            if np.shape(got) != np.shape(want):
                row.errors.append(f"{tag} {row.kind}: {name} shape {np.shape(got)} != "
                                  f"{np.shape(want)}")
                continue
            err = rel_error(got, want)
            if not err <= tol:
                row.errors.append(f"{tag} {row.kind}: {name} vs {ref_name}: max error "
                                  f"{err:.2e} of the largest entry (tolerance {tol:g})")
    del got_out, got_bwd, got_nodx, want_out, want_bwd

    for row in rows:
        row.flops = {FWD: fwd_flops, BWD: 2 * fwd_flops, BWD_NODX: fwd_flops}[row.kind]
        row.impls[CC] = cc[row.kind]
        if torch is not None:
            row.impls[TH] = th[row.kind]
            row.torch_what = th_what[row.kind]
            row.torch_backend = backend
    return rows


def torch_context(torch, row: Row):
    if torch is None or row.torch_what == "autograd fwd+bwd":
        return contextlib.nullcontext()
    return torch.no_grad()


def calls_per_sample(row: Row, torch, sample_s: float, cap: int = 50) -> int:
    """Consecutive calls per sample so that the faster implementation's sample lasts ~sample_s."""
    fastest = None
    with torch_context(torch, row):
        for fn in row.impls.values():
            fn()  # warm
            for _ in range(3):  # the best of 3: one slow call must not set the count
                t0 = time.perf_counter()
                res = fn()
                t = time.perf_counter() - t0
                del res
                fastest = t if fastest is None else min(fastest, t)
    return max(1, min(cap, math.ceil(sample_s / max(fastest, 1e-6))))


def measure_row(row: Row, torch, args) -> None:
    row.number = calls_per_sample(row, torch, args.sample_ms / 1e3)

    def measure():
        with torch_context(torch, row), OtherCpuMeter() as meter:
            raw = time_interleaved(row.impls, args.repeat, warmup=1, pause=args.pause,
                                   number=row.number, rewarm_s=args.rewarm_ms / 1e3)
        return meter.value, raw

    row.other_cpu, row.raw = least_contended(measure, args.retries, args.retry_wait)
    row.med = {k: statistics.median(v) for k, v in row.raw.items()}


# --------------------------------------------------------------------------------------
# Peak GEMM rate
# --------------------------------------------------------------------------------------


def measure_peaks(dtypes: list, size: int, repeat: int, pause: float, rewarm_s: float,
                  threads: int) -> dict:
    """{dtype: {what: GFLOP/s}}: 1-thread np.matmul and scipy gemm, and np.matmul on ``threads``."""
    from scipy.linalg import blas as fblas
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    flops = 2.0 * size ** 3
    peaks = {}
    for dtype in dtypes:
        dt = np.dtype(dtype)
        a = rng.standard_normal((size, size), dtype=dt)
        bm = rng.standard_normal((size, size), dtype=dt)
        af, bf = np.asfortranarray(a), np.asfortranarray(bm)  # no copy inside scipy's gemm
        gemm = fblas.sgemm if dt == np.float32 else fblas.dgemm
        impls = {"np.matmul": lambda a=a, bm=bm: np.matmul(a, bm),
                 "scipy gemm": lambda gemm=gemm, af=af, bf=bf: gemm(1.0, af, bf)}
        with threadpool_limits(limits=1, user_api="blas"):
            raw = time_interleaved(impls, repeat, warmup=1, pause=pause, rewarm_s=rewarm_s)
        res = {k: flops / statistics.median(v) / 1e9 for k, v in raw.items()}
        if threads > 1:
            with threadpool_limits(limits=threads, user_api="blas"):
                raw = time_interleaved({"mt": impls["np.matmul"]}, repeat, warmup=1,
                                       pause=pause, rewarm_s=rewarm_s)
            res[f"np.matmul {threads} threads"] = flops / statistics.median(raw["mt"]) / 1e9
        res["peak"] = max(res["np.matmul"], res["scipy gemm"])
        peaks[dtype] = res
        del a, bm, af, bf
    return peaks


# --------------------------------------------------------------------------------------
# Memory: a child process per row
# --------------------------------------------------------------------------------------

_MEM_FLAG = "--_child-memory"


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def child_memory(spec: dict) -> dict:
    """In the child: peak RSS rise of one pass of cconv (see the module docstring)."""
    import ctypes
    import gc
    import resource

    import cconv

    cconv.set_num_threads(spec["threads"])
    dt = np.dtype(spec["dtype"])
    N, C, H, Wd = spec["shape"]
    FN, FH, FW = spec["FN"], spec["FH"], spec["FW"]
    s, p, d = tuple(spec["stride"]), tuple(spec["pad"]), tuple(spec["dilation"])
    oh = ref.output_size(H, FH, s[0], p[0], d[0])
    ow = ref.output_size(Wd, FW, s[1], p[1], d[1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, Wd), dtype=dt)
    W = rng.standard_normal((FN, C, FH, FW), dtype=dt)
    b = rng.standard_normal(FN, dtype=dt)
    dout = rng.standard_normal((N, FN, oh, ow), dtype=dt) if spec["kind"] != FWD else None
    # Start the OpenMP threads and BLAS on a tiny convolution (one-time costs, not the layer's).
    tx, tw = np.ones((1, 1, 4, 4), dt), np.ones((1, 1, 2, 2), dt)
    cconv.conv2d_backward(cconv.conv2d(tx, tw), tx, tw)
    del tx, tw
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    method = "VmHWM"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current RSS
    except OSError:
        method = "ru_maxrss"
    base = _status_bytes("VmRSS")
    if base is None:
        method = "ru_maxrss"
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = cconv.conv2d(x, W, b, s, p, d)
    results = [out]
    if spec["kind"] != FWD:
        results += [a for a in cconv.conv2d_backward(
            dout, x, W, s, p, d, need_input_grad=spec["kind"] == BWD) if a is not None]
    peak = _status_bytes("VmHWM") if method == "VmHWM" else None
    if peak is None:
        method = "ru_maxrss"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result_bytes = sum(a.nbytes for a in results)
    return {"extra": peak - base - result_bytes, "method": method, "results": result_bytes}


def measure_memory(row: Row, threads: int) -> None:
    layer = row.layer
    spec = {"dtype": row.dtype, "shape": list(layer.shape), "FN": layer.FN, "FH": layer.FH,
            "FW": layer.FW, "stride": list(layer.stride), "pad": list(layer.pad),
            "dilation": list(layer.dilation), "kind": row.kind, "threads": threads}
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), _MEM_FLAG,
                               json.dumps(spec)], capture_output=True, text=True, timeout=600)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        row.cc_extra, row.mem_method = res["extra"], res["method"]
    except (subprocess.SubprocessError, OSError, ValueError, IndexError, KeyError):
        row.cc_extra, row.mem_method = None, "failed"


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def fmt_mb(b: int | None) -> str:
    if b is None:
        return "n/a"
    return f"{max(b, 0) / 1e6:.1f}"  # page rounding can make the rise slightly negative


def table(rows: list, with_torch: bool, peaks: dict, threads: int) -> str:
    cols = [("layer", "<"), ("input, filters", "<"), ("dtype", "<"), ("pass", "<"),
            ("calls", ">"), ("cc ms", ">")]
    if with_torch:
        cols += [("th ms", ">"), ("cc/th", ">")]
    cols += [("cc GF/s", ">")] + ([("th GF/s", ">")] if with_torch else [])
    cols += [("cc %pk", ">")] + ([("th %pk", ">")] if with_torch else [])
    cols += [("cc MB", ">"), ("book MB", ">")]
    if with_torch:
        cols += [("th backend", "<")]
    cols += [("busy%", ">")]
    body = []
    for r in rows:
        peak = threads * peaks[r.dtype]["peak"] if r.dtype in peaks else None

        def pct(impl, r=r, peak=peak):
            g = r.gflops(impl)
            return None if g is None or not peak else 100 * g / peak

        line = [r.layer.label + ("" if r.ok else " !"), r.layer.geometry, r.dtype, r.kind,
                str(r.number), fmt_ms(r.med.get(CC))]
        if with_torch:
            line += [fmt_ms(r.med.get(TH)), fmt_x(r.time_ratio())]
        line += [fmt_f(r.gflops(CC))] + ([fmt_f(r.gflops(TH))] if with_torch else [])
        line += [fmt_f(pct(CC), 0)] + ([fmt_f(pct(TH), 0)] if with_torch else [])
        line += [fmt_mb(r.cc_extra), fmt_mb(r.book_bytes())]
        if with_torch:
            what = r.torch_backend + ("" if r.kind == FWD or r.torch_what ==
                                      "aten.convolution_backward" else f" ({r.torch_what})")
            line += [what]
        line += [fmt_busy(r.other_cpu)]
        body.append(line)
    return format_table(cols, body, [(r.layer.label, r.dtype) for r in rows])


def legend(with_torch: bool, threads: int, torch_bwd: str) -> str:
    text = f"""\
Legend: times are medians in ms per call; calls = consecutive calls per sample.
pass: fwd = conv2d (torch: F.conv2d under no_grad); bwd = conv2d_backward -> dx, dW, db
(torch: {torch_bwd}, output_mask [T,T,T]);
bwd no dx = need_input_grad=False (torch: output_mask [F,T,T]).
cc/th = cconv time / torch time (< 1: cconv faster).
GF/s = GFLOP/s (fwd 2*N*FN*oh*ow*C*FH*FW flops, bwd twice that, bwd no dx once);
%pk = GF/s / ({threads} threads x the 1-thread GEMM peak of the header).
cc MB = peak extra resident memory of cconv's pass in a fresh child process (fwd rows:
conv2d; bwd rows: conv2d + conv2d_backward) minus its results; book MB = the book's
col (fwd) or col + dcol (bwd rows) for the same layer.  th backend = the ATen
convolution backend torch picks (Mkldnn = oneDNN).  busy% = share of the CPUs that
OTHER processes used while the row was timed ('~' = over 5%: suspect; rerun on a
quiet machine).  A '!' after the layer marks a failed sanity check."""
    if not with_torch:
        text = (text.replace(" (torch: F.conv2d under no_grad)", "")
                .replace(f"\n(torch: {torch_bwd}, output_mask [T,T,T]);", ";")
                .replace(" (torch: output_mask [F,T,T])", "")
                .replace("\ncc/th = cconv time / torch time (< 1: cconv faster).", "")
                .replace("  th backend = the ATen\nconvolution backend torch picks (Mkldnn = oneDNN).",
                         ""))
    return text


def env_header(args, cconv, torch, threads: int) -> str:
    lines = ["cconv convolution benchmark", "=" * 27]
    lines += env_lines(cconv, torch, not args.no_torch)
    if torch is not None:
        mkldnn = getattr(torch.backends, "mkldnn", None)
        mkl = getattr(torch.backends, "mkl", None)
        lines.append("torch backends: mkldnn (oneDNN) available="
                     f"{mkldnn.is_available() if mkldnn else '?'}, "
                     f"mkl available={mkl.is_available() if mkl else '?'} "
                     "(torch's own BLAS/oneDNN are not among threadpoolctl's pools)")
    lines.append(f"method       : {args.repeat} samples per implementation (+1 warm-up), "
                 f"interleaved, order alternating; before each sample a {args.pause:g} s "
                 f"pause, then untimed calls for {args.rewarm_ms:g} ms (at least one); "
                 f"a sample = mean of 'calls' consecutive calls "
                 f"(~{args.sample_ms:g} ms); medians; threads={threads}; batch={args.batch}; "
                 f"seed={args.seed}")
    return "\n".join(lines)


def peaks_lines(peaks: dict, size: int, threads: int) -> list:
    lines = [f"GEMM peak ({size}x{size} @ {size}x{size}, BLAS limited to 1 thread, medians):"]
    for dtype, res in peaks.items():
        name = "sgemm" if dtype == "float32" else "dgemm"
        mt = res.get(f"np.matmul {threads} threads")
        lines.append(f"  {dtype} ({name}): np.matmul {res['np.matmul']:.1f} GFLOP/s, scipy "
                     f"{name} {res['scipy gemm']:.1f} GFLOP/s -> 1-thread peak "
                     f"{res['peak']:.1f}, x{threads} threads = {threads * res['peak']:.1f} "
                     "GFLOP/s (the %pk denominator)"
                     + ("" if mt is None else f"; np.matmul with {threads} BLAS threads "
                        f"{mt:.1f} GFLOP/s"))
    return lines


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Benchmark cconv.conv2d / conv2d_backward per convolution layer of the "
                    "book's networks against torch.nn.functional.conv2d.",
        epilog="Example: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
               "python benchmarks/bench_conv.py --threads 2")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 samples, float32 only (unless --dtype), smaller peak "
                         "matrices, no retries")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for cconv (cconv.set_num_threads) and torch (default 2)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed samples per implementation and row (default 7, 2 with --quick)")
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default=None,
                    help="default both (float32 with --quick)")
    ap.add_argument("--batch", type=int, default=100,
                    help="batch of the network layers (default 100; the kernel cases keep "
                         "their own)")
    add_pause_arg(ap)
    ap.add_argument("--sample-ms", type=float, default=30.0,
                    help="a sample repeats the call consecutively to last about this long "
                         "(default 30, at most 50 calls)")
    ap.add_argument("--no-torch", action="store_true", help="time cconv alone")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the memory measurements (child processes)")
    ap.add_argument("--peak-size", type=int, default=None,
                    help="size of the square matrices of the GEMM peak (default 2000, 1000 "
                         "with --quick)")
    ap.add_argument("--layers", default=None,
                    help="only the layers whose name contains one of these comma-separated "
                         "words (case-insensitive), e.g. 'deep,simple'")
    add_retry_args(ap, default_retries=1)
    ap.add_argument("--seed", type=int, default=0, help="random seed of the inputs")
    ap.add_argument("--json", metavar="PATH", help="also write the raw timings to PATH")
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 7
    if args.dtype is None:
        args.dtype = "float32" if args.quick else "both"
    if args.peak_size is None:
        args.peak_size = 1000 if args.quick else 2000
    if args.quick and "--retries" not in (argv if argv is not None else sys.argv):
        args.retries = 0
    if min(args.threads, args.repeat, args.batch, args.peak_size) < 1:
        ap.error("--threads, --repeat, --batch and --peak-size must be >= 1")
    if min(args.retries, args.retry_wait, args.sample_ms) < 0:
        ap.error("--retries, --retry-wait and --sample-ms must be >= 0")
    check_pause_args(ap, args)
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_MEM_FLAG]:
        print(json.dumps(child_memory(json.loads(argv[1]))))
        return 0
    args = parse_args(argv)
    modules = import_modules("conv2d", not args.no_torch, args.threads)
    if modules is None:
        return 2
    cconv, torch = modules
    threads = cconv.get_num_threads()

    print(env_header(args, cconv, torch, threads))
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    t_start = time.perf_counter()
    run_meter = OtherCpuMeter().__enter__()
    print("  ... GEMM peak", end="", file=sys.stderr, flush=True)
    peaks = measure_peaks(dtypes, args.peak_size, max(2, min(args.repeat, 5)), args.pause,
                          args.rewarm_ms / 1e3, threads)
    print(file=sys.stderr)
    print("\n".join(peaks_lines(peaks, args.peak_size, threads)))
    print(flush=True)

    layers = all_layers(cconv, args.batch)
    if args.layers:
        words = [w.strip().lower() for w in args.layers.split(",") if w.strip()]
        layers = [la for la in layers if any(w in la.label.lower() for w in words)]
    rng = np.random.default_rng(args.seed)
    rows = []
    for layer in layers:
        for dtype in dtypes:
            new = build_rows(layer, dtype, cconv, torch, rng)
            for row in new:
                print(f"  ... {layer.label:<40} {dtype:<8} {row.kind:<9}", end="",
                      file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                measure_row(row, torch, args)
                row.impls.clear()
                print(f"  {time.perf_counter() - t0:5.1f} s" + ("" if row.ok else "  SANITY "
                      "CHECK FAILED"), file=sys.stderr, flush=True)
            rows += new
            del new
    if not args.no_memory:
        print("  ... memory (a child process per row)", end="", file=sys.stderr, flush=True)
        for row in rows:
            measure_memory(row, threads)
        print(file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    run_meter.__exit__(None, None, None)

    torch_bwd = next((r.torch_what for r in rows if r.kind == BWD and r.torch_what),
                     "aten.convolution_backward")
    print(results_text(table(rows, torch is not None, peaks, threads),
                       legend(torch is not None, threads, torch_bwd), elapsed, run_meter.value,
                       rows))
    methods = sorted({r.mem_method for r in rows if r.mem_method})
    if methods:
        print(f"Memory measured with: {', '.join(methods)}")
    print()
    failed = [e for r in rows for e in r.errors]
    print(f"Sanity check (cconv vs {'torch' if torch is not None else 'the book algorithm'} on "
          f"every row): " + ("all passed" if not failed else f"{len(failed)} FAILURE(S)"))
    for e in failed:
        print(f"  FAIL {e}")

    if args.json:
        payload = {
            "threads": threads, "batch": args.batch, "repeat": args.repeat,
            "pause_s": args.pause, "rewarm_ms": args.rewarm_ms, "peaks_gflops": peaks,
            "torch": None if torch is None else torch.__version__,
            "rows": [{
                "layer": r.layer.label, "geometry": r.layer.geometry, "dtype": r.dtype,
                "pass": r.kind, "flops": r.flops, "calls_per_sample": r.number,
                "median_s": r.med, "times_s": r.raw, "torch_timed": r.torch_what,
                "torch_backend": r.torch_backend, "cc_extra_bytes": r.cc_extra,
                "memory_method": r.mem_method, "book_bytes": r.book_bytes(),
                "other_cpu": r.other_cpu, "errors": r.errors,
            } for r in rows],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
        print(f"\nraw timings written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
