"""cconv.distributed and Trainer(comm=): the batch shared by rank, and the single-process trajectory under mpiexec."""

import json
import os
from collections import OrderedDict

import numpy as np
import pytest

from cconv.distributed import (
    batch_share,
    check_distributable,
    dropout_rows,
    mark_raised_on_every_rank,
    raised_on_every_rank,
)
from cconv.layers import Affine, BatchNormalization, Dropout, Relu
from cconv.trainer import Trainer

from mpi_testutils import TRAIN_SETTINGS, make_network, run_worker, training_data


@pytest.mark.parametrize("batch_size", [1, 2, 7, 10, 100, 101])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_batch_share_covers_the_batch_in_near_equal_contiguous_shares(batch_size, size):
    shares = [batch_share(batch_size, size, rank) for rank in range(size)]
    assert shares[0][0] == 0 and shares[-1][1] == batch_size
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(shares, shares[1:]))
    lengths = [stop - start for start, stop in shares]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)  # as numpy.array_split
    assert lengths == [len(part) for part in np.array_split(np.arange(batch_size), size)]


@pytest.mark.parametrize("use_rng", [True, False])
def test_dropout_rows_apply_the_whole_batch_mask_and_advance_the_generator_alike(use_rng):
    x = np.arange(10 * 6, dtype=np.float64).reshape(10, 6) + 1

    def layer():
        np.random.seed(3)
        return Dropout(0.4, rng=np.random.default_rng(5) if use_rng else None)

    whole = layer()
    expected = whole.forward(x)
    after_whole = whole.rng.random() if use_rng else np.random.rand()

    pieces = []
    for start, stop in [(0, 4), (4, 7), (7, 10)]:  # three ranks, each from the same state
        part = layer()
        part.batch_rows = (start, 10)
        pieces.append(part.forward(x[start:stop]))
        assert np.array_equal(part.backward(np.ones((stop - start, 6))), whole.mask[start:stop])
        assert (part.rng.random() if use_rng else np.random.rand()) == after_whole
    assert np.array_equal(np.concatenate(pieces), expected)


def test_dropout_batch_rows_refuse_an_input_beyond_the_batch():
    drop = Dropout(0.5, rng=np.random.default_rng(0))
    drop.batch_rows = (8, 10)
    with pytest.raises(ValueError, match=r"rows 8\.\. of a batch of 10 cannot hold an input of shape \(3, 2\)"):
        drop.forward(np.ones((3, 2)))


class _Net:
    def __init__(self, *layers):
        self.layers = OrderedDict((f"L{i}", layer) for i, layer in enumerate(layers))


def test_dropout_rows_set_and_reset_the_rows_of_every_dropout_layer():
    first, second = Dropout(0.5), Dropout(0.2)
    net = _Net(Affine(np.ones((2, 2)), np.zeros(2)), first, Relu(), second)
    with dropout_rows(net, 3, 9):
        assert first.batch_rows == second.batch_rows == (3, 9)
    assert first.batch_rows is None and second.batch_rows is None


def test_check_distributable_refuses_batch_normalization_and_foreign_dropout():
    check_distributable(_Net(Affine(np.ones((2, 2)), np.zeros(2)), Dropout(0.5)))
    with pytest.raises(ValueError, match="BatchNormalization layer, whose forward pass uses the statistics"):
        check_distributable(_Net(BatchNormalization(np.ones(2), np.zeros(2))))

    class BookDropout:
        dropout_ratio = 0.5

    with pytest.raises(ValueError, match=r"dropout layer \(BookDropout\) that is not cconv.layers.Dropout"):
        check_distributable(_Net(BookDropout()))


