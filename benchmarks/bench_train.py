#!/usr/bin/env python
"""Benchmark training and inference of cconv's networks against the book's NumPy code (and PyTorch).

How to run (from the repository root, with cconv installed, e.g. ``pip install -e .``)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/bench_train.py --torch --threads 2 --profile

    python benchmarks/bench_train.py --quick                    # smoke run, about a minute
    python benchmarks/bench_train.py --nets simple --dtype float32 --torch
    python benchmarks/bench_train.py --torch --threads 2 --blas-threads 1

``--torch`` needs PyTorch (optional).  The full run above takes about 100 s on
2 quiet cores (most of it in the NumPy DeepConvNet); rows re-timed because the
machine was busy add to that.  On 2 cores, NumPy's BLAS threads and the OpenMP
threads of cconv's kernels get in each other's way: compare with
``--blas-threads 1``.

What is measured
----------------
The book's ``SimpleConvNet`` (ch. 7: conv 30@5x5 - relu - pool 2x2 - affine 100 -
relu - affine 10) and ``DeepConvNet`` (ch. 8: six 3x3 convs, three pools,
affine 50 - relu - dropout - affine 10 - dropout), on a fixed random batch of
100 images (1, 28, 28) (standard normal, labels 0..9, ``--seed``), in float32
and float64, each implemented three ways:

* ``cconv``  -- ``cconv.SimpleConvNet`` / ``cconv.DeepConvNet`` with ``cconv.optim.Adam``;
* ``numpy``  -- the book's code in plain NumPy (``book_convnets.py`` beside this
  file, dtype-preserving, with the book's im2col/col2im and pooling from ``tests/reference.py``)
  and the book's ``Adam``;
* ``torch``  -- (``--torch``) the same layers as ``nn.Sequential`` of
  ``nn.Conv2d`` / ``nn.ReLU`` / ``nn.MaxPool2d`` / ``nn.Linear`` / ``nn.Dropout``
  (shapes, strides and pads read off the cconv network), ``nn.CrossEntropyLoss``
  and ``torch.optim.Adam(lr=0.001)``.

All three start from the same initial parameters (cconv's, copied).  A training
iteration is, for cconv and numpy, ``grads = net.gradient(x, t);
optimizer.update(net.params, grads)`` (Adam, lr 0.001), and for torch
``zero_grad(); loss = CrossEntropyLoss(model(x), t); loss.backward(); step()``.
An inference iteration is ``net.predict(x, train_flg=False)`` (torch:
``model.eval()`` under ``torch.inference_mode()``).

Each row first runs a few untimed warm-up iterations of every implementation,
then times *runs* of a fixed number of iterations (``--iters`` for
SimpleConvNet, a fifth of it for DeepConvNet; as many for inference as for
training), interleaved: each repetition runs every implementation once, in
turn, the starting point rotating.  Before each timed run the script sleeps
``--pause`` seconds (default 0.2) and runs untimed iterations of the same
implementation (at least one, for ``--rewarm-ms``, default 20): the thread
pools of the implementation that ran before (OpenBLAS's worker threads -- the
numpy implementation's BLAS has 2 -- spin about 0.1 s after a call) take a core
from the next one, and a core that idled through the pause takes a few ms to
wake up.  Without the pause and the untimed iteration, torch's DeepConvNet
float32 training step measured 75-113 ms here (98 ms on a quiet machine)
where a plain torch loop alone takes about 56-59 ms; with them, 55-57 ms.
The table reports the median run as ms/iteration and images/s (100 images per
iteration).

The torch step timed is exactly the plain user loop: ``opt.zero_grad();
loss = loss_fn(model(x), t); loss.backward(); opt.step()`` on tensors made
once (``torch.from_numpy``) before timing -- no conversion and no ``.item()``
per step.  The networks keep training on the same batch from run to run,
which does not change the work.

Threads: ``--threads N`` (default 2) sets ``cconv.set_num_threads(N)``,
``torch.set_num_threads(N)`` and, through threadpoolctl, NumPy's BLAS to N
threads; ``--blas-threads M`` gives BLAS another count.  The numpy
implementation uses that BLAS; cconv's networks limit BLAS to one thread inside
``predict`` and ``gradient`` whenever the kernels use more than one
(``cconv/_blas.py``; ``CCONV_SERIAL_BLAS=0`` in the environment turns that off,
to compare).

Busy machine: the share of the CPUs that *other* processes used while each row
was timed is measured (from /proc/stat) and shown as ``busy%``; a row over 5%
is re-timed after a pause (``--retries``, ``--retry-wait``), the least
contended measurement is kept, and rows still over 5% are flagged ``~``.

Before timing, a sanity check: on the same batch with the same parameters,
cconv and the book's code must give the same training loss (dropout masks from
the same ``np.random`` seed) and the same gradients, within float tolerance;
with ``--torch``, torch's loss with dropout off must equal the exact
cross-entropy (log-sum-exp, without the book's 1e-7) of the book's logits.  A failure makes the exit status 1.

``--profile`` then prints, for each cconv network and dtype, where an
iteration's time goes: every layer's forward and backward (each layer's
methods wrapped with timers), the loss layer, ``Adam.update`` and the rest
(Python glue), over the iterations of a training run (at least 5), as
ms/iteration and % of the iteration, with the part of each layer spent in
NumPy-level BLAS matrix products (``np.dot``, ``np.matmul``, ``np.tensordot``:
the Affine layers) and in cconv's kernels (``conv2d``, ``conv2d_backward``, max
pooling, ReLU, ...: whichever of ``KERNELS`` cconv.layers calls).  The
convolution layers' GEMMs run inside ``conv2d`` / ``conv2d_backward`` (scipy's
BLAS called from each OpenMP thread), so they count as kernel time and the
BLAS cell of a Convolution row reads "(in kern.)".  The timers cost about a
microsecond per call.

After the table a "targets" section evaluates the project's targets: for
training and for inference of DeepConvNet and SimpleConvNet, float32 and
float64, with 2 threads, cconv's time / torch's time (medians of the same
interleaved run) must be at most 1.0 (the goal: at most 0.77); it prints MET /
NOT MET per row for both thresholds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

# The helper modules beside this file (and, through _reference, tests/reference.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import book_convnets as book  # noqa: E402
from _util import (  # noqa: E402
    CONTENTION_WARN,
    OtherCpuMeter,
    RowStats,
    add_pause_arg,
    add_retry_args,
    check_pause_args,
    env_lines,
    fmt_busy,
    fmt_ms,
    fmt_x,
    format_table,
    import_modules,
    least_contended,
    parse_choices,
    results_text,
    time_interleaved,
)

BATCH = 100
INPUT_SHAPE = (BATCH, 1, 28, 28)
CLASSES = 10
LR = 0.001
NET_NAMES = {"simple": "SimpleConvNet", "deep": "DeepConvNet"}
CC, NP, TH = "cconv", "numpy", "torch"
TRAIN, INFER = "train", "infer"

# Sanity-check tolerances: (loss rtol, gradient error relative to the largest entry).
SANITY_TOL = {"float32": (1e-5, 1e-3), "float64": (1e-10, 1e-8)}
# torch's loss against the exact cross-entropy of the book's logits (log-sum-exp, no 1e-7).
TORCH_LOSS_RTOL = {"float32": 1e-4, "float64": 1e-9}


# --------------------------------------------------------------------------------------
# The three implementations of one network in one dtype
# --------------------------------------------------------------------------------------


def make_batch(seed: int, dtype: str):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(INPUT_SHAPE).astype(dtype)
    t = rng.integers(0, CLASSES, BATCH)
    return x, t


def layer_list(net) -> list:
    return list(net.layers.values()) if isinstance(net.layers, dict) else list(net.layers)


def layer_labels(net) -> list:
    """Layer names: the dict keys (SimpleConvNet), else Conv1, Relu1, Pool1, ... by type."""
    if isinstance(net.layers, dict):
        return list(net.layers)
    short = {"Convolution": "Conv", "Pooling": "Pool"}
    counts = defaultdict(int)
    labels = []
    for layer in net.layers:
        kind = short.get(type(layer).__name__, type(layer).__name__)
        counts[kind] += 1
        labels.append(f"{kind}{counts[kind]}")
    return labels


def torch_model(torch, cc_net):
    """The cconv network as a torch ``nn.Sequential`` with the same shapes and parameters."""
    nn = torch.nn
    modules, weights = [], []  # weights: (torch parameter, numpy array to copy in)
    for layer in layer_list(cc_net):
        kind = type(layer).__name__
        if kind == "Convolution":
            fn, c, fh, fw = layer.W.shape
            m = nn.Conv2d(c, fn, (fh, fw), stride=layer.stride, padding=layer.pad)
            weights += [(m.weight, layer.W), (m.bias, layer.b)]
            modules.append(m)
        elif kind == "Relu":
            modules.append(nn.ReLU())
        elif kind == "Pooling":
            modules.append(nn.MaxPool2d((layer.pool_h, layer.pool_w), stride=layer.stride,
                                        padding=layer.pad))
        elif kind == "Affine":
            d, m_out = layer.W.shape
            m = nn.Linear(d, m_out)
            weights += [(m.weight, layer.W.T), (m.bias, layer.b)]
            modules += [nn.Flatten(), m]  # Flatten is the identity on a 2-D input
        elif kind == "Dropout":
            modules.append(nn.Dropout(layer.dropout_ratio))
        else:  # pragma: no cover
            raise TypeError(f"no torch equivalent for {kind}")
    # Convert first, then copy: copying into float32 parameters would round float64 weights.
    model = nn.Sequential(*modules).to(
        torch.float32 if cc_net.dtype == np.float32 else torch.float64)
    with torch.no_grad():
        for param, array in weights:
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return model


@dataclass
class Impls:
    """cconv, numpy (and torch) versions of one network in one dtype, on one batch."""

    net: str
    dtype: str
    x: np.ndarray
    t: np.ndarray
    cc_net: object
    cc_opt: object
    np_net: object
    np_opt: object
    th: dict | None = None  # model, opt, loss_fn, x, t, torch

    def train_steps(self) -> dict:
        x, t = self.x, self.t

        def cc_step():
            grads = self.cc_net.gradient(x, t)
            self.cc_opt.update(self.cc_net.params, grads)

        def np_step():
            grads = self.np_net.gradient(x, t)
            self.np_opt.update(self.np_net.params, grads)

        steps = {CC: cc_step, NP: np_step}
        if self.th is not None:
            th = self.th
            model, opt, loss_fn, xt, tt = th["model"], th["opt"], th["loss"], th["x"], th["t"]

            def th_step():
                opt.zero_grad()
                loss = loss_fn(model(xt), tt)
                loss.backward()
                opt.step()

            steps[TH] = th_step
        return steps

    def infer_steps(self) -> dict:
        x = self.x
        steps = {
            CC: lambda: self.cc_net.predict(x, train_flg=False),
            NP: lambda: self.np_net.predict(x, train_flg=False),
        }
        if self.th is not None:
            model, xt = self.th["model"], self.th["x"]
            steps[TH] = lambda: model(xt)
        return steps

    def mode_context(self, mode: str):
        """torch's train()/eval() mode (and inference_mode for inference) around a run."""
        if self.th is None:
            return contextlib.nullcontext()
        torch, model = self.th["torch"], self.th["model"]
        if mode == TRAIN:
            model.train()
            return contextlib.nullcontext()
        model.eval()
        return torch.inference_mode()


