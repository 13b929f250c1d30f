"""The header-first .npz reader (cconv._npz): np.load's values, every header checked before its data.

Bombs are built here: archives whose member declares a large array and holds
deflated zeros (a few hundred KiB that decompress to 128 MiB), or declares
3.2 GB and holds 1 MiB. Reading them must be refused from the header alone:
tracemalloc's peak stays below a few MiB.
"""

import re
import struct
import zipfile

import numpy as np
import pytest

from cconv._atomic import atomic_save_npz
from cconv._npz import CHUNK_BYTES, DEFAULT_MAX_BYTES, MAX_HEADER_BYTES, read_npz

from npz_testutils import MAX_PEAK_BYTES, npy_bytes, npy_header, patch_central, peak_of, write_bomb, write_zip

ARRAYS = {
    "W1": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "b1": np.linspace(-1, 1, 5),
    "big_endian": np.arange(6, dtype=">f8").reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
    "flags": np.array([True, False, True]),
    "u8": np.arange(7, dtype=np.uint8),
    "empty": np.zeros((0, 4), dtype=np.float32),
    "scalar": np.array(2.5),
    "meta": np.array('{"format": "x", "text": "h\u00e9llo"}'),  # 0-d unicode, as the meta entries
    "names": np.array(["a", "bcd"]),
    "params/W1": np.ones((3, 2)),  # a checkpoint's names hold a slash
    "long": np.arange(2 * CHUNK_BYTES // 8 + 5, dtype=np.float64),  # several chunks, and a tail
}


#: (4096, 4096) float64: 128 MiB that np.load would decompress before looking at the shape.
BOMB_SHAPE = (4096, 4096)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A consistent bomb: its header, its zip sizes and its data all say 128 MiB."""
    return write_bomb(tmp_path_factory.mktemp("bomb") / "bomb.npz", BOMB_SHAPE, 8 * 4096 * 4096)


# --------------------------------------------------------------------------
# The values np.load gives
# --------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["savez", "savez_compressed", "atomic_save_npz", "atomic_save_npz-compressed"])
def test_values_are_those_of_np_load(tmp_path, writer):
    path = tmp_path / "a.npz"
    if writer.startswith("atomic"):
        atomic_save_npz(path, ARRAYS, compressed=writer.endswith("compressed"))
    else:
        getattr(np, writer)(path, **ARRAYS)
    arrays = read_npz(path)
    with np.load(path, allow_pickle=False) as expected:
        assert list(arrays) == expected.files
        for key in expected.files:
            want, got = expected[key], arrays[key]
            assert type(got) is np.ndarray, key
            assert got.dtype == want.dtype and got.dtype.str == want.dtype.str, key
            assert got.shape == want.shape, key
            assert got.flags.c_contiguous == want.flags.c_contiguous, key
            assert got.flags.f_contiguous == want.flags.f_contiguous, key
            assert got.flags.writeable, key
            np.testing.assert_array_equal(got, want, err_msg=key)
    assert arrays["meta"].shape == () and str(arrays["meta"]) == str(ARRAYS["meta"])
    assert arrays["fortran"].flags.f_contiguous and not arrays["fortran"].flags.c_contiguous


def test_check_header_sees_every_member_before_its_data(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, **ARRAYS)
    seen = []
    read_npz(path, lambda key, shape, dtype: seen.append((key, shape, dtype)))
    assert seen == [(key, value.shape, value.dtype) for key, value in ARRAYS.items()]
    assert all(type(shape) is tuple for _, shape, _ in seen)


def test_keys_reads_only_those_members(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, **ARRAYS)
    patch_central(path, "W1.npy", crc=0)  # W1 cannot be read: skipping it must not touch it
    seen = []
    arrays = read_npz(path, lambda key, *_: seen.append(key), keys={"meta", "b1"})
    assert list(arrays) == ["b1", "meta"] and seen == ["b1", "meta"]
    with pytest.raises(ValueError, match="'W1'.*corrupt"):
        read_npz(path)


def test_budget_counts_the_data_of_all_members(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.zeros(100), b=np.zeros(100))  # 800 bytes each
    assert read_npz(path, max_bytes=1600).keys() == {"a", "b"}
    with pytest.raises(ValueError, match=r"'b'.*holds 800 bytes.*more than the 799 bytes left"):
        read_npz(path, max_bytes=1599)
    with pytest.raises(ValueError, match="max_bytes: expected an integer >= 0, got -1"):
        read_npz(path, max_bytes=-1)
    assert DEFAULT_MAX_BYTES == 4 << 30


# --------------------------------------------------------------------------
# Bombs
# --------------------------------------------------------------------------


def refuse_shape(want):
    def check(key, shape, dtype):
        if shape != want:
            raise ValueError(f"{key!r} has shape {shape}, expected {want}")

    return check


def test_bomb_refused_by_check_header_before_decompressing(bomb):
    assert bomb.stat().st_size < 2 * 2**20  # 128 MiB of data in about 600 KiB
    result, peak = peak_of(lambda: read_npz(bomb, refuse_shape((30, 1, 5, 5))))
    assert isinstance(result, ValueError) and "'W1' has shape (4096, 4096)" in str(result)
    assert peak < MAX_PEAK_BYTES


def test_bomb_refused_by_the_budget_before_decompressing(bomb):
    result, peak = peak_of(lambda: read_npz(bomb, max_bytes=2**20))
    assert isinstance(result, ValueError), result
    assert f"{bomb}: entry 'W1'" in str(result) and "holds 134217728 bytes ((4096, 4096) float64)" in str(result)
    assert peak < MAX_PEAK_BYTES


def test_bomb_is_read_when_allowed(bomb):
    """Control: the bomb is a valid archive, read whole under a budget that admits it."""
    arrays = read_npz(bomb, refuse_shape(BOMB_SHAPE), max_bytes=8 * 4096 * 4096)
    assert arrays["W1"].shape == BOMB_SHAPE and not arrays["W1"].any()


def test_huge_header_with_little_data_refused(tmp_path):
    # (20000, 20000) float64 = 3.2 GB declared, 1 MiB written: the zip's own size disagrees
    path = write_bomb(tmp_path / "b.npz", (20000, 20000), 2**20)
    result, peak = peak_of(lambda: read_npz(path))
    assert isinstance(result, ValueError) and "'W1'" in str(result)
    assert "is corrupt: the zip declares 1048704 bytes, its .npy header 128 + 3200000000" in str(result)
    assert peak < MAX_PEAK_BYTES
    result, peak = peak_of(lambda: read_npz(path, refuse_shape((2, 2))))
    assert "'W1' has shape (20000, 20000), expected (2, 2)" in str(result)
    assert peak < MAX_PEAK_BYTES


def test_checkpoint_shaped_bomb_refused_by_its_check(tmp_path):
    """As the checkpoint module reads: params/<key> checked against the network, others only bounded."""
    network = {"W1": ((4, 8), np.dtype(np.float64)), "b1": ((8,), np.dtype(np.float64))}

    class Misfit(ValueError):
        pass

    def check(key, shape, dtype):
        name = key.removeprefix("params/")
        if key.startswith("params/") and network.get(name) != (shape, dtype):
            raise Misfit(f"parameter {name!r}: the network has {network.get(name)}, the checkpoint {shape} {dtype}")

    others = {
        "meta": np.array('{"format": "cconv.trainer.checkpoint"}'),
        "params/b1": np.zeros(8),
        "current_epoch": np.array(1),
    }
    path = write_bomb(tmp_path / "epoch-0001.npz", (2048, 4096), 64 * 2**20, key="params/W1", others=others)
    result, peak = peak_of(lambda: read_npz(path, check, max_bytes=2**20, what="checkpoint"))
    assert type(result) is Misfit  # the check's own exception, unchanged
    assert "parameter 'W1': the network has ((4, 8), dtype('float64')), the checkpoint (2048, 4096)" in str(result)
    assert peak < MAX_PEAK_BYTES
    # with a check that lets it through, the budget refuses it, naming the checkpoint
    result, peak = peak_of(lambda: read_npz(path, max_bytes=2**20, what="checkpoint"))
    assert str(result).startswith(f"checkpoint {path}: entry 'params/W1' (params/W1.npy) holds")
    assert peak < MAX_PEAK_BYTES


# --------------------------------------------------------------------------
# Sizes that disagree
# --------------------------------------------------------------------------


def test_zip_size_must_match_the_header(tmp_path):
    good = npy_bytes(np.arange(10.0))
    more = write_zip(tmp_path / "more.npz", {"W1.npy": good + bytes(8)})  # a float more than declared
    with pytest.raises(ValueError, match=r"'W1'.*zip declares 216 bytes, its .npy header 128 \+ 80"):
        read_npz(more)
    less = write_zip(tmp_path / "less.npz", {"W1.npy": good[:-8]}, zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"'W1'.*zip declares 200 bytes, its .npy header 128 \+ 80"):
        read_npz(less)


def test_stream_shorter_than_the_zip_says_refused(tmp_path):
    # the zip claims the 208 bytes of the header; the deflate stream ends 8 bytes early
    # (CRC and compressed size are those of the short stream: only the length check sees it)
    good = npy_bytes(np.arange(10.0))
    path = write_zip(tmp_path / "a.npz", {"W1.npy": good[:-8]}, zipfile.ZIP_DEFLATED)
    patch_central(path, "W1.npy", file_size=len(good))
    with pytest.raises(ValueError, match=r"'W1'.*data ends after 72 of 80 bytes"):
        read_npz(path)


def test_stream_longer_than_the_zip_says_refused(tmp_path):
    # header and zip agree on 10 floats; the stream holds 11 (its CRC is that of all 11)
    data = npy_bytes(np.arange(10.0)) + np.float64(10).tobytes()
    path = write_zip(tmp_path / "a.npz", {"W1.npy": data}, zipfile.ZIP_DEFLATED)
    patch_central(path, "W1.npy", file_size=len(data) - 8)
    with pytest.raises(ValueError, match="'W1'.*corrupt.*CRC"):
        read_npz(path)


def test_stored_size_must_be_the_compressed_size(tmp_path):
    # a stored member of 208 bytes whose header and zip entry both claim 110 floats (1008 bytes)
    data = npy_header((110,)) + np.arange(10.0).tobytes()
    path = patch_central(write_zip(tmp_path / "a.npz", {"W1.npy": data}), "W1.npy", file_size=1008)
    with pytest.raises(ValueError, match=r"'W1'.*1008 bytes cannot come from 208 stored bytes"):
        read_npz(path)


def test_deflate_cannot_expand_more_than_1032_fold(tmp_path):
    # header and zip entry claim 10**6 floats, the deflate stream is some 50 bytes
    count = 10**6
    data = npy_header((count,)) + bytes(8000)
    path = write_zip(tmp_path / "a.npz", {"W1.npy": data}, zipfile.ZIP_DEFLATED)
    patch_central(path, "W1.npy", file_size=128 + 8 * count)
    with zipfile.ZipFile(path) as zf:
        compressed = zf.getinfo("W1.npy").compress_size
    assert 1032 * compressed < 128 + 8 * count
    result, peak = peak_of(lambda: read_npz(path))
    assert isinstance(result, ValueError) and f"cannot come from {compressed} deflated bytes" in str(result)
    assert peak < MAX_PEAK_BYTES


def test_compressed_size_beyond_the_file_refused(tmp_path):
    path = write_zip(tmp_path / "a.npz", {"W1.npy": npy_bytes(np.zeros(10))})
    patch_central(path, "W1.npy", compress_size=10**9)
    with pytest.raises(ValueError, match=r"'W1'.*corrupt"):  # zipfile's overlap check, or ours
        read_npz(path)


def test_crc_error_is_corrupt(tmp_path):
    data = npy_bytes(np.arange(10.0))
    path = write_zip(tmp_path / "a.npz", {"W1.npy": data})
    path.write_bytes(path.read_bytes().replace(data[-8:], bytes(8)))
    with pytest.raises(ValueError, match=re.escape(f"{path}: entry 'W1' (W1.npy) is corrupt (BadZipFile: Bad CRC-32")):
        read_npz(path)


# --------------------------------------------------------------------------
# Refused members
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"W1.txt": b"x"}, "member 'W1.txt' is not named <key>.npy"),
        ({".npy": b"x"}, "member '.npy' is not named <key>.npy"),
        ({"dir/": b""}, "member 'dir/' is not named <key>.npy"),
        ({"W1.npy": b"not an npy header at all"}, r"'W1' \(W1.npy\) is not a .npy array"),
        ({"W1.npy": b"\x93NUMPY"}, "'W1'.*header ends after 6 of 8 bytes"),
        ({"W1.npy": b"\x93NUMPY\x03\x00" + bytes(100)}, "'W1'.*version 3.0; 1.0 and 2.0 are read"),
        ({"W1.npy": npy_header((2,))[:40]}, "'W1'.*header ends after"),
        ({"W1.npy": b"\x93NUMPY\x01\x00\x10\x00{'shape': (2,),   }"}, "'W1'.*unreadable .npy header"),
        ({"W1.npy": npy_header((2, -3))}, r"'W1'.*unreadable .npy header \(shape \(2, -3\)\)"),
        ({"W1.npy": npy_header((2,), descr="|O")}, "'W1'.*dtype object, which needs pickle"),
        ({"W1.npy": npy_header((2,), descr=[("a", "<f8")])}, r"'W1'.*dtype \[\('a', '<f8'\)\]; only bool"),
        ({"W1.npy": npy_header((2,), descr="<c16")}, "'W1'.*dtype complex128; only bool"),
        ({"W1.npy": npy_header((2,), descr="|S3")}, r"'W1'.*dtype \|S3; only bool"),
    ],
    ids=["name", "no-key", "directory", "no-magic", "short-magic", "version-3", "short-header",
         "bad-header", "negative-shape", "object", "structured", "complex", "bytes"],
)
def test_inadmissible_members_refused(tmp_path, members, match):
    path = write_zip(tmp_path / "a.npz", members)
    with pytest.raises(ValueError, match=match) as info:
        read_npz(path, what="params file")
    assert str(info.value).startswith(f"params file {path}: ")


def test_oversized_header_refused_before_it_is_read(tmp_path):
    # a version 2.0 header claiming 2 GiB, and 1 MiB of deflated zeros behind it
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("W1.npy", "w") as member:
            member.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + bytes(2**20))
    result, peak = peak_of(lambda: read_npz(path))
    assert f"header of {2**31} bytes, more than the {MAX_HEADER_BYTES} admitted" in str(result)
    assert peak < MAX_PEAK_BYTES


def test_version_2_header_read(tmp_path):
    path = write_zip(tmp_path / "a.npz", {"W1.npy": npy_header((3,), version=(2, 0)) + np.arange(3.0).tobytes()})
    np.testing.assert_array_equal(read_npz(path)["W1"], np.arange(3.0))


def test_duplicate_member_refused(tmp_path):
    path = tmp_path / "a.npz"
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_zip(path, {"W1.npy": npy_bytes(np.zeros(2))})
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("W1.npy", npy_bytes(np.ones(2)))
    with pytest.raises(ValueError, match=r"'W1' \(W1.npy\) appears twice"):
        read_npz(path)


def test_encrypted_member_refused(tmp_path):
    path = write_zip(tmp_path / "a.npz", {"W1.npy": npy_bytes(np.zeros(2))})
    patch_central(path, "W1.npy", flags=0x1)
    with pytest.raises(ValueError, match=r"'W1' \(W1.npy\) is encrypted"):
        read_npz(path)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
def test_other_compression_methods_refused(tmp_path, method):
    path = tmp_path / "a.npz"
    if method == 99:
        patch_central(write_zip(path, {"W1.npy": npy_bytes(np.zeros(2))}), "W1.npy", method=99)
    else:
        write_zip(path, {"W1.npy": npy_bytes(np.zeros(2))}, method)
    with pytest.raises(ValueError, match=rf"'W1'.*compression method {method}; only stored \(0\) and deflate \(8\)"):
        read_npz(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a zip"])
def test_not_a_zip_refused(tmp_path, content):
    path = tmp_path / "a.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"checkpoint {path}: not a readable .npz archive")):
        read_npz(path, what="checkpoint")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "absent.npz")


def test_zero_sized_dtype_refused_before_anything_is_allocated(tmp_path):
    # '<U0' has no bytes per element: sizes computed from it say nothing of what NumPy would allocate
    path = write_zip(tmp_path / "a.npz", {"W1.npy": npy_header((50_000_000,), descr="<U0")})
    result, peak = peak_of(lambda: read_npz(path, max_bytes=0))
    assert isinstance(result, ValueError) and "'W1'" in str(result) and "zero bytes" in str(result)
    assert peak < 1 << 20
