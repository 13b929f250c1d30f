"""The restricted unpickler for the book's params ``.pkl``: NumPy arrays in a dict, nothing else.

The book's ``save_params`` pickles a dict of NumPy arrays. :func:`read_pickle_params`
reads such a file through :class:`RestrictedUnpickler`, which admits only the
handful of globals that NumPy arrays need and refuses everything else before it
can run; it also refuses to restore the state of anything but an array or a
dtype, and a dtype state that is not exactly the one NumPy writes for that plain
dtype (forged flags, fields or sizes). Every array read must then have a plain
numeric dtype (:func:`is_plain_numeric_dtype`) and is copied into a fresh array
of a fresh dtype, so nothing of the pickled objects is kept.
"""

import io
import pickle
import pickletools
import reprlib
import warnings

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric

__all__ = ["RestrictedUnpickler", "UnsafePickleError", "is_plain_numeric_dtype", "read_pickle_params"]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for something other than NumPy arrays and plain containers."""


#: Kinds of the dtypes a parameter array may have: bool, int, unsigned, float.
_NUMERIC_KINDS = "biuf"


def is_plain_numeric_dtype(dtype):
    """True if ``dtype`` is exactly a builtin bool, integer or float dtype (any byte order).

    Equality alone is not enough: a dtype restored from a pickle can compare
    equal to ``float64`` and still carry other flags (for example "holds
    Python objects"), an alignment, fields, a sub-array or metadata. This
    compares all of them with the dtype NumPy builds from the type string.
    """
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
        return False
    plain = np.dtype(dtype.str)
    return (
        type(dtype) is type(plain)
        and dtype == plain
        and dtype.str == plain.str
        and dtype.flags == plain.flags
        and not dtype.hasobject
        and dtype.fields is None
        and dtype.subdtype is None
        and dtype.metadata is None
        and dtype.itemsize == plain.itemsize
        and dtype.alignment == plain.alignment
    )


def _flag(value):
    return type(value) in (bool, int) and value in (0, 1)


def _dtype(obj, align=False, copy=False):
    # NumPy pickles a dtype as dtype('f8', False, True) (old versions: 0, 1)
    # followed by its state (BUILD). Always a new dtype object (copy), never
    # NumPy's shared one.
    if type(obj) is not str or not _flag(align) or not _flag(copy):
        raise UnsafePickleError(
            f"refusing dtype{reprlib.repr((obj, align, copy))}: NumPy pickles a dtype as "
            "dtype(type string, bool, bool)"
        )
    dtype = np.dtype(obj, bool(align), True)
    if dtype.hasobject:
        raise UnsafePickleError(f"refusing to unpickle an object dtype ({dtype})")
    return dtype


def _check_dtype_state(dtype, state):
    """Refuse a dtype state other than the one NumPy writes for the plain dtype ``dtype.str``.

    The state sets flags, fields, sizes and alignment directly; a forged one
    gives a dtype that equals ``float64`` but claims to hold Python objects.
    """
    expected = None
    if type(state) is tuple and len(state) > 1 and state[1] in ("<", ">", "|"):
        plain = np.dtype(dtype.str)
        if state[1] != "|":
            plain = plain.newbyteorder(state[1])
        expected = plain.__reduce__()[2]
    if (
        expected is None
        or len(state) != len(expected)
        or not all(type(got) is type(want) and got == want for got, want in zip(state, expected))
    ):
        raise UnsafePickleError(
            f"refusing dtype state {reprlib.repr(state)} for {dtype}: not the state NumPy "
            f"writes for a plain {dtype.str} dtype"
        )


class _NdarrayClass:
    """What ``numpy.ndarray`` resolves to in a params pickle: a token for ``_reconstruct``.

    NumPy names the class only as the first argument of ``_reconstruct``; the
    token cannot be called, so a pickle cannot build arrays of any shape with it.
    """

    __slots__ = ()

    def __repr__(self):
        return "<numpy.ndarray in a params pickle>"


_NDARRAY = _NdarrayClass()


def _reconstruct(subtype, shape, typecode):
    # NumPy pickles an array as _reconstruct(ndarray, (0,), b'b') followed by
    # its state: an empty array, filled by BUILD from the pickled bytes.
    if not (
        subtype is _NDARRAY
        and type(shape) is tuple
        and len(shape) == 1
        and type(shape[0]) is int
        and shape[0] == 0
        and type(typecode) in (bytes, str)
        and typecode in (b"b", "b")
    ):
        raise UnsafePickleError(
            f"refusing _reconstruct{reprlib.repr((subtype, shape, typecode))}: NumPy pickles an "
            "array as _reconstruct(ndarray, (0,), b'b')"
        )
    return _multiarray._reconstruct(np.ndarray, (0,), typecode)


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    # Protocol 0-2 pickles of bytes written by Python 3 go through
    # _codecs.encode(str, "latin1"); no other codec is needed or admitted.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


#: (module, name) -> object: everything a pickled dict of NumPy arrays needs.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer
del _module


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that admits only NumPy arrays, dtypes, scalars and builtin containers.

    ``find_class`` returns objects from a fixed allow-list (``dtype`` without
    object fields, ``_reconstruct`` of an empty ``ndarray``, ``scalar``,
    ``_frombuffer`` under both ``numpy.core`` and ``numpy._core``, and
    ``_codecs.encode`` restricted to latin-1) and raises
    :class:`UnsafePickleError` for any other global, so a pickle that
    references ``os.system``, ``builtins.eval`` or a user class is refused
    before anything is called. Persistent ids are refused too.

    The ``BUILD`` opcode (restore an object's state) is admitted only on an
    array and on a dtype, and on a dtype only with exactly the state NumPy
    writes for that plain dtype: a forged state could set the dtype's flags
    (claim it holds Python objects), fields or sizes, and ``BUILD`` on one of
    the allowed functions would set attributes on it for the whole process.
    To see ``BUILD`` this is the pure-Python unpickler (``pickle._Unpickler``:
    the C one calls ``__setstate__`` with no hook); params pickles are a few
    large byte strings, so it is not slower in any way that matters.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        elif type(inst) is not np.ndarray:
            raise UnsafePickleError(
                f"refusing BUILD (set the state) of a {type(inst).__name__}: a params pickle "
                "restores the state of arrays and dtypes only"
            )
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

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


def read_pickle_params(path):
    """The ``{name: array}`` of the book-style params pickle at ``path``, read through :class:`RestrictedUnpickler`.

    Raises :class:`UnsafePickleError` (a ``ValueError``) if the pickle asks for
    anything but NumPy arrays, ``ValueError`` naming ``path`` if it is
    truncated, corrupt, not a dict of str to numeric arrays.
    """
    # A length forged in the stream (say 2 GB in a 600-byte file) would make
    # the unpickler allocate that much before it finds the end of the data. So
    # the file is read into memory and every opcode's length is checked against
    # the bytes that follow it (pickletools reads without allocating ahead)
    # before the unpickler, also reading from memory, builds anything.
    with open(path, "rb") as f:
        data = f.read()
    try:
        with warnings.catch_warnings():  # e.g. an invalid escape in a corrupt STRING opcode
            warnings.simplefilter("ignore", DeprecationWarning)
            for _ in pickletools.genops(data):
                pass
            obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
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
        if not isinstance(value, np.ndarray) or value.dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(
                f"{path}: parameter {key!r} must be a numeric NumPy array, got {_describe(value)}"
            )
        if not is_plain_numeric_dtype(value.dtype):
            raise UnsafePickleError(
                f"{path}: parameter {key!r} has a dtype that is not a plain {value.dtype.str} "
                "(its flags, fields, alignment or metadata differ)"
            )
        # A fresh array of a fresh dtype: nothing of the unpickled objects is kept.
        params[key] = np.array(value, dtype=np.dtype(value.dtype.str), copy=True)
    return params


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__
