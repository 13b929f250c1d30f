"""The book's Trainer (cconv.trainer): book semantics, seeds, NaN stop, checkpoints, resume, progress.

Most tests train a tiny two-layer affine network defined here (the book's
interface: ``params``, ``gradient``, ``loss``, ``accuracy``) on three Gaussian
blobs, so they take milliseconds and depend on no other network code. One
test trains the real SimpleConvNet on real MNIST images.
"""

import io
import json
import os
import signal
import time
import types

import numpy as np
import pytest

from cconv import checkpoint as checkpoint_module
from cconv.trainer import CheckpointError, Trainer, TrainingDiverged, latest_checkpoint

from cconv_testutils import load_mnist_test, shared_data

# --------------------------------------------------------------------------
# A tiny network and data
# --------------------------------------------------------------------------


class TinyNet:
    """affine - relu - affine - softmax with loss, with the book's network interface.

    ``dropout``: None, or where the hidden layer's dropout masks (training
    only) come from: ``"rng"`` (the network's own generator ``self.rng``),
    ``"layer"`` (the ``rng`` of a layer in ``self.layers``, as cconv's nets
    with a seed) or ``"global"`` (``np.random``, as the book).
    """

    def __init__(self, input_size=4, hidden_size=8, output_size=3, seed=0, dtype=np.float64, dropout=None):
        rng = np.random.default_rng(seed)
        self.dropout = dropout
        noise_rng = np.random.default_rng(seed + 1000)
        if dropout == "rng":
            self.rng = noise_rng
        elif dropout == "layer":
            self.layers = {"Affine1": object(), "Dropout1": types.SimpleNamespace(rng=noise_rng)}
        self._noise_rng = noise_rng
        self.params = {
            "W1": (0.5 * rng.standard_normal((input_size, hidden_size))).astype(dtype),
            "b1": np.zeros(hidden_size, dtype=dtype),
            "W2": (0.5 * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }

    def _forward(self, x, train_flg=False):
        p = self.params
        hidden = np.maximum(x @ p["W1"] + p["b1"], 0)
        if train_flg and self.dropout:
            noise = np.random.rand(*hidden.shape) if self.dropout == "global" else self._noise_rng.random(hidden.shape)
            hidden = hidden * (noise > 0.2)
        return hidden, hidden @ p["W2"] + p["b2"]

    def predict(self, x, train_flg=False):
        return self._forward(x)[1]

    @staticmethod
    def _softmax(scores):
        shifted = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)

    def loss(self, x, t):
        y = self._softmax(self.predict(x))
        return -np.mean(np.log(y[np.arange(len(t)), t] + 1e-7))

    def accuracy(self, x, t, batch_size=100):
        return float(np.mean(np.argmax(self.predict(x), axis=1) == t))

    def gradient(self, x, t):
        hidden, scores = self._forward(x, train_flg=True)
        dscores = self._softmax(scores)
        dscores[np.arange(len(t)), t] -= 1
        dscores /= len(t)
        dhidden = (dscores @ self.params["W2"].T) * (hidden > 0)
        return {
            "W1": x.T @ dhidden,
            "b1": dhidden.sum(axis=0),
            "W2": hidden.T @ dscores,
            "b2": dscores.sum(axis=0),
        }


def blobs(n, seed):
    """``n`` points of three Gaussian blobs in 4-D and their labels."""
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    t = rng.integers(0, 3, size=n)
    return centers[t] + rng.standard_normal((n, 4)), t


X_TRAIN, T_TRAIN = blobs(300, seed=1)
X_TEST, T_TEST = blobs(90, seed=2)


def make_trainer(network=None, *, epochs=4, mini_batch_size=100, optimizer="Adam", x=X_TRAIN, t=X_TRAIN, **kwargs):
    kwargs.setdefault("optimizer_param", {"lr": 0.05})
    kwargs.setdefault("verbose", False)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("seed", 0)
    return Trainer(
        TinyNet() if network is None else network,
        x,
        T_TRAIN if t is X_TRAIN else t,
        X_TEST,
        T_TEST,
        epochs=epochs,
        mini_batch_size=mini_batch_size,
        optimizer=optimizer,
        **kwargs,
    )


