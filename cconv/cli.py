"""The ``cconv`` command: train, evaluate and look inside the book's CNNs.

::

    cconv train [--net simple|lenet|deep|alexnet] [--dataset mnist|fashion-mnist|sample]
                [--epochs N] [--batch-size N] [--optimizer adam|sgd|...] [--lr X]
                [--dtype float32|float64] [--seed N] [--out DIR] [--resume]
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

Speed: ``cconv train`` trains in float32 unless ``--dtype float64`` (the book's
dtype, and the Python API's default), and records the loss of each step's
gradient pass (before the update, as a PyTorch loop does) instead of running
the book trainer's second forward pass per step.
"""

import argparse
import contextlib
import json
import math
import os
import sys
import time

import numpy as np

from cconv import datasets, params_io
from cconv._atomic import atomic_write_json, check_writable_dir, remove_stale_temp_files
from cconv.nets import NETWORKS, AlexNet, DeepConvNet, LeNet, SimpleConvNet, load_network
from cconv.optim import OPTIMIZERS
from cconv.trainer import CheckpointError, Trainer, TrainingDiverged

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
#: The files ``cconv train`` writes into ``--out``: a run killed while writing one
#: leaves its temporary file, which the next run into the folder removes (the
#: Trainer does the same for its checkpoints).
TRAIN_OUTPUTS = frozenset(
    {PARAMS_FILE, METRICS_FILE, "filters_before.png", "accuracy.png", "filters_after.png"}
)

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


def _int_at_least(minimum, maximum=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            expected = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"expected an integer {expected}, got {value}")
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


#: matplotlib backends that cannot open a window (``--show`` then only says so).
_NON_INTERACTIVE_BACKENDS = ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template")


def _save_figures(console, show, figures):
    """Report the saved pictures; with ``--show``, open them in windows."""
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
# Shared steps
# ----------------------------------------------------------------------------


def _load_data(args, console, name, data_dir=None, data_dir_origin="--data-dir"):
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


def _output_dir(path, option="--out"):
    try:
        return check_writable_dir(path, f"{option} folder")
    except OSError as exc:
        raise UsageError(str(exc)) from exc


def _first_conv_weights(network):
    """``W1``, the first layer's filters (FN, C, FH, FW), of every cconv network."""
    return network.params["W1"]


def _recorded_data(params_path):
    """``(dataset, data_dir)`` that ``cconv train`` recorded beside ``params_path``, or ``(None, None)``.

    The data set is the one the network was trained on: the sample when
    ``--dataset mnist`` fell back to it; ``data_dir`` is ``--data-dir`` (None
    when none was given).
    """
    metrics_path = os.path.join(os.path.dirname(os.path.abspath(params_path)), METRICS_FILE)
    try:
        with open(metrics_path, encoding="utf-8") as f:
            metrics = json.load(f)
        settings = metrics["settings"]
        name = (metrics.get("dataset") or {}).get("name") or settings["dataset"]
        data_dir = settings.get("data_dir")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None
    if name not in DATASET_CHOICES:
        return None, None
    return name, data_dir if isinstance(data_dir, str) else None


def _test_data(args, console):
    """The test set of ``evaluate`` / ``visualize``: ``--dataset`` or, by default, the recorded one."""
    dataset, data_dir, origin = args.dataset, args.data_dir, "--data-dir"
    if dataset is None and data_dir is None:
        dataset, data_dir = _recorded_data(args.params)
        origin = (
            f"the data folder recorded in {METRICS_FILE} beside PARAMS (give --dataset or "
            "--data-dir to test on other data)"
        )
    elif dataset is None:
        dataset = _recorded_data(args.params)[0]
    return _load_data(args, console, dataset or "mnist", data_dir, origin)


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
    except (OSError, ValueError, AttributeError) as exc:
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


