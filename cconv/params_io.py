"""Network parameters on disk: the cconv ``.npz`` params format, and the book's ``.pkl`` read safely.

The format is a plain NumPy ``.npz`` archive: one array per parameter (``W1``,
``b1``, ...) and a ``__meta__`` entry, a 0-d unicode array holding a JSON
object ``{"format": "cconv-params", "version": 1, "net": ..., "config": ...}``
that names the network and its constructor settings, so that
:func:`cconv.nets.load_network` can rebuild the right network from the file.
Nothing in it needs pickle. :func:`save_params` writes it atomically
(:mod:`cconv._atomic`).

Reading is header first (:func:`cconv._npz.read_npz`): each array's ``.npy``
header is checked (its shape and dtype against what the network expects,
given to :func:`read_params` as ``expected``) before its data is
decompressed, and the data of a file are bounded (``max_bytes``), so a small
archive that declares gigabytes is refused without allocating them.
:func:`read_meta` decompresses the ``__meta__`` entry alone, so a network can
be named and its shapes computed before any parameter is read.

:func:`read_params` also accepts a parameters pickle saved by the book's
``save_params`` (a dict of NumPy arrays), read through the restricted
unpickler of :mod:`cconv._safe_pickle` (:class:`RestrictedUnpickler`,
:class:`UnsafePickleError` and :func:`is_plain_numeric_dtype` are re-exported
here).

Files are recognised by their content, not their name: ``save_params("params.pkl")``
(as the book's scripts call it) writes an ``.npz`` archive under that name and
``load_params("params.pkl")`` reads it back.
"""

import json
import math
import os

import numpy as np

from cconv._atomic import atomic_save_npz
from cconv._npz import DEFAULT_MAX_BYTES, read_npz
from cconv._safe_pickle import (
    RestrictedUnpickler,
    UnsafePickleError,
    is_plain_numeric_dtype,
    read_pickle_params,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_META_BYTES",
    "META_KEY",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "assign_params",
    "check_param_shapes",
    "is_npz",
    "is_plain_numeric_dtype",
    "load_params",
    "param_specs",
    "read_meta",
    "read_params",
    "save_params",
]

#: Name of the metadata entry in a cconv ``.npz`` file.
META_KEY = "__meta__"
FORMAT_NAME = "cconv-params"
FORMAT_VERSION = 1
#: Most bytes the ``__meta__`` entry may hold (a network's settings take a few hundred).
MAX_META_BYTES = 1 << 20

_ZIP_MAGIC = b"PK\x03\x04"


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def _check_param_name(key):
    if not isinstance(key, str) or not key:
        raise ValueError(f"parameter names must be non-empty strings, got {key!r}")
    if key.startswith("__"):
        raise ValueError(f"parameter name {key!r} is reserved: names may not start with '__'")


def save_params(path, params, meta=None):
    """Write ``params`` to ``path`` as an ``.npz`` archive, atomically.

    The archive is written to a temporary file in the same directory, flushed
    to disk (``fsync``) and renamed over ``path`` (``os.replace``), so a
    reader sees either the old file or the complete new one, never a partial
    file, even if the process is killed while saving.

    Parameters
    ----------
    path : str or os.PathLike
        Destination, used as given (no ``.npz`` is appended).
    params : mapping of str to ndarray
        The arrays to save; names must not start with ``__``. Object arrays
        are refused.
    meta : dict, optional
        JSON-serialisable metadata (the network's name and constructor
        settings), stored as the ``__meta__`` entry together with the format
        name and version.

    Raises
    ------
    ValueError
        If a name is reserved, an array holds Python objects, or ``meta`` is
        not JSON-serialisable.
    """
    arrays = {}
    for key, value in params.items():
        _check_param_name(key)
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(
                f"parameter {key!r}: object arrays cannot be saved (dtype {arr.dtype})"
            )
        arrays[key] = arr
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
    header.update(meta or {})
    try:
        text = json.dumps(header, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta must be JSON-serialisable: {exc}") from exc
    arrays[META_KEY] = np.array(text, dtype=np.str_)  # 0-d unicode array, no pickle
    atomic_save_npz(path, arrays)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def is_npz(path):
    """True if the file at ``path`` starts as a zip archive (an ``.npz``) does; its content is not checked."""
    with open(path, "rb") as f:
        return f.read(4) == _ZIP_MAGIC


def _meta_too_large(path, shape, dtype):
    """The error for a ``__meta__`` header that is not a small 0-d unicode array, or None."""
    if shape != () or dtype.kind != "U":
        return ValueError(
            f"{path}: {META_KEY!r} must be a 0-d unicode array, got shape {shape} dtype {dtype}"
        )
    if dtype.itemsize > MAX_META_BYTES:
        return ValueError(
            f"{path}: {META_KEY!r} holds {dtype.itemsize} bytes, more than the "
            f"{MAX_META_BYTES} a params file's metadata may hold"
        )
    return None


def _parse_meta(path, value):
    try:
        meta = json.loads(str(value))
    except ValueError as exc:
        raise ValueError(f"{path}: {META_KEY!r} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{path}: {META_KEY!r} is not cconv metadata (format {FORMAT_NAME!r} expected)"
        )
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported cconv params version {meta.get('version')!r} "
            f"(expected {FORMAT_VERSION})"
        )
    return meta