class _UnusedComm:
    """A communicator of 3 ranks that must not be used (the trainer refuses before)."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 3

    def Allreduce(self, *args, **kwargs):
        raise AssertionError("no collective call expected")

    Bcast = Allreduce


def test_trainer_refuses_a_batch_smaller_than_the_ranks_and_batch_normalization():
    pytest.importorskip("mpi4py")
    x_train, t_train, x_test, t_test = training_data()
    network = make_network("simple", "seeded")
    with pytest.raises(ValueError, match=r"mini_batch_size: expected at least the number of processes \(3\), got 2"):
        Trainer(network, x_train, t_train, x_test, t_test, mini_batch_size=2, verbose=False, comm=_UnusedComm())
    with pytest.raises(ValueError, match="BatchNormalization"):
        Trainer(_Net(BatchNormalization(np.ones(2), np.zeros(2))), x_train, t_train, x_test, t_test,
                verbose=False, comm=_UnusedComm())
    with pytest.raises(TypeError, match="comm: expected an mpi4py communicator"):
        Trainer(network, x_train, t_train, x_test, t_test, verbose=False, comm="world")


def _single_process_run(net_name, loss_mode, seed_mode):
    """What one process gives: ``{losses, train_acc, test_acc, final_test_acc, param_*}``."""
    if seed_mode == "global":
        np.random.seed(TRAIN_SETTINGS["seed"])  # rank 0's state, which every rank adopts
    network = make_network(net_name, seed_mode)
    trainer = Trainer(
        network, *training_data(), **TRAIN_SETTINGS["trainer"], verbose=False,
        seed=None if seed_mode == "global" else TRAIN_SETTINGS["seed"],
        loss_from_gradient_pass=loss_mode == "gradient-pass",
    )
    trainer.train()
    return {
        "losses": np.asarray(trainer.train_loss_list, dtype=np.float64),
        "train_acc": np.asarray(trainer.train_acc_list), "test_acc": np.asarray(trainer.test_acc_list),
        "final_test_acc": np.asarray(trainer.final_test_acc),
        **{f"param_{key}": value for key, value in network.params.items()},
    }


def test_a_communicator_of_one_rank_changes_nothing():
    mpi = pytest.importorskip("mpi4py.MPI")
    expected = _single_process_run("deep", "after-update", "seeded")
    network = make_network("deep", "seeded")
    trainer = Trainer(network, *training_data(), **TRAIN_SETTINGS["trainer"], verbose=False,
                      seed=TRAIN_SETTINGS["seed"], comm=mpi.COMM_SELF)
    trainer.train()
    for key, value in network.params.items():
        assert np.array_equal(value, expected[f"param_{key}"]), key
    assert np.array_equal(np.asarray(trainer.train_loss_list, dtype=np.float64), expected["losses"])


@pytest.mark.parametrize(
    "ranks, net_name, loss_mode, seed_mode",
    [
        (2, "simple", "gradient-pass", "seeded"),
        (3, "simple", "after-update", "global"),
        (2, "deep", "after-update", "seeded"),
        (3, "deep", "gradient-pass", "global"),
        (3, "deep", "after-update", "seeded"),
        (2, "lenet", "after-update", "global"),
        (3, "alexnet", "gradient-pass", "seeded"),
    ],
)
def test_ranks_follow_the_single_process_trajectory(tmp_path, ranks, net_name, loss_mode, seed_mode):
    """Parameters, losses and accuracies of K ranks equal one process's (float64, 1e-9), dropout included.

    DeepConvNet and AlexNet have dropout; with ``global`` every rank starts from another
    ``np.random`` state and must adopt rank 0's; with 3 ranks a batch of 20 is
    split 7/7/6.
    """
    done, _ = run_worker(ranks, "train", tmp_path, net_name, loss_mode, seed_mode)
    assert done.returncode == 0, done.stderr
    expected = _single_process_run(net_name, loss_mode, seed_mode)
    results = [dict(np.load(tmp_path / f"rank-{rank}.npz")) for rank in range(ranks)]
    for rank, got in enumerate(results):
        assert set(got) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-12 * np.max(np.abs(value), initial=1),
                                       err_msg=f"rank {rank}: {key}")
        for key in got:  # every rank holds the very same numbers
            assert np.array_equal(got[key], results[0][key]), f"rank {rank}: {key} differs from rank 0's"
    assert len(expected["losses"]) == 10


@pytest.mark.parametrize("ranks", [2, 3])
def test_gradients_combine_into_the_exact_weighted_mean(tmp_path, ranks):
    """ChainerMN's check: rank-valued gradients; the sum weighted by the shares is their exact weighted mean."""
    done, _ = run_worker(ranks, "combine", tmp_path)
    assert done.returncode == 0, done.stderr
    shares = [batch_share(10, ranks, rank) for rank in range(ranks)]
    mean = sum((stop - start) * (rank + 1) for rank, (start, stop) in enumerate(shares)) / 10
    for rank in range(ranks):
        got = np.load(os.path.join(tmp_path, f"rank-{rank}.npz"))
        np.testing.assert_allclose(got["W"], np.full((3, 4), mean), rtol=1e-15)
        np.testing.assert_allclose(got["b"], np.full(5, -mean), rtol=1e-15)
        assert got["loss"] == pytest.approx(10 * mean, rel=1e-15)
        assert got["counts"].tolist() == [10, sum(range(ranks))]
        assert tuple(got["share"]) == shares[rank]


