"""Untrusted files, mutated at random: params archives, book pickles, IDX files.

The targeted cases (object arrays, forged shapes, malicious pickles, IDX
headers claiming 10**12 images...) are in ``test_params_io.py`` and
``test_datasets.py``. Here hypothesis cuts, overwrites and inserts bytes in
valid files, and every read must either return well-formed arrays or raise
``ValueError`` naming the file: no other exception, nothing executed, no
absurd allocation (tracemalloc's peak stays below a few MiB).

``CCONV_FUZZ_EXAMPLES`` sets the number of examples per test (default 150).
"""

import gzip
import io
import os
import pickle
import tempfile
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cconv import datasets
from cconv._atomic import atomic_save_npz
from cconv.params_io import read_params, save_params

#: Reading a bad file says so by its exception alone, never by a warning.
pytestmark = pytest.mark.filterwarnings("error")

FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("CCONV_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    derandomize="CCONV_FUZZ_SEED" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: Reading a small file must not allocate more than this, whatever its header says.
MAX_PEAK_BYTES = 8 * 2**20

PARAMS = {
    "W1": np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3),
    "b1": np.zeros(2, np.float32),
    "W2": np.linspace(-1, 1, 12).reshape(3, 4),
}


def params_npz_bytes():
    """A valid cconv params archive (with its JSON meta), as bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "params.npz")
        save_params(path, PARAMS, meta={"net": "SimpleConvNet"})
        with open(path, "rb") as f:
            return f.read()


def compressed_params_npz_bytes():
    """The archive of :func:`params_npz_bytes` with deflated members (as ``np.savez_compressed``)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "params.npz")
        with np.load(io.BytesIO(params_npz_bytes()), allow_pickle=False) as archive:
            atomic_save_npz(path, {key: archive[key] for key in archive.files}, compressed=True)
        with open(path, "rb") as f:
            return f.read()


def book_pickle_bytes(protocol):
    """A book-style params.pkl (a dict of arrays), as bytes."""
    return pickle.dumps(dict(PARAMS), protocol=protocol)


def idx_bytes(compressed):
    """A valid MNIST-like IDX file of five 4x3 uint8 images."""
    header = bytes([0, 0, 0x08, 3]) + np.array([5, 4, 3], ">u4").tobytes()
    raw = header + np.arange(60, dtype=np.uint8).tobytes()
    return gzip.compress(raw, mtime=0) if compressed else raw


@st.composite
def mutations(draw, data):
    """``data`` cut short, with bytes overwritten, or with bytes inserted."""
    kind = draw(st.sampled_from(["truncate", "overwrite", "insert", "overwrite-and-truncate"]))
    data = bytearray(data)
    if kind in ("overwrite", "overwrite-and-truncate"):
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255).filter(lambda b, p=position: b != data[p]))
    if kind == "insert":
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=16))
    if kind in ("truncate", "overwrite-and-truncate"):
        del data[draw(st.integers(0, len(data) - 1)) :]
    return bytes(data)


def read_untrusted(read, path):
    """``read(path)`` or the ValueError it raised, with the peak memory it took."""
    tracemalloc.start()
    try:
        result = read(path)
    except ValueError as exc:
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"reading a {path.stat().st_size}-byte file took {peak} bytes"
    if isinstance(result, ValueError):
        assert str(path) in str(result), f"the error does not name the file: {result}"
    return result


def assert_plain_params(result):
    params, _meta = result
    assert isinstance(params, dict)
    for name, value in params.items():
        assert isinstance(name, str)
        assert type(value) is np.ndarray and value.dtype.kind in "biuf", (name, value.dtype)


@FUZZ_SETTINGS
@given(data=mutations(params_npz_bytes()))
def test_mutated_params_archives(tmp_path, data):
    path = tmp_path / "params.npz"
    path.write_bytes(data)
    result = read_untrusted(read_params, path)
    if not isinstance(result, ValueError):
        assert_plain_params(result)


@FUZZ_SETTINGS
@given(data=mutations(compressed_params_npz_bytes()))
def test_mutated_compressed_params_archives(tmp_path, data):
    path = tmp_path / "params.npz"
    path.write_bytes(data)
    result = read_untrusted(read_params, path)
    if not isinstance(result, ValueError):
        assert_plain_params(result)


@FUZZ_SETTINGS
@given(protocol=st.integers(2, pickle.HIGHEST_PROTOCOL), seed=st.data())
def test_mutated_book_pickles(tmp_path, protocol, seed):
    data = seed.draw(mutations(book_pickle_bytes(protocol)))
    path = tmp_path / "params.pkl"
    path.write_bytes(data)
    result = read_untrusted(read_params, path)
    if not isinstance(result, ValueError):
        assert_plain_params(result)


@FUZZ_SETTINGS
@given(compressed=st.booleans(), seed=st.data())
def test_mutated_idx_files(tmp_path, compressed, seed):
    data = seed.draw(mutations(idx_bytes(compressed)))
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(data)
    result = read_untrusted(datasets.read_idx, path)
    if not isinstance(result, ValueError):
        # A valid IDX file after all (e.g. a changed pixel): its own header's array.
        assert type(result) is np.ndarray and result.flags.writeable
        assert result.nbytes <= len(gzip.decompress(data) if compressed else data)


def test_unmutated_files_are_read_back(tmp_path):
    """The fuzzed files are valid to begin with, so a refusal above means the mutation."""
    npz, pkl, idx = tmp_path / "p.npz", tmp_path / "p.pkl", tmp_path / "i.idx"
    npz.write_bytes(params_npz_bytes())
    deflated = tmp_path / "deflated.npz"
    deflated.write_bytes(compressed_params_npz_bytes())
    pkl.write_bytes(book_pickle_bytes(4))
    idx.write_bytes(idx_bytes(compressed=True))
    for path in (npz, deflated, pkl):
        params, _ = read_params(path)
        assert params.keys() == PARAMS.keys()
        for name, value in PARAMS.items():
            np.testing.assert_array_equal(params[name], value)
    np.testing.assert_array_equal(datasets.read_idx(idx), np.arange(60, dtype=np.uint8).reshape(5, 4, 3))
    save_params(tmp_path / "saved.npz", PARAMS)
    assert read_params(tmp_path / "saved.npz")[0].keys() == PARAMS.keys()


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_that_calls_something_is_refused_before_it_runs(tmp_path, protocol):
    """A book-style pickle whose reduce calls a function: refused, and the function never runs."""
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps({"W1": np.zeros(2), "evil": Payload()}, protocol=protocol))
    with pytest.raises(ValueError, match="refus"):
        read_params(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "opcode, width",
    [
        (pickle.BINBYTES, 4),
        (pickle.BINUNICODE, 4),
        (pickle.BINBYTES8, 8),
        (pickle.BINUNICODE8, 8),
        (pickle.BYTEARRAY8, 8),
        (pickle.FRAME, 8),
    ],
)
def test_forged_pickle_lengths_are_refused_without_allocating(tmp_path, opcode, width):
    """A 30-byte pickle claiming a 4 GiB or 1 TiB string: refused, nothing that size allocated."""
    claimed = 2**32 - 1 if width == 4 else 2**40
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.PROTO + bytes([5]) + opcode + claimed.to_bytes(width, "little") + b"x" * 16)
    result = read_untrusted(read_params, path)
    assert isinstance(result, ValueError)
