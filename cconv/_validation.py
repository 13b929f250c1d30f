"""Every Python-side argument check: the kernels', the layers', the networks', the plots'.

Every check raises ``TypeError`` or ``ValueError`` with a message that names the
argument, says what was expected and shows what came. The compiled cores run
without bounds checks, so nothing reaches them before these checks pass.

One integer checker (:func:`check_int`) and one output-size formula
(:func:`output_length`) serve everyone; the compiled kernels use the same
formula, ``output_size`` in ``src/cconv/kernels/_common.pxd``.

dtype policy (one rule for every kernel): float32 and float64 are kept,
float16 becomes float32, integers, bools and wider floats (longdouble) become
float64 (as the book's NumPy code would produce), non-native byte orders
become native; anything else (complex, object, strings, ...) is a
``TypeError``.
"""

import math
import numbers
import operator

import numpy as np

__all__ = [
    "adam_update_accepts",
    "as_counter",
    "as_float_array",
    "as_float_constant",
    "as_layer_input",
    "as_pair",
    "check_adam_arrays",
    "check_argmax",
    "check_argmax_values",
    "check_bias",
    "check_bool",
    "check_dtype",
    "check_gemm_sizes",
    "check_input_dim",
    "check_int",
    "check_integral",
    "check_mask",
    "check_out",
    "check_perturbable",
    "check_pool_padding",
    "check_shape",
    "check_size",
    "check_weight",
    "conv_output_size",
    "converted",
    "input_shape_tuple",
    "output_length",
    "window_sizes",
]

#: Largest array a kernel allocates or converts, in bytes (256 TiB: more than
#: the address space of a process on x86-64 or aarch64 with 4-level paging;
#: on a 32-bit platform, the largest index).
MAX_ARRAY_BYTES = min(2**48, np.iinfo(np.intp).max)

#: Largest filter size, stride or pad accepted: products of two such sizes and
#: the index arithmetic of the compiled kernels then stay far from overflow.
MAX_WINDOW_PARAM = 2**31 - 1


def _bounds_text(minimum, maximum):
    if maximum is None:
        return "" if minimum is None else f" >= {minimum}"
    return f" <= {maximum}" if minimum is None else f" from {minimum} to {maximum}"


