"""The progress bar (:mod:`cconv._progress`): lines on a non-terminal stream, paused time, ETA, disabled, interrupted.

The trainer's use of the bar is tested in ``test_trainer.py``.
"""

import io

import pytest

from cconv._progress import ProgressBar


def test_progress_bar_excludes_paused_time_and_can_be_disabled():
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(4, label="epoch 1/1", stream=stream, percent_step=50, clock=lambda: now[0])
    for step in range(4):
        now[0] += 1.0
        if step == 0:
            with bar.paused():
                now[0] += 10.0  # an evaluation pass
        bar.update(items=100, loss=float(step))
        if step == 1:
            assert bar.eta() == pytest.approx(2.0)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "epoch 1/1  2/4 [##########----------]  loss 0.5000  100 img/s  ETA 0:02",
        "epoch 1/1  4/4 [####################]  loss 1.5000  100 img/s  0:04",
    ]
    quiet = io.StringIO()
    with ProgressBar(3, stream=quiet, enabled=False) as off:
        off.update(items=1, loss=1.0)
    assert quiet.getvalue() == ""


def test_interrupted_bar_prints_its_last_state():
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with ProgressBar(10, stream=stream, percent_step=50) as bar:
            bar.update(items=5, loss=2.0)
            raise KeyboardInterrupt
    assert stream.getvalue().splitlines()[-1].startswith(" 1/10 [##")