def read_meta(path):
    """The ``__meta__`` of the cconv params archive ``path``, decompressing nothing else.

    Returns ``None`` when the archive has no ``__meta__`` (a plain ``.npz``) or
    ``path`` is not a zip archive at all (a book ``.pkl``, or anything that
    :func:`read_params` would refuse). A ``__meta__`` that is not a 0-d
    unicode array of at most :data:`MAX_META_BYTES` bytes is refused from its
    header.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the archive is corrupt or its ``__meta__`` is not cconv metadata.
    """
    path = os.fspath(path)
    if not is_npz(path):
        return None

    def check_header(key, shape, dtype):
        error = _meta_too_large(path, shape, dtype)
        if error is not None:
            raise error

    arrays = read_npz(path, check_header, max_bytes=MAX_META_BYTES, what="params file", keys={META_KEY})
    return None if META_KEY not in arrays else _parse_meta(path, arrays[META_KEY])


def param_specs(params, cast=False):
    """The ``expected`` of :func:`read_params` for a network's ``params``.

    ``{key: (shape, dtype)}``; with ``cast``, ``{key: shape}`` (any floating
    dtype is then converted by :func:`assign_params`, which checks the kind).
    """
    if cast:
        return {key: np.shape(value) for key, value in params.items()}
    return {key: (np.shape(value), np.asarray(value).dtype) for key, value in params.items()}


def _expectation(expected):
    """``{key: (shape, dtype or None)}`` from a :func:`read_params` ``expected`` mapping."""
    specs = {}
    for key, spec in expected.items():
        if (
            isinstance(spec, tuple)
            and len(spec) == 2
            and isinstance(spec[0], (tuple, list))
            and not isinstance(spec[1], (tuple, list))
        ):
            shape, dtype = spec
            specs[key] = (tuple(shape), None if dtype is None else np.dtype(dtype))
        else:
            specs[key] = (tuple(spec), None)
    return specs


def _header_check(path, expected, expected_text):
    """The ``check_header`` of :func:`read_npz` for a params archive and its ``expected``."""
    specs = None if expected is None or callable(expected) else _expectation(expected)

    def check_header(key, shape, dtype):
        if key == META_KEY:
            error = _meta_too_large(path, shape, dtype)
            if error is not None:
                raise error
        elif callable(expected):
            expected(key, shape, dtype)
        elif specs is not None:
            if key not in specs:
                raise _extra_error(path, [key], specs)
            want_shape, want_dtype = specs[key]
            if shape != want_shape:
                raise _shape_error(path, key, shape, expected_text, want_shape)
            if want_dtype is not None and dtype != want_dtype:
                raise _dtype_error(path, key, dtype, want_dtype)

    return check_header