def check_int(value, name, *, minimum=1, maximum=None, non_int_error=TypeError):
    """Return ``value`` as a Python int in [``minimum``, ``maximum``] (None: no bound).

    Ints and NumPy integers (anything with ``__index__`` but a bool) pass. A
    bool, float, string, ... raises ``non_int_error``: ``TypeError`` by
    default (the kernels), ``ValueError`` for the callers whose contract says
    so (networks, plots, state files). A value out of range raises
    ``ValueError``; an argparse type converts its text to int first, then
    calls this.
    """
    expected = f"{name} must be an integer{_bounds_text(minimum, maximum)}"
    if isinstance(value, (bool, np.bool_)):
        raise non_int_error(f"{expected}, got bool {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise non_int_error(f"{expected}, got {type(value).__name__} {value!r}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{expected}, got {number!r}")
    return number


def check_integral(value, name, minimum=1):
    """Return a whole number (an int, or a float such as 5.0) >= ``minimum`` as an int.

    ``TypeError`` for what is not a number (None, a list, ...), ``ValueError``
    for a number that is not whole or is too small.
    """
    expected = f"{name} must be an int >= {minimum}"
    try:
        whole = int(value) == value
    except TypeError:
        raise TypeError(f"{expected}, got {type(value).__name__} {value!r}") from None
    except (ValueError, OverflowError):
        whole = False
    if not whole or value < minimum:
        raise ValueError(f"{expected}, got {value!r}")
    return int(value)


def as_pair(value, name, minimum):
    """Return an int or an ``(h, w)`` pair as two ints in [``minimum``, MAX_WINDOW_PARAM]."""
    if isinstance(value, (tuple, list)) or np.ndim(value) > 0:
        if np.ndim(value) != 1 or len(value) != 2:
            raise ValueError(
                f"{name} must be an int or an (h, w) pair, got {value!r}"
            )
        values = tuple(value)
    else:
        values = (value, value)
    return tuple(check_int(v, name, minimum=minimum, maximum=MAX_WINDOW_PARAM) for v in values)


def window_sizes(height, width, names=("filter_h", "filter_w")):
    """Return a window's height and width as two ints in [1, MAX_WINDOW_PARAM]."""
    return (check_int(height, names[0], maximum=MAX_WINDOW_PARAM),
            check_int(width, names[1], maximum=MAX_WINDOW_PARAM))


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
    values = tuple(check_int(v, name, minimum=None) for v in values)
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


def output_length(size, filter_size, stride=1, pad=0, dilation=1, *, divide=operator.floordiv):
    """Number of window positions along one axis: the one output-size formula.

    ``(size + 2*pad - dilation*(filter_size - 1) - 1) // stride + 1``; with
    dilation 1, the book's ``(size + 2*pad - filter_size) // stride + 1``.
    Nothing is checked (the result may be < 1). ``divide=operator.truediv``
    gives the book's ``conv_output_size``, a float. The compiled kernels'
    copy is ``output_size`` in ``src/cconv/kernels/_common.pxd``.
    """
    return divide(size + 2 * pad - dilation * (filter_size - 1) - 1, stride) + 1


def conv_output_size(spatial, filter_hw, stride, pad, name, dilation=(1, 1)):
    """Return ``(out_h, out_w)`` for an (H, W) input (:func:`output_length`); both must be >= 1.

    ``ValueError`` naming ``name`` (the input) otherwise.
    """
    (h, w), (fh, fw) = spatial, filter_hw
    out_h = output_length(h, fh, stride[0], pad[0], dilation[0])
    out_w = output_length(w, fw, stride[1], pad[1], dilation[1])
    if out_h < 1 or out_w < 1:
        span_h = dilation[0] * (fh - 1) + 1
        span_w = dilation[1] * (fw - 1) + 1
        dilated = "" if tuple(dilation) == (1, 1) else f" (spanning {span_h}x{span_w} with dilation {dilation})"
        raise ValueError(
            f"filter {fh}x{fw}{dilated} is larger than the padded {name} ({h + 2 * pad[0]}x"
            f"{w + 2 * pad[1]} from {h}x{w} with pad {pad}): the output would be "
            f"{out_h}x{out_w}, expected at least 1x1"
        )
    return out_h, out_w


def check_pool_padding(pool_hw, pad, spatial=None, name="x"):
    """Require pad <= pool // 2 and (unless ``spatial`` is None) a non-empty input, so no window is all padding."""
    if pad[0] > pool_hw[0] // 2 or pad[1] > pool_hw[1] // 2:
        raise ValueError(
            f"pad must be at most half the pooling window ({pool_hw[0] // 2}, "
            f"{pool_hw[1] // 2}) for a {pool_hw[0]}x{pool_hw[1]} window, got {pad}"
        )
    if spatial is not None and min(spatial) < 1:
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


def check_bool(value, name):
    """Return ``value`` (a bool or NumPy bool) as a bool, or raise ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_shape(array, expected, name, whose="", context=""):
    """Require ``array.shape == expected``: "``name`` must have ``whose``shape ``expected````context``, got ..."."""
    if array.shape != tuple(expected):
        raise ValueError(f"{name} must have {whose}shape {tuple(expected)}{context}, got {array.shape}")


# ---------------------------------------------------------------- pooling

def check_argmax(argmax, out_shape):
    """Return ``argmax`` (an integer ndarray of ``out_shape``) as aligned int64.

    Its values are the core's to check: :func:`check_argmax_values` raises
    on the count of out-of-range entries the core returns.
    """
    if not isinstance(argmax, np.ndarray) or argmax.dtype.kind not in "iu":
        kind = argmax.dtype if isinstance(argmax, np.ndarray) else type(argmax).__name__
        raise TypeError(f"argmax must be an integer ndarray (as max_pool2d returns), got {kind}")
    check_shape(argmax, out_shape, "argmax", "dout's ")
    # An unsigned value past int64 wraps to a negative one: still out of range.
    return argmax.astype(np.int64, copy=not argmax.flags.aligned)


def check_argmax_values(outside, given, window):
    """Raise ``ValueError`` when ``outside`` entries of ``given`` lie outside [0, ``window``)."""
    if outside:
        raise ValueError(
            f"argmax values must be window positions in [0, {window}), got values "
            f"from {given.min()} to {given.max()}"
        )


# ---------------------------------------------------------------- activation

def check_mask(mask, shape):
    """Require a bool ndarray of ``shape`` (the mask relu_with_mask returned)."""
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(
            f"mask must be a numpy.ndarray of bool, got "
            f"{type(mask).__name__ if not isinstance(mask, np.ndarray) else mask.dtype}"
        )
    if mask.shape != shape:
        raise ValueError(f"mask must have the shape of dout {shape}, got {mask.shape}")


# ---------------------------------------------------------------- convolution

#: BLAS takes 32-bit sizes.
MAX_GEMM_SIZE = 2**31 - 1


def check_weight(weight, x_shape):
    """Require filters ``W`` (FN, C, FH, FW) with x's C channels and a filter of at least 1x1."""
    FN, W_channels, FH, FW = weight.shape
    if W_channels != x_shape[1]:
        raise ValueError(
            f"W must have x's {x_shape[1]} input channels in its second axis (FN, C, FH, FW), "
            f"got W of shape {weight.shape} for x of shape {tuple(x_shape)}"
        )
    if FH < 1 or FW < 1:
        raise ValueError(f"W's filter must be at least 1x1, got W of shape {weight.shape}")


def check_bias(bias, weight_shape):
    """Require a bias of shape (FN,) for filters of ``weight_shape`` (or None)."""
    if bias is not None:
        check_shape(bias, (weight_shape[0],), "b", context=f" for W of shape {weight_shape}")


def check_gemm_sizes(weight_shape, out_hw):
    """Require the convolution's matrix sizes FN, C*FH*FW and out_h*out_w to fit BLAS's 32 bits."""
    FN, C, FH, FW = weight_shape
    for size, what in ((FN, "filters FN"), (C * FH * FW, "C*FH*FW"), (out_hw[0] * out_hw[1], "out_h*out_w")):
        if size > MAX_GEMM_SIZE:
            raise ValueError(f"{what} must be at most {MAX_GEMM_SIZE} (BLAS sizes are 32-bit), got {size}")


def converted(a, name, dtype, contiguous=False):
    """``a`` in ``dtype`` (C-contiguous if asked), refusing a copy of more than MAX_ARRAY_BYTES."""
    if a is None:
        return None
    if a.dtype != dtype or (contiguous and not a.flags.c_contiguous):
        check_size(a.shape, name, np.dtype(dtype).itemsize)
        a = np.ascontiguousarray(a, dtype=dtype) if contiguous else a.astype(dtype)
    return a


# ---------------------------------------------------------------- Adam

def adam_update_accepts(param, grad, m, v):
    """True when ``adam_update`` takes these arrays (else use the NumPy expressions).

    All four are aligned, C-contiguous ndarrays of one shape and one dtype,
    float32 or float64; ``param``, ``m`` and ``v`` are writeable and share no
    memory with each other or with ``grad``.
    """
    arrays = (param, grad, m, v)
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return False
    if param.dtype not in (np.float32, np.float64) or not param.dtype.isnative:
        return False
    if any(a.dtype != param.dtype or a.shape != param.shape or not a.flags.c_contiguous
           or not a.flags.aligned for a in arrays):
        return False
    if not (param.flags.writeable and m.flags.writeable and v.flags.writeable):
        return False
    return not any(np.may_share_memory(a, b)
                   for i, a in enumerate(arrays) for b in arrays[i + 1:])


def check_adam_arrays(param, grad, m, v):
    """Raise ``ValueError`` unless :func:`adam_update_accepts` the four arrays."""
    if not adam_update_accepts(param, grad, m, v):
        raise ValueError(
            "param, grad, m and v must be aligned, C-contiguous float32 or float64 ndarrays of "
            "one shape and dtype, param, m and v writeable and no two sharing memory"
        )


def as_float_constant(value, name, dtype):
    """``value`` as a Python float that ``dtype`` can hold, or TypeError/ValueError naming ``name``.

    inf and NaN pass (the update then yields them, as the NumPy expressions do);
    a finite value beyond ``dtype``'s range is refused: converting it is undefined in C.
    """
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        real = float(value)
    except OverflowError:  # an int or a fraction beyond a double
        real = math.inf
    too_large_for_a_double = math.isinf(real) and not isinstance(value, (float, np.floating))
    if too_large_for_a_double or (math.isfinite(real) and abs(real) > float(np.finfo(dtype).max)):
        raise ValueError(f"{name} must fit {np.dtype(dtype).name}, got {value!r}")
    return real


def as_counter(value, name):
    """A counter of a saved state from an int or a 0-d integer array; anything else is ``ValueError``."""
    try:
        return operator.index(np.asarray(value).item())
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


# ---------------------------------------------------------------- layers, networks, gradients

def as_layer_input(x, ndim, layer, weight_shape=None):
    """Return ``x`` as an ndarray of ``ndim`` dimensions, or ``ValueError`` naming ``layer``.

    With ``weight_shape`` (FN, C, FH, FW), ``x`` must also have C channels (axis 1).
    """
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(
            f"{layer} expects a {ndim}-D input, got {x.ndim}-D with shape {x.shape}"
        )
    if weight_shape is not None and x.shape[1] != weight_shape[1]:
        raise ValueError(
            f"{layer}: x has {x.shape[1]} channels but W {tuple(weight_shape)} expects {weight_shape[1]}"
        )
    return x


def check_dtype(dtype):
    """Return ``dtype`` as a NumPy dtype, float32 or float64, or raise ``TypeError``."""
    try:
        result = np.dtype(dtype)
    except TypeError:
        result = None
    if result not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return result


def check_input_dim(input_dim):
    """Return ``input_dim`` as a ``(C, H, W)`` tuple of ints >= 1, or ``ValueError``."""
    try:
        dims = tuple(input_dim)
    except TypeError:
        dims = ()
    if len(dims) != 3:
        raise ValueError(f"input_dim must be (channels, height, width), got {input_dim!r}")
    return tuple(check_int(d, "input_dim entries", non_int_error=ValueError) for d in dims)


def check_perturbable(x, name="x"):
    """Require a writeable ndarray of a floating dtype (numerical_gradient perturbs it in place)."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a numpy array of a floating dtype (perturbed in place), got "
            f"{type(x).__name__}" + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else "")
        )
    if not x.flags.writeable:
        raise TypeError(f"{name} must be writeable: it is perturbed in place, got a read-only array")
