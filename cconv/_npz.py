"""Reading ``.npz`` archives header first: no member is decompressed before its ``.npy`` header is checked.

``np.load`` decompresses a member whole before it looks at the shape in its
header, so a 3 MB archive of deflated zeros that declares a (20000, 20000)
float64 array makes it allocate 3.2 GB before anything can refuse it.
:func:`read_npz` opens the zip itself and, member by member, reads the
``.npy`` header alone (the first bytes of the stream), checks it, hands
``(key, shape, dtype)`` to the caller's check, charges the data size against a
byte budget, and only then reads exactly the declared bytes, in bounded
chunks, into a preallocated array.

What is admitted: members named ``<key>.npy`` (each once), stored or
deflated, not encrypted; ``.npy`` versions 1.0 and 2.0 with a header of at
most :data:`MAX_HEADER_BYTES`; arrays of bool, integer, float and unicode
dtypes (``allow_pickle=False`` and no structured dtypes), C or Fortran order,
as ``np.save`` writes them. The values come back as ``np.load`` gives them:
same dtype (byte order included), shape and memory order; a 0-d unicode array
stays a 0-d unicode array.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
>>> np.savez_compressed(path, W1=np.zeros((2, 3)), note=np.array("hi"))
>>> def check(key, shape, dtype):
...     if key == "W1" and shape != (2, 3):
...         raise ValueError(f"W1 has shape {shape}")
>>> arrays = read_npz(path, check)
>>> arrays["W1"].shape, str(arrays["note"])
((2, 3), 'hi')
"""

import contextlib
import math
import os
import struct
import warnings
import zipfile
import zlib

import numpy as np

__all__ = ["DEFAULT_MAX_BYTES", "MAX_HEADER_BYTES", "read_npz"]

#: Total data bytes :func:`read_npz` reads unless told otherwise: 4 GiB, eight
#: times the float64 parameters of a full-size AlexNet (about 476 MiB).
DEFAULT_MAX_BYTES = 4 << 30
#: Longest ``.npy`` header (its dict literal) admitted, as ``np.load``'s default.
MAX_HEADER_BYTES = 10_000
#: Bytes decompressed per read while filling an array.
CHUNK_BYTES = 1 << 20
#: Deflate expands at most 1032-fold (258 bytes from a 2-bit length/distance pair).
_MAX_DEFLATE_RATIO = 1032
#: Dtype kinds a member may have: bool, signed and unsigned integer, float, unicode.
_KINDS = "biufU"
_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
#: ``.npy`` version -> struct format of its header length.
_HEADER_LENGTH = {(1, 0): "<H", (2, 0): "<I"}
_READ_HEADER = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
#: What a damaged zip or deflate stream raises inside zipfile and zlib.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, struct.error, ValueError)


class _Corrupt(Exception):
    """A damaged or inadmissible member; :func:`read_npz` names the file and member."""