def assert_same_run(a, b):
    """Bit-identical losses, accuracies, parameters and optimizer state."""
    assert len(a.train_loss_list) == len(b.train_loss_list)
    assert np.array_equal(np.array(a.train_loss_list), np.array(b.train_loss_list))
    assert a.train_acc_list == b.train_acc_list and a.test_acc_list == b.test_acc_list
    assert a.network.params.keys() == b.network.params.keys()
    for key in a.network.params:
        assert a.network.params[key].dtype == b.network.params[key].dtype
        assert np.array_equal(a.network.params[key], b.network.params[key]), key
    state_a, state_b = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert np.array_equal(state_a[key], state_b[key]), key
    assert (a.current_iter, a.current_epoch) == (b.current_iter, b.current_epoch)


class Crash(Exception):
    """Stands for the process dying mid-run."""


def fail_at(network, iteration, error):
    """Make ``network.gradient`` raise ``error`` on its call number ``iteration`` (0-based)."""
    real_gradient = network.gradient
    calls = []

    def gradient(x, t):
        calls.append(1)
        if len(calls) == iteration + 1:
            raise error
        return real_gradient(x, t)

    network.gradient = gradient
    return network


# --------------------------------------------------------------------------
# The book's semantics
# --------------------------------------------------------------------------


def test_book_lists_and_counters(capsys):
    net = TinyNet()
    seen = []
    real_accuracy = net.accuracy
    net.accuracy = lambda x, t: seen.append((trainer.current_iter, len(x))) or real_accuracy(x, t)
    trainer = make_trainer(net, verbose=True)
    assert (trainer.iter_per_epoch, trainer.max_iter, trainer.num_epochs) == (3.0, 12, 4)
    trainer.train()
    assert len(trainer.train_loss_list) == 12
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 4
    assert (trainer.current_iter, trainer.current_epoch) == (12, 4)
    # as the book: accuracies after the first step of each epoch (current_iter
    # not yet incremented), on all the samples; then the final test accuracy
    assert seen == [(0, 300), (0, 90), (3, 300), (3, 90), (6, 300), (6, 90), (9, 300), (9, 90), (12, 90)]
    assert trainer.test_acc_list[-1] > 0.8 and trainer.final_test_acc > 0.8
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("train loss:") for line in out) == 12  # no progress bar: the book's lines
    assert out[1].startswith("=== epoch:1, train acc:") and out[1].endswith(" ===")
    assert out[-2:] == ["=============== Final Test Accuracy ===============", f"test acc:{trainer.final_test_acc}"]


@pytest.mark.parametrize(
    ("train_size", "batch", "epochs", "max_iter", "eval_iterations"),
    [
        (250, 100, 4, 10, [0, 3, 5, 8]),  # iter_per_epoch 2.5: the book's float modulo would skip two
        (1000, 300, 3, 10, [0, 4, 7]),
        (50, 100, 3, 3, [0, 1, 2]),  # fewer samples than a batch: one step per epoch
    ],
)
def test_epoch_boundaries_are_exact(train_size, batch, epochs, max_iter, eval_iterations):
    net = TinyNet()
    seen = []
    net.accuracy = lambda x, t: seen.append(trainer.current_iter) or 0.5
    x, t = blobs(train_size, seed=5)
    trainer = make_trainer(net, x=x, t=t, epochs=epochs, mini_batch_size=batch)
    trainer.train()
    assert trainer.max_iter == max_iter == len(trainer.train_loss_list)
    assert seen[:-1:2] == eval_iterations
    assert [entry["iterations"] for entry in trainer.history] == np.diff(eval_iterations + [max_iter]).tolist()


def test_evaluate_sample_num_and_optimizer_names():
    net = TinyNet()
    sizes = []
    net.accuracy = lambda x, t: sizes.append(len(x)) or 0.5
    make_trainer(net, epochs=1, evaluate_sample_num_per_epoch=50, optimizer="sGd").train()
    assert sizes == [50, 50, 90]
    with pytest.raises(ValueError, match=r"optimizer: expected one of \['adagrad', 'adam'.*got 'adamw'"):
        make_trainer(optimizer="adamw")
    with pytest.raises(ValueError, match="mini_batch_size"):
        make_trainer(mini_batch_size=0)
    with pytest.raises(ValueError, match="x_train has 300 samples but t_train has 10"):
        make_trainer(t=T_TRAIN[:10])


