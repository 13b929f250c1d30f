"""``cconv train``: train a network and write it, its metrics and its pictures into a run folder."""

import os
import sys
import time

import numpy as np

from cconv.cli import run_folder
from cconv.cli._common import (
    DATASET_CHOICES,
    DEFAULT_BATCH_SIZE,
    NET_CHOICES,
    Interrupted,
    UsageError,
    add_output_options,
    choice,
    int_at_least,
    load_data,
    output_dir,
    plural,
    positive_float,
    save_figures,
)
from cconv.distributed import mark_raised_on_every_rank
from cconv.optim import OPTIMIZERS
from cconv.trainer import CheckpointError, Trainer, TrainingDiverged

#: The book's training settings (ch07/train_convnet.py, ch08/train_deepnet.py).
DEFAULT_EPOCHS = 20
DEFAULT_OPTIMIZER = "adam"
DEFAULT_LR = 0.001
DEFAULT_EVAL_SAMPLES = 1000


def add_parser(subparsers):
    """Add ``train`` to the command's subparsers."""
    train = subparsers.add_parser(
        "train", help="train a network and save it with its metrics and pictures",
        description="Train a network (the book's settings by default: SimpleConvNet, MNIST, "
        "20 epochs, batch 100, Adam lr 0.001) and write params.npz, metrics.json, "
        "accuracy.png, filters_before.png and filters_after.png into --out.",
    )
    train.add_argument("--net", type=choice(tuple(NET_CHOICES)), default="simple",
                       help=f"{', '.join(NET_CHOICES)} (default simple)")
    train.add_argument("--dataset", type=choice(DATASET_CHOICES), default="mnist",
                       help="mnist (default), fashion-mnist or sample (bundled, offline)")
    train.add_argument("--epochs", type=int_at_least(1), default=DEFAULT_EPOCHS)
    train.add_argument("--batch-size", type=int_at_least(1), default=DEFAULT_BATCH_SIZE)
    train.add_argument("--optimizer", type=choice(tuple(OPTIMIZERS)), default=DEFAULT_OPTIMIZER,
                       help=f"{', '.join(OPTIMIZERS)} (default {DEFAULT_OPTIMIZER})")
    train.add_argument("--lr", type=positive_float, default=DEFAULT_LR, help="learning rate")
    train.add_argument("--dtype", type=choice(("float32", "float64")), default="float32",
                       help="float32 (default, as PyTorch; faster) or float64 (the book's)")
    train.add_argument("--seed", type=int_at_least(0, 2**32 - 1),  # np.random.seed's range
                       help="seed of the weights, the batches and dropout")
    train.add_argument("--eval-samples", type=int_at_least(0), default=DEFAULT_EVAL_SAMPLES,
                       help="images of each set for the per-epoch accuracies (0: all)")
    train.add_argument("--out", metavar="DIR", default="cconv-train",
                       help="output folder (default ./cconv-train)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the last checkpoint in --out")
    train.add_argument("--distributed", action="store_true",
                       help="train with the processes of 'mpiexec -n K cconv train --distributed ...' "
                       "(needs cconv[mpi]); the parameters follow the one-process run; rank 0 writes --out")
    add_output_options(train)
    train.set_defaults(func=run)


def run(args, console):
    """Run ``cconv train``; return the exit status.

    With ``--distributed`` (``args.world``, see :mod:`cconv.cli._mpi`) every
    rank loads the data and trains; rank 0 alone prepares and writes the run
    folder.
    """
    world = args.world
    settings = _settings(args)
    if world is not None and args.batch_size < world.size:
        raise mark_raised_on_every_rank(UsageError(
            f"--batch-size {args.batch_size}: expected at least the number of processes ({world.size}); "
            "each computes at least one image of a batch"
        ))
    if world is None or world.is_root:
        out = output_dir(args.out)
        run_folder.prepare(out, settings, args.resume)
    else:
        out = os.path.abspath(args.out)
    if world is None:
        data = load_data(args, console, args.dataset, args.data_dir)
    else:  # one rank per machine downloads, if needed
        data = world.machine_first(lambda: load_data(args, console, args.dataset, args.data_dir))
    if args.seed is not None:
        np.random.seed(args.seed)  # the batches and the book's global-RNG randomness
    return _TrainingRun(args, console, out, settings, data).run()