def build_impls(net: str, dtype: str, seed: int, cconv, torch) -> Impls:
    x, t = make_batch(seed, dtype)
    np.random.seed(seed)  # cconv's nets draw their weights from np.random, as the book's
    cls = {"simple": cconv.SimpleConvNet, "deep": cconv.DeepConvNet}[net]
    cc_net = cls(dtype=dtype)
    np_net = {"simple": book.SimpleConvNet, "deep": book.DeepConvNet}[net](dtype=dtype)
    for key, value in cc_net.params.items():  # in place: the book's layers hold these arrays
        np_net.params[key][...] = value
    impls = Impls(net, dtype, x, t, cc_net, cconv.optim.Adam(lr=LR), np_net, book.Adam(lr=LR))
    if torch is not None:
        model = torch_model(torch, cc_net)
        impls.th = {
            "torch": torch,
            "model": model,
            "opt": torch.optim.Adam(model.parameters(), lr=LR),
            "loss": torch.nn.CrossEntropyLoss(),
            "x": torch.from_numpy(x),
            "t": torch.from_numpy(t),
        }
    return impls


# --------------------------------------------------------------------------------------
# Sanity check
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def dropout_off(net):
    """Set every Dropout layer's ratio to 0 (so that eval mode is the identity, as torch's)."""
    drops = [layer for layer in layer_list(net) if hasattr(layer, "dropout_ratio")]
    saved = [d.dropout_ratio for d in drops]
    for d in drops:
        d.dropout_ratio = 0.0
    try:
        yield
    finally:
        for d, r in zip(drops, saved):
            d.dropout_ratio = r