def read_params(path, expected=None, *, max_bytes=None, expected_text="the network expects"):
    """Read a params file: a cconv/NumPy ``.npz`` archive or a book-style ``.pkl``.

    The format is recognised from the first bytes. ``.npz`` archives are read
    header first (:func:`cconv._npz.read_npz`, no pickle): each array's shape
    and dtype are checked against ``expected`` before its data is
    decompressed, and all data together may take at most ``max_bytes``.
    Pickles go through :class:`RestrictedUnpickler` and their arrays are then
    checked the same way.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    expected : mapping or callable, optional
        ``{key: shape}`` or ``{key: (shape, dtype)}``: every array must be one
        of these keys, with that shape (and dtype). Or a callable
        ``check(key, shape, dtype)`` that raises ``ValueError`` to refuse an
        array. Keys missing from the file are not checked here (see
        :func:`check_param_shapes`). Default: no check.
    max_bytes : int, optional
        Most data bytes an ``.npz`` may hold. Default: with an ``expected``
        mapping, 8 bytes per expected element plus :data:`MAX_META_BYTES`
        (the largest numeric dtype), so a file cannot make this allocate
        much more than the arrays it should hold; otherwise
        :data:`cconv._npz.DEFAULT_MAX_BYTES` (4 GiB).
    expected_text : str
        Introduces the expected shape in a shape error ("the network expects").

    Returns
    -------
    params : dict of str to ndarray
    meta : dict or None
        The ``__meta__`` entry of a cconv archive (``None`` for a pickle or a
        plain ``.npz``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnsafePickleError
        (a ``ValueError``) if a pickle asks for anything but NumPy arrays.
    ValueError
        If the file is neither format, is corrupt, holds non-numeric data or
        more than ``max_bytes``, or an array ``expected`` refuses (naming the key).
    """
    path = os.fspath(path)
    check_header = _header_check(path, expected, expected_text)
    if max_bytes is None and expected is not None and not callable(expected):
        elements = sum(math.prod(shape) for shape, _ in _expectation(expected).values())
        max_bytes = 8 * elements + MAX_META_BYTES
    if not is_npz(path):  # anything else must be a (restricted) pickle
        params = read_pickle_params(path)
        for key, value in params.items():
            if key != META_KEY:
                check_header(key, value.shape, value.dtype)
        return params, None
    params = read_npz(path, check_header, max_bytes=max_bytes, what="params file")
    meta = params.pop(META_KEY, None)
    return params, (None if meta is None else _parse_meta(path, meta))


def load_params(path, params, cast=False):
    """Read ``path`` and copy its arrays into ``params`` in place.

    Every key, shape and dtype is checked against ``params`` before anything
    is copied, so on error ``params`` is left untouched; in an ``.npz`` each
    array's shape and dtype are checked from its header, before its data is
    decompressed (:func:`read_params` with :func:`param_specs`). The arrays
    keep their identity: layers and optimizers that hold them see the loaded
    values.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npz`` archive or a book-style ``.pkl`` (see :func:`read_params`).
    params : dict of str to ndarray
        The network's parameters, written in place.
    cast : bool, default False
        Accept a floating dtype different from the network's (for example the
        book's float64 files into a float32 network) and convert.

    Returns
    -------
    meta : dict or None
        The file's metadata, if any.

    Raises
    ------
    ValueError
        Naming the key, on a missing or extra key or a shape or dtype mismatch.
    """
    loaded, meta = read_params(path, param_specs(params, cast))
    assign_params(loaded, params, os.fspath(path), cast)
    return meta


def _extra_error(source, keys, shapes):
    return ValueError(
        f"{source}: unexpected parameter(s) {', '.join(map(repr, keys))} "
        f"(the network has {list(shapes)})"
    )


def _shape_error(source, key, shape, expected, want):
    return ValueError(f"{source}: parameter {key!r} has shape {shape}, {expected} {tuple(want)}")


def _dtype_error(source, key, dtype, want):
    return ValueError(
        f"{source}: parameter {key!r} has dtype {dtype}, the network expects {want} "
        "(build the network with a matching dtype, or pass cast=True)"
    )


def check_param_shapes(loaded, shapes, source="params", expected="the network expects"):
    """Check that ``loaded`` has exactly the keys of ``shapes``, each with that shape.

    ``shapes`` maps each key to a shape tuple (see
    :meth:`cconv.nets.Network.param_shapes`). Raises ``ValueError`` naming
    ``source`` and the first missing, extra or mis-shaped key; ``expected``
    introduces the wanted shape in the message.
    """
    missing = [key for key in shapes if key not in loaded]
    extra = [key for key in loaded if key not in shapes]
    if missing:
        raise ValueError(
            f"{source}: missing parameter(s) {', '.join(map(repr, missing))} "
            f"(the network has {list(shapes)})"
        )
    if extra:
        raise _extra_error(source, extra, shapes)
    for key, shape in shapes.items():
        if loaded[key].shape != tuple(shape):
            raise _shape_error(source, key, loaded[key].shape, expected, shape)


def assign_params(loaded, params, source="params", cast=False):
    """Check ``loaded`` against ``params`` (keys, shapes, dtypes), then copy it in place.

    ``source`` names the file in error messages. See :func:`load_params`.
    """
    check_param_shapes(loaded, {key: target.shape for key, target in params.items()}, source)
    for key, target in params.items():
        value = loaded[key]
        if value.dtype != target.dtype and not (cast and value.dtype.kind == "f"):
            raise _dtype_error(source, key, value.dtype, target.dtype)
    for key, target in params.items():
        np.copyto(target, loaded[key], casting="unsafe" if cast else "no")
