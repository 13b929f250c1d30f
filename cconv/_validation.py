"""Argument checks shared by the Python-facing kernel functions.

Every check raises ``TypeError`` or ``ValueError`` with a message that names the
argument, says what was expected and shows what came. The compiled cores run
without bounds checks, so nothing reaches them before these checks pass.

dtype policy (one rule for every kernel): float32 and float64 are kept,
float16 becomes float32, integers, bools and wider floats (longdouble) become
float64 (as the book's NumPy code would produce), non-native byte orders
become native; anything else (complex, object, strings, ...) is a
``TypeError``.
"""

import operator

import numpy as np

__all__ = [
    "as_float_array",
    "as_pair",
    "as_positive_int",
    "check_out",
    "check_pool_padding",
    "check_size",
    "conv_output_size",
    "input_shape_tuple",
]

#: Largest array a kernel allocates or converts, in bytes (256 TiB: more than
#: the address space of a process on x86-64 or aarch64 with 4-level paging;
#: on a 32-bit platform, the largest index).
MAX_ARRAY_BYTES = min(2**48, np.iinfo(np.intp).max)

#: Largest filter size, stride or pad accepted: products of two such sizes and
#: the index arithmetic of the compiled kernels then stay far from overflow.
MAX_WINDOW_PARAM = 2**31 - 1


def _int_value(value, name):
    """Return ``value`` as a Python int; bools, floats and others are refused."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__} {value!r}"
        ) from None


def _check_range(value, name, minimum):
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > MAX_WINDOW_PARAM:
        raise ValueError(f"{name} must be at most {MAX_WINDOW_PARAM}, got {value}")


def as_positive_int(value, name):
    """Return ``value`` as an int in [1, MAX_WINDOW_PARAM] (e.g. a filter size)."""
    value = _int_value(value, name)
    _check_range(value, name, 1)
    return value


def as_pair(value, name, minimum):
    """Return an int or an ``(h, w)`` pair as two ints in [``minimum``, MAX_WINDOW_PARAM]."""
    if isinstance(value, (tuple, list)) or np.ndim(value) > 0:
        if np.ndim(value) != 1 or len(value) != 2:
            raise ValueError(
                f"{name} must be an int or an (h, w) pair, got {value!r}"
            )
        pair = tuple(_int_value(v, name) for v in value)
    else:
        v = _int_value(value, name)
        pair = (v, v)
    for v in pair:
        _check_range(v, name, minimum)
    return pair


def as_float_array(x, name, ndim):
    """Return ``x`` as an ndarray of ``ndim`` dims (any, if None) with float32 or float64 dtype.

    Native, aligned float32/float64 arrays come back as they are (any strides,
    no copy); unaligned ones are copied; float16 is converted to float32;
    integers, bools and longdouble to float64.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a real-valued array, got {type(x).__name__}: {exc}") from None
    kind, itemsize = arr.dtype.kind, arr.dtype.itemsize
    if kind == "f":
        target = np.float32 if itemsize <= 4 else np.float64
    elif kind in "biu":
        target = np.float64
    else:
        raise TypeError(
            f"{name} must have a real dtype (float32, float64, float16, integer "
            f"or bool), got dtype {arr.dtype}"
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D array, got {arr.ndim}-D with shape {arr.shape}"
        )
    if arr.dtype != target or not arr.flags.aligned:
        # A copy (a zero-stride view may claim any shape): check its size first.
        check_size(arr.shape, name, np.dtype(target).itemsize)
    if arr.dtype != target:  # also brings a non-native byte order to native
        arr = arr.astype(target)
    elif not arr.flags.aligned:  # the kernels load whole floats: C needs them aligned
        arr = arr.copy(order="K")
    return arr


def input_shape_tuple(input_shape, name="input_shape"):
    """Return ``input_shape`` as a tuple of four ints >= 0, ``(N, C, H, W)``."""
    try:
        values = tuple(input_shape)
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of 4 ints (N, C, H, W), got {type(input_shape).__name__}"
        ) from None
    if len(values) != 4:
        raise ValueError(f"{name} must have 4 entries (N, C, H, W), got {len(values)}: {values!r}")
    values = tuple(_int_value(v, name) for v in values)
    if min(values) < 0:
        raise ValueError(f"{name} entries must be >= 0, got {values!r}")
    check_size(values, name)
    return values


def check_size(shape, name, itemsize=8):
    """Refuse shapes of more than MAX_ARRAY_BYTES bytes in elements of ``itemsize`` bytes.

    Such an array cannot exist (a zero-stride view can claim the shape): its
    result or converted copy could not be allocated, and its element count
    stays far from overflowing an index.
    """
    total = 1
    for dim in shape:
        total *= dim
    if total > MAX_ARRAY_BYTES // itemsize:
        raise ValueError(
            f"{name} {tuple(shape)} has {total} elements of {itemsize} bytes, more than an "
            f"array can hold (at most {MAX_ARRAY_BYTES // itemsize} elements, {MAX_ARRAY_BYTES} bytes)"
        )


def conv_output_size(spatial, filter_hw, stride, pad, name, dilation=(1, 1)):
    """Return ``(out_h, out_w)`` for an (H, W) input; both must be >= 1.

    out = (size + 2*pad - dilation*(filter - 1) - 1) // stride + 1, rounded
    down (with dilation 1: (size + 2*pad - filter) // stride + 1).
    """
    (h, w), (fh, fw) = spatial, filter_hw
    span_h = dilation[0] * (fh - 1) + 1
    span_w = dilation[1] * (fw - 1) + 1
    out_h = (h + 2 * pad[0] - span_h) // stride[0] + 1
    out_w = (w + 2 * pad[1] - span_w) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        dilated = "" if dilation == (1, 1) else f" (spanning {span_h}x{span_w} with dilation {dilation})"
        raise ValueError(
            f"filter {fh}x{fw}{dilated} is larger than the padded {name} ({h + 2 * pad[0]}x"
            f"{w + 2 * pad[1]} from {h}x{w} with pad {pad}): the output would be "
            f"{out_h}x{out_w}, expected at least 1x1"
        )
    return out_h, out_w


def check_pool_padding(pool_hw, pad, spatial, name):
    """Require pad <= pool // 2 and a non-empty input, so no window is all padding."""
    if pad[0] > pool_hw[0] // 2 or pad[1] > pool_hw[1] // 2:
        raise ValueError(
            f"pad must be at most half the pooling window ({pool_hw[0] // 2}, "
            f"{pool_hw[1] // 2}) for a {pool_hw[0]}x{pool_hw[1]} window, got {pad}"
        )
    if min(spatial) < 1:
        raise ValueError(
            f"{name} must have height and width >= 1 for pooling, got {spatial[0]}x{spatial[1]}"
        )


def check_out(out, shape, dtype, inputs, name="out"):
    """Return a new result array, or ``out`` after checking it can hold the result.

    ``out`` must be a writeable, aligned, C-contiguous ndarray of exactly
    ``shape`` and ``dtype`` that shares no memory with any array in ``inputs``.
    """
    check_size(shape, "the result shape", np.dtype(dtype).itemsize)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous, got strides {out.strides}")
    if not out.flags.aligned:
        raise ValueError(
            f"{name} must be aligned (data address a multiple of {out.dtype.alignment} bytes), "
            "got an unaligned array"
        )
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable, got a read-only array")
    for other in inputs:
        if np.may_share_memory(out, other):
            raise ValueError(f"{name} must not share memory with the inputs")
    return out