def sanity_check(impls: Impls, seed: int) -> tuple:
    """Compare losses and gradients before any training; return (ok, one-line report)."""
    x, t = impls.x, impls.t
    np.random.seed(seed + 1)  # the same dropout masks for both (they draw from np.random)
    loss_cc = float(impls.cc_net.loss(x, t))
    np.random.seed(seed + 1)
    loss_np = float(impls.np_net.loss(x, t))
    np.random.seed(seed + 1)
    g_cc = impls.cc_net.gradient(x, t)
    np.random.seed(seed + 1)
    g_np = impls.np_net.gradient(x, t)
    grad_err = max(
        float(np.max(np.abs(g_cc[k].astype(np.float64) - g_np[k])))
        / max(float(np.max(np.abs(g_np[k]))), 1e-30)
        for k in g_np
    )
    dtype_ok = all(g.dtype == np.dtype(impls.dtype) for g in g_cc.values())
    loss_rtol, grad_tol = SANITY_TOL[impls.dtype]
    diff = abs(loss_cc - loss_np)
    ok = diff <= loss_rtol * abs(loss_np) and grad_err <= grad_tol and dtype_ok
    line = (f"{NET_NAMES[impls.net]} {impls.dtype}: loss cconv {loss_cc:.7f} numpy "
            f"{loss_np:.7f} (|diff| {diff:.1e}), gradients max rel. err {grad_err:.1e}")
    if not dtype_ok:
        line += ", cconv gradient dtypes differ from the network's"
    if impls.th is not None:
        torch, model = impls.th["torch"], impls.th["model"]
        with dropout_off(impls.np_net):
            y = impls.np_net.predict(x, train_flg=False).astype(np.float64)
        y_max = y.max(axis=1)
        lse = y_max + np.log(np.sum(np.exp(y - y_max[:, None]), axis=1))
        loss_ref = float(np.mean(lse - y[np.arange(len(t)), t]))  # exact, without the 1e-7
        model.eval()
        with torch.inference_mode():
            loss_th = float(impls.th["loss"](model(impls.th["x"]), impls.th["t"]))
        th_diff = abs(loss_th - loss_ref)
        ok = ok and th_diff <= TORCH_LOSS_RTOL[impls.dtype] * abs(loss_ref)
        line += (f"; torch loss (dropout off) {loss_th:.7f} vs numpy logits' "
                 f"{loss_ref:.7f} (|diff| {th_diff:.1e})")
    return ok, line


