"""The ``cconv`` command: train, evaluate and look inside the book's CNNs.

::

    cconv train [--net simple|lenet|deep|alexnet] [--dataset mnist|fashion-mnist|sample]
                [--epochs N] [--batch-size N] [--optimizer adam|sgd|...] [--lr X]
                [--dtype float32|float64] [--seed N] [--out DIR] [--resume] [--distributed]
    cconv evaluate PARAMS [--net ...] [--dataset ...] [--out DIR]
    cconv visualize PARAMS [--net ...] [--dataset ...] [--index I] [--out DIR]
    cconv bench [kernel benchmark options]

``python -m cconv`` is the same command. Pictures are written headless
(matplotlib's Agg backend, without pyplot); ``--show`` also opens them in
windows. ``--quiet`` prints nothing but errors and ``--json`` prints one JSON
object on stdout. Bad arguments (a negative epoch count, an unknown net, a
missing or corrupt params file, a params file of another net) exit with status
2 and one line on stderr; a data set that is neither on disk nor downloadable
exits with 1, as does a file that cannot be written (a full disk: the line names
the file and, during ``cconv train``, the checkpoint to ``--resume`` from), an
interrupted run (Ctrl-C) with 130.

Accuracies of ``cconv train``: the book's trainer measures an epoch's
accuracies after the epoch's *first* step (``train_acc_list`` and
``test_acc_list`` in ``metrics.json``, as the book). ``cconv train`` also
measures them after the epoch's *last* step, on the same images (the first
``--eval-samples`` of each set): those are the ``train_acc`` and ``test_acc``
of each entry of ``epochs`` in ``metrics.json`` and of the line printed after
each epoch, and ``accuracy.png`` shows them against the number of epochs done
(the point at 0 is the book's first measurement, after one step).
``final_test_acc`` is measured on the whole test set, as ``cconv evaluate``
does.

``mpiexec -n K cconv train --distributed ...`` trains with K processes along
the one-process trajectory (:class:`cconv.trainer.Trainer` with ``comm``);
rank 0 alone prints and writes, and an error on any rank ends every rank
(:mod:`~cconv.cli._mpi`).

The package has one module per subcommand (:mod:`~cconv.cli.train`,
:mod:`~cconv.cli.evaluate`, :mod:`~cconv.cli.visualize`, :mod:`~cconv.cli.bench`),
:mod:`~cconv.cli.run_folder` for the files of a run folder, :mod:`~cconv.cli._mpi`
for the processes of ``--distributed``, and
:mod:`~cconv.cli._common` for what they share.

Speed: ``cconv train`` trains in float32 unless ``--dtype float64`` (the book's
dtype, and the Python API's default), and records the loss of each step's
gradient pass (before the update, as a PyTorch loop does) instead of running
the book trainer's second forward pass per step.
"""

import contextlib
import os
import sys

from cconv import datasets
from cconv.cli import _mpi, bench, evaluate, train, visualize
from cconv.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ArgumentParser,
    Console,
    Interrupted,
    UsageError,
)

__all__ = ["build_parser", "main"]


def build_parser():
    """The ``cconv`` argument parser."""
    from cconv import __version__

    parser = ArgumentParser(
        prog="cconv",
        description="Train, evaluate and look inside the book's convolutional networks.",
    )
    parser.add_argument("--version", action="version", version=f"cconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train.add_parser(subparsers)
    evaluate.add_parser(subparsers)
    visualize.add_parser(subparsers)
    # Listed for --help; main() hands "cconv bench ..." to the benchmark's own parser.
    subparsers.add_parser("bench", help="run the kernel benchmark table (see 'cconv bench --help')")
    return parser


def main(argv=None):
    """Run the ``cconv`` command; return its exit status (0 for ``--help`` and ``--version``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return bench.run(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version: argparse printed them
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:  # the same on every rank: nothing of MPI has started
        return _report(exc)
    console = Console(args.quiet, args.json)
    world = None
    try:
        if getattr(args, "distributed", False):
            world = _mpi.start(console)
            if not world.is_root:  # rank 0 alone prints
                console = Console(True, False)
        args.world = world
        status = args.func(args, console)
    except BaseException as exc:  # noqa: BLE001 -- each is reported below, or raised again
        if world is None:
            return _report(exc)
        return world.finish(exc, _report)
    return status


def _report(error, prefix="", quiet=False):
    """Print the one line of an expected ``error`` (not when ``quiet``); return the exit status.

    Anything else is raised again. ``prefix`` comes before the message
    (``"rank 1 of 3: "``).
    """
    def say(line):
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    if isinstance(error, UsageError):
        say(f"cconv: error: {prefix}{error}")
        return EXIT_USAGE
    if isinstance(error, datasets.DatasetUnavailableError):
        say(f"cconv: error: {prefix}{error}")
        return EXIT_UNAVAILABLE
    if isinstance(error, Interrupted):
        say(f"cconv: {prefix}interrupted {error}")
        return EXIT_INTERRUPTED
    if isinstance(error, KeyboardInterrupt):
        say(f"cconv: {prefix}interrupted")
        return EXIT_INTERRUPTED
    if isinstance(error, BrokenPipeError):  # stdout closed early (cconv ... | head): stop quietly
        # As the Python docs advise: no second error when the interpreter flushes stdout.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNAVAILABLE
    if isinstance(error, OSError):  # a file that cannot be read or written (disk full, permissions)
        say(f"cconv: error: {prefix}{error}")
        return EXIT_UNAVAILABLE
    raise error
