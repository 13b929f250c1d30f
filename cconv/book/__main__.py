"""``python -m cconv.book SCRIPT [ARG ...]``: run one of the book's scripts on cconv.

``SCRIPT`` runs as ``python SCRIPT [ARG ...]`` runs it: as ``__main__``, with
``sys.argv`` holding the script (its absolute path, as ``__file__``) and its
arguments, and the script's folder on ``sys.path`` where Python puts it (instead of
the working directory that ``python -m`` put there). The one difference is that
:func:`cconv.book.shim_path` comes first on ``sys.path``, so ``common`` and
``dataset`` are cconv's (see :mod:`cconv.book`). ``--path`` prints that folder.

A script that cannot be opened exits with status 2 and one line on stderr, as
Python does; otherwise the exit status and traceback are the script's.
"""

import os
import runpy
import sys

from cconv.book import shim_path

PROG = "python -m cconv.book"
USAGE = f"usage: {PROG} SCRIPT [ARG ...]  |  {PROG} --path"
HELP = f"""{USAGE}

Run a script of the book "Deep Learning from Scratch" with cconv's shim of the
book's `common` and `dataset` packages first on sys.path, so that it runs on cconv.

  SCRIPT [ARG ...]  the script and its arguments (as `python SCRIPT [ARG ...]`)
  --path            print the shim folder (for PYTHONPATH) and exit
  -h, --help        show this help and exit"""


def run_script(script, args=()):
    """Run ``script`` as ``__main__`` with the shim first on ``sys.path``.

    Changes ``sys.path`` and ``sys.argv`` for good (this is the program's last act).
    """
    path = os.path.abspath(script)
    if not getattr(sys.flags, "safe_path", False):  # -P / PYTHONSAFEPATH: Python adds no folder
        # `python -m` put the working directory first; `python SCRIPT` puts the
        # script's folder there instead.
        if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.getcwd():
            sys.path[0] = os.path.dirname(path)
        else:
            sys.path.insert(0, os.path.dirname(path))
    sys.path.insert(0, shim_path())
    sys.argv = [path, *args]
    runpy.run_path(path, run_name="__main__")


def main(argv=None):
    """The command; returns its exit status (or the script's, raised as ``SystemExit``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    first = args[0]
    if first in ("-h", "--help"):
        print(HELP)
        return 0
    if first == "--path":
        print(shim_path())
        return 0
    if first.startswith("-"):
        print(f"{PROG}: unknown option {first!r} ({USAGE})", file=sys.stderr)
        return 2
    path = os.path.abspath(first)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:  # Python's own wording: "can't open file '...': [Errno 2] ..."
        print(f"{PROG}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
        return 2
    run_script(first, args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
