"""Faults during training lose nothing completed: a kill mid-write, a full disk, an unwritable output, NaN.

The faults are real wherever they can be:

* **Killed while writing.** Real ``python -m cconv train`` processes are
  SIGKILLed while they write a file. A ``-c`` wrapper around ``python -m
  cconv`` installs a hook in the child that stops the writer of one file at a
  chosen point (some members of a checkpoint archive written, or a temporary
  file complete but not yet renamed), writes the temporary file's path into a
  pipe and waits; the test reads the pipe and kills the child then, no sooner
  and no later. The previous checkpoint must be intact, the temporary file
  never taken for the file it replaces (and removed by the next run), and
  ``--resume`` must follow the very trajectory of an uninterrupted run.
* **Disk full.** ENOSPC from a simulated disk: the atomic writer's file
  object writes into the real temporary file until the free space is used
  up, then fails with ENOSPC, as ``write(2)`` on a full disk does (or
  ``fsync`` reports it). For the Trainer's checkpoints and for every kind of
  file ``cconv train`` writes. Where a private mount namespace is allowed
  (root, Linux), also on a genuinely full 8 MiB tmpfs. The error must be one
  line (``cconv``, exit status 1, the existing one for files that cannot be
  written) or an ``OSError`` (Trainer) naming the file; the files written
  before must be intact and no temporary file may remain.
* **Unwritable --out**: below a regular file, and a read-only folder
  (``chmod``; as root, which ignores the mode, a read-only bind mount in a
  private mount namespace): one line, exit status 2, before anything is read.
* **NaN or infinite values** in the weights during ``cconv train``, after
  completed epochs: one line, a non-zero status, the last good checkpoint kept
  (``--resume`` from it, without the fault, gives the uninterrupted run).

Training runs on a 100/50-image slice of the bundled MNIST sample (2 steps of
50 images an epoch), in float32 with seed 5, 3 epochs unless said otherwise.
"""

import errno
import io
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cconv import _atomic, cli
from cconv.cli import run_folder
from cconv.nets import SimpleConvNet
from cconv.trainer import Trainer, latest_checkpoint

from cconv_testutils import command_env, run_cli, write_sample_subset

EPOCHS = 3
STEPS = 2  # per epoch: 100 training images, batches of 50
ENOSPC_TEXT = os.strerror(errno.ENOSPC)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def train_args(data_dir, out, *extra, epochs=EPOCHS):
    """``cconv train`` on the tiny data: float32, seed 5, ``epochs`` epochs of 2 steps."""
    return [str(a) for a in ("train", "--data-dir", data_dir, "--out", out, "--epochs", epochs,
                             "--batch-size", 50, "--dtype", "float32", "--seed", 5, "--eval-samples", 100,
                             *extra)]


def files(folder):
    """``{relative path: bytes}`` of every file below ``folder``."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def temp_files(folder):
    """Temporary files of cconv._atomic (``.NAME.HEX.tmp``) below ``folder``, relative to it."""
    return sorted(path for path in files(folder) if os.path.basename(path).endswith(".tmp"))


def load_arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def checkpoint_iteration(path):
    """The iteration counter of a (whole, readable) trainer checkpoint."""
    arrays = load_arrays(path)
    assert json.loads(str(arrays["meta"]))["format"] == "cconv.trainer.checkpoint"
    return int(arrays["current_iter"])


def read_metrics(out):
    with open(os.path.join(out, run_folder.METRICS_FILE), encoding="utf-8") as f:
        return json.load(f)


def timing_free(entry):
    return {k: v for k, v in entry.items() if k not in ("seconds", "train_seconds", "images_per_sec")}


def assert_same_run(out, reference):
    """``out`` holds the very results of the uninterrupted run ``reference``: params, losses, accuracies."""
    params, expected = load_arrays(out / run_folder.PARAMS_FILE), load_arrays(reference / run_folder.PARAMS_FILE)
    assert params.keys() == expected.keys()
    for key in params:
        assert params[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(params[key], expected[key], err_msg=key)
    metrics, straight = read_metrics(out), read_metrics(reference)
    for key in ("train_loss_list", "train_acc_list", "test_acc_list", "final_test_acc", "iterations"):
        assert metrics[key] == straight[key], key
    assert [timing_free(e) for e in metrics["epochs"]] == [timing_free(e) for e in straight["epochs"]]


def assert_one_line(err, *words):
    """Exactly one ``cconv: error:`` line on stderr, naming ``words``; no traceback."""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("cconv: error: "), err
    for word in words:
        assert word in err, (word, err)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The first 100 train and 50 test images of the bundled sample, as four IDX files."""
    return write_sample_subset(tmp_path_factory.mktemp("tiny-idx"), 100, 50)


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The uninterrupted run: ``cconv train`` for 3 epochs in one go (in-process)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert cli.main(train_args(tiny_data, out, "--quiet")) == 0
    return out


