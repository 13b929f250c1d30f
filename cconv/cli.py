"""The ``cconv`` command: train, evaluate and look inside the book's CNNs.

::

    cconv train [--net simple|lenet|deep|alexnet] [--dataset mnist|fashion-mnist|sample]
                [--epochs N] [--batch-size N] [--optimizer adam|sgd|...] [--lr X]
                [--dtype float32|float64] [--seed N] [--out DIR] [--resume]
    cconv evaluate PARAMS [--net ...] [--dataset ...] [--out DIR]
    cconv visualize PARAMS [--net ...] [--dataset ...] [--index I] [--out DIR]
    cconv bench [kernel benchmark options]

``python -m cconv`` is the same command. Pictures are written headless
(matplotlib's Agg backend); ``--show`` also opens them in windows. ``--quiet``
prints nothing but errors and ``--json`` prints one JSON object on stdout.
Bad arguments (a negative epoch count, an unknown net, a missing or corrupt
params file, a params file of another net) exit with status 2 and one line on
stderr; a data set that is neither on disk nor downloadable exits with 1.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from cconv import datasets, params_io
from cconv._atomic import atomic_write_json, check_writable_dir
from cconv.nets import NETWORKS, AlexNet, DeepConvNet, LeNet, SimpleConvNet, load_network
from cconv.optim import OPTIMIZERS

__all__ = ["main"]

#: ``--net`` choices.
NET_CLASSES = {"simple": SimpleConvNet, "lenet": LeNet, "deep": DeepConvNet, "alexnet": AlexNet}
NET_CHOICES = {cls.__name__: choice for choice, cls in NET_CLASSES.items()}
DATASET_CHOICES = ("mnist", "fashion-mnist", "sample")

#: The book's training settings (ch07/train_convnet.py, ch08/train_deepnet.py).
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 100
DEFAULT_OPTIMIZER = "adam"
DEFAULT_LR = 0.001
DEFAULT_EVAL_SAMPLES = 1000

#: Files ``cconv train`` writes into ``--out``.
PARAMS_FILE = "params.npz"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"

#: Settings that a ``--resume`` must repeat (the checkpoint was made with them).
RESUME_SETTINGS = ("net", "dataset", "data_dir", "dtype", "batch_size", "optimizer", "lr", "seed")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump), exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ----------------------------------------------------------------------------
# Argument types
# ----------------------------------------------------------------------------


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _choice(options):
    """Case- and ``_``/``-``-insensitive choice among ``options``."""

    def parse(text):
        key = text.strip().lower().replace("_", "-")
        if key not in options:
            raise argparse.ArgumentTypeError(
                f"expected one of {', '.join(options)}, got {text!r}"
            )
        return key

    parse.__name__ = "choice"
    return parse


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------


class _Console:
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


def _save_figures(console, show, figures):
    """Report the saved pictures; with ``--show``, open them in windows."""
    for path in figures.values():
        console.say(f"wrote {path}")
    if show:
        import matplotlib.pyplot as plt

        for fig in figures:
            plt.figure(fig)  # hand the (pyplot-free) figure to pyplot's window manager
        plt.show()


# ----------------------------------------------------------------------------
# Shared steps
# ----------------------------------------------------------------------------


def _load_data(args, console, name):
    try:
        return datasets.load_dataset(
            name,
            data_dir=args.data_dir,
            download=not args.no_download,
            progress=not args.quiet,
            log=console.note,
        )
    except FileNotFoundError as exc:  # --data-dir lacks a file
        raise UsageError(f"--data-dir: {exc}") from exc
    except ValueError as exc:  # files that are not MNIST-shaped IDX files
        raise UsageError(str(exc)) from exc


def _output_dir(path, option="--out"):
    try:
        return check_writable_dir(path, f"{option} folder")
    except OSError as exc:
        raise UsageError(str(exc)) from exc


def _first_conv_weights(network):
    """``W1``, the first layer's filters (FN, C, FH, FW), of every cconv network."""
    return network.params["W1"]