def read_npz(path, check_header=None, *, max_bytes=None, what="file", keys=None, fileobj=None):
    """Read the arrays of the ``.npz`` archive ``path``, each header checked before its data.

    Parameters
    ----------
    path : str or os.PathLike
        The archive.
    check_header : callable, optional
        ``check_header(key, shape, dtype)`` for each member read, in archive
        order, given its name without ``.npy``, its shape (a tuple of ints)
        and its dtype, before any of its data is decompressed. It refuses a
        member by raising; its exception goes to the caller unchanged.
    max_bytes : int, optional
        Most data bytes (``shape * itemsize``, summed over the members read)
        the archive may hold; default :data:`DEFAULT_MAX_BYTES`.
    what : str
        What the file is, for messages (``"checkpoint"``, ``"params file"``).
    keys : collection of str, optional
        Read only these members (all others are skipped undecompressed);
        default all.
    fileobj : binary file, optional
        An open, seekable file holding the archive (``io.BytesIO`` of bytes
        received from elsewhere); ``path`` then only names it in messages.

    Returns
    -------
    dict of str to ndarray
        ``{key: array}`` in archive order, as ``np.load(path, allow_pickle=False)``
        gives them.

    Raises
    ------
    FileNotFoundError, PermissionError
        If ``path`` cannot be opened.
    ValueError
        Naming the file and the member: not a zip archive, a member not
        named ``<key>.npy`` or named twice, encrypted, compressed other than
        stored or deflate, an unreadable or oversized ``.npy`` header, an
        object or structured dtype, a size in the zip that disagrees with
        the header, data beyond the ``max_bytes`` budget, a stream shorter or
        longer than declared, or a CRC error ("corrupt").
    """
    path = os.fspath(path)
    budget = DEFAULT_MAX_BYTES if max_bytes is None else _check_max_bytes(max_bytes)
    with open(path, "rb") if fileobj is None else contextlib.nullcontext(fileobj) as f:
        file_size = f.seek(0, os.SEEK_END)
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except (*_CORRUPT, NotImplementedError) as exc:
            raise ValueError(f"{what} {path}: not a readable .npz archive ({_reason(exc)})") from exc
        with archive:
            members = _members(archive, path, what)
            arrays = {}
            for key, info in members:
                if keys is not None and key not in keys:
                    continue
                try:
                    arrays[key] = _read_member(archive, info, key, check_header, budget, file_size)
                except _Corrupt as exc:
                    raise ValueError(f"{what} {path}: entry {key!r} ({info.filename}) {exc}") from None
                budget -= arrays[key].nbytes
    return arrays


def _check_max_bytes(max_bytes):
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"max_bytes: expected an integer >= 0, got {max_bytes!r}")
    return max_bytes


def _reason(exc):
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _members(archive, path, what):
    """``[(key, ZipInfo)]`` of the archive, every name, flag and method checked (nothing read)."""
    members, seen = [], set()
    for info in archive.infolist():
        name = info.filename
        key = name[: -len(".npy")] if name.endswith(".npy") else ""
        if not key:
            raise ValueError(f"{what} {path}: member {name!r} is not named <key>.npy")
        if key in seen:
            raise ValueError(f"{what} {path}: entry {key!r} ({name}) appears twice")
        seen.add(key)
        if info.flag_bits & 0x1:
            raise ValueError(f"{what} {path}: entry {key!r} ({name}) is encrypted")
        if info.compress_type not in _COMPRESSIONS:
            raise ValueError(
                f"{what} {path}: entry {key!r} ({name}) uses compression method "
                f"{info.compress_type}; only stored (0) and deflate (8) are read"
            )
        members.append((key, info))
    return members


def _read_member(archive, info, key, check_header, budget, file_size):
    """The array of one member; ``_Corrupt`` for anything wrong with it but ``check_header``'s refusal."""
    try:
        stream = archive.open(info)
    except (*_CORRUPT, NotImplementedError, RuntimeError) as exc:
        raise _Corrupt(f"cannot be opened: corrupt ({_reason(exc)})") from None
    with stream:
        shape, fortran_order, dtype, header_size = _read_header(stream)
        if check_header is not None:
            check_header(key, shape, dtype)  # may refuse: nothing of the data is read yet
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != header_size + nbytes:
            raise _Corrupt(
                f"is corrupt: the zip declares {info.file_size} bytes, its .npy header "
                f"{header_size} + {nbytes} ({shape} {dtype})"
            )
        if nbytes > budget:
            raise _Corrupt(
                f"holds {nbytes} bytes ({shape} {dtype}), more than the {budget} bytes "
                "left of the file's budget"
            )
        _check_compressed_size(info, file_size)
        try:
            return _read_data(stream, shape, fortran_order, dtype, nbytes)
        except _CORRUPT as exc:
            raise _Corrupt(f"is corrupt ({_reason(exc)})") from None


