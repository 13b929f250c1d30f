"""Helpers shared by the benchmark scripts beside this file (not part of cconv).

* :func:`time_interleaved` -- interleaved timing of several implementations
  (a pause and untimed re-warm calls before each sample; ``--pause`` and
  ``--rewarm-ms``: :func:`add_pause_arg`);
* :class:`OtherCpuMeter`, :data:`CONTENTION_WARN`, :func:`least_contended` --
  detection of a busy machine (other processes using the CPUs) and re-timing;
* :func:`env_lines` -- the environment part of a benchmark's header (versions,
  CPU, thread pools as threadpoolctl sees them, OpenBLAS/OpenMP variables);
* :func:`format_table` and the ``fmt_*`` cell formatters;
* :func:`import_modules`, :func:`add_retry_args`, :func:`parse_choices`.
"""

from __future__ import annotations

import gc
import os
import platform
import re
import sys
import time
from collections.abc import Callable

import numpy as np

__all__ = [
    "CONTENTION_WARN",
    "DEFAULT_PAUSE",
    "DEFAULT_REWARM",
    "OtherCpuMeter",
    "RowStats",
    "add_pause_arg",
    "check_pause_args",
    "add_retry_args",
    "contention_summary",
    "results_text",
    "env_lines",
    "fmt_busy",
    "fmt_f",
    "fmt_ms",
    "fmt_x",
    "format_table",
    "import_modules",
    "least_contended",
    "parse_choices",
    "time_interleaved",
    "usable_cpus",
]

CONTENTION_WARN = 0.05  # flag rows during which other processes used > 5% of the CPUs


# --------------------------------------------------------------------------------------
# Timing and contention
# --------------------------------------------------------------------------------------


#: Default pause before each timed sample (seconds): OpenBLAS's worker threads spin
#: for about 0.1 s after a call and slow down whatever runs next on a 2-core machine.
DEFAULT_PAUSE = 0.2
#: Default least duration of the untimed re-warm calls after that pause (seconds): on this
#: VM a core that idled through the pause needs ~10 ms of work before calls run at full
#: speed again (im2col of (100,1,28,28) 5x5: 0.75 ms warm, 4-8 ms for the first call
#: after the pause, ~4 ms for the second; 10-20 ms of calls bring it back to 0.75 ms).
DEFAULT_REWARM = 0.02