# --------------------------------------------------------------------------------------
# Timing rows
# --------------------------------------------------------------------------------------


@dataclass
class Row(RowStats):
    net: str
    dtype: str
    mode: str
    iters: int
    med: dict = field(default_factory=dict)  # impl -> median seconds per run
    raw: dict = field(default_factory=dict)  # impl -> [seconds per run]
    other_cpu: float | None = None

    def ms_iter(self, impl: str) -> float | None:
        return self.med[impl] / self.iters if impl in self.med else None

    def images_per_s(self, impl: str) -> float | None:
        return self.iters * BATCH / self.med[impl] if impl in self.med else None

    def time_ratio(self, other: str) -> float | None:
        """cconv's median time over ``other``'s (< 1: cconv faster), or None."""
        r = self.ratio(other)
        return None if r is None else 1.0 / r


def time_row(impls: Impls, mode: str, iters: int, repeat: int, warmup: int,
             retries: int, retry_wait: float, pause: float, rewarm_s: float) -> Row:
    steps = impls.train_steps() if mode == TRAIN else impls.infer_steps()

    def run_of(step, n):
        def run():
            with impls.mode_context(mode):
                for _ in range(n):
                    step()
        return run

    for step in steps.values():  # untimed warm-up iterations
        run_of(step, warmup)()
    runs = {name: run_of(step, iters) for name, step in steps.items()}
    # After the pause before each timed run: untimed iterations of the same implementation
    # (at least one, for rewarm_s; its threads wake up), then the run.
    rewarm = {name: run_of(step, 1) for name, step in steps.items()}

    def measure():
        with OtherCpuMeter() as meter:
            raw = time_interleaved(runs, repeat, warmup=0, pause=pause, rewarm=rewarm,
                                   rewarm_s=rewarm_s)
        return meter.value, raw

    row = Row(impls.net, impls.dtype, mode, iters)
    row.other_cpu, row.raw = least_contended(measure, retries, retry_wait)
    row.med = {k: statistics.median(v) for k, v in row.raw.items()}
    return row


# --------------------------------------------------------------------------------------
# Per-layer profile of a cconv network
# --------------------------------------------------------------------------------------


#: The NumPy functions through which cconv.layers reaches BLAS.
BLAS_FUNCTIONS = ("dot", "matmul", "tensordot")


class _NumpyTimedBlas:
    """Stands for the numpy module inside cconv.layers, timing its matrix products (BLAS)."""

    def __init__(self, numpy_module, timed):
        self._np = numpy_module
        for name in BLAS_FUNCTIONS:
            setattr(self, name, timed(getattr(numpy_module, name)))

    def __getattr__(self, name):
        return getattr(self._np, name)


