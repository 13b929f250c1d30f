"""Checkpoint files (cconv.checkpoint) against forged archives: bombs are refused from their headers.

A checkpoint is read header first (cconv._npz.read_npz): a ``params/<key>``
member of another shape than the network's is refused before its data is
decompressed, and every other member is bounded by what the network's
parameters and their optimizer state can need. Here the bombs are resumed
through the public API, ``Trainer(..., checkpoint_dir=d, resume=True)``.
"""

import numpy as np
import pytest

from cconv.trainer import CheckpointError, Trainer

from npz_testutils import MAX_PEAK_BYTES, peak_of, write_bomb


class AffineNet:
    """A single affine layer with softmax: the book's network interface, nothing more."""

    def __init__(self):
        self.params = {"W1": np.zeros((4, 3)), "b1": np.zeros(3)}

    def predict(self, x, train_flg=False):
        return x @ self.params["W1"] + self.params["b1"]

    def loss(self, x, t):
        scores = self.predict(x)
        scores = scores - scores.max(axis=1, keepdims=True)
        log_y = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
        return -np.mean(log_y[np.arange(len(t)), t])

    def accuracy(self, x, t, batch_size=100):
        return float(np.mean(np.argmax(self.predict(x), axis=1) == t))

    def gradient(self, x, t):
        scores = self.predict(x)
        y = np.exp(scores - scores.max(axis=1, keepdims=True))
        y /= y.sum(axis=1, keepdims=True)
        y[np.arange(len(t)), t] -= 1
        y /= len(t)
        return {"W1": x.T @ y, "b1": y.sum(axis=0)}


def resume(checkpoint_dir):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    return Trainer(
        AffineNet(), x, t, x, t, epochs=2, mini_batch_size=10, optimizer="Adam",
        verbose=False, progress=False, seed=0, checkpoint_dir=checkpoint_dir, resume=True,
    )


def test_resume_refuses_a_parameter_bomb_from_its_header(tmp_path):
    # params/W1 declares (20000, 20000) float64 = 3.2 GB; the network's W1 is (4, 3)
    write_bomb(tmp_path / "epoch-0001.npz", (20000, 20000), 2**20, key="params/W1",
               others={"meta": np.array("{}"), "params/b1": np.zeros(3)})
    result, peak = peak_of(lambda: resume(tmp_path))
    assert isinstance(result, CheckpointError), result
    assert "does not fit this training run" in str(result) and "(20000, 20000)" in str(result)
    assert peak < MAX_PEAK_BYTES


def test_resume_refuses_a_bomb_beyond_what_the_network_can_need(tmp_path):
    # an optimizer member of 128 MiB of zeros, consistent in every size: more than 4 x 120 bytes + 64 MiB
    write_bomb(tmp_path / "epoch-0001.npz", (4096, 4096), 8 * 4096 * 4096, key="optimizer/m",
               others={"params/W1": np.zeros((4, 3)), "params/b1": np.zeros(3)})
    result, peak = peak_of(lambda: resume(tmp_path))
    assert isinstance(result, CheckpointError), result
    assert "cannot read checkpoint" in str(result) and "'optimizer/m'" in str(result)
    assert peak < MAX_PEAK_BYTES


@pytest.mark.parametrize("what", ["meta", "params/W1"])
def test_resume_refuses_a_truncated_stream(tmp_path, what):
    # the header declares 2 MiB, the member holds 1 MiB: corrupt, found before the data is read
    write_bomb(tmp_path / "epoch-0001.npz", (4, 3) if what == "params/W1" else (2**18,), 2**20, key=what)
    result, peak = peak_of(lambda: resume(tmp_path))
    assert isinstance(result, CheckpointError), result
    assert "epoch-0001.npz" in str(result) and repr(what) in str(result)
    assert peak < MAX_PEAK_BYTES


@pytest.mark.parametrize("meta", ["[1, 2]", '"text"', '{"format": "cconv.trainer.checkpoint", "version": 1, '
                                  '"optimizer_kinds": [], "history": []}'])
def test_resume_refuses_a_meta_of_the_wrong_kind(tmp_path, meta):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    trainer = Trainer(AffineNet(), x, t, x, t, epochs=1, mini_batch_size=10, optimizer="Adam",
                      verbose=False, progress=False, seed=0, checkpoint_dir=tmp_path)
    trainer.train()
    with np.load(trainer.checkpoint_path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["meta"] = np.array(meta)
    np.savez(trainer.checkpoint_path, **arrays)
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*epoch-0001.npz.*meta"):
        resume(tmp_path)