# --------------------------------------------------------------------------
# Killed while writing: real processes, SIGKILL at a chosen point of a write
# --------------------------------------------------------------------------

#: ``python -m cconv ARGS`` with the writer of one file stopped midway. Its own
#: arguments come first: SIGNAL_FD HOLD_FD NAME NTH STAGE. At the NTH write of
#: the file NAME (a basename), at STAGE ("members": 3 members of the .npz
#: archive written; "rename": the temporary file written and synced, not yet
#: renamed), it writes the temporary file's path and a newline to SIGNAL_FD,
#: then waits on HOLD_FD, which the test never writes: it kills the process.
PAUSED_WRITER = r"""
import os, runpy, sys

import numpy as np

from cconv import _atomic

signal_fd, hold_fd, target, nth, stage = sys.argv[1:6]
signal_fd, hold_fd, nth = int(signal_fd), int(hold_fd), int(nth)
del sys.argv[1:6]
temporaries = []  # the temporary files of `target`, in the order written


def armed():
    return len(temporaries) == nth


def pause():
    os.write(signal_fd, (temporaries[-1] + "\n").encode())
    os.read(hold_fd, 1)  # returns only if the test is gone (end of file)
    os._exit(70)


real_open_temp = _atomic._open_temp


def open_temp(directory, name):
    fd, tmp_path = real_open_temp(directory, name)
    if name == target:
        temporaries.append(tmp_path)
    return fd, tmp_path


_atomic._open_temp = open_temp

if stage == "members":
    real_write_array = np.lib.format.write_array
    members = []

    def write_array(fp, array, *args, **kwargs):
        real_write_array(fp, array, *args, **kwargs)
        if armed():
            members.append(1)
            if len(members) == 3:
                pause()

    np.lib.format.write_array = write_array
elif stage == "rename":
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        if armed() and src == temporaries[-1]:
            pause()
        real_replace(src, dst, **kwargs)

    os.replace = replace
else:
    raise SystemExit(f"unknown stage {stage!r}")

sys.argv[0] = "cconv"
runpy.run_module("cconv", run_name="__main__", alter_sys=True)
"""


