"""A small, dependency-free progress bar for training loops.

One bar covers one epoch (or any fixed number of steps)::

    epoch 3/20  240/600 [########------------]  loss 0.1342  5210 img/s  ETA 0:07

On a terminal (the stream's ``isatty()`` is true) the line is redrawn in place
with ``\\r``, at most every ``min_interval`` seconds. On anything else (a log
file, a pipe, ``io.StringIO``) no ``\\r`` is written: a full line is printed
each time another ``percent_step`` percent of the steps is done, and at the
end. A disabled bar writes nothing.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> with ProgressBar(4, label="epoch 1/1", stream=out, percent_step=50) as bar:
...     for _ in range(4):
...         bar.update(items=100, loss=0.5)
>>> lines = out.getvalue().splitlines()
>>> len(lines), "loss 0.5000" in lines[-1], "img/s" in lines[-1]
(2, True, True)
"""

import contextlib
import math
import shutil
import sys
import time

__all__ = ["ProgressBar", "format_seconds"]


def format_seconds(seconds):
    """``h:mm:ss`` (or ``m:ss`` under an hour); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _is_tty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class ProgressBar:
    """Progress of ``total`` steps: steps done, mean loss, items per second, ETA.

    Parameters
    ----------
    total : int
        Number of steps (e.g. iterations in the epoch).
    label : str
        Text at the start of the line (e.g. ``"epoch 3/20"``).
    stream : file-like, optional
        Where to write; default ``sys.stderr`` (looked up when the bar is made).
    enabled : bool
        ``False`` makes every method a no-op.
    unit : str
        What ``items`` counts, shown as ``<unit>/s``.
    percent_step : float
        On a non-terminal stream, print a line every this many percent.
    min_interval : float
        On a terminal, redraw at most this often (seconds); the last step is
        always drawn.
    width : int
        Characters of the ``[###---]`` gauge.
    clock : callable
        Returns seconds as a float (``time.perf_counter``); tests pass a fake.

    Notes
    -----
    The rate and the ETA leave out the time spent inside :meth:`paused`, so
    that an evaluation pass in the middle of an epoch does not lower the
    training speed shown.
    """

    def __init__(
        self,
        total,
        *,
        label="",
        stream=None,
        enabled=True,
        unit="img",
        percent_step=10.0,
        min_interval=0.1,
        width=20,
        clock=time.perf_counter,
    ):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.unit = unit
        self.percent_step = float(percent_step)
        self.min_interval = float(min_interval)
        self.width = int(width)
        self._clock = clock
        self._tty = self.enabled and _is_tty(self.stream)
        self.done = 0
        self.items = 0
        self._loss_sum = 0.0
        self._loss_count = 0
        self._start = clock()
        self._paused_seconds = 0.0
        self._last_draw = -math.inf
        self._drawn_width = 0  # characters of the bar now on a terminal line
        self._next_percent = self.percent_step
        self._closed = False

    # -- measurements ------------------------------------------------------

    @property
    def active_seconds(self):
        """Seconds since the bar started, minus the time spent paused."""
        return max(self._clock() - self._start - self._paused_seconds, 0.0)

    @property
    def rate(self):
        """Items per second so far (``None`` before any time has passed)."""
        seconds = self.active_seconds
        return self.items / seconds if seconds > 0 else None

    @property
    def mean_loss(self):
        """Mean of the losses given to :meth:`update` (``None`` if none)."""
        return self._loss_sum / self._loss_count if self._loss_count else None

    def eta(self):
        """Estimated seconds to finish (``None`` before the first step)."""
        if self.done == 0:
            return None
        return self.active_seconds / self.done * (self.total - self.done)

    # -- updates -----------------------------------------------------------

    def update(self, steps=1, *, items=0, loss=None):
        """Record ``steps`` more steps that processed ``items`` items; ``loss`` of the last one."""
        self.done = min(self.done + steps, self.total) if self.total else self.done + steps
        self.items += items
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_count += 1
        if not self.enabled or self._closed:
            return
        if self._tty:
            now = self._clock()
            if now - self._last_draw >= self.min_interval or self.done >= self.total:
                self._last_draw = now
                self._redraw(self._line(final=False))
        else:
            percent = 100.0 * self.done / self.total if self.total else 100.0
            if percent >= self._next_percent or self.done >= self.total:
                while self._next_percent <= percent:
                    self._next_percent += self.percent_step
                self._print_line(self._line(final=self.done >= self.total))

    @contextlib.contextmanager
    def paused(self):
        """Leave the time spent in this block out of the rate and the ETA."""
        start = self._clock()
        try:
            yield self
        finally:
            self._paused_seconds += self._clock() - start

    def clear(self):
        """Erase the bar from the terminal line so that other text can be printed.

        The next :meth:`update` draws it again. Does nothing off a terminal.
        """
        if self.enabled and self._tty and self._drawn_width:
            self._write("\r" + " " * self._drawn_width + "\r")
            self._drawn_width = 0

    def close(self):
        """Draw the final state and end the line. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        line = self._line(final=True)
        if self._tty:
            self._redraw(line)
            self._write("\n")
            self._drawn_width = 0
        elif self.done < self.total or self.total == 0:
            # update() printed the line of the last step; an unfinished bar has not
            self._print_line(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # -- rendering ---------------------------------------------------------

    def _line(self, final):
        digits = len(str(self.total))
        parts = [self.label] if self.label else []
        count = f"{self.done:>{digits}}/{self.total}"
        if self.width > 0 and self.total:
            filled = self.width * self.done // self.total
            count += " [" + "#" * filled + "-" * (self.width - filled) + "]"
        parts.append(count)
        loss = self.mean_loss
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        rate = self.rate
        if rate is not None and self.items:
            parts.append(f"{rate:.0f} {self.unit}/s")
        if final:
            parts.append(format_seconds(self.active_seconds))
        else:
            parts.append(f"ETA {format_seconds(self.eta())}")
        return "  ".join(parts)

    def _redraw(self, line):
        columns = shutil.get_terminal_size(fallback=(80, 24)).columns
        line = line[: max(columns - 1, 10)]
        padding = " " * max(self._drawn_width - len(line), 0)
        self._write("\r" + line + padding)
        self._drawn_width = len(line)

    def _print_line(self, line):
        self._write(line + "\n")

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop training
            self.enabled = False