def _settings(args):
    """The run's settings, as ``metrics.json`` records them (and ``--resume`` checks them)."""
    return {
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


class _TrainingRun:
    """One ``cconv train``: the network, its trainer, and what is written when."""

    def __init__(self, args, console, out, settings, data):
        self.args, self.console, self.out, self.settings, self.data = args, console, out, settings, data
        self.world = args.world
        self.writes = self.world is None or self.world.is_root  # rank 0 alone writes the run folder
        dtype = np.dtype(args.dtype)
        self.x_train = data.x_train.astype(dtype, copy=False)
        self.x_test = data.x_test.astype(dtype, copy=False)
        cls = NET_CHOICES[args.net]
        try:
            self.network = cls(input_dim=self.x_train.shape[1:], output_size=len(data.classes),
                               dtype=args.dtype, seed=args.seed)
        except ValueError as exc:
            raise UsageError(f"--net {args.net}: {exc}") from exc
        self.initial_filters = self.network.params["W1"].copy()  # --resume loads the checkpoint's into it
        self.eval_counts = run_folder.eval_counts(data, args.eval_samples)
        self.start = time.perf_counter()
        self.trainer = self._make_trainer()

    def _make_trainer(self):
        args, data = self.args, self.data
        try:
            trainer = Trainer(
                self.network, self.x_train, data.t_train, self.x_test, data.t_test,
                epochs=args.epochs,
                mini_batch_size=args.batch_size,
                optimizer=args.optimizer,
                optimizer_param={"lr": args.lr},
                evaluate_sample_num_per_epoch=args.eval_samples or None,
                verbose=False,  # the lines of the book's trainer are replaced by epoch_done's
                progress=sys.stderr if not args.quiet else False,
                checkpoint_dir=run_folder.checkpoint_dir(self.out),
                resume=args.resume,
                # The loss of each step's gradient pass: no second forward pass.
                loss_from_gradient_pass=True,
                # The accuracies after each epoch's last step (see cconv.cli's docstring).
                epoch_end_accuracy=True,
                on_epoch_end=self.epoch_done,
                comm=None if self.world is None else self.world.comm,
            )
        except CheckpointError as exc:
            raise UsageError(f"{'--resume' if args.resume else '--distributed'}: {exc}") from exc
        except ValueError as exc:  # a network that cannot be split across the processes
            if self.world is None:
                raise
            raise UsageError(f"--distributed: --net {args.net}: {exc}") from exc
        if trainer.current_iter > trainer.max_iter:  # every rank holds rank 0's counters
            raise mark_raised_on_every_rank(UsageError(
                f"--epochs {args.epochs}: the checkpoint in {self.out!r} is at epoch "
                f"{trainer.epoch}; --resume continues a run to more epochs"
            ))
        return trainer

    def write_metrics(self):
        return run_folder.write_metrics(
            self.out, self.settings, self.data, self.trainer, time.perf_counter() - self.start
        )

    def epoch_done(self, entry):
        """The trainer's ``on_epoch_end``: the epoch's checkpoint is on disk, metrics.json follows it.

        So an interrupted run keeps the metrics of its completed epochs.
        """
        if not self.writes:
            return
        self.write_metrics()
        if entry.get("end_train_acc") is None:  # Ctrl-C came before the epoch's end was measured
            return
        counts = self.eval_counts
        self.console.say(
            f"epoch {entry['epoch']}/{self.trainer.num_epochs}: loss {entry['loss']:.4f}, "
            f"train acc {entry['end_train_acc']:.4f}, test acc {entry['end_test_acc']:.4f} "
            f"({counts['train']} train / {counts['test']} test images), "
            f"{entry['seconds']:.1f} s, {entry['images_per_sec']:.0f} images/s"
        )

    def run(self):
        if not self.writes:
            self._train()
            return 0
        figures = {}
        before_path = os.path.join(self.out, run_folder.BEFORE_PICTURE)
        if not (self.args.resume and os.path.exists(before_path)):
            from cconv import plots

            figures[plots.filters_figure(self.initial_filters, before_path)] = before_path
        self._say_start()
        # metrics.json is written first with the settings, so that --resume can check them.
        run_folder.write_metrics(self.out, self.settings, self.data, self.trainer, 0.0)
        self._train()
        metrics, more_figures = self._write_results()
        figures.update(more_figures)
        save_figures(self.console, self.args.show, figures)
        self.console.result({
            "out": self.out,
            "params": os.path.join(self.out, run_folder.PARAMS_FILE),
            "final_test_acc": metrics["final_test_acc"],
            "epochs": metrics["epochs"],
            "dataset": metrics["dataset"]["name"],
            "seconds": metrics["seconds"],
        })
        return 0

    def _say_start(self):
        args, trainer = self.args, self.trainer
        self.console.say(
            f"training {type(self.network).__name__} ({args.dtype}) on {self.data.name}: "
            f"{self.x_train.shape[0]} train / {self.x_test.shape[0]} test images, "
            f"{plural(args.epochs, 'epoch')}, batch {args.batch_size}, {args.optimizer} lr {args.lr:g}"
        )
        if not args.resume:
            return
        if trainer.checkpoint_path is None:
            self.console.note(
                f"--resume: no checkpoint in {run_folder.checkpoint_dir(self.out)!r}: "
                "training starts from the beginning"
            )
        else:
            self.console.say(f"resumed from {trainer.checkpoint_path}: {plural(trainer.epoch, 'epoch')} done")

    def _train(self):
        trainer = self.trainer
        try:
            # Overflow on the way to a NaN loss is reported as TrainingDiverged, not as warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    run_folder.saved_on_write_error(trainer):
                trainer.train()
        except TrainingDiverged as exc:
            if self.writes:
                self.write_metrics()
            saved = (
                f"the checkpoint of the last good epoch is {exc.checkpoint}"
                if exc.checkpoint else "no epoch was completed"
            )
            raise UsageError(
                f"training diverged: the loss became {exc.loss} at epoch {exc.epoch} (step "
                f"{exc.iteration + 1}); {saved}; try a lower --lr, in another --out"
            ) from exc
        except KeyboardInterrupt:
            saved = (
                run_folder.saved_state(trainer) if trainer.checkpoint_path
                else "no epoch was completed, nothing is saved"
            )
            raise Interrupted(f"during epoch {trainer.epoch + 1}: {saved}") from None

    def _write_results(self):
        """Write params.npz, the final metrics.json and the pictures; return ``(metrics, figures)``."""
        from cconv import plots

        out, trainer = self.out, self.trainer
        seconds = time.perf_counter() - self.start
        params_path = os.path.join(out, run_folder.PARAMS_FILE)
        accuracy_path = os.path.join(out, run_folder.ACCURACY_PICTURE)
        after_path = os.path.join(out, run_folder.AFTER_PICTURE)
        figures = {}
        with run_folder.saved_on_write_error(trainer):
            self.network.save_params(params_path)
            metrics = run_folder.write_metrics(out, self.settings, self.data, trainer, seconds)
            self.console.say(
                f"final test accuracy {metrics['final_test_acc']:.4f} "
                f"({metrics['dataset']['test_images']} test images)"
            )
            train_curve, test_curve = run_folder.accuracy_curves(trainer)
            figures[plots.accuracy_figure(train_curve, test_curve, accuracy_path)] = accuracy_path
            figures[plots.filters_figure(self.network.params["W1"], after_path)] = after_path
        self.console.say(f"wrote {params_path}")
        self.console.say(f"wrote {os.path.join(out, run_folder.METRICS_FILE)}")
        return metrics, figures
