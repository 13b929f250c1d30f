"""The book's training loop (``common/trainer.py``), with progress, seeds, a NaN stop and checkpoints.

:class:`Trainer` takes the book's constructor arguments and fills the book's
lists (``train_loss_list``, ``train_acc_list``, ``test_acc_list``), so a book
script runs unchanged. On top of that:

* a progress bar per epoch (steps, mean loss, images/s, ETA), see
  :mod:`cconv._progress`;
* ``seed``: each step draws its mini-batch at random with replacement, as
  the book. Without a seed it draws from the global ``np.random`` exactly as
  the book (``np.random.choice(train_size, batch_size)``), so a book script
  that calls ``np.random.seed(0)`` first gives the same numbers on every
  run; with a seed, from a :class:`numpy.random.Generator` owned by the
  trainer, so two runs with one seed see the same batches whatever else
  draws from ``np.random``;
* a check after every step: a NaN or infinite loss stops training with
  :class:`TrainingDiverged`, and the checkpoint of the last good epoch stays
  as it was;
* ``checkpoint_dir``: after each epoch one ``.npz`` (no pickle) holding the
  parameters, the optimizer state, the generator states (the trainer's when
  it has one, the ``rng`` of the network and of its layers, and the global
  ``np.random``: the batches without a seed and dropout draw from them), the
  iteration and epoch counters, the lists and the timing history, written
  atomically. ``resume=True`` continues from the newest one along the very
  trajectory an uninterrupted run follows (bit-identical losses and
  parameters). An interrupted run, Ctrl-C included, loses at most the epoch
  in progress.

Epochs
------
As in the book, ``iter_per_epoch = max(train_size / mini_batch_size, 1)`` and
``max_iter = int(epochs * iter_per_epoch)``; the accuracies of an epoch are
measured after its *first* step (the book's ``current_iter % iter_per_epoch
== 0``), so ``train_acc_list[0]`` is the accuracy after one step and the lists
hold one value per epoch. Epoch boundaries are computed exactly
(``ceil(k * train_size / mini_batch_size)``), where the book's float modulo
skips epochs when ``train_size`` is not a multiple of ``mini_batch_size``.
Checkpoints are written when an epoch's last step is done.

Several processes
-----------------
With ``comm`` (an mpi4py communicator, the processes started by ``mpiexec``)
the ranks train one network along the single-process trajectory: each draws
the same batch, computes the gradient of its share of the rows, and one
``Allreduce`` per step sums the gradients weighted by the shares (see
:mod:`cconv.distributed`). Rank 0's state (parameters, generators, or the
checkpoint it resumes from) is given to every rank at the start; rank 0
alone prints and writes checkpoints. Every rank then constructs the trainer
and calls ``train``, ``train_step``, ``save_checkpoint`` and
``load_checkpoint`` together. Ctrl-C during :meth:`Trainer.train` stops every
rank after the same step (the request travels with the step's sums).
"""

import contextlib
import math
import os
import signal
import sys
import threading
import time
from fractions import Fraction

import numpy as np

from cconv import checkpoint as _checkpoint
from cconv._atomic import check_writable_dir, remove_stale_temp_files
from cconv._progress import ProgressBar
from cconv._validation import check_bool, check_int
from cconv.checkpoint import Checkpoint, CheckpointError, latest_checkpoint
from cconv.distributed import Collective, check_distributable, dropout_rows, mark_raised_on_every_rank
from cconv.nets._base import network_rngs

