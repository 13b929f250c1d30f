"""What the subcommands share: errors and exit statuses, argument types, the console, pictures, data."""

import argparse
import json
import math
import sys

from cconv import datasets
from cconv._atomic import check_writable_dir
from cconv._validation import check_int
from cconv.nets import NETWORKS

#: ``--net`` choices: the short name of each network class, in the order of :data:`cconv.nets.NETWORKS`.
NET_CHOICES = {cls.short_name: cls for cls in NETWORKS.values()}
DATASET_CHOICES = ("mnist", "fashion-mnist", "sample")
#: Images predicted at a time by ``evaluate`` (and the book's batch size).
DEFAULT_BATCH_SIZE = 100

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2."""


class Interrupted(Exception):
    """Ctrl-C during ``cconv train``: the message says what is saved; exit status 130."""


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump), exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ----------------------------------------------------------------------------
# Argument types
# ----------------------------------------------------------------------------


def int_at_least(minimum, maximum=None):
    """An argparse type: an integer in ``[minimum, maximum]`` (checked by :func:`cconv._validation.check_int`)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        try:
            return check_int(value, "the value", minimum=minimum, maximum=maximum)
        except ValueError:
            expected = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"expected an integer {expected}, got {value}") from None

    parse.__name__ = "integer"
    return parse


def positive_float(text):
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def choice(options):
    """An argparse type: one of ``options``, in any case, ``_`` and ``-`` alike."""

    def parse(text):
        key = text.strip().lower().replace("_", "-")
        if key not in options:
            raise argparse.ArgumentTypeError(
                f"expected one of {', '.join(options)}, got {text!r}"
            )
        return key

    parse.__name__ = "choice"
    return parse


def add_output_options(parser, *, data=True):
    """``--quiet``, ``--json``, ``--show`` and (with ``data``) ``--data-dir``, ``--no-download``."""
    output = parser.add_argument_group("output")
    output.add_argument("--quiet", action="store_true", help="print nothing but errors")
    output.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    output.add_argument("--show", action="store_true", help="also open the pictures in windows")
    if data:
        group = parser.add_argument_group("data")
        group.add_argument("--data-dir", metavar="DIR",
                           help="read the four IDX files from DIR (no download)")
        group.add_argument("--no-download", action="store_true",
                           help="use only files on disk (MNIST falls back to the sample)")


def add_params_command(subparsers, name, help_text, func):
    """Add subcommand ``name`` taking ``PARAMS``, ``--net``, ``--dataset`` and ``--out``; return its parser."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("params", metavar="PARAMS",
                        help="a params file written by 'cconv train' (or the book's .pkl with --net)")
    parser.add_argument("--net", type=choice(tuple(NET_CHOICES)),
                        help="the network of PARAMS, for files that do not record it")
    parser.add_argument("--dataset", type=choice(DATASET_CHOICES),
                        help="test set (default: the one PARAMS was trained on, as recorded in "
                        "metrics.json beside it, with its --data-dir; else mnist)")
    parser.add_argument("--out", metavar="DIR", help="where the pictures go (default: PARAMS's folder)")
    add_output_options(parser)
    parser.set_defaults(func=func)
    return parser


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------


class Console:
    """Where the command's lines go: stdout for results, stderr for progress and notes."""

    def __init__(self, quiet, as_json):
        self.quiet = quiet
        self.as_json = as_json

    @property
    def chatty(self):
        """Print human-readable lines (neither ``--quiet`` nor ``--json``)."""
        return not (self.quiet or self.as_json)

    def say(self, text):
        """A result line on stdout (not with --quiet or --json)."""
        if self.chatty:
            print(text, flush=True)

    def note(self, text):
        """A note on stderr (not with --quiet)."""
        if not self.quiet:
            print(f"cconv: {text}", file=sys.stderr, flush=True)

    def result(self, obj):
        """The JSON object of ``--json`` on stdout."""
        if self.as_json:
            print(json.dumps(obj, indent=2, sort_keys=True), flush=True)


def plural(count, word):
    """``"1 epoch"``, ``"2 epochs"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


#: matplotlib backends that cannot open a window (``--show`` then only says so).
_NON_INTERACTIVE_BACKENDS = ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template")


def save_figures(console, show, figures):
    """Report the saved pictures ``{figure: path}``; with ``--show``, open them in windows."""
    for path in figures.values():
        console.say(f"wrote {path}")
    if show:
        _show_figures(console, figures)


def _show_figures(console, figures):
    """Open the (pyplot-free) ``figures`` in pyplot's windows, if its backend can."""
    import matplotlib.pyplot as plt

    backend = str(plt.get_backend()).lower()
    if backend in _NON_INTERACTIVE_BACKENDS:
        console.note(
            f"--show: matplotlib's backend {backend!r} cannot open windows (no display, or "
            "MPLBACKEND set to a file backend); the pictures are in the files above"
        )
        return
    for fig, path in figures.items():
        try:
            plt.figure(fig)  # matplotlib >= 3.11 adopts a figure made without pyplot
        except ValueError:  # older ones do not ("not managed by pyplot"): show the saved file
            image = plt.imread(path)
            window = plt.figure(figsize=(image.shape[1] / fig.dpi, image.shape[0] / fig.dpi),
                                dpi=fig.dpi)
            window.figimage(image)
    plt.show()


# ----------------------------------------------------------------------------
# Data and folders
# ----------------------------------------------------------------------------


def load_data(args, console, name, data_dir=None, data_dir_origin="--data-dir"):
    """The data set ``name`` (from ``data_dir`` if given), downloaded unless ``--no-download``."""
    try:
        return datasets.load_dataset(
            name,
            data_dir=data_dir,
            download=not args.no_download,
            progress=not args.quiet,
            log=console.note,
        )
    except FileNotFoundError as exc:  # the data folder lacks a file
        raise UsageError(f"{data_dir_origin}: {exc}") from exc
    except ValueError as exc:  # files that are not MNIST-shaped IDX files
        raise UsageError(str(exc)) from exc


def output_dir(path, option="--out"):
    """``path`` created if needed and checked writable; a :class:`UsageError` if it cannot be."""
    try:
        return check_writable_dir(path, f"{option} folder")
    except OSError as exc:
        raise UsageError(str(exc)) from exc
