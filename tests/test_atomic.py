"""Atomic file writing (cconv._atomic): whole new file or the old one, never a part."""

import json
import os

import numpy as np
import pytest

from cconv import _atomic
from cconv._atomic import (
    atomic_save_npz,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
)


class Boom(Exception):
    pass


def _listing(folder):
    return sorted(os.listdir(folder))


def test_write_bytes_and_text_replace_the_target(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    text_path = tmp_path / "note.txt"
    atomic_write_text(text_path, "a\r\nb\n\u00e9")
    assert text_path.read_bytes() == "a\r\nb\n\u00e9".encode()
    assert _listing(tmp_path) == ["note.txt", "out.bin"]


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [False, True])
def test_writer_raising_midway_leaves_no_partial_file(tmp_path, error, existing):
    path = tmp_path / "data.bin"
    if existing:
        path.write_bytes(b"old content")
    with pytest.raises(error):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            f.flush()
            raise error()
    assert _listing(tmp_path) == (["data.bin"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old content"


def test_npz_writer_failing_after_some_arrays_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    atomic_save_npz(path, {"a": np.zeros(3)})
    real_write_array = np.lib.format.write_array
    calls = []

    def failing_write_array(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Boom("disk on fire")
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(Boom):
        atomic_save_npz(path, {"a": np.ones(1000), "b": np.ones(1000), "c": np.ones(3)})
    assert _listing(tmp_path) == ["ckpt.npz"]
    with np.load(path, allow_pickle=False) as data:
        assert data.files == ["a"] and np.array_equal(data["a"], np.zeros(3))


def test_fsync_failure_leaves_target_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"v": 1})

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        atomic_write_json(path, {"v": 2})
    assert _listing(tmp_path) == ["x.json"]
    assert json.loads(path.read_text()) == {"v": 1}


def test_npz_round_trip_without_pickle(tmp_path):
    path = tmp_path / "state.npz"
    arrays = {
        "params/W1": np.arange(6, dtype=np.float32).reshape(2, 3),
        "optimizer/m/W1": np.full((2, 3), 0.5),
        "meta": np.array(json.dumps({"epoch": 3})),
        "count": np.array(7, dtype=np.int64),
    }
    atomic_save_npz(path, arrays, compressed=True)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(arrays)
        for key, value in arrays.items():
            assert data[key].dtype == value.dtype
            assert np.array_equal(data[key], value)
    assert json.loads(str(np.load(path)["meta"])) == {"epoch": 3}


def test_npz_refuses_object_arrays_and_leaves_nothing(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(ValueError, match="pickle"):
        atomic_save_npz(path, {"ok": np.zeros(2), "bad": np.array([{"a": 1}], dtype=object)})
    assert _listing(tmp_path) == []


def test_json_refuses_nan_and_leaves_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(ValueError):
        atomic_write_json(path, {"loss": float("nan")})
    assert _listing(tmp_path) == []
    atomic_write_json(path, {"loss": 0.25, "acc": [0.5, 0.75]})
    assert json.loads(path.read_text()) == {"loss": 0.25, "acc": [0.5, 0.75]}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_new_file_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_check_writable_dir(tmp_path):
    nested = tmp_path / "a" / "b"
    assert check_writable_dir(nested) == str(nested)
    assert nested.is_dir() and _listing(nested) == []
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"checkpoint_dir .*file.* is not a writable directory"):
        check_writable_dir(blocker / "sub", "checkpoint_dir")