#: cconv's kernels as cconv.layers calls them (module globals), timed when present there.
#: conv2d / conv2d_backward run the convolutions' GEMMs inside (scipy's BLAS from each
#: OpenMP thread), so their BLAS time is part of the kernels' time, not of the BLAS column.
KERNELS = ("conv2d", "conv2d_backward", "im2col", "col2im", "max_pool2d",
           "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "relu_with_mask",
           "relu_backward")
PROFILE_MIN_ITERS = 5


class Profiler:
    """Timers around each layer's forward/backward, the loss, the optimizer, BLAS and kernels.

    ``acc[(label, part)]`` accumulates seconds; ``part`` is ``fwd``/``bwd`` for
    the layer methods, ``step`` for the optimizer's update, and ``blas``/``kernel``
    for the matrix products and cconv kernel calls made while that layer runs.
    """

    def __init__(self):
        self.labels = []
        self.kinds = {}  # label -> layer class name
        self.kernels = []  # the KERNELS found in the layers module (timed)
        self.acc = defaultdict(float)
        self.other_cpu = None  # share of the CPUs other processes used meanwhile
        self.shapes = {}
        self.current = None
        self._undo = []

    def _wrap_method(self, obj, attr, label, part):
        orig = getattr(obj, attr)
        acc, shapes = self.acc, self.shapes

        def timed(*args, **kwargs):
            prev, self.current = self.current, label
            t0 = time.perf_counter()
            try:
                res = orig(*args, **kwargs)
            finally:
                acc[(label, part)] += time.perf_counter() - t0
                self.current = prev
            if part == "fwd" and label not in shapes:
                shapes[label] = tuple(np.shape(res))
            return res

        setattr(obj, attr, timed)  # an instance attribute shadows the class's method
        self._undo.append(lambda: delattr(obj, attr))

    def _timed(self, fn, part):
        """``fn`` timed into ``acc[(current layer, part)]``."""
        acc = self.acc

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[(self.current, part)] += time.perf_counter() - t0

        return timed

    def _replace(self, module, name, value):
        orig = getattr(module, name)
        setattr(module, name, value)
        self._undo.append(lambda: setattr(module, name, orig))

    def install(self, net, optimizer, layers_module):
        self.labels = layer_labels(net)
        for label, layer in zip(self.labels, layer_list(net)):
            self.kinds[label] = type(layer).__name__
            self._wrap_method(layer, "forward", label, "fwd")
            self._wrap_method(layer, "backward", label, "bwd")
            if hasattr(layer, "param_backward"):  # a first layer skips its input's gradient
                self._wrap_method(layer, "param_backward", label, "bwd")
        self._wrap_method(net.last_layer, "forward", "SoftmaxWithLoss", "fwd")
        self._wrap_method(net.last_layer, "backward", "SoftmaxWithLoss", "bwd")
        self._wrap_method(optimizer, "update", "Adam.update", "step")
        self.kernels = [name for name in KERNELS if hasattr(layers_module, name)]
        for name in self.kernels:  # the kernels as cconv.layers calls them (module globals)
            self._replace(layers_module, name, self._timed(getattr(layers_module, name), "kernel"))
        # The matrix products as cconv.layers sees them (numpy itself is left alone).
        real_np = layers_module.np
        timed_blas = _NumpyTimedBlas(real_np, lambda fn: self._timed(fn, "blas"))
        self._replace(layers_module, "np", timed_blas)

    def uninstall(self):
        while self._undo:
            self._undo.pop()()


def profile_net(impls: Impls, iters: int, cconv) -> tuple:
    """Run ``iters`` training iterations of the cconv net under the profiler."""
    net, opt, x, t = impls.cc_net, impls.cc_opt, impls.x, impls.t
    prof = Profiler()
    prof.install(net, opt, cconv.layers)
    try:
        grads = net.gradient(x, t)  # one untimed iteration, through the timers
        opt.update(net.params, grads)
        prof.acc.clear()
        with OtherCpuMeter() as meter:
            t0 = time.perf_counter()
            for _ in range(iters):
                grads = net.gradient(x, t)
                opt.update(net.params, grads)
            total = time.perf_counter() - t0
        prof.other_cpu = meter.value
    finally:
        prof.uninstall()
    return prof, total / iters


