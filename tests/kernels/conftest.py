"""The fuzz tally of ``test_fuzz.py``: examples run per kernel, and how each ended.

``test_fuzz.py`` records every example it runs through the session fixture
``fuzz_tally``: "checked" (the kernel returned, and the result matched the
NumPy reference) or "refused" (it raised ValueError or TypeError, as it
should have). At the end of the session the counts are printed as a table
and, when ``$CCONV_FUZZ_REPORT`` names a file, written there as JSON
(atomically: a temporary file in the same folder, then ``os.replace``).
"""

import collections
import os

import pytest

from cconv._atomic import atomic_write_json

OUTCOMES = ("checked", "refused")

_TALLY_KEY = pytest.StashKey()


class FuzzTally:
    """Examples run per kernel and per outcome (see ``OUTCOMES``)."""

    def __init__(self):
        self.counts = collections.defaultdict(collections.Counter)

    def record(self, kernel, outcome):
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        self.counts[kernel][outcome] += 1

    def as_dict(self):
        """``{kernel: {"examples": n, "checked": n, "refused": n}}``, kernels sorted."""
        return {
            kernel: {"examples": sum(counts[o] for o in OUTCOMES), **{o: counts[o] for o in OUTCOMES}}
            for kernel, counts in sorted(self.counts.items())
        }

    def table(self):
        """The counts as lines of text, with a total."""
        rows = [(k, c["examples"], c["checked"], c["refused"]) for k, c in self.as_dict().items()]
        rows.append(("total", *(sum(r[i] for r in rows) for i in (1, 2, 3))))
        header = ("kernel", "examples", "checked against reference", "refused (ValueError/TypeError)")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
        lines = ["  ".join(str(v).rjust(w) if i else str(v).ljust(w)
                           for i, (v, w) in enumerate(zip(row, widths))) for row in [header, *rows]]
        return lines


def _tally(config):
    if _TALLY_KEY not in config.stash:
        config.stash[_TALLY_KEY] = FuzzTally()
    return config.stash[_TALLY_KEY]


@pytest.fixture(scope="session")
def fuzz_tally(pytestconfig):
    """The session's :class:`FuzzTally` (session-scoped, so hypothesis can share it)."""
    return _tally(pytestconfig)


def pytest_terminal_summary(terminalreporter, config):
    tally = config.stash.get(_TALLY_KEY, None)
    if tally is None or not tally.counts:
        return
    terminalreporter.write_sep("-", "fuzz: examples per kernel")
    for line in tally.table():
        terminalreporter.write_line(line)
    report = os.environ.get("CCONV_FUZZ_REPORT")
    if report:
        atomic_write_json(report, {
            "examples_per_test": os.environ.get("CCONV_FUZZ_EXAMPLES", "150"),
            "seed": os.environ.get("CCONV_FUZZ_SEED"),
            "kernels": tally.as_dict(),
        })
        terminalreporter.write_line(f"fuzz counts written to {report}")
