"""Network parameters on disk: ``.npz`` written atomically, book ``.pkl`` read safely.

The format is a plain NumPy ``.npz`` archive: one array per parameter (``W1``,
``b1``, ...) and a ``__meta__`` entry, a 0-d unicode array holding a JSON
object ``{"format": "cconv-params", "version": 1, "net": ..., "config": ...}``
that names the network and its constructor settings, so that
:func:`cconv.nets.load_network` can rebuild the right network from the file.
Nothing in it needs pickle: it is read with ``np.load(allow_pickle=False)``.

:func:`read_params` also accepts a parameters pickle saved by the book's
``save_params`` (a dict of NumPy arrays). It is read through
:class:`RestrictedUnpickler`, which admits only the handful of globals that
NumPy arrays need and refuses everything else before it can run.

Files are recognised by their content, not their name: ``save_params("params.pkl")``
(as the book's scripts call it) writes an ``.npz`` archive under that name and
``load_params("params.pkl")`` reads it back.
"""

import json
import os
import pickle
import zipfile

import numpy as np

from cconv._atomic import atomic_save_npz

try:  # NumPy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

__all__ = [
    "META_KEY",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "assign_params",
    "load_params",
    "read_params",
    "save_params",
]

#: Name of the metadata entry in a cconv ``.npz`` file.
META_KEY = "__meta__"
FORMAT_NAME = "cconv-params"
FORMAT_VERSION = 1

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


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for something other than NumPy arrays and plain containers."""


def _dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError(f"refusing to unpickle an object dtype ({dtype})")
    return dtype


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    # Protocol 0-2 pickles of bytes written by Python 3 go through
    # _codecs.encode(str, "latin1"); no other codec is needed or admitted.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


#: (module, name) -> object: everything a pickled dict of NumPy arrays needs.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer
del _module


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only NumPy arrays, dtypes, scalars and builtin containers.

    ``find_class`` returns objects from a fixed allow-list (``ndarray``,
    ``dtype`` without object fields, ``_reconstruct``, ``scalar``,
    ``_frombuffer`` under both ``numpy.core`` and ``numpy._core``, and
    ``_codecs.encode`` restricted to latin-1) and raises
    :class:`UnsafePickleError` for any other global, so a pickle that
    references ``os.system``, ``builtins.eval`` or a user class is refused
    before anything is called. Persistent ids are refused too.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: a params pickle may only "
                "contain NumPy arrays in a dict"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing to unpickle a persistent id")


def _read_pickle(path):
    with open(path, "rb") as f:
        try:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except Exception as exc:  # truncated or corrupt stream
            raise ValueError(
                f"{path}: neither an .npz archive nor a readable params pickle "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a params pickle must hold a dict, got {type(obj).__name__}")
    params = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: parameter names must be strings, got {key!r}")
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise ValueError(
                f"{path}: parameter {key!r} must be a numeric NumPy array, got {_describe(value)}"
            )
        params[key] = value
    return params, None


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__


def _read_npz(path):
    params, meta = {}, None
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from exc
    with archive:
        for key in archive.files:
            try:
                value = archive[key]
            except ValueError as exc:  # object arrays need pickle, refused
                raise ValueError(
                    f"{path}: entry {key!r} cannot be loaded without pickle ({exc})"
                ) from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise ValueError(f"{path}: entry {key!r} is corrupt ({exc})") from exc
            if key == META_KEY:
                meta = _parse_meta(path, value)
            else:
                params[key] = value
    return params, meta


def _parse_meta(path, value):
    if value.ndim != 0 or value.dtype.kind != "U":
        raise ValueError(
            f"{path}: {META_KEY!r} must be a 0-d unicode array, "
            f"got shape {value.shape} dtype {value.dtype}"
        )
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


def read_params(path):
    """Read a params file: a cconv/NumPy ``.npz`` archive or a book-style ``.pkl``.

    The format is recognised from the first bytes. ``.npz`` archives are read
    with ``allow_pickle=False``; pickles go through :class:`RestrictedUnpickler`.

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
        If the file is neither format, is corrupt, or holds non-numeric data.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        return _read_npz(path)
    return _read_pickle(path)  # anything else must be a (restricted) pickle


def load_params(path, params, cast=False):
    """Read ``path`` and copy its arrays into ``params`` in place.

    Every key, shape and dtype is checked against ``params`` before anything
    is copied, so on error ``params`` is left untouched. The arrays keep their
    identity: layers and optimizers that hold them see the loaded values.

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
    loaded, meta = read_params(path)
    assign_params(loaded, params, os.fspath(path), cast)
    return meta


def assign_params(loaded, params, source="params", cast=False):
    """Check ``loaded`` against ``params`` (keys, shapes, dtypes), then copy it in place.

    ``source`` names the file in error messages. See :func:`load_params`.
    """
    missing = [key for key in params if key not in loaded]
    extra = [key for key in loaded if key not in params]
    if missing:
        raise ValueError(
            f"{source}: missing parameter(s) {', '.join(map(repr, missing))} "
            f"(the network has {list(params)})"
        )
    if extra:
        raise ValueError(
            f"{source}: unexpected parameter(s) {', '.join(map(repr, extra))} "
            f"(the network has {list(params)})"
        )
    for key, target in params.items():
        value = loaded[key]
        if value.shape != target.shape:
            raise ValueError(
                f"{source}: parameter {key!r} has shape {value.shape}, "
                f"the network expects {target.shape}"
            )
        if value.dtype != target.dtype and not (cast and value.dtype.kind == "f"):
            raise ValueError(
                f"{source}: parameter {key!r} has dtype {value.dtype}, "
                f"the network expects {target.dtype} "
                "(build the network with a matching dtype, or pass cast=True)"
            )
    for key, target in params.items():
        np.copyto(target, loaded[key], casting="unsafe" if cast else "no")