def _read_header(stream):
    """``(shape, fortran_order, dtype, header bytes)`` from the start of a member's stream.

    The header length is checked before the header is read (NumPy's own
    readers read the whole declared length, up to 4 GiB, before checking it).
    """
    magic = _read_exactly(stream, np.lib.format.MAGIC_LEN)
    try:
        version = np.lib.format.read_magic(_Bytes(magic))
    except ValueError as exc:
        raise _Corrupt(f"is not a .npy array ({exc})") from None
    if version not in _HEADER_LENGTH:
        raise _Corrupt(f"is a .npy array of version {version[0]}.{version[1]}; 1.0 and 2.0 are read")
    length_bytes = _read_exactly(stream, struct.calcsize(_HEADER_LENGTH[version]))
    (length,) = struct.unpack(_HEADER_LENGTH[version], length_bytes)
    if length > MAX_HEADER_BYTES:
        raise _Corrupt(f"has a .npy header of {length} bytes, more than the {MAX_HEADER_BYTES} admitted")
    header = _read_exactly(stream, length)
    try:
        with warnings.catch_warnings():  # a Python 2 header, or odd escapes in a damaged one
            warnings.simplefilter("ignore")
            shape, fortran_order, dtype = _READ_HEADER[version](
                _Bytes(length_bytes + header), max_header_size=MAX_HEADER_BYTES
            )
    except Exception as exc:  # a damaged header: every parse error means the same
        raise _Corrupt(f"has an unreadable .npy header ({_reason(exc)})") from None
    if any(size < 0 for size in shape):
        raise _Corrupt(f"has an unreadable .npy header (shape {shape})")
    if dtype.hasobject:
        raise _Corrupt(f"has dtype {dtype}, which needs pickle; arrays are read with allow_pickle=False")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in _KINDS:
        raise _Corrupt(f"has dtype {dtype}; only bool, integer, float and unicode arrays are read")
    if dtype.itemsize == 0:  # '<U0': its size says nothing of the array NumPy would make
        raise _Corrupt(f"has dtype {dtype}, of zero bytes per element")
    return tuple(shape), fortran_order, dtype, len(magic) + len(length_bytes) + length


class _Bytes:
    """A minimal readable file over bytes, for NumPy's header readers."""

    def __init__(self, data):
        self._data, self._pos = data, 0

    def read(self, size):
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


def _read_exactly(stream, size):
    """``size`` bytes of a member's ``.npy`` header."""
    try:
        data = stream.read(size)
    except _CORRUPT as exc:  # a small member is decompressed and CRC-checked at its first read
        raise _Corrupt(f"is corrupt ({_reason(exc)})") from None
    if len(data) != size:
        raise _Corrupt(f"is corrupt: its .npy header ends after {len(data)} of {size} bytes")
    return data


def _check_compressed_size(info, file_size):
    """Refuse sizes the bytes on disk cannot hold, before the array is allocated."""
    if info.compress_size > file_size - info.header_offset:
        raise _Corrupt(
            f"is corrupt: the zip declares {info.compress_size} compressed bytes at offset "
            f"{info.header_offset} of a {file_size}-byte file"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        limit, how = info.compress_size, "stored"
    else:
        limit, how = _MAX_DEFLATE_RATIO * info.compress_size, "deflated"
    if info.file_size > limit:
        raise _Corrupt(
            f"is corrupt: {info.file_size} bytes cannot come from {info.compress_size} {how} bytes"
        )


def _read_data(stream, shape, fortran_order, dtype, nbytes):
    """Exactly ``nbytes`` from ``stream`` into a new array, ``CHUNK_BYTES`` at a time, as ``np.load`` shapes it."""
    try:
        array = np.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
    except MemoryError:
        raise _Corrupt(f"holds {nbytes} bytes ({shape} {dtype}), more than this machine can allocate") from None
    if nbytes:
        raw = array.reshape(-1).view(np.uint8)
        filled = 0
        while filled < nbytes:
            chunk = stream.read(min(CHUNK_BYTES, nbytes - filled))
            if not chunk:
                raise _Corrupt(f"is corrupt: its data ends after {filled} of {nbytes} bytes")
            raw[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            filled += len(chunk)
    return array.T if fortran_order else array