def time_interleaved(impls: dict, repeat: int, warmup: int = 1, pause: float = DEFAULT_PAUSE,
                     rewarm=True, number: int = 1, rewarm_s: float = DEFAULT_REWARM) -> dict:
    """Time each callable ``repeat`` times, interleaved; return {name: [seconds]}.

    Every repetition takes one sample of each implementation, in turn; the
    first implementation of the turn rotates so that no implementation always
    runs right after the same other one.  ``warmup`` untimed repetitions (one
    call of each implementation, rotated likewise, no pause) come first.

    Each timed sample is taken thus:

    1. sleep ``pause`` seconds (0: none), so that the thread pools left
       spinning by the previous implementation (OpenBLAS spins about 0.1 s
       after a call, OpenMP runtimes a little) have gone idle and take no core
       from this one;
    2. unless ``rewarm`` is False, untimed calls -- of the same
       implementation, or of ``rewarm[name]`` when ``rewarm`` is a dict of
       callables (e.g. one iteration of a run that ``impls[name]`` repeats) --
       at least one, and more until ``rewarm_s`` seconds have passed, because
       a core that idled through the pause takes a few ms to wake up (one
       call of a 1 ms kernel is not enough: see :data:`DEFAULT_REWARM`);
    3. ``number`` consecutive calls, timed together; the sample is their mean
       (seconds per call).  The result of each call is dropped before the
       next call; with ``number`` > 1 the freeing of all results but the
       last falls inside the timed span, as in a loop that makes them.

    The last result of a sample is dropped after the clock stops (its
    deallocation is not timed).  The garbage collector is off meanwhile.
    """
    if repeat < 1 or warmup < 0 or number < 1 or pause < 0 or rewarm_s < 0:
        raise ValueError("time_interleaved: need repeat >= 1, warmup >= 0, number >= 1, "
                         "pause >= 0 and rewarm_s >= 0")
    names = list(impls)
    if isinstance(rewarm, dict):
        rewarm_fns = {n: rewarm.get(n, impls[n]) for n in names}
    elif rewarm:
        rewarm_fns = dict(impls)
    else:
        rewarm_fns = {}
    times = {n: [] for n in names}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(warmup + repeat):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                fn = impls[name]
                if r < warmup:
                    res = fn()
                    del res
                    continue
                if pause > 0:
                    time.sleep(pause)
                if name in rewarm_fns:
                    warm = rewarm_fns[name]
                    t_end = time.perf_counter() + rewarm_s
                    while True:
                        res = warm()
                        del res
                        if time.perf_counter() >= t_end:
                            break
                res = None
                t0 = time.perf_counter()
                for _ in range(number):
                    res = None
                    res = fn()
                t1 = time.perf_counter()
                del res
                times[name].append((t1 - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def add_pause_arg(ap) -> None:
    """The ``--pause`` and ``--rewarm-ms`` options of :func:`time_interleaved`."""
    ap.add_argument("--pause", type=float, default=DEFAULT_PAUSE, metavar="SECONDS",
                    help="sleep before each timed sample, so that thread pools left spinning "
                         "by the previous implementation (OpenBLAS: ~0.1 s) do not slow it "
                         f"down (default {DEFAULT_PAUSE}; 0 disables the pause)")
    ap.add_argument("--rewarm-ms", type=float, default=DEFAULT_REWARM * 1e3, metavar="MS",
                    help="after the pause, untimed calls of the same implementation (at least "
                         "one) for this long, to wake the cores up again "
                         f"(default {DEFAULT_REWARM * 1e3:g})")


def check_pause_args(ap, args) -> None:
    """``ap.error`` on a negative ``--pause`` or ``--rewarm-ms``."""
    if args.pause < 0 or args.rewarm_ms < 0:
        ap.error("--pause and --rewarm-ms must be >= 0")


class OtherCpuMeter:
    """Share of the machine's CPU time used by *other* processes (Linux /proc/stat).

    Busy time of all CPUs (from /proc/stat) minus this process's own CPU time
    (all its threads and its finished child processes, ``os.times``), divided
    by wall time x usable CPUs.  A benchmark that competes with other work
    for 2 cores is not trustworthy; rows
    measured while others used more than a few percent are flagged.  ``value``
    is None where /proc/stat is unavailable.
    """

    def __init__(self):
        self.value = None
        self._t0 = None

    @staticmethod
    def _busy_seconds():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
        busy = sum(vals) - vals[3] - vals[4]  # minus idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own(t) -> float:
        # This process's threads and its finished (waited-for) child processes, such as
        # a benchmark's measuring children: not "other" processes.
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        try:
            t = os.times()
            self._t0 = (time.perf_counter(), self._busy_seconds(), self._own(t))
        except (OSError, ValueError, AttributeError):
            self._t0 = None
        return self

    def __exit__(self, *exc):
        if self._t0 is None:
            return False
        try:
            t = os.times()
            wall = time.perf_counter() - self._t0[0]
            busy = self._busy_seconds() - self._t0[1]
            own = self._own(t) - self._t0[2]
            self.value = max(busy - own, 0.0) / (wall * usable_cpus())
        except (OSError, ValueError, ZeroDivisionError):
            self.value = None
        return False


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class RowStats:
    """What a result row derives from ``med`` ({implementation: median seconds}) and ``other_cpu``.

    A mixin (no fields): the row defines ``med`` and ``other_cpu`` (the share
    of the CPUs other processes used while it was timed, or None).  Ratios are
    against the implementation named ``"cconv"``.
    """

    @property
    def contended(self) -> bool:
        return self.other_cpu is not None and self.other_cpu > CONTENTION_WARN

    def ratio(self, other: str) -> float | None:
        """``other``'s median time over cconv's (> 1: cconv faster), or None."""
        if "cconv" in self.med and other in self.med:
            return self.med[other] / self.med["cconv"]
        return None


def least_contended(measure: Callable[[], tuple], retries: int, wait: float) -> tuple:
    """Run ``measure()`` -> ``(other_cpu, result)``; re-run while the machine was busy.

    While other processes used more than :data:`CONTENTION_WARN` of the CPUs
    during the measurement, wait ``wait`` seconds and measure again, at most
    ``retries`` times; return the least contended ``(other_cpu, result)``.
    A note for each retry goes to stderr.
    """
    best = measure()
    for _ in range(retries):
        if best[0] is None or best[0] <= CONTENTION_WARN:
            break
        print(f"  [busy {100 * best[0]:.0f}%, retrying]", end="", file=sys.stderr, flush=True)
        time.sleep(wait)
        again = measure()
        if again[0] is not None and again[0] < best[0]:
            best = again
    return best


def add_retry_args(ap, default_retries: int) -> None:
    """The ``--retries`` and ``--retry-wait`` options of :func:`least_contended`."""
    ap.add_argument("--retries", type=int, default=default_retries,
                    help="re-time a row up to this many times when other processes used "
                         f"> {100 * CONTENTION_WARN:.0f}%% of the CPUs meanwhile, keeping "
                         f"the least contended measurement (default {default_retries}; "
                         "0 disables)")
    ap.add_argument("--retry-wait", type=float, default=10.0, metavar="SECONDS",
                    help="pause before such a retry (default 10)")


def parse_choices(ap, text: str, choices, what: str) -> list:
    """A comma-separated option value as a list; ``ap.error`` on a name not in ``choices``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in choices]
    if bad:
        ap.error(f"unknown {what}(s) {bad}; choose from {list(choices)}")
    return names


def contention_summary(run_other_cpu: float | None, rows: list) -> str | None:
    """The line on other processes' CPU use during the whole run (rows have ``contended``)."""
    if run_other_cpu is None:
        return None
    contended = [r for r in rows if r.contended]
    return (f"Other processes used {100 * run_other_cpu:.1f}% of the CPUs during the run; "
            f"{len(contended)} of {len(rows)} rows were timed while they used > "
            f"{100 * CONTENTION_WARN:.0f}%" + (" -- WARNING: rerun on a quiet machine."
                                               if contended else "."))


def results_text(table_text: str, legend: str, elapsed: float, run_other_cpu: float | None,
                 rows: list) -> str:
    """The results table, its legend, the run's duration and its contention summary."""
    lines = [table_text, "", legend, f"(measured in {elapsed:.0f} s)"]
    summary = contention_summary(run_other_cpu, rows)
    if summary is not None:
        lines.append(summary)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------


def import_modules(required: str, torch_requested: bool, threads: int | None):
    """``(cconv, torch)`` with their thread counts set, or None after an error message.

    cconv must be the installed package (it must have ``required``; a bare
    source folder on sys.path does not).  ``torch`` is None unless requested
    and installed.  ``threads`` (None: leave cconv's setting) goes to
    ``cconv.set_num_threads`` and cconv's resulting count to
    ``torch.set_num_threads``.
    """
    try:
        import cconv
    except ImportError as exc:
        print(f"error: cannot import cconv ({exc}); install it first, e.g. "
              f"pip install -e .", file=sys.stderr)
        return None
    if not hasattr(cconv, required):
        print(f"error: the imported 'cconv' ({getattr(cconv, '__path__', None)}) is not the "
              f"cconv package (a bare directory on sys.path?)", file=sys.stderr)
        return None
    torch = None
    if torch_requested:
        try:
            import torch
        except ImportError:
            torch = None
    if threads is not None:
        cconv.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(cconv.get_num_threads())
    return cconv, torch


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def fmt_ms(t: float | None) -> str:
    if t is None:
        return "-"
    ms = t * 1e3
    if ms >= 1000:
        return f"{ms:.0f}"
    if ms >= 100:
        return f"{ms:.1f}"
    if ms >= 10:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_x(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def fmt_f(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def fmt_busy(other_cpu: float | None) -> str:
    """The busy% cell: share of the CPUs other processes used, '~' when over the limit."""
    if other_cpu is None:
        return "-"
    return f"{100 * other_cpu:.0f}" + (" ~" if other_cpu > CONTENTION_WARN else "")


def format_table(cols: list, body: list, groups: list | None = None) -> str:
    """A text table: ``cols`` are (title, '<' or '>') pairs, ``body`` rows of cell strings.

    ``groups`` (one key per row) puts an empty line wherever the key changes.
    """
    widths = [max(len(c[0]), *(len(b[i]) for b in body)) if body else len(c[0])
              for i, c in enumerate(cols)]

    def fmt(cells):
        out = []
        for (_, al), w, cell in zip(cols, widths, cells):
            out.append(cell.ljust(w) if al == "<" else cell.rjust(w))
        return "  ".join(out).rstrip()

    hdr = fmt([c[0] for c in cols])
    lines = [hdr, "-" * len(hdr)]
    prev = None
    for i, b in enumerate(body):
        key = None if groups is None else groups[i]
        if prev is not None and key != prev:
            lines.append("")
        prev = key
        lines.append(fmt(b))
    return "\n".join(lines)


def env_lines(cconv, torch, torch_requested: bool) -> list:
    """The environment lines of a benchmark header (versions, CPU, thread pools, env vars).

    ``torch`` is the torch module or None; ``torch_requested`` says whether
    ``--torch`` was given (to report a missing torch).
    """
    lines = []
    ver = getattr(cconv, "__version__", "unknown")
    lines.append(f"cconv        : {ver}  ({getattr(cconv, '__file__', None)})")
    lines.append(f"openmp       : openmp_enabled()={cconv.openmp_enabled()}  "
                 f"cconv threads={cconv.get_num_threads()}")
    lines.append(f"numpy        : {np.__version__}")
    lines.append(f"python       : {platform.python_version()} ({platform.machine()}, "
                 f"{platform.system()} {platform.release()})")
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            if m:
                cpu = m.group(1)
    except OSError:
        pass
    lines.append(f"cpu          : {cpu}; {usable_cpus()} usable logical CPUs")
    if torch is not None:
        lines.append(f"torch        : {torch.__version__}  threads={torch.get_num_threads()}")
    elif torch_requested:
        lines.append("torch        : not installed (--torch ignored)")
    try:
        import threadpoolctl

        info = threadpoolctl.threadpool_info()
        lines.append(f"threadpoolctl {threadpoolctl.__version__}:")
        for d in info:
            bits = [f"internal_api={d.get('internal_api')}", f"version={d.get('version')}"]
            arch = d.get("architecture") or d.get("corename")
            if arch:
                bits.append(f"architecture={arch}")
            if d.get("threading_layer"):
                bits.append(f"threading_layer={d['threading_layer']}")
            bits.append(f"num_threads={d.get('num_threads')}")
            lines.append(f"  {d.get('user_api')}/{d.get('prefix')}: " + ", ".join(bits))
            lines.append(f"    {d.get('filepath')}")
    except ImportError:
        lines.append("threadpoolctl: not installed (pip install threadpoolctl for BLAS info)")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
        val = os.environ.get(var)
        lines.append(f"{var:<17}: " + ("not set" if val is None else f"set to {val!r}"))
    return lines