def kill_while_writing(args, cwd, name, nth, stage):
    """Run ``python -m cconv ARGS`` and SIGKILL it while it writes ``name`` (see PAUSED_WRITER).

    Returns the temporary file (a Path) that was being written.
    """
    signal_read, signal_write = os.pipe()
    hold_read, hold_write = os.pipe()
    command = [sys.executable, "-c", PAUSED_WRITER, str(signal_write), str(hold_read), name, str(nth), stage, *args]
    with open(cwd / "killed-stderr.txt", "w+") as err, os.fdopen(signal_read, "rb") as signals:
        try:
            process = subprocess.Popen(command, cwd=cwd, env=command_env(cwd), stdout=subprocess.DEVNULL,
                                       stderr=err, pass_fds=(signal_write, hold_read))
        except BaseException:
            os.close(hold_write)
            raise
        finally:
            os.close(signal_write)
            os.close(hold_read)
        try:
            ready, _, _ = select.select([signals], [], [], 120)
            line = signals.readline().decode() if ready else ""
            if not line.endswith("\n"):
                err.seek(0)
                pytest.fail(f"the writer of {name} never paused (status {process.poll()}): {err.read()}")
            assert process.poll() is None
            process.kill()
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(hold_write)
    assert status == -signal.SIGKILL
    return pathlib.Path(line[:-1])


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pass_fds are POSIX")
def test_killed_while_writing_three_times_then_resumed(tiny_data, reference, tmp_path, capsys):
    """Three real processes SIGKILLed mid-write in a row, each a --resume of the one before; then one to the end.

    A file partly written, a file complete but not renamed: neither is ever
    taken for what it replaces, and the next run removes it.
    """
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    first_ckpt, second_ckpt = checkpoints / "epoch-0001.npz", checkpoints / "epoch-0002.npz"

    # 1. A new run, killed with epoch 2's checkpoint partly written: 3 of its arrays, no zip directory.
    partial = kill_while_writing(train_args(tiny_data, out, "--quiet"), tmp_path, "epoch-0002.npz", 1, "members")
    assert partial.parent == checkpoints and partial.name.startswith(".epoch-0002.npz.")
    assert sorted(os.listdir(checkpoints)) == sorted(["epoch-0001.npz", partial.name])
    assert partial.stat().st_size > 0 and not zipfile.is_zipfile(partial)
    assert latest_checkpoint(checkpoints) == str(first_ckpt)
    assert checkpoint_iteration(first_ckpt) == STEPS
    assert len(read_metrics(out)["epochs"]) == 1 and not (out / "params.npz").exists()

    # 2. --resume from epoch 1 (the partial file is removed), killed with metrics.json of epoch 2
    #    written but not renamed (its 2nd write of the run: settings first, then epoch 2).
    resume = train_args(tiny_data, out, "--resume", "--quiet")
    unrenamed_metrics = kill_while_writing(resume, tmp_path, "metrics.json", 2, "rename")
    assert unrenamed_metrics.parent == out
    assert temp_files(out) == [unrenamed_metrics.name]
    assert sorted(os.listdir(checkpoints)) == ["epoch-0001.npz", "epoch-0002.npz"]
    assert checkpoint_iteration(second_ckpt) == 2 * STEPS
    assert len(json.loads(unrenamed_metrics.read_text())["epochs"]) == 2  # complete, but not in place:
    assert len(read_metrics(out)["epochs"]) == 1  # metrics.json is the one last renamed

    # 3. --resume from epoch 2 (the metrics.json temporary is removed), killed with epoch 3's
    #    checkpoint complete and synced but not renamed: a readable archive, not a checkpoint.
    unrenamed = kill_while_writing(resume, tmp_path, "epoch-0003.npz", 1, "rename")
    assert temp_files(out) == [os.path.relpath(unrenamed, out)]
    assert checkpoint_iteration(unrenamed) == 3 * STEPS
    assert latest_checkpoint(checkpoints) == str(second_ckpt)
    assert len(read_metrics(out)["epochs"]) == 2

    # 4. --resume from epoch 2 to the end: the uninterrupted run, bit for bit.
    status, stdout, err = run_cli(capsys, *train_args(tiny_data, out, "--resume"))
    assert status == 0, err
    assert f"resumed from {second_ckpt}: 2 epochs done" in stdout.splitlines()
    assert temp_files(out) == []
    assert sorted(os.listdir(checkpoints)) == ["epoch-0002.npz", "epoch-0003.npz"]
    assert_same_run(out, reference)


# --------------------------------------------------------------------------
# Disk full, simulated: ENOSPC while cconv._atomic writes one file
# --------------------------------------------------------------------------


class _FillingFile(io.FileIO):
    """The temporary file on a disk with ``disk.free`` bytes left: a short write, then ENOSPC."""

    def __init__(self, fd, disk):
        super().__init__(fd, "wb")
        self.disk = disk

    def write(self, data):
        room = self.disk.free
        if room <= 0:
            raise OSError(errno.ENOSPC, ENOSPC_TEXT)
        written = super().write(memoryview(data).cast("B")[:room])
        self.disk.free -= written
        self.disk.written += written
        return written


class FullDisk:
    """The disk fills up while ``cconv._atomic`` writes the ``nth`` file named ``name``.

    That file's object is replaced by one whose bytes reach the real
    temporary file until ``free`` bytes are written, then fail with ENOSPC
    (``at="write"``); or the writes succeed and ``fsync`` reports ENOSPC
    (``at="fsync"``, as with delayed allocation or a network file system).
    Other files are written normally. ``before`` is the content of ``root``
    (default: the file's folder) just before the file is created;
    ``written`` counts the bytes that reached the temporary file.
    """

    def __init__(self, monkeypatch, name, *, nth=1, free=0, at="write", root=None):
        self.name, self.nth, self.free, self.at, self.root = name, nth, free, at, root
        self.before = None
        self.written = 0
        self._calls = 0
        self._fd = None  # the failing file's descriptor, while it is written
        real_open_temp, real_fsync = _atomic._open_temp, os.fsync

        def open_temp(directory, name):
            self._fd = None
            if name == self.name:
                self._calls += 1
                if self._calls == self.nth:
                    self.before = files(self.root or directory)
                    fd, tmp_path = real_open_temp(directory, name)
                    self._fd = fd
                    return fd, tmp_path
            return real_open_temp(directory, name)

        def open_file(fd, mode, encoding=None, newline=None):
            if fd != self._fd or self.at != "write":
                return open(fd, mode, encoding=encoding, newline=newline)
            buffered = io.BufferedWriter(_FillingFile(fd, self))
            return buffered if mode == "wb" else io.TextIOWrapper(buffered, encoding=encoding, newline=newline)

        def fsync(fd):
            if fd == self._fd and self.at == "fsync":
                raise OSError(errno.ENOSPC, ENOSPC_TEXT)
            real_fsync(fd)

        monkeypatch.setattr(_atomic, "_open_temp", open_temp)
        monkeypatch.setattr(_atomic, "open", open_file, raising=False)
        monkeypatch.setattr(os, "fsync", fsync)

    @property
    def happened(self):
        return self.before is not None