@pytest.mark.parametrize("loss_mode, allreduces", [("gradient-pass", 1), ("after-update", 2)])
def test_a_step_is_one_allreduce_of_one_flat_buffer_and_each_rank_computes_its_rows(tmp_path, loss_mode, allreduces):
    """The gradients, the loss and the stop request of a step travel in one buffer (a recomputed loss: one more).

    Each rank computes the gradient of its share of the batch of 20 alone (7, 7, 6 rows).
    """
    done, _ = run_worker(3, "count", tmp_path, loss_mode)
    assert done.returncode == 0, done.stderr
    for rank in range(3):
        with open(tmp_path / f"rank-{rank}.json") as f:
            got = json.load(f)
        per_step = [["Allreduce", got["params"] + 2]] if allreduces == 1 else \
            [["Allreduce", got["params"]], ["Allreduce", 2]]
        assert got["calls"] == per_step * 4, f"rank {rank}"
        assert got["rows"] == [[7, 7, 6][rank]] * 5, f"rank {rank}"


def test_machine_first_runs_one_rank_of_the_machine_before_the_others(tmp_path):
    done, _ = run_worker(3, "machine-first", tmp_path)
    assert done.returncode == 0, done.stderr
    times = []
    for rank in range(3):
        with open(tmp_path / f"rank-{rank}.json") as f:
            times.append(json.load(f))
    first = times[0]  # one machine: its first rank is rank 0
    assert first["end"] - first["start"] >= 1.0
    assert all(other["start"] >= first["end"] for other in times[1:])


def test_errors_marked_raised_on_every_rank_are_found_through_their_chain():
    assert not raised_on_every_rank(ValueError("one rank"))
    marked = mark_raised_on_every_rank(OSError(28, "full"))
    assert raised_on_every_rank(marked)
    try:
        try:
            raise marked
        except OSError as exc:
            raise RuntimeError("reported") from exc
    except RuntimeError as outer:
        assert raised_on_every_rank(outer)
    try:
        try:
            raise marked
        except OSError:
            raise KeyError("while handling") from None  # still in __context__
    except KeyError as outer:
        assert raised_on_every_rank(outer)


def test_check_distributable_refuses_layers_it_cannot_walk():
    class OwnLayers:
        layers = {"a", "b"}

    with pytest.raises(ValueError, match="the layers of OwnLayers cannot be walked"):
        check_distributable(OwnLayers())


def test_trainer_with_comm_needs_an_optimizer_whose_state_can_be_sent():
    pytest.importorskip("mpi4py")

    class PlainSGD:
        def update(self, params, grads):
            pass

    with pytest.raises(TypeError, match=r"optimizer: with comm, an optimizer with state_dict\(\)") as info:
        Trainer(make_network("simple", "seeded"), *training_data(), mini_batch_size=10, optimizer=PlainSGD(),
                verbose=False, comm=_UnusedComm())
    assert raised_on_every_rank(info.value)