# CheckpointError and latest_checkpoint live in cconv.checkpoint and are
# importable from here too.
__all__ = ["CheckpointError", "Trainer", "TrainingDiverged", "latest_checkpoint"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite.

    Attributes
    ----------
    epoch : int
        1-based epoch of the step.
    iteration : int
        0-based index of the step over the whole run (``Trainer.current_iter``).
    loss : float
        The loss value (NaN or +-inf).
    checkpoint : str or None
        The newest checkpoint on disk (the last good epoch), if any.
    """

    def __init__(self, message, *, epoch, iteration, loss, checkpoint):
        super().__init__(message)
        self.epoch = epoch
        self.iteration = iteration
        self.loss = loss
        self.checkpoint = checkpoint


class _StopRequested(KeyboardInterrupt):
    """Ctrl-C reached a rank during :meth:`Trainer.train` with ``comm``: every rank stops after the same step."""


@contextlib.contextmanager
def _sigint_as_request(trainer):
    """Within the block, Ctrl-C sets ``trainer._stop_requested`` instead of raising (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request(signum, frame):
        trainer._stop_requested = True

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C back until the block is done, then deliver it.

    Used around checkpoint writing, so that an interrupt cannot leave the
    completed epoch without its checkpoint. Outside the main thread (where
    Python never raises ``KeyboardInterrupt``) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
            elif previous in (signal.SIG_DFL, None):
                signal.raise_signal(signal.SIGINT)


def _json_number(value):
    """A float for JSON, ``None`` for NaN/inf (JSON has no such numbers)."""
    value = float(value)
    return value if math.isfinite(value) else None


class Trainer:
    """Train a network with mini-batch gradient descent, as the book's ``Trainer``.

    Parameters
    ----------
    network : object
        The book's interface: ``params`` (dict of arrays shared with the
        layers and updated in place), ``gradient(x, t)`` -> dict of arrays,
        ``loss(x, t)``, ``accuracy(x, t)``.
    x_train, t_train, x_test, t_test : ndarray
        Data and labels; the first axis indexes samples.
    epochs : int
        Number of epochs.
    mini_batch_size : int
        Samples per step.
    optimizer : str or object
        A name from :data:`cconv.optim.OPTIMIZERS`, in any case (``"SGD"``,
        ``"Momentum"``, ``"Nesterov"``, ``"AdaGrad"``, ``"RMSprop"``, ``"Adam"``),
        or an optimizer object with ``update(params, grads)`` (and
        ``state_dict()`` / ``load_state_dict(d)`` for checkpoints).
    optimizer_param : dict, optional
        Keyword arguments of the optimizer class; default ``{"lr": 0.01}``.
    evaluate_sample_num_per_epoch : int, optional
        Measure the per-epoch accuracies on the first this many samples of
        each set (default: all).
    verbose : bool
        Print the epoch accuracies and the final test accuracy (stdout, as the
        book), and show the progress bar on stderr. Without a progress bar,
        print every step's loss, as the book.
    seed : int or numpy.random.SeedSequence or numpy.random.Generator, optional
        Seed of a generator of the trainer's own that draws the mini-batches
        (anything :func:`numpy.random.default_rng` accepts). ``None`` (the
        default): the batches come from the global ``np.random``, as the
        book's ``np.random.choice(train_size, batch_size)``, so
        ``np.random.seed`` before training makes the run repeat exactly. A
        seed does not seed the network's own randomness (the book's
        ``Dropout`` uses the global ``np.random``): seed that with
        ``np.random.seed``.
    checkpoint_dir : str or os.PathLike, optional
        Folder for the per-epoch checkpoints ``epoch-NNNN.npz``. Created if
        needed; checked writable here, before any training.
    resume : bool
        Continue from the newest checkpoint in ``checkpoint_dir`` (loaded
        here): parameters (copied into ``network.params`` in place), optimizer
        state, the source of the batches and its state (``seed`` is then
        ignored: the checkpoint says whether the batches come from a generator
        of the trainer's or from ``np.random``), counters, lists
        and history. The states of the network's own generators (numpy
        Generators or RandomStates found as ``network.rng`` or as the ``rng``
        of a layer in ``network.layers``) and of the global ``np.random`` are
        restored too, in place, so that dropout masks continue their sequence. Without a checkpoint, training starts
        from the beginning.
    progress : bool or file-like
        ``True``: a progress bar on ``sys.stderr`` when ``verbose``;
        ``False``: none; a stream: the bar on that stream, even when not
        ``verbose``.
    keep_checkpoints : int or None
        How many of the newest checkpoints to keep (default 2); ``None``
        keeps all.
    loss_from_gradient_pass : bool
        ``False`` (the default, as the book): after each update, the loss of
        the batch is computed again with one more forward pass, and that loss
        (after the step) is recorded. ``True``: the loss computed in the
        gradient pass (before the step, as a PyTorch loop records it) is
        recorded, read from ``network.last_layer.loss``, and a NaN or
        infinite loss stops training before the update; a step then costs
        one forward pass less. With dropout the two choices draw different
        masks, so they follow different trajectories.
    epoch_end_accuracy : bool
        Also measure the accuracies after each epoch's *last* step, on the same
        samples as the book's per-epoch ones (which come after its first
        step); they are the ``end_train_acc``/``end_test_acc`` of the epoch's
        ``history`` entry, saved in its checkpoint. Their time counts as
        evaluation, not training; they draw no random numbers.
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(entry)`` with the ``history`` entry of each
        completed epoch, once its checkpoint (if any) is on disk. Exceptions
        it raises stop training, as one in a step would. With ``comm``, it is
        called on every rank.
    comm : mpi4py.MPI.Comm, optional
        Train in data parallel with the processes of ``comm`` (e.g.
        ``MPI.COMM_WORLD`` under ``mpiexec``); every rank constructs the
        trainer with the same arguments and data. The batch stays
        ``mini_batch_size`` images in all; each rank computes the gradient of
        its share of its rows (at least one: ``mini_batch_size`` must be at
        least the number of ranks) and one ``Allreduce`` of one buffer per step
        combines them, so the parameters follow the trajectory of one process
        to rounding, dropout masks included (with the loss recomputed after
        the update, as ``loss_from_gradient_pass=False``, a second
        ``Allreduce``, of two numbers, gives that loss and the Ctrl-C
        request). The accuracies are computed in shares and their counts
        summed. Rank 0's parameters, generator states and
        optimizer state (or the checkpoint it resumes from, read by rank 0
        alone) are sent to every rank here; rank 0 alone prints, shows
        progress and writes checkpoints, and when that fails every rank
        raises the same exception. With more than one rank, a network with
        BatchNormalization is refused (``ValueError``). ``None`` (the
        default): one process.

    Attributes
    ----------
    train_loss_list, train_acc_list, test_acc_list : list
        As the book: one loss per step, one accuracy per epoch.
    current_iter, current_epoch : int
        Steps done; epochs begun.
    iter_per_epoch : float
        ``max(train_size / mini_batch_size, 1)``.
    max_iter : int
        ``int(epochs * iter_per_epoch)``, computed exactly.
    num_epochs : int
        Epochs (begun or not) in ``max_iter`` steps.
    history : list of dict
        One entry per completed epoch: ``epoch``, ``iterations`` (steps in
        it), ``end_iteration``, ``seconds`` (wall time of steps and
        evaluation), ``train_seconds`` (steps only), ``eval_seconds``,
        ``images_per_sec`` (images / ``train_seconds``), ``loss`` (mean of
        its steps), ``train_acc``/``test_acc`` (the epoch's entries).
    final_test_acc : float or None
        Accuracy on the whole test set after :meth:`train`.
    checkpoint_path : str or None
        The newest checkpoint written or loaded.
    epoch, checkpoint_epoch : int
        Read-only: epochs completed (``len(history)``); the epoch counter of
        the state ``checkpoint_path`` holds (``None`` without one).
    processes : int
        Read-only: the processes training together (1 without ``comm``).

    Raises
    ------
    ValueError
        On inconsistent data, a bad size, or an unknown optimizer name.
    OSError
        When ``checkpoint_dir`` cannot be created or written.
    CheckpointError
        When ``checkpoint_dir`` holds checkpoints and ``resume`` is false (a
        new run would mix its files with an old one), or when the checkpoint
        to resume from does not fit this network, data or optimizer.
    """

    def __init__(
        self,
        network,
        x_train,
        t_train,
        x_test,
        t_test,
        epochs=20,
        mini_batch_size=100,
        optimizer="SGD",
        optimizer_param=None,
        evaluate_sample_num_per_epoch=None,
        verbose=True,
        *,
        seed=None,
        checkpoint_dir=None,
        resume=False,
        progress=True,
        keep_checkpoints=2,
        loss_from_gradient_pass=False,
        epoch_end_accuracy=False,
        on_epoch_end=None,
        comm=None,
    ):
        self.network = network
        self._collective = None if comm is None else Collective(comm)
        self.loss_from_gradient_pass = check_bool(loss_from_gradient_pass, "loss_from_gradient_pass")
        self.epoch_end_accuracy = check_bool(epoch_end_accuracy, "epoch_end_accuracy")
        if on_epoch_end is not None and not callable(on_epoch_end):
            raise TypeError(f"on_epoch_end must be callable or None, got {type(on_epoch_end).__name__}")
        self.on_epoch_end = on_epoch_end
        self.verbose = verbose
        self.x_train = x_train
        self.t_train = t_train
        self.x_test = x_test
        self.t_test = t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self._check_arguments()
        if self._collective is not None and self._collective.size > 1:
            self._check_distributed()

        self.optimizer = self._make_optimizer(optimizer, optimizer_param)
        if self._collective is not None and not _has_state_dict(self.optimizer):
            raise mark_raised_on_every_rank(TypeError(
                f"optimizer: with comm, an optimizer with state_dict()/load_state_dict() (rank 0's "
                f"state goes to every rank), got {type(self.optimizer).__name__}"
            ))
        # With comm: Ctrl-C reached this rank during train() (see _sigint_as_request); some rank's did,
        # as the step's sums say, so every rank stops after this step.
        self._stop_requested = False
        self._stop_agreed = False
        # None: draw the batches from the global np.random, as the book.
        self._rng = None if seed is None else np.random.default_rng(seed)

        self._count_steps()
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []
        self.history = []
        self.final_test_acc = None

        if self._collective is not None and not self._collective.is_root:
            self.verbose, progress = False, False  # rank 0 alone prints
        if progress is True:
            progress = sys.stderr if self.verbose else None
        self._progress_stream = None if progress is False else progress
        self._bar = None
        self._eval_seconds = 0.0
        self._end_accuracies = None  # (iteration, train_acc, test_acc) after the last epoch's last step
        self._reported_iteration = None  # end_iteration of the last epoch given to on_epoch_end

        if keep_checkpoints is not None:
            check_int(keep_checkpoints, "keep_checkpoints (or None)", non_int_error=ValueError)
        self.keep_checkpoints = keep_checkpoints
        self.checkpoint_dir = None
        self.checkpoint_path = None
        self._checkpoint_iteration = None
        self._checkpoint_epoch = None
        resume_from = None
        if checkpoint_dir is None:
            if resume:
                raise ValueError("resume=True needs a checkpoint_dir to resume from")
        else:
            resume_from = self._prepare_checkpoint_dir(checkpoint_dir, resume)
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            self._say(
                f"resumed from {resume_from}: epoch {self.current_epoch}, "
                f"iteration {self.current_iter} of {self.max_iter}"
            )
        elif self._collective is not None:
            self._adopt_root_state()

    # -- set-up ------------------------------------------------------------

    def _count_steps(self):
        """``train_size``, ``iter_per_epoch``, ``max_iter`` and ``num_epochs``, in exact arithmetic."""
        self.train_size = self.x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / self.batch_size, 1)
        # iter_per_epoch = num / den exactly.
        if self.train_size >= self.batch_size:
            self._epoch_num, self._epoch_den = self.train_size, self.batch_size
        else:
            self._epoch_num, self._epoch_den = 1, 1
        self.max_iter = int(Fraction(self.epochs) * Fraction(self._epoch_num, self._epoch_den))
        self.num_epochs = self._epoch_of(self.max_iter - 1) + 1 if self.max_iter > 0 else 0

    def _check_arguments(self):
        for name in ("x_train", "t_train", "x_test", "t_test"):
            if np.ndim(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an array with a sample axis, got {getattr(self, name)!r}")
        for x_name, t_name in (("x_train", "t_train"), ("x_test", "t_test")):
            n_x, n_t = len(getattr(self, x_name)), len(getattr(self, t_name))
            if n_x != n_t:
                raise ValueError(f"{x_name} has {n_x} samples but {t_name} has {n_t}")
        if len(self.x_train) == 0:
            raise ValueError("x_train: expected at least one sample, got none")
        check_int(self.batch_size, "mini_batch_size", non_int_error=ValueError)
        try:
            valid_epochs = math.isfinite(self.epochs) and self.epochs >= 0
        except TypeError:
            valid_epochs = False
        if not valid_epochs:
            raise ValueError(f"epochs: expected a number >= 0, got {self.epochs!r}")
        if self.evaluate_sample_num_per_epoch is not None:
            check_int(self.evaluate_sample_num_per_epoch, "evaluate_sample_num_per_epoch (or None)",
                      non_int_error=ValueError)

    @staticmethod
    def _make_optimizer(optimizer, optimizer_param):
        if not isinstance(optimizer, str):
            if not callable(getattr(optimizer, "update", None)):
                raise ValueError(
                    f"optimizer: expected a name or an object with update(params, grads), got {optimizer!r}"
                )
            if optimizer_param:
                raise ValueError("optimizer_param applies to an optimizer given by name, not to an optimizer object")
            return optimizer
        from cconv.optim import OPTIMIZERS

        try:
            cls = OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)} (any case), got {optimizer!r}") from None
        return cls(**({"lr": 0.01} if optimizer_param is None else optimizer_param))

    def _check_distributed(self):
        """With ``comm``: the network splits by rows, and every rank has a row of each batch.

        The same on every rank: its ``ValueError`` is marked raised on every rank.
        """
        try:
            check_distributable(self.network)
        except ValueError as exc:
            raise mark_raised_on_every_rank(exc) from None
        size = self._collective.size
        if self.batch_size < size:
            raise mark_raised_on_every_rank(ValueError(
                f"mini_batch_size: expected at least the number of processes ({size}), "
                f"got {self.batch_size}: each process computes at least one row of a batch"
            ))

    def _prepare_checkpoint_dir(self, checkpoint_dir, resume):
        """Check ``checkpoint_dir`` (create it if needed); return the checkpoint to resume from, or ``None``.

        With ``comm``, rank 0 alone looks at the folder; an error there is
        raised on every rank.
        """
        if not _has_state_dict(self.optimizer):
            raise ValueError(
                f"checkpoint_dir: the optimizer {type(self.optimizer).__name__} has no "
                "state_dict()/load_state_dict(), so its state cannot be checkpointed"
            )
        if self._collective is None:
            directory, path = self._look_into_checkpoint_dir(checkpoint_dir)
        else:
            directory, path = self._collective.on_root(
                lambda: self._look_into_checkpoint_dir(checkpoint_dir)
            )
        self.checkpoint_dir = directory
        if path is not None and not resume:
            raise CheckpointError(
                f"checkpoint_dir {self.checkpoint_dir!r} already holds checkpoints of a run "
                f"(newest: {os.path.basename(path)}): pass resume=True to continue it, "
                "or use an empty folder for a new run"
            )
        if path is None and resume:
            self._say(f"no checkpoint in {self.checkpoint_dir}: training starts from the beginning")
        return path

    @staticmethod
    def _look_into_checkpoint_dir(checkpoint_dir):
        """``(directory, newest checkpoint or None)``, the folder created and checked writable."""
        directory = check_writable_dir(checkpoint_dir, "checkpoint_dir")
        # A process killed while writing a checkpoint left its temporary file.
        remove_stale_temp_files(directory, _checkpoint.is_checkpoint_name)
        return directory, latest_checkpoint(directory)

    # -- epochs ------------------------------------------------------------

    def _epoch_of(self, iteration):
        """0-based epoch of a 0-based iteration: ``floor(iteration / iter_per_epoch)``."""
        return iteration * self._epoch_den // self._epoch_num

    def _epoch_start(self, epoch):
        """First iteration of a 0-based epoch: ``ceil(epoch * iter_per_epoch)``."""
        return -(-epoch * self._epoch_num // self._epoch_den)

    # -- training ----------------------------------------------------------

    def train_step(self):
        """One step on a random mini-batch (with replacement), as the book.

        Draws the batch from the trainer's generator (from ``np.random``
        without a seed, as the book), computes the gradient,
        updates the parameters, appends the loss to ``train_loss_list`` (after
        the update, or from the gradient pass: ``loss_from_gradient_pass``),
        and on the first step of an epoch measures the accuracies. Returns
        the loss.

        Raises
        ------
        TrainingDiverged
            If the loss is NaN or infinite.
        """
        iteration = self.current_iter
        if self._rng is None:
            batch_mask = np.random.choice(self.train_size, self.batch_size)
        else:
            batch_mask = self._rng.choice(self.train_size, self.batch_size)
        if self._collective is None:
            loss = self._step(batch_mask, iteration)
        else:
            loss = self._distributed_step(batch_mask, iteration)

        if iteration == self._epoch_start(self._epoch_of(iteration)):
            self.current_epoch += 1
            self._evaluate()
        self.current_iter += 1
        if self._stop_agreed:
            self._stop_requested = self._stop_agreed = False
            raise mark_raised_on_every_rank(_StopRequested())
        return loss

    def _step(self, batch_mask, iteration):
        """Gradient, update and loss of the batch ``batch_mask`` in this process; returns the loss."""
        x_batch = self.x_train[batch_mask]
        t_batch = self.t_train[batch_mask]
        grads = self.network.gradient(x_batch, t_batch)
        if self.loss_from_gradient_pass:
            loss = self._gradient_pass_loss()
            self._record_loss(loss, iteration)
            self.optimizer.update(self.network.params, grads)
        else:
            self.optimizer.update(self.network.params, grads)
            loss = self.network.loss(x_batch, t_batch)
            self._record_loss(loss, iteration)
        return loss

    def _distributed_step(self, batch_mask, iteration):
        """:meth:`_step` with ``comm``: this rank's rows, then the weighted sums of all ranks.

        The gradient of the batch is the sum over the ranks of each rank's
        gradient (a mean over its rows) times its share of the rows; so is the
        loss. With ``loss_from_gradient_pass`` the loss travels in the
        gradients' buffer. So does a pending Ctrl-C of any rank: after the sum,
        every rank knows whether to stop after this step.
        """
        collective = self._collective
        start, stop = collective.share(self.batch_size)
        rows = batch_mask[start:stop]
        x_batch, t_batch = self.x_train[rows], self.t_train[rows]
        weight = (stop - start) / self.batch_size
        stop = 1.0 if self._stop_requested else 0.0
        with dropout_rows(self.network, start, self.batch_size):
            grads = self.network.gradient(x_batch, t_batch)
            if self.loss_from_gradient_pass:
                grads, (loss, stop) = collective.weighted_sum(grads, weight, [self._gradient_pass_loss(), stop])
                self._stop_agreed = stop > 0
                self._record_loss(loss, iteration)
                self.optimizer.update(self.network.params, grads)
            else:
                grads, _ = collective.weighted_sum(grads, weight)
                self.optimizer.update(self.network.params, grads)
                _, (loss, stop) = collective.weighted_sum({}, weight, [self.network.loss(x_batch, t_batch), stop])
                self._stop_agreed = stop > 0
                self._record_loss(loss, iteration)
        return loss

    def _gradient_pass_loss(self):
        """The loss the last ``network.gradient`` computed (its loss layer's ``loss``)."""
        loss = getattr(getattr(self.network, "last_layer", None), "loss", None)
        if loss is None:
            raise TypeError(
                "loss_from_gradient_pass=True needs a network whose last_layer keeps the "
                f"loss of its forward pass as .loss (as SoftmaxWithLoss), got {type(self.network).__name__}"
            )
        return loss

    def _record_loss(self, loss, iteration):
        """Append a step's loss; stop on NaN or inf; print it when there is no bar (as the book)."""
        self.train_loss_list.append(loss)
        if not math.isfinite(float(loss)):
            self._diverged(loss, iteration)
        if self.verbose and (self._bar is None or not self._bar.enabled):
            print("train loss:" + str(loss))

    def _evaluate(self):
        start = time.perf_counter()
        with self._bar.paused() if self._bar is not None else contextlib.nullcontext():
            train_acc, test_acc = self._accuracies()
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                self._say(
                    "=== epoch:" + str(self.current_epoch) + ", train acc:" + str(train_acc)
                    + ", test acc:" + str(test_acc) + " ==="
                )
        self._eval_seconds += time.perf_counter() - start

    def _accuracies(self):
        """Train and test accuracy on the first ``evaluate_sample_num_per_epoch`` samples (all: None)."""
        n = self.evaluate_sample_num_per_epoch
        return self._accuracy((self.x_train[:n], self.t_train[:n]), (self.x_test[:n], self.t_test[:n]))

    def _accuracy(self, *sets):
        """``network.accuracy`` of each ``(x, t)`` of ``sets``; with ``comm``, each rank counts a share."""
        if self._collective is None:
            accuracies = tuple(self.network.accuracy(x, t) for x, t in sets)
            return accuracies[0] if len(sets) == 1 else accuracies
        counts = []
        for x, t in sets:
            start, stop = self._collective.share(len(x))
            # network.accuracy is correct / samples: round() gives the count back exactly.
            counts.append(round(self.network.accuracy(x[start:stop], t[start:stop]) * (stop - start))
                          if stop > start else 0)
        counts = self._collective.sum_counts(counts)
        accuracies = tuple(count / len(x) for count, (x, _) in zip(counts, sets))
        return accuracies[0] if len(sets) == 1 else accuracies

    def _measure_epoch_end(self):
        """With ``epoch_end_accuracy``: the accuracies after the epoch's last step (evaluation time)."""
        start = time.perf_counter()
        train_acc, test_acc = self._accuracies()
        self._end_accuracies = (self.current_iter, float(train_acc), float(test_acc))
        self._eval_seconds += time.perf_counter() - start

    def _diverged(self, loss, iteration):
        epoch = self._epoch_of(iteration) + 1
        in_epoch = iteration - self._epoch_start(epoch - 1) + 1
        if self._collective is not None:  # rank 0 wrote them, and told every rank
            checkpoint = self.checkpoint_path
        else:
            checkpoint = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        if checkpoint:
            where = f"the last good checkpoint is {checkpoint} (resume=True continues from it)"
        else:
            where = "no checkpoint was written (pass checkpoint_dir= to keep one per epoch)"
        diverged = TrainingDiverged(
            f"training diverged: the loss is {float(loss)} at epoch {epoch}, iteration "
            f"{in_epoch} of the epoch (step {iteration + 1} of {self.max_iter}); the parameters "
            f"are no longer usable; {where}. Try a lower learning rate.",
            epoch=epoch,
            iteration=iteration,
            loss=float(loss),
            checkpoint=checkpoint,
        )
        # With comm every rank saw the same summed loss, and stops here.
        raise mark_raised_on_every_rank(diverged) if self._collective is not None else diverged

    def train(self):
        """Run the remaining steps, epoch by epoch, then print the final test accuracy.

        After each epoch a checkpoint is written (with ``checkpoint_dir``).
        On ``KeyboardInterrupt`` the epoch in progress is dropped: the
        checkpoint of the last completed epoch is on disk, and the interrupt
        is raised again. With ``comm``, Ctrl-C on any rank stops every rank
        after the same step, as if the interrupt had come there.
        """
        if self._collective is not None and self._collective.size > 1:
            with _sigint_as_request(self):
                self._run_epochs()
        else:
            self._run_epochs()
        self.final_test_acc = self._accuracy((self.x_test, self.t_test))
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(self.final_test_acc))

    def _run_epochs(self):
        while self.current_iter < self.max_iter:
            self._run_epoch()

    def _run_epoch(self):
        epoch_index = self._epoch_of(self.current_iter)
        end = min(self._epoch_start(epoch_index + 1), self.max_iter)
        steps = end - self.current_iter
        first_loss = len(self.train_loss_list)
        self._bar = ProgressBar(
            steps,
            label=f"epoch {epoch_index + 1}/{self.num_epochs}",
            stream=self._progress_stream,
            enabled=self._progress_stream is not None,
        )
        self._eval_seconds = 0.0
        start = time.perf_counter()
        try:
            with self._bar:
                while self.current_iter < end:
                    loss = self.train_step()
                    self._bar.update(items=self.batch_size, loss=loss)
                if self.epoch_end_accuracy:
                    self._measure_epoch_end()
            with _sigint_deferred():
                self._finish_epoch(steps, first_loss, start)
        except KeyboardInterrupt as exc:
            completed = self.current_iter == end
            # With comm, only a stop every rank agreed on leaves them all here, able to go on together.
            if completed and (self._collective is None or isinstance(exc, _StopRequested)):
                # Ctrl-C came after the last step but before the deferred block:
                # the state is still the end of the epoch, so record it now.
                with _sigint_deferred():
                    self._finish_epoch(steps, first_loss, start)
            self._report_interrupt(epoch_index + 1, completed)
            raise
        finally:
            self._bar = None

    def _finish_epoch(self, steps, first_loss, start):
        """Record the completed epoch in ``history``, write its checkpoint, call ``on_epoch_end`` (each once)."""
        if self.history and self.history[-1]["end_iteration"] == self.current_iter:
            entry = self.history[-1]
        else:
            entry = self._history_entry(steps, first_loss, start)
            self.history.append(entry)
        if self.checkpoint_dir is not None and self._checkpoint_iteration != self.current_iter:
            self.save_checkpoint()
        if self.on_epoch_end is not None and self._reported_iteration != self.current_iter:
            self._reported_iteration = self.current_iter
            self.on_epoch_end(entry)

    def _history_entry(self, steps, first_loss, start):
        """The ``history`` entry of the epoch that just ended (see the class docstring)."""
        seconds = time.perf_counter() - start
        train_seconds = seconds - self._eval_seconds
        losses = self.train_loss_list[first_loss:]
        entry = {
            "epoch": self.current_epoch,
            "iterations": steps,
            "end_iteration": self.current_iter,
            "seconds": seconds,
            "train_seconds": train_seconds,
            "eval_seconds": self._eval_seconds,
            "images_per_sec": steps * self.batch_size / max(train_seconds, 1e-12),
            "loss": _json_number(np.mean(losses)) if losses else None,
            "train_acc": _json_number(self.train_acc_list[-1]) if self.train_acc_list else None,
            "test_acc": _json_number(self.test_acc_list[-1]) if self.test_acc_list else None,
        }
        end = self._end_accuracies
        if end is not None and end[0] == self.current_iter:
            entry["end_train_acc"], entry["end_test_acc"] = end[1:]
        return entry

    def _report_interrupt(self, epoch, completed):
        if not self.verbose:
            return
        state = "after the end of" if completed else "during"
        if self.checkpoint_path:
            where = (
                f"checkpoint on disk: {self.checkpoint_path} (epoch {self._checkpoint_epoch}, "
                f"iteration {self._checkpoint_iteration}); resume=True continues from it"
            )
        else:
            where = "no checkpoint on disk"
        print(f"interrupted {state} epoch {epoch}: {where}", file=sys.stderr, flush=True)

    def _say(self, message):
        """Print a line to stdout (when verbose) without breaking the progress bar."""
        if not self.verbose:
            return
        if self._bar is not None:
            self._bar.clear()
        print(message, flush=True)

    # -- state -------------------------------------------------------------

    @property
    def epoch(self):
        """Epochs completed so far (entries in ``history``), resumed ones included."""
        return len(self.history)

    @property
    def checkpoint_epoch(self):
        """The epoch counter (``current_epoch``) of the state :attr:`checkpoint_path` holds (``None``: no checkpoint).

        The epochs that checkpoint has completed, for the per-epoch checkpoints
        of :meth:`train`.
        """
        return self._checkpoint_epoch

    @property
    def processes(self):
        """The number of processes training together (the size of ``comm``; 1 without)."""
        return 1 if self._collective is None else self._collective.size

    # -- results -----------------------------------------------------------

    def metrics(self):
        """A JSON-ready summary: the lists, the per-epoch history and the final accuracy.

        NaN and infinite values become ``None``.
        """
        return {
            "train_loss_list": [_json_number(v) for v in self.train_loss_list],
            "train_acc_list": [_json_number(v) for v in self.train_acc_list],
            "test_acc_list": [_json_number(v) for v in self.test_acc_list],
            "history": [dict(entry) for entry in self.history],
            "final_test_acc": None if self.final_test_acc is None else _json_number(self.final_test_acc),
            "iterations": self.current_iter,
            "epochs": self.current_epoch,
            "max_iter": self.max_iter,
            "mini_batch_size": int(self.batch_size),
            "optimizer": type(self.optimizer).__name__,
            "processes": self.processes,
        }

    # -- checkpoints -------------------------------------------------------

    def _checkpoint(self):
        """The state of the run as a :class:`~cconv.checkpoint.Checkpoint`."""
        return Checkpoint(
            run={**self._run_settings(), "epochs": float(self.epochs), "max_iter": self.max_iter,
                 "network": type(self.network).__name__},
            params=self.network.params,
            optimizer_state=self.optimizer.state_dict(),
            batch_rng_state=None if self._rng is None else self._rng.bit_generator.state,
            global_rng_state=_checkpoint.get_rng_state(np.random),
            network_rng_states=[_checkpoint.get_rng_state(rng) for rng in network_rngs(self.network)],
            current_iter=self.current_iter,
            current_epoch=self.current_epoch,
            train_loss_list=self.train_loss_list,
            train_acc_list=self.train_acc_list,
            test_acc_list=self.test_acc_list,
            history=self.history,
        )

    def _run_settings(self):
        """What a checkpoint must share with this run to continue it."""
        return {
            "train_size": int(self.train_size),
            "mini_batch_size": int(self.batch_size),
            "optimizer": type(self.optimizer).__name__,
        }

    def save_checkpoint(self, path=None):
        """Write the training state atomically to ``path`` (default: the epoch's file in ``checkpoint_dir``).

        Older checkpoints beyond ``keep_checkpoints`` are then removed. Returns
        the path. With ``comm``, rank 0 writes it (every rank calls this; a
        relative ``path`` is taken from rank 0's working directory, and the
        path returned is rank 0's), and if that fails every rank raises.
        """
        default = path is None
        if default and self.checkpoint_dir is None:
            raise ValueError("save_checkpoint: no path given and no checkpoint_dir set")

        def write():
            target = _checkpoint.checkpoint_path(self.checkpoint_dir, self.current_epoch) if default else path
            target = os.path.abspath(os.fspath(target))
            self._checkpoint().write(target)
            if default:
                _checkpoint.prune_checkpoints(self.checkpoint_dir, self.keep_checkpoints)
            return target

        path = write() if self._collective is None else self._collective.on_root(write)
        self._mark_checkpoint(path)
        return path

    def load_checkpoint(self, path):
        """Restore the training state from a checkpoint written by :meth:`save_checkpoint`.

        Everything is checked before anything changes: the parameters must
        have this network's keys, shapes and dtypes (checked from each
        entry's header, before its data is read), and the checkpoint must
        come from a run with this training-set size, mini-batch size and
        optimizer class. Parameters are copied into ``network.params`` in
        place (the layers keep sharing them).

        With ``comm``, rank 0 reads the file (``path`` as rank 0 sees it) and
        sends it to every rank, which checks and loads it; if that fails on
        any rank, every rank raises.

        Raises
        ------
        CheckpointError
            If the file cannot be read or does not fit.
        """
        if self._collective is None:
            path = os.path.abspath(os.fspath(path))
            self._restore(Checkpoint.read(path, self.network.params), path)
        else:
            contents = []

            def read_file():
                absolute = os.path.abspath(os.fspath(path))
                contents.append(Checkpoint.file_bytes(absolute, self.network.params))
                return absolute

            path = self._collective.on_root(read_file)
            data = self._collective.broadcast_bytes(contents[0] if contents else b"")
            self._collective.on_every_rank(
                lambda: self._restore(Checkpoint.read(path, self.network.params, data), path)
            )
        self._mark_checkpoint(path)

    def _adopt_root_state(self):
        """With ``comm``: every rank takes rank 0's parameters, optimizer state, generators and counters."""
        collective = self._collective
        source = "the state of rank 0"
        data = collective.broadcast_bytes(self._checkpoint().to_bytes() if collective.is_root else b"")

        def adopt():
            if not collective.is_root:
                self._restore(Checkpoint.read(source, self.network.params, data), source)

        collective.on_every_rank(adopt)

    def _restore(self, saved, source):
        """Put the state of the :class:`Checkpoint` ``saved`` (read from ``source``) into this run.

        Everything is checked before anything changes (``CheckpointError``).
        """
        params = self.network.params
        rngs = network_rngs(self.network)
        problems = saved.misfits(self._run_settings(), params, rngs)
        if problems:
            raise CheckpointError(f"checkpoint {source} does not fit this training run: " + "; ".join(problems))
        try:
            self.optimizer.load_state_dict(saved.optimizer_state)  # checks, and changes nothing on error
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {source}: the optimizer state does not fit: {exc}") from exc
        for key, value in saved.params.items():
            params[key][...] = value
        self._rng = saved.batch_rng()
        saved.restore_rngs(rngs)
        self.current_iter = saved.current_iter
        self.current_epoch = saved.current_epoch
        self.train_loss_list = saved.train_loss_list
        self.train_acc_list = saved.train_acc_list
        self.test_acc_list = saved.test_acc_list
        self.history = saved.history

    def _mark_checkpoint(self, path):
        """Record that ``path`` holds the current state."""
        self.checkpoint_path = path
        self._checkpoint_iteration = self.current_iter
        self._checkpoint_epoch = self.current_epoch


def _has_state_dict(optimizer):
    """True if ``optimizer`` has ``state_dict()`` and ``load_state_dict()`` (its state can be saved and sent)."""
    return callable(getattr(optimizer, "state_dict", None)) and callable(getattr(optimizer, "load_state_dict", None))