def small_trainer(checkpoint_dir, network_seed=0, **kwargs):
    """A small SimpleConvNet (1x10x10 images, 3 classes) on random data: 3 steps an epoch."""
    rng = np.random.default_rng(3)
    x = rng.random((60, 1, 10, 10))
    t = rng.integers(0, 3, size=60)
    network = SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 4, "filter_size": 3},
                            hidden_size=10, output_size=3, seed=network_seed)
    return Trainer(network, x[:45], t[:45], x[45:], t[45:], epochs=EPOCHS, mini_batch_size=15,
                   optimizer="Adam", verbose=False, progress=False, seed=0, checkpoint_dir=checkpoint_dir,
                   **kwargs)


@pytest.mark.parametrize(
    ("free", "at"),
    [(0, "write"), (1000, "write"), (None, "fsync")],
    ids=["full-at-first-byte", "full-mid-write", "full-at-fsync"],
)
def test_trainer_disk_full_at_a_checkpoint(tmp_path, monkeypatch, free, at):
    straight = small_trainer(tmp_path / "straight")
    straight.train()

    checkpoints = tmp_path / "run"
    target = checkpoints / "epoch-0002.npz"
    trainer = small_trainer(checkpoints)
    with monkeypatch.context() as patch:
        disk = FullDisk(patch, "epoch-0002.npz", free=free, at=at)
        with pytest.raises(OSError) as info:
            trainer.train()
    assert disk.happened
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert str(info.value) == f"[Errno {errno.ENOSPC}] {ENOSPC_TEXT}: {str(target)!r}"
    if free:
        assert disk.written == free  # the disk filled up midway through the file
    # Nothing changed but for the failed write, which left nothing behind.
    assert files(checkpoints) == disk.before
    assert sorted(os.listdir(checkpoints)) == ["epoch-0001.npz"]
    assert trainer.checkpoint_path == str(checkpoints / "epoch-0001.npz")
    assert checkpoint_iteration(checkpoints / "epoch-0001.npz") == 3

    # Space freed: resume=True (on a network initialised otherwise) continues the very run.
    resumed = small_trainer(checkpoints, network_seed=9, resume=True)
    resumed.train()
    assert np.array_equal(resumed.train_loss_list, straight.train_loss_list)
    for key, value in straight.network.params.items():
        np.testing.assert_array_equal(resumed.network.params[key], value, err_msg=key)