class _CommandTrainer(Trainer):
    """The :class:`~cconv.trainer.Trainer` of ``cconv train``: it also measures each epoch's end.

    The book's trainer measures an epoch's accuracies after the epoch's first
    step, so its line for epoch 1 describes a network trained on one
    mini-batch. This one measures them again after the epoch's last step, on
    the same images, keeps them in the epoch's ``history`` entry
    (``end_train_acc``, ``end_test_acc``; they are saved in the checkpoint
    with it, so ``--resume`` keeps them) and calls ``epoch_done(entry)`` once
    the epoch's checkpoint is written. The training itself (batches, updates,
    random states) is that of :class:`~cconv.trainer.Trainer`: measuring
    draws no random numbers.
    """

    def __init__(self, *args, epoch_done, **kwargs):
        self._epoch_done = epoch_done
        self._end_accuracies = None  # (iteration, train_acc, test_acc) of the last epoch end
        super().__init__(*args, **kwargs)

    def train_step(self):
        loss = super().train_step()
        done = self.current_iter
        if done == self.max_iter or self._epoch_of(done) != self._epoch_of(done - 1):
            start = time.perf_counter()
            n = self.evaluate_sample_num_per_epoch  # None: all
            self._end_accuracies = (
                done,
                float(self.network.accuracy(self.x_train[:n], self.t_train[:n])),
                float(self.network.accuracy(self.x_test[:n], self.t_test[:n])),
            )
            self._eval_seconds += time.perf_counter() - start  # not training time (images/s)
        return loss

    def save_checkpoint(self, path=None):
        entry = self.history[-1] if self.history else None
        pending, self._end_accuracies = self._end_accuracies, None
        if entry is None or pending is None or pending[0] != entry["end_iteration"]:
            return super().save_checkpoint(path)
        entry["end_train_acc"], entry["end_test_acc"] = pending[1:]
        written = super().save_checkpoint(path)
        self._epoch_done(entry)
        return written


def _eval_counts(data, eval_samples):
    """Images of each set that the per-epoch accuracies are measured on."""
    train, test = data.x_train.shape[0], data.x_test.shape[0]
    if eval_samples:
        train, test = min(train, eval_samples), min(test, eval_samples)
    return {"train": int(train), "test": int(test)}


def _accuracy_curves(trainer):
    """Train and test accuracy after 0, 1, ..., N epochs (0: the book's first, after one step).

    The book's lists (after each epoch's first step) when an epoch lacks its
    end-of-epoch accuracies.
    """
    ends = [(entry.get("end_train_acc"), entry.get("end_test_acc")) for entry in trainer.history]
    if not trainer.train_acc_list or not ends or any(None in pair for pair in ends):
        return list(trainer.train_acc_list), list(trainer.test_acc_list)
    return (
        [float(trainer.train_acc_list[0]), *(train for train, _ in ends)],
        [float(trainer.test_acc_list[0]), *(test for _, test in ends)],
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
        # Accuracies at the end of each epoch, on eval_images (see the module docstring).
        "eval_images": _eval_counts(data, settings["eval_samples"]),
        "epochs": [
            {
                "epoch": entry["epoch"],
                "loss": entry["loss"],
                "train_acc": entry.get("end_train_acc"),
                "test_acc": entry.get("end_test_acc"),
                "seconds": entry["seconds"],
                "train_seconds": entry["train_seconds"],
                "images_per_sec": entry["images_per_sec"],
            }
            for entry in metrics["history"]
        ],
        "final_test_acc": metrics["final_test_acc"],
        # The book's lists: one loss per step; accuracies after each epoch's first step.
        "train_loss_list": metrics["train_loss_list"],
        "train_acc_list": metrics["train_acc_list"],
        "test_acc_list": metrics["test_acc_list"],
        "iterations": metrics["iterations"],
        "seconds": seconds,
    }


def _plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


class _Interrupted(Exception):
    """Ctrl-C during ``cconv train``: the message says what is saved; exit status 130."""


def _saved(trainer):
    """What a stopped ``cconv train`` keeps: the epochs of its last checkpoint, and how to go on."""
    return (
        f"{_plural(trainer._checkpoint_epoch, 'epoch')} done, saved in {trainer.checkpoint_path}; "
        "run the same command with --resume to continue"
    )