def profile_report(impls: Impls, prof: Profiler, per_iter: float, iters: int) -> str:
    acc = {k: v / iters for k, v in prof.acc.items()}
    cols = [("layer", "<"), ("output shape", "<"), ("fwd ms", ">"), ("bwd ms", ">"),
            ("total ms", ">"), ("% iter", ">"), ("np BLAS ms", ">"), ("kernels ms", ">"),
            ("rest ms", ">")]
    body = []
    sums = defaultdict(float)

    def add(label, shape):
        fwd, bwd = acc.get((label, "fwd"), 0.0), acc.get((label, "bwd"), 0.0)
        blas, kern = acc.get((label, "blas"), 0.0), acc.get((label, "kernel"), 0.0)
        tot = fwd + bwd + acc.get((label, "step"), 0.0)
        for key, v in (("fwd", fwd), ("bwd", bwd), ("tot", tot), ("blas", blas),
                       ("kern", kern)):
            sums[key] += v
        if prof.kinds.get(label) == "Convolution" and not blas:
            blas_cell = "(in kern.)"  # the GEMMs run inside conv2d / conv2d_backward
        else:
            blas_cell = fmt_ms(blas) if blas else ""
        body.append([label, shape, fmt_ms(fwd) if fwd else "", fmt_ms(bwd) if bwd else "",
                     fmt_ms(tot), f"{100 * tot / per_iter:.1f}", blas_cell,
                     fmt_ms(kern) if kern else "", fmt_ms(tot - blas - kern)])

    for label in prof.labels + ["SoftmaxWithLoss"]:
        add(label, "(" + ",".join(map(str, prof.shapes.get(label, ()))) + ")")
    add("Adam.update", "")
    other = per_iter - sums["tot"]
    body.append(["other (Python glue)", "", "", "", fmt_ms(other),
                 f"{100 * other / per_iter:.1f}", "", "", ""])
    body.append(["iteration", "", fmt_ms(sums["fwd"]), fmt_ms(sums["bwd"]), fmt_ms(per_iter),
                 "100.0", fmt_ms(sums["blas"]), fmt_ms(sums["kern"]), ""])
    title = (f"cconv {NET_NAMES[impls.net]} {impls.dtype}: {per_iter * 1e3:.2f} ms/iteration "
             f"({iters} iterations, batch {BATCH}); NumPy-level BLAS (np.dot/matmul/tensordot) "
             f"{sums['blas'] / per_iter:.0%}, cconv kernels (incl. the convolutions' GEMMs) "
             f"{sums['kern'] / per_iter:.0%}, other NumPy/Python "
             f"{1 - (sums['blas'] + sums['kern']) / per_iter:.0%}")
    if prof.other_cpu is not None:
        title += f"; busy% {fmt_busy(prof.other_cpu)}"
        if prof.other_cpu > CONTENTION_WARN:
            title += " (other processes competed for the CPUs: times suspect)"
    groups = [0] * (len(body) - 2) + [1, 1]
    return title + "\n" + format_table(cols, body, groups)