def _dataset_of(params_path):
    """The data set recorded by ``cconv train`` beside ``params_path``, or None."""
    metrics_path = os.path.join(os.path.dirname(os.path.abspath(params_path)), METRICS_FILE)
    try:
        with open(metrics_path, encoding="utf-8") as f:
            name = json.load(f)["settings"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if name in DATASET_CHOICES else None


def _params_record(path, net_choice):
    """Check a params file before any data is loaded; return its record (None: the book's format).

    Raises :class:`UsageError` for a missing or corrupt file, a file of
    another network than ``--net``, or a file without a record and no ``--net``.
    """
    if not os.path.isfile(path):
        raise UsageError(f"PARAMS: no such file: {path!r}")
    try:
        _, meta = params_io.read_params(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"PARAMS: {path!r} is not a readable params file ({exc})") from exc
    if meta is None and net_choice is None:
        raise UsageError(
            f"PARAMS: {path!r} does not record its network (a book .pkl or a plain .npz): "
            f"say which with --net {'|'.join(NET_CLASSES)}"
        )
    saved = None if meta is None else meta.get("net")
    if net_choice is not None and saved in NETWORKS and saved != NET_CLASSES[net_choice].__name__:
        raise UsageError(
            f"PARAMS: {path!r} holds the parameters of a {saved}, not of a "
            f"{NET_CLASSES[net_choice].__name__} (--net {net_choice}); drop --net or "
            f"use --net {NET_CHOICES[saved]}"
        )
    return meta


def _open_network(path, meta, net_choice, input_dim):
    """The network of the params file ``path`` (checked by :func:`_params_record`)."""
    if meta is not None:
        try:
            return load_network(path)
        except ValueError as exc:
            raise UsageError(f"PARAMS: {exc}") from exc
    network = NET_CLASSES[net_choice](input_dim=input_dim)
    try:
        network.load_params(path, cast=True)
    except ValueError as exc:
        raise UsageError(f"PARAMS: {path!r} does not fit --net {net_choice}: {exc}") from exc
    return network


def _predict(network, x, batch_size=DEFAULT_BATCH_SIZE):
    """Predicted labels of ``x``, ``batch_size`` images at a time."""
    return np.concatenate([
        np.argmax(network.predict(x[start : start + batch_size]), axis=1)
        for start in range(0, x.shape[0], batch_size)
    ])


def _check_input(network, data, path):
    expected = tuple(network.config["input_dim"])
    if tuple(data.x_test.shape[1:]) != expected:
        raise UsageError(
            f"PARAMS: {path!r} is a network for {expected} images, but {data.name} images are "
            f"{tuple(data.x_test.shape[1:])}"
        )


# ----------------------------------------------------------------------------
# cconv train
# ----------------------------------------------------------------------------


def _build_network(args, input_dim, num_classes):
    cls = NET_CLASSES[args.net]
    return cls(input_dim=input_dim, output_size=num_classes, dtype=args.dtype, seed=args.seed)


def _check_resume(out, settings):
    """With ``--resume``, the settings must be those the checkpoints were made with."""
    try:
        with open(os.path.join(out, METRICS_FILE), encoding="utf-8") as f:
            saved = json.load(f).get("settings", {})
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: cannot read {METRICS_FILE} in {out!r} ({exc})") from exc
    changed = [
        f"--{key.replace('_', '-')} {saved.get(key)!r} -> {settings[key]!r}"
        for key in RESUME_SETTINGS
        if saved.get(key) != settings[key]
    ]
    if changed:
        raise UsageError(
            f"--resume: {out!r} was trained with other settings ({'; '.join(changed)}); "
            "repeat them, or train into another --out"
        )


def _train_metrics(settings, data, trainer, seconds, network):
    metrics = trainer.metrics()
    return {
        "settings": settings,
        "network": {"name": type(network).__name__, "config": network.config},
        "dataset": {
            "name": data.name,
            "requested": data.requested,
            "source": data.source,
            "fallback_reason": data.fallback_reason,
            "train_images": int(data.x_train.shape[0]),
            "test_images": int(data.x_test.shape[0]),
        },
        "epochs": [
            {key: entry[key] for key in ("epoch", "loss", "train_acc", "test_acc", "seconds",
                                         "train_seconds", "images_per_sec")}
            for entry in metrics["history"]
        ],
        "final_test_acc": metrics["final_test_acc"],
        "train_loss_list": metrics["train_loss_list"],
        "train_acc_list": metrics["train_acc_list"],
        "test_acc_list": metrics["test_acc_list"],
        "iterations": metrics["iterations"],
        "seconds": seconds,
    }


def _train(args, console):
    from cconv import plots
    from cconv.trainer import CheckpointError, Trainer, TrainingDiverged

    out = _output_dir(args.out)
    settings = {
        "net": args.net,
        "dataset": args.dataset,
        "data_dir": None if args.data_dir is None else os.path.abspath(args.data_dir),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "dtype": args.dtype,
        "seed": args.seed,
        "eval_samples": args.eval_samples,
    }
    if args.resume:
        _check_resume(out, settings)
    elif os.path.isdir(os.path.join(out, CHECKPOINT_DIR)) and os.listdir(
        os.path.join(out, CHECKPOINT_DIR)
    ):
        raise UsageError(
            f"--out: {out!r} holds checkpoints of an earlier run; continue it with --resume, "
            "or train into another folder"
        )

    data = _load_data(args, console, args.dataset)
    dtype = np.dtype(args.dtype)
    x_train, x_test = data.x_train.astype(dtype, copy=False), data.x_test.astype(dtype, copy=False)
    if args.seed is not None:
        np.random.seed(args.seed)  # the batches and the book's global-RNG randomness
    try:
        network = _build_network(args, x_train.shape[1:], len(data.classes))
    except ValueError as exc:
        raise UsageError(f"--net {args.net}: {exc}") from exc

    figures = {}
    before_path = os.path.join(out, "filters_before.png")
    if not (args.resume and os.path.exists(before_path)):
        figures[plots.filters_figure(_first_conv_weights(network), before_path)] = before_path
    console.say(
        f"training {type(network).__name__} ({args.dtype}) on {data.name}: "
        f"{x_train.shape[0]} train / {x_test.shape[0]} test images, {args.epochs} epochs, "
        f"batch {args.batch_size}, {args.optimizer} lr {args.lr:g}"
    )
    eval_samples = args.eval_samples or None
    try:
        trainer = Trainer(
            network, x_train, data.t_train, x_test, data.t_test,
            epochs=args.epochs,
            mini_batch_size=args.batch_size,
            optimizer=args.optimizer,
            optimizer_param={"lr": args.lr},
            evaluate_sample_num_per_epoch=eval_samples,
            verbose=console.chatty,
            progress=sys.stderr if not args.quiet else False,
            checkpoint_dir=os.path.join(out, CHECKPOINT_DIR),
            resume=args.resume,
        )
    except CheckpointError as exc:
        raise UsageError(f"--resume: {exc}") from exc
    # metrics.json is written first with the settings, so that --resume can check them.
    start = time.perf_counter()
    atomic_write_json(os.path.join(out, METRICS_FILE), _train_metrics(settings, data, trainer, 0.0, network))
    try:
        trainer.train()
    except TrainingDiverged as exc:
        atomic_write_json(
            os.path.join(out, METRICS_FILE),
            _train_metrics(settings, data, trainer, time.perf_counter() - start, network),
        )
        raise UsageError(f"training stopped: {exc}") from exc
    seconds = time.perf_counter() - start

    params_path = os.path.join(out, PARAMS_FILE)
    network.save_params(params_path)
    metrics = _train_metrics(settings, data, trainer, seconds, network)
    atomic_write_json(os.path.join(out, METRICS_FILE), metrics)
    accuracy_path = os.path.join(out, "accuracy.png")
    figures[plots.accuracy_figure(trainer.train_acc_list, trainer.test_acc_list, accuracy_path)] = accuracy_path
    after_path = os.path.join(out, "filters_after.png")
    figures[plots.filters_figure(_first_conv_weights(network), after_path)] = after_path
    console.say(f"wrote {params_path}")
    console.say(f"wrote {os.path.join(out, METRICS_FILE)}")
    _save_figures(console, args.show, figures)
    console.result({
        "out": out,
        "params": params_path,
        "final_test_acc": metrics["final_test_acc"],
        "epochs": metrics["epochs"],
        "dataset": metrics["dataset"]["name"],
        "seconds": seconds,
    })
    return 0


# ----------------------------------------------------------------------------
# cconv evaluate
# ----------------------------------------------------------------------------


def _confusion_text(matrix, classes):
    width = max(5, *(len(str(c)) for c in classes), len(str(int(matrix.max(initial=0)))))
    head = "true\\pred".ljust(width + 2) + " ".join(str(c)[:width].rjust(width) for c in range(len(classes)))
    rows = [
        f"{str(classes[i])[:width].ljust(width + 2)}" + " ".join(f"{v:{width}d}" for v in row)
        for i, row in enumerate(matrix)
    ]
    return "\n".join([head, *rows])


def _evaluate(args, console):
    from cconv import plots

    meta = _params_record(args.params, args.net)
    dataset = args.dataset or _dataset_of(args.params) or "mnist"
    data = _load_data(args, console, dataset)
    network = _open_network(args.params, meta, args.net, data.x_test.shape[1:])
    _check_input(network, data, args.params)
    out = _output_dir(args.out or os.path.dirname(os.path.abspath(args.params)))

    x_test = data.x_test.astype(network.dtype, copy=False)
    predicted = _predict(network, x_test)
    true = data.t_test.astype(np.int64)
    accuracy = float(np.mean(predicted == true))
    matrix = plots.confusion_matrix(true, predicted, len(data.classes))
    console.say(
        f"{type(network).__name__} on the {data.name} test set ({len(true)} images): "
        f"accuracy {accuracy:.4f} ({int(np.sum(predicted != true))} misclassified)"
    )
    console.say(_confusion_text(matrix, data.classes))

    misclassified_path = os.path.join(out, "misclassified.png")
    confusion_path = os.path.join(out, "confusion.png")
    figures = {
        plots.misclassified_figure(
            data.x_test, true, predicted, misclassified_path, class_names=data.classes
        ): misclassified_path,
        plots.confusion_figure(matrix, confusion_path, class_names=data.classes): confusion_path,
    }
    _save_figures(console, args.show, figures)
    console.result({
        "params": os.path.abspath(args.params),
        "network": type(network).__name__,
        "dataset": data.name,
        "test_images": len(true),
        "accuracy": accuracy,
        "confusion_matrix": matrix.tolist(),
        "classes": list(data.classes),
        "misclassified_png": misclassified_path,
        "confusion_png": confusion_path,
    })
    return 0


# ----------------------------------------------------------------------------
# cconv visualize
# ----------------------------------------------------------------------------


def _visualize(args, console):
    from cconv import plots

    meta = _params_record(args.params, args.net)
    dataset = args.dataset or _dataset_of(args.params) or "mnist"
    data = _load_data(args, console, dataset)
    network = _open_network(args.params, meta, args.net, data.x_test.shape[1:])
    _check_input(network, data, args.params)
    if args.index >= data.x_test.shape[0]:
        raise UsageError(
            f"--index: expected an index below {data.x_test.shape[0]} (the test images), got {args.index}"
        )
    out = _output_dir(args.out or os.path.dirname(os.path.abspath(args.params)))

    image = data.x_test[args.index].astype(network.dtype, copy=False)
    label = data.classes[int(data.t_test[args.index])]
    filters_path = os.path.join(out, "filters.png")
    activations_path = os.path.join(out, "activations.png")
    figures = {
        plots.filters_figure(_first_conv_weights(network), filters_path): filters_path,
        plots.activations_figure(
            network, image, activations_path,
            title=f"{type(network).__name__}: {data.name} test image {args.index} ({label})",
        ): activations_path,
    }
    _save_figures(console, args.show, figures)
    console.result({
        "params": os.path.abspath(args.params),
        "network": type(network).__name__,
        "dataset": data.name,
        "index": args.index,
        "label": label,
        "layers": [
            {"name": name, "shape": list(values.shape)}
            for name, values in plots.layer_activations(network, image)
        ],
        "filters_png": filters_path,
        "activations_png": activations_path,
    })
    return 0


# ----------------------------------------------------------------------------
# cconv bench
# ----------------------------------------------------------------------------


def _bench(bench_args):
    """``cconv bench ARGS``: the kernel benchmark, which parses ``ARGS`` itself."""
    from cconv._bench.kernels import main as bench_main

    try:
        return bench_main(bench_args)
    except SystemExit as exc:  # its argparse: --help, or a bad option (status 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


# ----------------------------------------------------------------------------
# The parser
# ----------------------------------------------------------------------------


def _add_common(parser, *, data=True):
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


def _add_params_command(subparsers, name, help_text, func):
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("params", metavar="PARAMS",
                        help="a params file written by 'cconv train' (or the book's .pkl with --net)")
    parser.add_argument("--net", type=_choice(tuple(NET_CLASSES)),
                        help="the network of PARAMS, for files that do not record it")
    parser.add_argument("--dataset", type=_choice(DATASET_CHOICES),
                        help="test set (default: the one recorded beside PARAMS, else mnist)")
    parser.add_argument("--out", metavar="DIR", help="where the pictures go (default: PARAMS's folder)")
    _add_common(parser)
    parser.set_defaults(func=func)
    return parser


def build_parser():
    """The ``cconv`` argument parser."""
    parser = _ArgumentParser(
        prog="cconv",
        description="Train, evaluate and look inside the book's convolutional networks.",
    )
    from cconv import __version__

    parser.add_argument("--version", action="version", version=f"cconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = subparsers.add_parser(
        "train", help="train a network and save it with its metrics and pictures",
        description="Train a network (the book's settings by default: SimpleConvNet, MNIST, "
        "20 epochs, batch 100, Adam lr 0.001) and write params.npz, metrics.json, "
        "accuracy.png, filters_before.png and filters_after.png into --out.",
    )
    train.add_argument("--net", type=_choice(tuple(NET_CLASSES)), default="simple",
                       help="simple (default), lenet, deep or alexnet")
    train.add_argument("--dataset", type=_choice(DATASET_CHOICES), default="mnist",
                       help="mnist (default), fashion-mnist or sample (bundled, offline)")
    train.add_argument("--epochs", type=_int_at_least(1), default=DEFAULT_EPOCHS)
    train.add_argument("--batch-size", type=_int_at_least(1), default=DEFAULT_BATCH_SIZE)
    train.add_argument("--optimizer", type=_choice(tuple(OPTIMIZERS)), default=DEFAULT_OPTIMIZER,
                       help=f"{', '.join(OPTIMIZERS)} (default {DEFAULT_OPTIMIZER})")
    train.add_argument("--lr", type=_positive_float, default=DEFAULT_LR, help="learning rate")
    train.add_argument("--dtype", type=_choice(("float32", "float64")), default="float64",
                       help="float64 (default, as the book) or float32 (faster)")
    train.add_argument("--seed", type=_int_at_least(0),
                       help="seed of the weights, the batches and dropout")
    train.add_argument("--eval-samples", type=_int_at_least(0), default=DEFAULT_EVAL_SAMPLES,
                       help="images of each set for the per-epoch accuracies (0: all)")
    train.add_argument("--out", metavar="DIR", default="cconv-train",
                       help="output folder (default ./cconv-train)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the last checkpoint in --out")
    _add_common(train)
    train.set_defaults(func=_train)

    evaluate = _add_params_command(
        subparsers, "evaluate",
        "test accuracy, a confusion matrix and misclassified.png of a trained network", _evaluate,
    )
    del evaluate
    visualize = _add_params_command(
        subparsers, "visualize",
        "filters.png and activations.png (feature maps of one test image through each layer)",
        _visualize,
    )
    visualize.add_argument("--index", type=_int_at_least(0), default=0,
                           help="which test image (default 0)")

    # Listed for --help; main() hands "cconv bench ..." to the benchmark's own parser.
    subparsers.add_parser("bench", help="run the kernel benchmark table (see 'cconv bench --help')")
    return parser


def main(argv=None):
    """Run the ``cconv`` command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        console = _Console(args.quiet, args.json)
        if not args.show:
            os.environ.setdefault("MPLBACKEND", "Agg")
        return args.func(args, console)
    except UsageError as exc:
        print(f"cconv: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except datasets.DatasetUnavailableError as exc:
        print(f"cconv: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        print("cconv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