def test_cli_disk_full_at_a_checkpoint(tiny_data, reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    with monkeypatch.context() as patch:
        disk = FullDisk(patch, "epoch-0002.npz", free=300_000, root=out)
        status, stdout, err = run_cli(capsys, *train_args(tiny_data, out, "--quiet"))
    assert disk.happened and disk.written == 300_000
    assert (status, stdout) == (1, "")
    assert_one_line(err, f"{ENOSPC_TEXT}: {str(checkpoints / 'epoch-0002.npz')!r}",
                    f"1 epoch done, saved in {checkpoints / 'epoch-0001.npz'}; run the same command with --resume")
    assert files(out) == disk.before  # nothing lost, nothing half-written
    assert sorted(os.listdir(checkpoints)) == ["epoch-0001.npz"]
    assert len(read_metrics(out)["epochs"]) == 1

    assert run_cli(capsys, *train_args(tiny_data, out, "--resume", "--quiet")) == (0, "", "")
    assert_same_run(out, reference)


@pytest.mark.parametrize("name", ["filters_before.png", "metrics.json"])
def test_cli_disk_full_before_training(tiny_data, tmp_path, capsys, monkeypatch, name):
    """The first files are written before any step: a full disk is reported before training."""
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        disk = FullDisk(patch, name, free=100, root=out)
        patch.setattr(Trainer, "train_step", lambda self: pytest.fail("training started"))
        status, stdout, err = run_cli(capsys, *train_args(tiny_data, out, "--quiet"))
    assert disk.happened
    assert (status, stdout) == (1, "")
    assert_one_line(err, f"{ENOSPC_TEXT}: {str(out / name)!r}")
    assert files(out) == disk.before
    assert os.listdir(out / "checkpoints") == []


def test_cli_disk_full_at_the_first_checkpoint(tiny_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    with monkeypatch.context() as patch:
        disk = FullDisk(patch, "epoch-0001.npz", free=300_000, root=out)
        status, stdout, err = run_cli(capsys, *train_args(tiny_data, out, "--quiet", epochs=1))
    assert disk.happened and disk.written == 300_000
    assert (status, stdout) == (1, "")
    assert_one_line(err, f"{ENOSPC_TEXT}: {str(checkpoints / 'epoch-0001.npz')!r}; no epoch is saved")
    assert files(out) == disk.before
    assert os.listdir(checkpoints) == []


def test_cli_disk_full_at_each_result_then_resumed(tiny_data, tmp_path, capsys, monkeypatch):
    """After the last epoch params.npz, then metrics.json, then accuracy.png cannot be written.

    Each time the checkpoint holds the whole run, and ``--resume`` (no step
    left to take) writes the results, until one succeeds.
    """
    out = tmp_path / "run"
    checkpoint = out / "checkpoints" / "epoch-0001.npz"
    for name, nth, free, extra in [
        ("params.npz", 1, 50_000, ()),
        ("metrics.json", 2, 100, ("--resume",)),  # --resume writes it before training, then at the end
        ("accuracy.png", 1, 1000, ("--resume",)),
    ]:
        with monkeypatch.context() as patch:
            disk = FullDisk(patch, name, nth=nth, free=free, root=out)
            status, stdout, err = run_cli(capsys, *train_args(tiny_data, out, "--quiet", *extra, epochs=1))
        assert disk.happened and disk.written == free, name
        assert (status, stdout) == (1, "")
        assert_one_line(err, f"{ENOSPC_TEXT}: {str(out / name)!r}",
                        f"1 epoch done, saved in {checkpoint}; run the same command with --resume")
        assert files(out) == disk.before
        assert checkpoint_iteration(checkpoint) == STEPS

    assert run_cli(capsys, *train_args(tiny_data, out, "--resume", "--quiet", epochs=1)) == (0, "", "")
    assert temp_files(out) == []
    saved = {k.partition("/")[2]: v for k, v in load_arrays(checkpoint).items() if k.startswith("params/")}
    params = load_arrays(out / "params.npz")
    assert saved and all(np.array_equal(params[key], value) for key, value in saved.items())
    metrics = read_metrics(out)
    assert len(metrics["epochs"]) == 1 and metrics["final_test_acc"] is not None
    for picture in ("filters_before.png", "accuracy.png", "filters_after.png"):
        assert (out / picture).stat().st_size > 0


# --------------------------------------------------------------------------
# Disk full for real: a small tmpfs in a private mount namespace
# --------------------------------------------------------------------------

#: ``sh -c`` script: mount a tmpfs of SIZE on DISK (seen by this process tree
#: only), run the command, copy DISK/run to COPY, exit with the command's status.
ON_SMALL_DISK = """
size=$1 disk=$2 copy=$3
shift 3
mount -t tmpfs -o "size=$size" cconv-test "$disk" || exit 97
"$@"
status=$?
if [ -d "$disk/run" ]; then cp -a "$disk/run" "$copy" || exit 98; fi
exit $status
"""


def private_mounts_allowed(folder):
    """Can this process mount a tmpfs in a private mount namespace (``unshare -m``)?"""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1m cconv-probe "$0"', folder],
                           capture_output=True)
    return probe.returncode == 0


def test_cli_on_a_really_full_disk(tiny_data, tmp_path):
    """8 MiB of tmpfs: epoch 1's checkpoint (5.2 MB) fits, epoch 2's does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not private_mounts_allowed(disk):
        pytest.skip("no private mount namespace here (unshare -m and mount need Linux and CAP_SYS_ADMIN); "
                    "test_cli_disk_full_at_a_checkpoint simulates the same fault")
    copy = tmp_path / "copy"
    command = ["unshare", "-m", "sh", "-c", ON_SMALL_DISK, "sh", "8m", disk, copy,
               sys.executable, "-m", "cconv", *train_args(tiny_data, disk / "run", "--quiet")]
    result = subprocess.run([str(a) for a in command], cwd=tmp_path, env=command_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    checkpoints = disk / "run" / "checkpoints"  # the paths the process saw
    assert_one_line(result.stderr, f"{ENOSPC_TEXT}: {str(checkpoints / 'epoch-0002.npz')!r}",
                    f"1 epoch done, saved in {checkpoints / 'epoch-0001.npz'}; run the same command with --resume")
    assert os.listdir(disk) == []  # the tmpfs went with its namespace
    assert temp_files(copy) == []
    assert sorted(os.listdir(copy / "checkpoints")) == ["epoch-0001.npz"]
    assert checkpoint_iteration(copy / "checkpoints" / "epoch-0001.npz") == STEPS
    assert len(read_metrics(copy)["epochs"]) == 1


# --------------------------------------------------------------------------
# Unwritable --out
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["below-a-file", "read-only"])
def test_unwritable_out_is_refused_before_anything_is_read(tmp_path, kind):
    data = tmp_path / "no-data"  # never read: the output folder is checked first
    wrap = []
    if kind == "below-a-file":
        (tmp_path / "a-file").write_text("not a folder")
        out = tmp_path / "a-file" / "run"
        with pytest.raises(OSError) as cannot:  # "Not a directory" (POSIX), or Windows' words
            out.mkdir(parents=True)
        reason = cannot.value.strerror
    else:
        out, reason = tmp_path / "read-only", os.strerror(errno.EACCES)
        out.mkdir()
        out.chmod(0o555)
        if os.access(out, os.W_OK):  # root ignores the mode, not a read-only mount
            if not private_mounts_allowed(tmp_path):
                out.chmod(0o755)
                pytest.skip("root ignores chmod and no private mount namespace is allowed here; "
                            "the below-a-file case checks the refusal")
            wrap = ["unshare", "-m", "sh", "-c",
                    'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', out]
            reason = os.strerror(errno.EROFS)
    try:
        result = subprocess.run(
            [str(a) for a in [*wrap, sys.executable, "-m", "cconv", *train_args(data, out)]],
            cwd=tmp_path, env=command_env(tmp_path), capture_output=True, text=True, timeout=120,
        )
    finally:
        if kind == "read-only":
            out.chmod(0o755)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert_one_line(result.stderr, f"--out folder {str(out)!r} is not a writable directory ({reason})")
    if kind == "read-only":
        assert os.listdir(out) == []
    else:
        assert (tmp_path / "a-file").read_text() == "not a folder"


# --------------------------------------------------------------------------
# NaN / inf during cconv train
# --------------------------------------------------------------------------


def test_cli_stops_on_non_finite_values_and_keeps_the_last_good_checkpoint(
    tiny_data, reference, tmp_path, capsys, monkeypatch
):
    """An infinite weight in epoch 2, then (resumed) a NaN one in epoch 3: the loss is no longer finite.

    Each run stops with one line naming the last good checkpoint, which is
    kept; resumed without the fault, the run is the uninterrupted one.
    """
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    real_step = Trainer.train_step

    def poisoned(value, step):
        def train_step(self):
            if self.current_iter == step - 1:
                self.network.params["W3"][0, 0] = value
            return real_step(self)

        return train_step

    for value, step, epoch, kept, extra in [
        (np.inf, STEPS + 2, 2, ["epoch-0001.npz"], ()),  # epoch 2's 2nd step
        (np.nan, 2 * STEPS + 2, 3, ["epoch-0001.npz", "epoch-0002.npz"], ("--resume",)),  # epoch 3's
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(Trainer, "train_step", poisoned(value, step))
            status, stdout, err = run_cli(capsys, *train_args(tiny_data, out, "--quiet", *extra))
        assert (status, stdout) == (2, "")
        assert_one_line(err, "training diverged: the loss became ", f"at epoch {epoch} (step {step})",
                        f"the checkpoint of the last good epoch is {checkpoints / kept[-1]}", "--lr")
        assert "RuntimeWarning" not in err
        assert sorted(os.listdir(checkpoints)) == kept
        assert checkpoint_iteration(checkpoints / kept[-1]) == len(kept) * STEPS
        assert temp_files(out) == [] and not (out / "params.npz").exists()
        metrics = read_metrics(out)
        assert len(metrics["epochs"]) == len(kept) and metrics["train_loss_list"][step - 1] is None  # not finite

    assert run_cli(capsys, *train_args(tiny_data, out, "--resume", "--quiet")) == (0, "", "")
    assert_same_run(out, reference)