PROFILE_NOTE = """\
(ms per iteration of one run of cconv alone, not interleaved, no pauses.
kernels ms = time inside cconv's kernels as cconv.layers calls them: {kernels}.
The convolution layers run conv2d / conv2d_backward, which do
their matrix products themselves (single-threaded sgemm/dgemm of scipy's BLAS
from each OpenMP thread): those GEMMs are inside 'kernels ms', and the np BLAS
column of a Convolution row is empty ('(in kern.)') -- it is not that the layer
does no matrix products.  np BLAS ms = np.dot/matmul/tensordot called by the
layer itself (Affine).  rest ms = the layer's other NumPy/Python work.)"""


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def fmt_ips(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def table(rows: list, with_torch: bool) -> str:
    impls = [CC, NP] + ([TH] if with_torch else [])
    short = {CC: "cc", NP: "np", TH: "th"}
    cols = [("net", "<"), ("dtype", "<"), ("mode", "<"), ("iters", ">")]
    cols += [(f"{short[i]} ms/it", ">") for i in impls]
    cols += [(f"{short[i]} img/s", ">") for i in impls]
    cols += [("np/cc time", ">")] + ([("cc/th time", ">")] if with_torch else [])
    cols += [("busy%", ">")]
    body = []
    for r in rows:
        line = [NET_NAMES[r.net], r.dtype, r.mode, str(r.iters)]
        line += [fmt_ms(r.ms_iter(i)) for i in impls]
        line += [fmt_ips(r.images_per_s(i)) for i in impls]
        line += [fmt_x(r.ratio(NP))]
        if with_torch:
            line += [fmt_x(r.time_ratio(TH))]
        line += [fmt_busy(r.other_cpu)]
        body.append(line)
    return format_table(cols, body, [(r.net, r.dtype) for r in rows])


LEGEND = """\
Legend: medians over the interleaved runs (a pause and an untimed iteration
before each timed run).  ms/it = milliseconds per iteration (training: forward +
backward + Adam update; torch: zero_grad, forward, CrossEntropyLoss, backward,
step; inference: predict, train_flg=False; torch: model(x) in eval mode under
inference_mode); img/s = images per second (batch 100).  cc = cconv, np = the
book's algorithm in NumPy (benchmarks/book_convnets.py, dtype-preserving), th =
PyTorch.  np/cc time = numpy time / cconv time (higher = cconv faster);
cc/th time = cconv time / torch time (LOWER = cconv faster; the targets' ratio).
busy% = share of the CPUs that OTHER processes used while the row was timed
('~' = over 5%: the row's times are suspect; rerun on a quiet machine)."""


#: The targets: cconv's time over torch's, per row (training and inference of both
#: networks, float32 and float64, 2 threads).  The limit must hold; the goal is the aim.
TARGET_LIMIT = 1.0
TARGET_GOAL = 0.77


def targets_report(rows: list, threads: int, torch_threads: int | None) -> tuple:
    """The targets section and its number of NOT MET verdicts against the limit."""
    lines = ["Targets", "======="]
    two = threads == 2 and torch_threads == 2
    counts = {TARGET_LIMIT: [0, 0], TARGET_GOAL: [0, 0]}  # threshold -> [met, not met]
    na = 0
    for mode, title in ((TRAIN, "training step (zero_grad/forward/loss/backward/step for "
                                "torch; gradient + Adam.update for cconv)"),
                        (INFER, "inference (predict, train_flg=False; torch: eval mode "
                                "under inference_mode)")):
        tag = "T1" if mode == TRAIN else "T2"
        lines.append(f"{tag}  {title}:")
        lines.append(f"    cconv time / torch time <= {TARGET_LIMIT:.2f} (goal <= {TARGET_GOAL:.2f}), "
                     f"2 threads, batch {BATCH}, every net and dtype")
        mode_rows = [r for r in rows if r.mode == mode]
        if not mode_rows:
            lines.append("  (no row measured)")
        for r in mode_rows:
            val = r.time_ratio(TH)
            what = f"{NET_NAMES[r.net]:<13} {r.mode:<5} {r.dtype:<8}"
            if val is None or not two:
                na += 1
                why = ("torch not measured (needs --torch)" if val is None else
                       f"needs --threads 2 (ran cconv with {threads}, torch with {torch_threads})")
                lines.append(f"  {what}      -  n/a (not evaluated: {why})")
                continue
            verdicts = []
            for thr in (TARGET_LIMIT, TARGET_GOAL):
                ok = val <= thr
                counts[thr][0 if ok else 1] += 1
                verdicts.append(f"<= {thr:.2f}: {'MET' if ok else 'NOT MET':<7}")
            note = (f"  ~ timed under CPU contention: others used {100 * r.other_cpu:.0f}%"
                    if r.contended else "")
            lines.append(f"  {what} {val:6.2f}  " + "  ".join(verdicts)
                         + f"  (cconv {r.ms_iter(CC) * 1e3:.2f} ms/it, torch "
                         f"{r.ms_iter(TH) * 1e3:.2f} ms/it){note}")
        lines.append("")
    lines.append(f"Summary: limit <= {TARGET_LIMIT:.2f}: {counts[TARGET_LIMIT][0]} MET, "
                 f"{counts[TARGET_LIMIT][1]} NOT MET; goal <= {TARGET_GOAL:.2f}: "
                 f"{counts[TARGET_GOAL][0]} MET, {counts[TARGET_GOAL][1]} NOT MET; "
                 f"{na} row(s) not evaluated")
    return "\n".join(lines), counts[TARGET_LIMIT][1]


def env_header(args, cconv, torch) -> str:
    lines = ["cconv training benchmark", "=" * 24]
    lines += env_lines(cconv, torch, args.torch)
    deep = f", DeepConvNet {deep_iters(args.iters)}" if "deep" in args.nets else ""
    lines.append(f"method       : batch {BATCH}, Adam lr={LR}; runs of {args.iters} training "
                 f"iterations (SimpleConvNet{deep}), as many for inference; "
                 f"{args.warmup} untimed warm-up iterations, then {args.repeat} runs per "
                 f"implementation, interleaved (order rotating), medians; before each run a "
                 f"{args.pause:g} s pause, then untimed iterations for {args.rewarm_ms:g} ms "
                 f"(at least one)")
    lines.append(f"threads      : cconv={cconv.get_num_threads()}, BLAS={args.blas_threads}"
                 + ("" if torch is None else f", torch={torch.get_num_threads()}")
                 + f"; seed={args.seed}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def deep_iters(iters: int) -> int:
    """DeepConvNet's training iterations per run: the book's NumPy version is ~10x slower."""
    return max(1, iters // 5)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Benchmark training and inference throughput of cconv's SimpleConvNet and "
                    "DeepConvNet against the book's NumPy algorithm and, optionally, PyTorch.",
        epilog="Example: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
               "python benchmarks/bench_train.py --torch --threads 2 --profile")
    ap.add_argument("--iters", type=int, default=None,
                    help="iterations per timed run for SimpleConvNet (default 10, 3 with "
                         "--quick); DeepConvNet runs a fifth of it (at least 1); inference "
                         "runs as many as training")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per implementation (default 5, or 2 with --quick)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed warm-up iterations per implementation and row (default 2, "
                         "1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="few iterations and runs (smoke test)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for cconv, torch and NumPy's BLAS (default 2)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="threads for NumPy's BLAS through threadpoolctl (default: --threads)")
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    ap.add_argument("--nets", default="simple,deep",
                    help="comma-separated subset of: simple,deep (default both)")
    ap.add_argument("--torch", action="store_true",
                    help="also time PyTorch (if installed) side by side")
    ap.add_argument("--profile", action="store_true",
                    help="print a per-layer profile of cconv's networks")
    add_pause_arg(ap)
    add_retry_args(ap, default_retries=1)
    ap.add_argument("--seed", type=int, default=0, help="random seed of the batch and weights")
    args = ap.parse_args(argv)
    if args.iters is None:
        args.iters = 3 if args.quick else 10
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.blas_threads is None:
        args.blas_threads = args.threads
    if min(args.iters, args.repeat, args.threads, args.blas_threads) < 1:
        ap.error("--iters, --repeat, --threads and --blas-threads must be >= 1")
    if min(args.warmup, args.retries, args.retry_wait) < 0:
        ap.error("--warmup, --retries and --retry-wait must be >= 0")
    check_pause_args(ap, args)
    args.nets = parse_choices(ap, args.nets, NET_NAMES, "net")
    if not args.nets:
        ap.error(f"--nets: choose at least one of {list(NET_NAMES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    modules = import_modules("SimpleConvNet", args.torch, args.threads)
    if modules is None:
        return 2
    cconv, torch = modules
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")  # for the whole run
    except ImportError:
        print("warning: threadpoolctl is not installed: NumPy's BLAS threads not set",
              file=sys.stderr)

    print(env_header(args, cconv, torch))
    print(flush=True)

    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    rows, sanity, profiles = [], [], []
    profile_kernels = []
    t_start = time.perf_counter()
    run_meter = OtherCpuMeter().__enter__()
    for net in args.nets:
        train_iters = args.iters if net == "simple" else deep_iters(args.iters)
        for dtype in dtypes:
            impls = build_impls(net, dtype, args.seed, cconv, torch)
            sanity.append(sanity_check(impls, args.seed))
            for mode in (TRAIN, INFER):
                print(f"  ... {NET_NAMES[net]:<13} {dtype:<8} {mode}", end="", file=sys.stderr,
                      flush=True)
                t0 = time.perf_counter()
                rows.append(time_row(impls, mode, train_iters, args.repeat, args.warmup,
                                     args.retries, args.retry_wait, args.pause,
                                     args.rewarm_ms / 1e3))
                print(f"  {time.perf_counter() - t0:6.1f} s", file=sys.stderr, flush=True)
            if args.profile:
                prof_iters = max(train_iters, PROFILE_MIN_ITERS)
                prof, per_iter = profile_net(impls, prof_iters, cconv)
                profile_kernels = prof.kernels
                profiles.append(profile_report(impls, prof, per_iter, prof_iters))
            del impls
    elapsed = time.perf_counter() - t_start
    run_meter.__exit__(None, None, None)

    print(results_text(table(rows, torch is not None), LEGEND, elapsed, run_meter.value, rows))
    print()

    failed = sum(not ok for ok, _ in sanity)
    print("Sanity check (same batch, cconv's initial parameters copied into the others; "
          "training loss with the same dropout masks): "
          + ("all passed" if not failed else f"{failed} FAILURE(S)"))
    for ok, line in sanity:
        print(f"  {'ok  ' if ok else 'FAIL'} {line}")
    print()

    if profiles:
        print("Where the time goes: per-layer profile of cconv's training iteration")
        print("=" * 68)
        print(textwrap.fill(PROFILE_NOTE.format(kernels=", ".join(profile_kernels)), 88))
        for p in profiles:
            print()
            print(p)
        print()

    report, _ = targets_report(rows, args.threads,
                               torch.get_num_threads() if torch is not None else None)
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
