"""The folder of a ``cconv train`` run: its files, its metrics, resume checks, and reopening its network.

A run folder (``--out``) holds ``params.npz`` (the trained network, with its
name and settings), ``metrics.json`` (the settings, the data set, per-epoch
results and the book's lists), ``checkpoints/epoch-NNNN.npz`` (the trainer's)
and the pictures. ``cconv evaluate`` and ``cconv visualize`` open a params
file and, by default, test on the data set recorded beside it.
"""

import contextlib
import json
import os

from cconv import params_io
from cconv._atomic import atomic_write_json, remove_stale_temp_files
from cconv.cli._common import DATASET_CHOICES, NET_CHOICES, UsageError, load_data, plural
from cconv.nets import NETWORKS, load_network

PARAMS_FILE = "params.npz"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
#: The pictures of ``cconv train``.
BEFORE_PICTURE = "filters_before.png"
ACCURACY_PICTURE = "accuracy.png"
AFTER_PICTURE = "filters_after.png"
#: The files ``cconv train`` writes into ``--out``: a run killed while writing one
#: leaves its temporary file, which the next run into the folder removes (the
#: Trainer does the same for its checkpoints).
TRAIN_OUTPUTS = frozenset({PARAMS_FILE, METRICS_FILE, BEFORE_PICTURE, ACCURACY_PICTURE, AFTER_PICTURE})

#: Settings that a ``--resume`` must repeat (the checkpoint was made with them).
RESUME_SETTINGS = ("net", "dataset", "data_dir", "dtype", "batch_size", "optimizer", "lr", "seed")


# ----------------------------------------------------------------------------
# Starting or resuming a run
# ----------------------------------------------------------------------------


def prepare(out, settings, resume):
    """Check that a run with ``settings`` may go into ``out``; remove files a killed run left half-written.

    With ``resume`` the settings must be those recorded in ``metrics.json``;
    without, the folder must hold no checkpoints of an earlier run.
    """
    if resume:
        _check_resume(out, settings)
    elif os.path.isdir(checkpoint_dir(out)) and os.listdir(checkpoint_dir(out)):
        raise UsageError(
            f"--out: {out!r} holds checkpoints of an earlier run; continue it with --resume, "
            "or train into another folder"
        )
    remove_stale_temp_files(out, TRAIN_OUTPUTS.__contains__)


def checkpoint_dir(out):
    """The trainer's checkpoint folder in the run folder ``out``."""
    return os.path.join(out, CHECKPOINT_DIR)


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


def saved_state(trainer):
    """What a stopped ``cconv train`` keeps: the epochs of its last checkpoint, and how to go on."""
    return (
        f"{plural(trainer.checkpoint_epoch, 'epoch')} done, saved in {trainer.checkpoint_path}; "
        "run the same command with --resume to continue"
    )


@contextlib.contextmanager
def saved_on_write_error(trainer):
    """An OSError (a checkpoint, metrics.json or picture not written: disk full, ...) also says what is saved."""
    try:
        yield
    except OSError as exc:
        saved = saved_state(trainer) if trainer.checkpoint_path else "no epoch is saved"
        raise type(exc)(f"{exc}; {saved}") from exc


# ----------------------------------------------------------------------------
# metrics.json
# ----------------------------------------------------------------------------


def eval_counts(data, eval_samples):
    """Images of each set that the per-epoch accuracies are measured on."""
    train, test = data.x_train.shape[0], data.x_test.shape[0]
    if eval_samples:
        train, test = min(train, eval_samples), min(test, eval_samples)
    return {"train": int(train), "test": int(test)}


def accuracy_curves(trainer):
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


def write_metrics(out, settings, data, trainer, seconds):
    """Write ``metrics.json`` of the run (atomically) and return it as a dict."""
    metrics = _train_metrics(settings, data, trainer, seconds)
    atomic_write_json(os.path.join(out, METRICS_FILE), metrics)
    return metrics


def _train_metrics(settings, data, trainer, seconds):
    network = trainer.network
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
        # Accuracies at the end of each epoch, on eval_images (see cconv.cli's docstring).
        "eval_images": eval_counts(data, settings["eval_samples"]),
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
        # cconv train --distributed: the ranks of this (last) run; the numbers do not depend on it.
        "processes": metrics["processes"],
        "seconds": seconds,
    }


# ----------------------------------------------------------------------------
# Reopening a trained network (evaluate, visualize)
# ----------------------------------------------------------------------------


def open_trained(args, console):
    """``(network, test data)`` of ``args.params``, checked against each other.

    A params file that records its network is opened, every array checked,
    before any data is loaded; one that does not (the book's ``.pkl``, a
    plain ``.npz``) is checked as far as it can be without the images' shape
    (see :func:`_params_record`) and loaded after them. The test set is
    ``--dataset`` or the one recorded beside the file.
    """
    meta = _params_record(args.params, args.net)
    network = None if meta is None else _open_network(args.params, meta, args.net, None)
    data = _test_data(args, console)
    if network is None:
        network = _open_network(args.params, meta, args.net, data.x_test.shape[1:])
    expected = tuple(network.config["input_dim"])
    if tuple(data.x_test.shape[1:]) != expected:
        raise UsageError(
            f"PARAMS: {args.params!r} is a network for {expected} images, but {data.name} images are "
            f"{tuple(data.x_test.shape[1:])}"
        )
    return network, data


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
    return load_data(args, console, dataset or "mnist", data_dir, origin)


def _params_record(path, net_choice):
    """Check a params file before any data is loaded; return its record (None: none recorded).

    Reads the record alone (and a book ``.pkl`` whole, safely). Raises
    :class:`UsageError` for a missing or unreadable file, a file of another
    network than ``--net``, or a file without a record and no ``--net``.
    """
    if not os.path.isfile(path):
        raise UsageError(f"PARAMS: no such file: {path!r}")
    try:
        meta = params_io.read_meta(path)  # decompresses nothing else
        if meta is None and not params_io.is_npz(path):
            params_io.read_params(path)  # a book .pkl (read safely) or garbage
    except (OSError, ValueError) as exc:
        raise UsageError(f"PARAMS: {path!r} is not a readable params file ({exc})") from exc
    if meta is None and net_choice is None:
        raise UsageError(
            f"PARAMS: {path!r} does not record its network (a book .pkl or a plain .npz): "
            f"say which with --net {'|'.join(NET_CHOICES)}"
        )
    saved = None if meta is None else meta.get("net")
    if net_choice is not None and saved in NETWORKS and saved != NET_CHOICES[net_choice].__name__:
        raise UsageError(
            f"PARAMS: {path!r} holds the parameters of a {saved}, not of a "
            f"{NET_CHOICES[net_choice].__name__} (--net {net_choice}); drop --net or "
            f"use --net {NETWORKS[saved].short_name}"
        )
    return meta


def _open_network(path, meta, net_choice, input_dim):
    """The network of the params file ``path`` (checked by :func:`_params_record`)."""
    if meta is not None:
        try:
            return load_network(path)
        except ValueError as exc:
            raise UsageError(f"PARAMS: {exc}") from exc
    network = NET_CHOICES[net_choice](input_dim=input_dim)
    try:
        network.load_params(path, cast=True)
    except ValueError as exc:
        raise UsageError(f"PARAMS: {path!r} does not fit --net {net_choice}: {exc}") from exc
    return network