def test_seed_makes_runs_reproducible():
    a, b, c = make_trainer(seed=7), make_trainer(seed=7), make_trainer(seed=8)
    for trainer in (a, b, c):
        trainer.train()
    assert_same_run(a, b)
    assert a.train_loss_list != c.train_loss_list


@pytest.fixture
def global_rng_restored():
    """Restore ``np.random``'s global state after a test that seeds it."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def test_without_seed_the_batches_come_from_np_random_as_the_book(global_rng_restored):
    """seed=None: ``np.random.seed(s)`` before a book script makes the run repeat exactly."""

    def run():
        np.random.seed(0)
        net = TinyNet()
        seen = []
        real_gradient = net.gradient
        net.gradient = lambda x, t: seen.append(x.copy()) or real_gradient(x, t)
        trainer = make_trainer(net, seed=None)
        trainer.train()
        return trainer, seen

    (a, batches), (b, _) = run(), run()
    assert_same_run(a, b)
    # the very batches of the book's np.random.choice(train_size, batch_size)
    np.random.seed(0)
    expected = [X_TRAIN[np.random.choice(300, 100)] for _ in range(a.max_iter)]
    assert all(np.array_equal(got, want) for got, want in zip(batches, expected, strict=True))
    np.random.seed(1)
    other = make_trainer(seed=None)
    other.train()
    assert a.train_loss_list != other.train_loss_list


def test_history_and_metrics_are_json_ready():
    trainer = make_trainer(epochs=2)
    trainer.train()
    assert [entry["epoch"] for entry in trainer.history] == [1, 2]
    for entry in trainer.history:
        assert entry["iterations"] == 3 and entry["images_per_sec"] > 0
        assert 0 < entry["train_seconds"] <= entry["seconds"]
    metrics = json.loads(json.dumps(trainer.metrics(), allow_nan=False))
    assert metrics["final_test_acc"] == trainer.final_test_acc
    assert len(metrics["train_loss_list"]) == 6 and metrics["optimizer"] == "Adam"


# --------------------------------------------------------------------------
# NaN / inf stop
# --------------------------------------------------------------------------


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    reference = make_trainer(epochs=2)
    reference.train()

    net = TinyNet()
    real_gradient = net.gradient
    steps = []

    def gradient(x, t):  # from step 7 (epoch 3, its 2nd step) the gradient blows up
        steps.append(1)
        grads = real_gradient(x, t)
        if len(steps) == 8:
            grads["W2"][0, 0] = np.nan
        return grads

    net.gradient = gradient
    trainer = make_trainer(net, checkpoint_dir=tmp_path)
    with np.errstate(invalid="ignore"), pytest.raises(TrainingDiverged) as info:
        trainer.train()
    error = info.value
    message = str(error)
    assert "loss is nan at epoch 3, iteration 2 of the epoch (step 8 of 12)" in message
    assert "epoch-0002.npz" in message
    assert (error.epoch, error.iteration, error.checkpoint) == (3, 7, str(tmp_path / "epoch-0002.npz"))
    assert np.isnan(error.loss)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.npz", "epoch-0002.npz"]
    with np.load(tmp_path / "epoch-0002.npz", allow_pickle=False) as data:
        assert int(data["current_iter"]) == 6
        for key, value in reference.network.params.items():
            assert np.array_equal(data[f"params/{key}"], value)


# --------------------------------------------------------------------------
# Checkpoints and resume
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted():
    """The reference: 4 epochs of Adam in one go."""
    trainer = make_trainer()
    trainer.train()
    return trainer


def resume(checkpoint_dir, **kwargs):
    """A new trainer on a *differently initialised* network, resumed from ``checkpoint_dir``."""
    trainer = make_trainer(TinyNet(seed=99), checkpoint_dir=checkpoint_dir, resume=True, seed=12345, **kwargs)
    trainer.train()
    return trainer


def test_checkpoint_contents(tmp_path):
    trainer = make_trainer(epochs=2, checkpoint_dir=tmp_path, keep_checkpoints=None)
    trainer.train()
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.npz", "epoch-0002.npz"]
    assert latest_checkpoint(tmp_path) == str(tmp_path / "epoch-0002.npz")
    with np.load(tmp_path / "epoch-0002.npz", allow_pickle=False) as data:
        assert data["rng_state"].shape == () and data["rng_state"].dtype.kind == "U"
        assert json.loads(str(data["rng_state"]))["bit_generator"] == "PCG64"
        assert (int(data["current_iter"]), int(data["current_epoch"])) == (6, 2)
        assert np.array_equal(data["train_loss_list"], trainer.train_loss_list)
        assert {"optimizer/iter", "optimizer/m/W1", "optimizer/v/b2", "params/W1"} <= set(data.files)
        meta = json.loads(str(data["meta"]))
        assert [entry["epoch"] for entry in meta["history"]] == [1, 2]


def test_resume_after_a_crash_follows_the_same_trajectory(tmp_path, uninterrupted):
    crashed = make_trainer(fail_at(TinyNet(), 6, Crash()), checkpoint_dir=tmp_path)
    with pytest.raises(Crash):
        crashed.train()  # 2 of 4 epochs done
    assert latest_checkpoint(tmp_path) == str(tmp_path / "epoch-0002.npz")
    resumed = resume(tmp_path)
    assert_same_run(resumed, uninterrupted)
    assert [entry["epoch"] for entry in resumed.history] == [1, 2, 3, 4]


@pytest.mark.parametrize("dropout", ["rng", "layer", "global"])
def test_resume_restores_the_networks_random_masks(tmp_path, dropout):
    def run(network, folder, global_seed, **kwargs):
        np.random.seed(global_seed)
        trainer = make_trainer(network, checkpoint_dir=tmp_path / folder, **kwargs)
        trainer.train()
        return trainer

    reference = run(TinyNet(dropout=dropout), "reference", 0)
    with pytest.raises(Crash):
        run(fail_at(TinyNet(dropout=dropout), 7, Crash()), "run", 0)
    # as in a new process: another global state, another network generator
    resumed = run(TinyNet(seed=4, dropout=dropout), "run", 123, resume=True)
    assert_same_run(resumed, reference)


@pytest.mark.parametrize("resume_seed", [None, 12345])
def test_resume_without_seed_continues_the_global_sequence(tmp_path, global_rng_restored, resume_seed):
    """seed=None draws the batches (and the book's dropout) from np.random; its state is checkpointed."""

    def run(network, folder, global_seed, **kwargs):
        np.random.seed(global_seed)
        trainer = make_trainer(network, checkpoint_dir=tmp_path / folder, **kwargs)
        trainer.train()
        return trainer

    reference = run(TinyNet(dropout="global"), "reference", 0, seed=None)
    with pytest.raises(Crash):
        run(fail_at(TinyNet(dropout="global"), 7, Crash()), "run", 0, seed=None)
    with np.load(tmp_path / "run" / "epoch-0002.npz", allow_pickle=False) as data:
        assert json.loads(str(data["rng_state"])) is None  # no generator of the trainer's own
    # as in a new process: another global state; the checkpoint's choice of source wins over seed=
    resumed = run(TinyNet(seed=4, dropout="global"), "run", 123, resume=True, seed=resume_seed)
    assert_same_run(resumed, reference)


def test_resume_extends_a_finished_run(tmp_path, uninterrupted):
    make_trainer(epochs=2, checkpoint_dir=tmp_path).train()
    assert_same_run(resume(tmp_path, epochs=4), uninterrupted)


def test_keyboard_interrupt_mid_epoch_keeps_the_previous_checkpoint(tmp_path, uninterrupted, capsys):
    # step 7 is the 2nd step of epoch 3
    interrupted = make_trainer(fail_at(TinyNet(), 7, KeyboardInterrupt()), checkpoint_dir=tmp_path, verbose=True)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert "interrupted during epoch 3" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.npz", "epoch-0002.npz"]
    with np.load(tmp_path / "epoch-0002.npz", allow_pickle=False) as data:
        assert int(data["current_iter"]) == 6 and len(data["train_loss_list"]) == 6
    assert_same_run(resume(tmp_path), uninterrupted)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler (a process started in the background ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint_handler")
def test_interrupt_while_writing_a_checkpoint_still_saves_the_epoch(tmp_path, monkeypatch, uninterrupted):
    """Ctrl-C during the write is held back until the checkpoint is complete."""
    real_save = checkpoint_module.atomic_save_npz
    saves = []

    def save_with_sigint(path, arrays):
        saves.append(path)
        if len(saves) == 2:
            signal.raise_signal(signal.SIGINT)  # arrives while epoch 2 is being written
        real_save(path, arrays)

    monkeypatch.setattr(checkpoint_module, "atomic_save_npz", save_with_sigint)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(checkpoint_dir=tmp_path).train()
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.npz", "epoch-0002.npz"]
    monkeypatch.setattr(checkpoint_module, "atomic_save_npz", real_save)
    assert_same_run(resume(tmp_path), uninterrupted)


def test_interrupt_raised_inside_the_writer_retries_the_save(tmp_path, monkeypatch):
    real_save = checkpoint_module.atomic_save_npz
    calls = []

    def save_interrupted_once(path, arrays):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(path, arrays)

    monkeypatch.setattr(checkpoint_module, "atomic_save_npz", save_interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(checkpoint_dir=tmp_path).train()
    assert calls[1] == calls[2] == str(tmp_path / "epoch-0002.npz")
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.npz", "epoch-0002.npz"]


def test_keep_checkpoints(tmp_path):
    make_trainer(checkpoint_dir=tmp_path / "two").train()
    assert sorted(os.listdir(tmp_path / "two")) == ["epoch-0003.npz", "epoch-0004.npz"]
    make_trainer(checkpoint_dir=tmp_path / "all", keep_checkpoints=None).train()
    assert len(os.listdir(tmp_path / "all")) == 4


def test_checkpoint_dir_problems_are_reported_before_training(tmp_path):
    net = fail_at(TinyNet(), 0, AssertionError("training started"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError, match="checkpoint_dir .* is not a writable directory"):
        make_trainer(net, checkpoint_dir=blocker / "checkpoints")
    with pytest.raises(ValueError, match="resume=True needs a checkpoint_dir"):
        make_trainer(net, resume=True)


def test_read_only_checkpoint_dir_is_reported_before_training(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            # root ignores the mode: a path below a file is just as unwritable
            (tmp_path / "plain-file").write_text("")
            folder = tmp_path / "plain-file" / "checkpoints"
        net = fail_at(TinyNet(), 0, AssertionError("training started"))
        with pytest.raises(OSError, match=r"checkpoint_dir '.*' is not a writable directory \(.+\)"):
            make_trainer(net, checkpoint_dir=folder)
    finally:
        (tmp_path / "read-only").chmod(0o700)


def test_checkpoints_of_another_run_are_not_overwritten(tmp_path):
    make_trainer(epochs=1, checkpoint_dir=tmp_path).train()
    with pytest.raises(CheckpointError, match="already holds checkpoints.*resume=True"):
        make_trainer(checkpoint_dir=tmp_path)


def test_resume_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    make_trainer(epochs=1, checkpoint_dir=tmp_path).train()
    with pytest.raises(CheckpointError, match=r"mini_batch_size 100 in the checkpoint, 50 here"):
        make_trainer(checkpoint_dir=tmp_path, resume=True, mini_batch_size=50)
    with pytest.raises(CheckpointError, match=r"optimizer 'Adam' in the checkpoint, 'SGD' here"):
        make_trainer(checkpoint_dir=tmp_path, resume=True, optimizer="sgd")
    wide = TinyNet(hidden_size=9, seed=3)
    before = {key: value.copy() for key, value in wide.params.items()}
    with pytest.raises(CheckpointError, match=r"parameter 'W1': the network has shape \(4, 9\) float64"):
        make_trainer(wide, checkpoint_dir=tmp_path, resume=True)
    assert all(np.array_equal(before[key], wide.params[key]) for key in before)  # untouched
    (tmp_path / "epoch-0002.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*epoch-0002.npz"):
        make_trainer(checkpoint_dir=tmp_path, resume=True)


def test_resume_without_checkpoint_starts_from_the_beginning(tmp_path, uninterrupted):
    trainer = make_trainer(checkpoint_dir=tmp_path / "new", resume=True)
    trainer.train()
    assert_same_run(trainer, uninterrupted)


def test_resume_shares_the_loaded_arrays_with_the_network(tmp_path):
    make_trainer(epochs=1, checkpoint_dir=tmp_path).train()
    net = TinyNet(seed=5)
    arrays = dict(net.params)
    make_trainer(net, checkpoint_dir=tmp_path, resume=True)
    assert all(net.params[key] is arrays[key] for key in arrays)  # copied in place


# --------------------------------------------------------------------------
# Progress bar
# --------------------------------------------------------------------------


class TtyStream(io.StringIO):
    def isatty(self):
        return True


def test_progress_to_a_non_tty_stream(capsys):
    stream = io.StringIO()
    make_trainer(epochs=2, progress=stream).train()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 6  # one line per third of each epoch (one step each)
    assert lines[-1].startswith("epoch 2/2  3/3 [")
    assert all(" loss " in line and " img/s" in line for line in lines)
    assert capsys.readouterr() == ("", "")  # not verbose: nothing else printed


def test_progress_on_a_tty_redraws_and_replaces_the_loss_lines(capsys):
    stream = TtyStream()
    make_trainer(epochs=1, progress=stream, verbose=True).train()
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and "img/s" in text
    out = capsys.readouterr().out
    assert "train loss:" not in out and "=== epoch:1" in out


def test_progress_default_follows_verbose(capsys):
    make_trainer(epochs=1, progress=True, verbose=False).train()
    assert capsys.readouterr() == ("", "")
    make_trainer(epochs=1, progress=True, verbose=True).train()
    captured = capsys.readouterr()
    assert "epoch 1/1  3/3 [" in captured.err and "train loss:" not in captured.out


# --------------------------------------------------------------------------
# A real training run: SimpleConvNet on MNIST images
# --------------------------------------------------------------------------


@pytest.mark.skipif(
    not (shared_data() / "mnist-test").is_dir(),
    reason=f"MNIST test set not found at {shared_data() / 'mnist-test'} "
    "(set CCONV_SHARED_DATA to the folder holding mnist-test/)",
)
def test_simple_convnet_learns_mnist_in_one_epoch(tmp_path):
    from cconv.nets import SimpleConvNet

    x, labels = load_mnist_test()
    x, labels = x[:3000], labels[:3000]
    net = SimpleConvNet(dtype=np.float32, seed=0, weight_init_std="he")
    trainer = Trainer(
        net, x[:2000], labels[:2000], x[2000:], labels[2000:],
        epochs=1, mini_batch_size=50, optimizer="Adam", optimizer_param={"lr": 0.002},
        evaluate_sample_num_per_epoch=100, verbose=False, progress=False, seed=0, checkpoint_dir=tmp_path,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    assert trainer.final_test_acc > 0.8, (trainer.final_test_acc, seconds)
    assert os.listdir(tmp_path) == ["epoch-0001.npz"]
    assert trainer.history[0]["images_per_sec"] > 0


# --------------------------------------------------------------------------
# The loss of the gradient pass (no second forward pass per step)
# --------------------------------------------------------------------------


def small_convnet():
    import cconv

    return cconv.SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 4, "filter_size": 3,
                               "pad": 0, "stride": 1}, hidden_size=8, output_size=3, seed=3)


def image_blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 10, 10)) + t[:, None, None, None]
    return x, t


def test_loss_from_gradient_pass_records_each_step_loss_before_its_update(monkeypatch):
    x, t = image_blobs()
    net, replay = small_convnet(), small_convnet()
    trainer = Trainer(net, x, t, x, t, epochs=1, mini_batch_size=10, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, verbose=False, seed=4,
                      loss_from_gradient_pass=True)
    forward_passes = []
    real_loss = type(net).loss
    monkeypatch.setattr(type(net), "loss", lambda self, *a, **k: forward_passes.append(1)
                        or real_loss(self, *a, **k))
    trainer.train()
    # One forward pass per step (the gradient's) plus the accuracies' own.
    assert len(forward_passes) == trainer.max_iter
    # The same steps by hand: each recorded loss is the one before the update.
    monkeypatch.undo()
    from cconv.optim import Adam

    optimizer, rng, expected = Adam(lr=0.01), np.random.default_rng(4), []
    for _ in range(trainer.max_iter):
        mask = rng.choice(x.shape[0], 10)
        expected.append(float(replay.loss(x[mask], t[mask])))
        optimizer.update(replay.params, replay.gradient(x[mask], t[mask]))
    assert [float(v) for v in trainer.train_loss_list] == expected
    for key in net.params:
        np.testing.assert_array_equal(net.params[key], replay.params[key])


def test_loss_from_gradient_pass_follows_the_books_trajectory_without_dropout():
    x, t = image_blobs()
    runs = []
    for flag in (False, True):
        net = small_convnet()
        Trainer(net, x, t, x, t, epochs=2, mini_batch_size=10, optimizer="Adam", verbose=False,
                seed=1, loss_from_gradient_pass=flag).train()
        runs.append(net.params)
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def test_loss_from_gradient_pass_stops_before_a_non_finite_update():
    x, t = image_blobs()
    net = small_convnet()
    net.params["W3"][...] = np.inf
    before = {k: v.copy() for k, v in net.params.items()}
    trainer = Trainer(net, x, t, x, t, epochs=1, mini_batch_size=10, verbose=False, seed=0,
                      loss_from_gradient_pass=True)
    with pytest.raises(TrainingDiverged):
        with np.errstate(all="ignore"):
            trainer.train()
    for key, value in before.items():  # nothing was updated with the bad gradient
        np.testing.assert_array_equal(net.params[key], value)


def test_loss_from_gradient_pass_must_be_a_bool_and_needs_a_loss_layer():
    x, t = image_blobs(20)
    with pytest.raises(TypeError, match="loss_from_gradient_pass"):
        Trainer(small_convnet(), x, t, x, t, epochs=1, loss_from_gradient_pass="yes")
    net = TinyNet(input_size=100)
    trainer = Trainer(net, x.reshape(20, -1), t, x.reshape(20, -1), t, epochs=1, mini_batch_size=10,
                      verbose=False, loss_from_gradient_pass=True)
    with pytest.raises(TypeError, match="last_layer"):
        trainer.train()


# --------------------------------------------------------------------------
# The epoch-end hook and the public state
# --------------------------------------------------------------------------


def test_on_epoch_end_sees_each_completed_epoch_once_after_its_checkpoint(tmp_path):
    seen = []

    def on_epoch_end(entry):
        # The epoch's checkpoint is on disk when the hook runs.
        assert trainer.checkpoint_epoch == entry["epoch"] == trainer.epoch
        assert os.path.basename(trainer.checkpoint_path) == f"epoch-{entry['epoch']:04d}.npz"
        assert os.path.exists(trainer.checkpoint_path)
        seen.append(dict(entry))

    trainer = make_trainer(epochs=3, checkpoint_dir=tmp_path, on_epoch_end=on_epoch_end)
    assert (trainer.epoch, trainer.checkpoint_epoch) == (0, None)
    trainer.train()
    assert [entry["epoch"] for entry in seen] == [1, 2, 3]
    assert seen == trainer.history
    assert "end_train_acc" not in seen[0]  # measured only with epoch_end_accuracy


def test_epoch_end_accuracy_measures_after_the_last_step_without_changing_the_run(tmp_path):
    plain = make_trainer(epochs=3)
    plain.train()
    measured = make_trainer(epochs=3, epoch_end_accuracy=True, checkpoint_dir=tmp_path)
    measured.train()
    assert_same_run(plain, measured)  # measuring draws nothing and changes nothing

    # The end-of-epoch accuracies are those of the parameters after the epoch's last step.
    probe = make_trainer(epochs=1, evaluate_sample_num_per_epoch=50)
    probe.epoch_end_accuracy = True
    probe.train()
    entry = probe.history[-1]
    assert entry["end_train_acc"] == probe.network.accuracy(X_TRAIN[:50], T_TRAIN[:50])
    assert entry["end_test_acc"] == probe.network.accuracy(X_TEST[:50], T_TEST[:50])
    assert entry["eval_seconds"] > 0

    # They are saved with the epoch and come back on resume.
    resumed = make_trainer(epochs=3, epoch_end_accuracy=True, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history == measured.history
    assert all({"end_train_acc", "end_test_acc"} <= entry.keys() for entry in resumed.history)


def test_on_epoch_end_must_be_callable():
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        make_trainer(on_epoch_end="print")


def test_an_exception_in_on_epoch_end_stops_training_after_the_checkpoint(tmp_path):
    def stop(entry):
        raise Crash(entry["epoch"])

    trainer = make_trainer(epochs=3, checkpoint_dir=tmp_path, on_epoch_end=stop)
    with pytest.raises(Crash):
        trainer.train()
    assert trainer.epoch == 1 and latest_checkpoint(tmp_path).endswith("epoch-0001.npz")


def test_epoch_and_checkpoint_epoch_are_read_only(tmp_path):
    trainer = make_trainer(epochs=1)
    for name in ("epoch", "checkpoint_epoch"):
        with pytest.raises(AttributeError):
            setattr(trainer, name, 3)