@contextlib.contextmanager
def _saved_on_write_error(trainer):
    """An OSError (a checkpoint, metrics.json or picture not written: disk full, ...) also says what is saved."""
    try:
        yield
    except OSError as exc:
        saved = _saved(trainer) if trainer.checkpoint_path else "no epoch is saved"
        raise type(exc)(f"{exc}; {saved}") from exc


def _train(args, console):
    from cconv import plots

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
    checkpoint_dir = os.path.join(out, CHECKPOINT_DIR)
    if args.resume:
        _check_resume(out, settings)
    elif os.path.isdir(checkpoint_dir) and os.listdir(checkpoint_dir):
        raise UsageError(
            f"--out: {out!r} holds checkpoints of an earlier run; continue it with --resume, "
            "or train into another folder"
        )
    remove_stale_temp_files(out, TRAIN_OUTPUTS.__contains__)

    data = _load_data(args, console, args.dataset, args.data_dir)
    dtype = np.dtype(args.dtype)
    x_train, x_test = data.x_train.astype(dtype, copy=False), data.x_test.astype(dtype, copy=False)
    if args.seed is not None:
        np.random.seed(args.seed)  # the batches and the book's global-RNG randomness
    try:
        network = _build_network(args, x_train.shape[1:], len(data.classes))
    except ValueError as exc:
        raise UsageError(f"--net {args.net}: {exc}") from exc

    initial_filters = _first_conv_weights(network).copy()  # --resume loads the checkpoint's into it
    metrics_path = os.path.join(out, METRICS_FILE)
    eval_counts = _eval_counts(data, args.eval_samples)
    start = time.perf_counter()

    def epoch_done(entry):
        # Called once the epoch's checkpoint is on disk: metrics.json follows it, so an
        # interrupted run keeps the metrics of its completed epochs.
        atomic_write_json(
            metrics_path,
            _train_metrics(settings, data, trainer, time.perf_counter() - start, network),
        )
        console.say(
            f"epoch {entry['epoch']}/{trainer.num_epochs}: loss {entry['loss']:.4f}, "
            f"train acc {entry['end_train_acc']:.4f}, test acc {entry['end_test_acc']:.4f} "
            f"({eval_counts['train']} train / {eval_counts['test']} test images), "
            f"{entry['seconds']:.1f} s, {entry['images_per_sec']:.0f} images/s"
        )

    try:
        trainer = _CommandTrainer(
            network, x_train, data.t_train, x_test, data.t_test,
            epochs=args.epochs,
            mini_batch_size=args.batch_size,
            optimizer=args.optimizer,
            optimizer_param={"lr": args.lr},
            evaluate_sample_num_per_epoch=args.eval_samples or None,
            verbose=False,  # the lines of the book's trainer are replaced by epoch_done's
            progress=sys.stderr if not args.quiet else False,
            checkpoint_dir=checkpoint_dir,
            resume=args.resume,
            epoch_done=epoch_done,
            # The loss of each step's gradient pass: no second forward pass.
            loss_from_gradient_pass=True,
        )
    except CheckpointError as exc:
        raise UsageError(f"--resume: {exc}") from exc
    if trainer.current_iter > trainer.max_iter:
        raise UsageError(
            f"--epochs {args.epochs}: the checkpoint in {out!r} is at epoch "
            f"{len(trainer.history)}; --resume continues a run to more epochs"
        )

    figures = {}
    before_path = os.path.join(out, "filters_before.png")
    if not (args.resume and os.path.exists(before_path)):
        figures[plots.filters_figure(initial_filters, before_path)] = before_path
    console.say(
        f"training {type(network).__name__} ({args.dtype}) on {data.name}: "
        f"{x_train.shape[0]} train / {x_test.shape[0]} test images, "
        f"{_plural(args.epochs, 'epoch')}, batch {args.batch_size}, {args.optimizer} lr {args.lr:g}"
    )
    if args.resume:
        if trainer.checkpoint_path is None:
            console.note(f"--resume: no checkpoint in {checkpoint_dir!r}: training starts from the beginning")
        else:
            console.say(f"resumed from {trainer.checkpoint_path}: {_plural(len(trainer.history), 'epoch')} done")
    # metrics.json is written first with the settings, so that --resume can check them.
    atomic_write_json(metrics_path, _train_metrics(settings, data, trainer, 0.0, network))
    try:
        # Overflow on the way to a NaN loss is reported as TrainingDiverged, not as warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), _saved_on_write_error(trainer):
            trainer.train()
    except TrainingDiverged as exc:
        atomic_write_json(
            metrics_path, _train_metrics(settings, data, trainer, time.perf_counter() - start, network)
        )
        saved = (
            f"the checkpoint of the last good epoch is {exc.checkpoint}"
            if exc.checkpoint else "no epoch was completed"
        )
        raise UsageError(
            f"training diverged: the loss became {exc.loss} at epoch {exc.epoch} (step "
            f"{exc.iteration + 1}); {saved}; try a lower --lr, in another --out"
        ) from exc
    except KeyboardInterrupt:
        saved = _saved(trainer) if trainer.checkpoint_path else "no epoch was completed, nothing is saved"
        raise _Interrupted(f"during epoch {len(trainer.history) + 1}: {saved}") from None
    seconds = time.perf_counter() - start

    params_path = os.path.join(out, PARAMS_FILE)
    accuracy_path = os.path.join(out, "accuracy.png")
    after_path = os.path.join(out, "filters_after.png")
    with _saved_on_write_error(trainer):
        network.save_params(params_path)
        metrics = _train_metrics(settings, data, trainer, seconds, network)
        atomic_write_json(metrics_path, metrics)
        console.say(
            f"final test accuracy {metrics['final_test_acc']:.4f} "
            f"({metrics['dataset']['test_images']} test images)"
        )
        figures[plots.accuracy_figure(*_accuracy_curves(trainer), accuracy_path)] = accuracy_path
        figures[plots.filters_figure(_first_conv_weights(network), after_path)] = after_path
    console.say(f"wrote {params_path}")
    console.say(f"wrote {metrics_path}")
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
    """The confusion matrix as text: a row per true class (named), a column per predicted label."""
    corner = "true\\pred"
    label_width = max(len(corner), *(len(str(c)) for c in classes)) + 2
    width = max(5, len(str(len(classes) - 1)), len(str(int(matrix.max(initial=0)))))
    head = corner.ljust(label_width) + " ".join(str(c).rjust(width) for c in range(len(classes)))
    rows = [
        str(classes[i]).ljust(label_width) + " ".join(f"{v:{width}d}" for v in row)
        for i, row in enumerate(matrix)
    ]
    return "\n".join([head, *rows])


def _evaluate(args, console):
    from cconv import plots

    meta = _params_record(args.params, args.net)
    data = _test_data(args, console)
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
    data = _test_data(args, console)
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
                        help="test set (default: the one PARAMS was trained on, as recorded in "
                        "metrics.json beside it, with its --data-dir; else mnist)")
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
    train.add_argument("--dtype", type=_choice(("float32", "float64")), default="float32",
                       help="float32 (default, as PyTorch; faster) or float64 (the book's)")
    train.add_argument("--seed", type=_int_at_least(0, 2**32 - 1),  # np.random.seed's range
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
    """Run the ``cconv`` command; return its exit status (0 for ``--help`` and ``--version``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version: argparse printed them
            return exc.code if isinstance(exc.code, int) else 0
        console = _Console(args.quiet, args.json)
        return args.func(args, console)
    except UsageError as exc:
        print(f"cconv: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except datasets.DatasetUnavailableError as exc:
        print(f"cconv: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except _Interrupted as exc:
        print(f"cconv: interrupted {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("cconv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (cconv ... | head): stop quietly
        # As the Python docs advise: no second error when the interpreter flushes stdout.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNAVAILABLE
    except OSError as exc:  # a file that cannot be read or written (disk full, permissions)
        print(f"cconv: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
