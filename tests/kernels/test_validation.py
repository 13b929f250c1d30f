"""Bad input raises ValueError / TypeError naming the argument; out= handling.

Every test starts from one valid call per kernel (``cconv_testutils.kernel_call``:
float64 input of shape (2, 3, 6, 6), 3x3 window, conv stride 1 / pad 1,
pooling stride 2 / pad 1) and breaks exactly one argument. The tests of
window sizes run over the kernels that take them (``KERNEL_NAMES``); those
of strides, pads, arrays and ``out=`` over conv2d and conv2d_backward too
(their filter is the array ``W``; tests/kernels/test_conv.py checks W, b,
dout and need_input_grad), and those of ``dilation`` over the four kernels
that take one.
"""

import numpy as np
import pytest

import cconv

from cconv_testutils import (
    CONV_KERNEL_NAMES,
    KERNEL_NAMES,
    REJECTED_DTYPES,
    Geometry,
    kernel_call,
    random_array,
    with_layout,
)

POOLING = ("max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward")
BACKWARD = ("max_pool2d_backward", "avg_pool2d_backward")
TAKES_INPUT_SHAPE = ("col2im",) + BACKWARD
ALL_KERNELS = KERNEL_NAMES + CONV_KERNEL_NAMES
DILATED = ("im2col", "col2im") + CONV_KERNEL_NAMES


def window_names(kernel):
    """The names of the window-size arguments of ``kernel``."""
    return ("pool_h", "pool_w") if kernel in POOLING else ("filter_h", "filter_w")


@pytest.fixture(params=KERNEL_NAMES)
def call(request, rng):
    """A valid float64 call of each kernel that takes window sizes."""
    return kernel_call(request.param, rng)


@pytest.fixture(params=ALL_KERNELS)
def any_call(request, rng):
    """A valid float64 call of each windowed kernel, the convolution's included."""
    return kernel_call(request.param, rng)


@pytest.fixture(params=DILATED)
def dilated_call(request, rng):
    """A valid float64 call of each kernel that takes ``dilation``."""
    return kernel_call(request.param, rng)


def assert_raises(call, exc, match, **overrides):
    with pytest.raises(exc, match=match):
        call(**overrides)


# --------------------------------------------------------------------------
# stride, pad and window sizes
# --------------------------------------------------------------------------

BAD_STRIDES = [
    (0, ValueError),
    (-1, ValueError),
    ((1, 0), ValueError),
    ((-2, 1), ValueError),
    (1.0, TypeError),
    (np.float64(2.0), TypeError),
    (True, TypeError),
    (np.True_, TypeError),
    ((1, 1.0), TypeError),
    ((True, 1), TypeError),
    ("1", TypeError),
    (None, TypeError),
    ((1, 2, 3), (ValueError, TypeError)),
    ((1,), (ValueError, TypeError)),
    # past 2**31 - 1 the kernels' C arithmetic would overflow
    (2**31, ValueError),
    (2**62, ValueError),
    (2**63, ValueError),
    ((1, 2**70), ValueError),
    (np.array([[1, 1]]), ValueError),
]

BAD_PADS = [
    (-1, ValueError),
    ((0, -1), ValueError),
    (1.0, TypeError),
    (True, TypeError),
    ((0, 0.0), TypeError),
    (None, TypeError),
    ((0, 0, 0), (ValueError, TypeError)),
    ((1,), (ValueError, TypeError)),
    (2**31, ValueError),
    (2**62, ValueError),
    ((2**70, 0), ValueError),
]

BAD_SIZES = [
    (0, ValueError),
    (-1, ValueError),
    (2**31, ValueError),
    (2**63, ValueError),
    (2.0, TypeError),
    (True, TypeError),
    (None, TypeError),
]


#: dilation: an int or an (h, w) pair, each in [1, 2**31 - 1].
BAD_DILATIONS = [
    (0, ValueError),
    (-1, ValueError),
    (-(2**63), ValueError),
    ((1, 0), ValueError),
    ((0, 1), ValueError),
    ((2, -1), ValueError),
    (1.0, TypeError),
    (np.float64(2.0), TypeError),
    (True, TypeError),
    (np.True_, TypeError),
    ((1, 1.0), TypeError),
    ((True, 1), TypeError),
    ((1, None), TypeError),
    ("1", TypeError),
    (None, TypeError),
    (1j, TypeError),
    ((1, 2, 3), (ValueError, TypeError)),
    ((1,), (ValueError, TypeError)),
    ((), (ValueError, TypeError)),
    (2**31, ValueError),
    (2**63, ValueError),
    ((1, 2**70), ValueError),
    (np.array([[1, 1]]), ValueError),
    (np.array([2.0, 2.0]), TypeError),
]


@pytest.mark.parametrize("value, exc", BAD_STRIDES, ids=repr)
def test_bad_stride(any_call, value, exc):
    assert_raises(any_call, exc, "stride", stride=value)


@pytest.mark.parametrize("value, exc", BAD_PADS, ids=repr)
def test_bad_pad(any_call, value, exc):
    assert_raises(any_call, exc, "pad", pad=value)


@pytest.mark.parametrize("value, exc", BAD_DILATIONS, ids=repr)
def test_bad_dilation(dilated_call, value, exc):
    assert_raises(dilated_call, exc, "dilation", dilation=value)


def test_dilation_forms_agree(dilated_call):
    """dilation 2, (2, 2), NumPy integers, a 0-d array and an int array are one value.

    (pad 2 keeps the 6x6 output of the 3x3 filter with dilation 2, so col
    and dout still fit.)
    """
    expected = dilated_call(dilation=2, pad=2)
    for form in ((2, 2), [2, 2], np.int64(2), np.array(2), np.array([2, 2]), (np.int32(2), np.uint8(2))):
        for got, want in zip(dilated_call(dilation=form, pad=2), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_dilation_one_is_the_default(dilated_call):
    for got, want in zip(dilated_call(dilation=1), dilated_call(), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dilation", [4, (4, 1), (1, 4), 2**31 - 1], ids=repr)
def test_dilated_filter_larger_than_padded_input(dilated_call, dilation):
    """A 3x3 filter with dilation 4 spans 9 > 6 + 2*1 pixels: the output would be empty."""
    source = {"im2col": "input_data", "col2im": "input_shape"}.get(dilated_call.name, "x")
    with pytest.raises(ValueError, match=rf"\b{source}\b") as info:
        dilated_call(dilation=dilation)
    assert "dilation" in str(info.value)


@pytest.mark.parametrize("kernel", ["col2im", "conv2d_backward"])
def test_dilation_changes_the_shape_col_or_dout_must_have(rng, kernel):
    """With dilation 2 (pad 1), the 3x3 filter yields 4x4 windows, not 6x6:
    col or dout made for dilation 1 no longer fit."""
    call = kernel_call(kernel, rng)
    assert_raises(call, ValueError, call.array_arg, dilation=2)


@pytest.mark.parametrize("axis", [0, 1], ids=["h", "w"])
@pytest.mark.parametrize("value, exc", BAD_SIZES, ids=repr)
def test_bad_window_size(call, axis, value, exc):
    name = window_names(call.name)[axis]
    assert_raises(call, exc, name, **{name: value})


def test_zero_dimensional_array_is_an_int(any_call):
    """np.array(1) is a valid stride, as an int would be."""
    call = any_call
    expected = call()
    for got, want in zip(call(stride=np.array(call.kwargs["stride"])), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel", POOLING)
def test_huge_window_costs_what_the_image_costs(kernel):
    """A 2**31-1 window (pad 2**30-1) on a 1x1 image: the loops are bounded by
    the image, not the window, and the window position does not overflow."""
    size, pad = 2**31 - 1, 2**30 - 1
    x = np.full((1, 1, 1, 1), 3.0)
    geometry = {"pool_h": size, "pool_w": size, "stride": 1, "pad": pad}
    out, argmax = cconv.max_pool2d(x, **geometry)
    assert out.shape == (1, 1, 1, 1) and out[0, 0, 0, 0] == 3.0
    assert argmax[0, 0, 0, 0] == pad * size + pad  # the pixel's place in the window
    if kernel == "max_pool2d_backward":
        dx = cconv.max_pool2d_backward(np.ones_like(out), argmax, x.shape, **geometry)
        np.testing.assert_array_equal(dx, [[[[1.0]]]])
    elif kernel == "avg_pool2d":
        np.testing.assert_allclose(cconv.avg_pool2d(x, **geometry), 3.0 / size**2, rtol=1e-12)
        np.testing.assert_array_equal(
            cconv.avg_pool2d(x, **geometry, count_include_pad=False), [[[[3.0]]]])
    elif kernel == "avg_pool2d_backward":
        dx = cconv.avg_pool2d_backward(np.ones_like(out), x.shape, **geometry)
        np.testing.assert_allclose(dx, 1.0 / size**2, rtol=1e-12)


@pytest.mark.parametrize("axis", [0, 1], ids=["h", "w"])
def test_window_larger_than_padded_input(call, axis):
    """Window 9 > 6 + 2*1: the output would be empty."""
    name = window_names(call.name)[axis]
    source = "input_shape" if call.name in TAKES_INPUT_SHAPE else call.array_arg
    # col2im / backward may first notice that col / dout no longer fit
    match = rf"\b({source}|{call.array_arg}|{name})\b"
    assert_raises(call, ValueError, match, **{name: 9})


@pytest.mark.parametrize("kernel", POOLING)
@pytest.mark.parametrize(
    "window, pad",
    [((3, 3), 2), ((2, 4), (1, 3)), ((1, 1), 1), ((4, 2), (3, 0))],
    ids=["3x3-pad2", "2x4-pad1,3", "1x1-pad1", "4x2-pad3,0"],
)
def test_pooling_pad_at_most_half_window(rng, kernel, window, pad):
    """pad <= pool // 2 in each direction (as PyTorch), else ValueError."""
    call = kernel_call(kernel, rng, shape=(2, 3, 9, 9))
    pool_h, pool_w = window
    overrides = {"pool_h": pool_h, "pool_w": pool_w, "pad": pad}
    if kernel in BACKWARD:  # give dout (and argmax) the shape this window would produce
        out_shape = Geometry((2, 3, 9, 9), pool_h, pool_w, call.kwargs["stride"], pad).out_shape
        overrides["dout"] = np.zeros(out_shape)
        if "argmax" in call.kwargs:
            overrides["argmax"] = np.zeros(out_shape, np.int64)
    assert_raises(call, ValueError, "pad", **overrides)


def test_numpy_integers_are_ints(call):
    """NumPy integer scalars are accepted wherever an int is."""
    h, w = window_names(call.name)
    as_numpy = {h: np.int16(3), w: np.int64(3), "pad": (np.int32(1), np.int64(1))}
    as_numpy["stride"] = np.int64(call.kwargs["stride"])
    for got, expected in zip(call(**as_numpy), call(), strict=True):
        np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------
# Arrays: ndim and dtype
# --------------------------------------------------------------------------


def array_args(call):
    """The names of the array arguments of ``call`` (argmax aside: test_bad_argmax)."""
    return [name for name, value in call.kwargs.items() if isinstance(value, np.ndarray) and name != "argmax"]


@pytest.mark.parametrize("ndim_change", [-1, 1], ids=["fewer_dims", "more_dims"])
def test_wrong_ndim(any_call, ndim_change):
    call = any_call
    for name in array_args(call):
        arr = call.kwargs[name]
        bad = arr[0] if ndim_change < 0 else arr[np.newaxis]
        assert_raises(call, ValueError, rf"^{name}\b", **{name: bad})


@pytest.mark.parametrize("dtype", REJECTED_DTYPES, ids=lambda d: np.dtype(d).name)
def test_rejected_dtype(any_call, dtype):
    """complex, object, strings, datetimes: TypeError, whatever the values (every array)."""
    call = any_call
    for name in array_args(call):
        bad = np.zeros(call.kwargs[name].shape, dtype=dtype)
        assert_raises(call, TypeError, rf"^{name}\b", **{name: bad})


def test_non_native_byte_order_is_the_same_dtype(any_call):
    """float64 stays float64 whatever its byte order (e.g. data read from a file)."""
    call = any_call
    swapped = {}
    for name, value in call.kwargs.items():
        if isinstance(value, np.ndarray):
            swapped[name] = value.astype(value.dtype.newbyteorder())
    for got, expected in zip(call(**swapped), call(), strict=True):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_complex_is_rejected_not_truncated(any_call):
    call = any_call
    for name in array_args(call):
        assert_raises(call, TypeError, rf"^{name}\b", **{name: call.kwargs[name] + 1j})


# --------------------------------------------------------------------------
# col2im / backward: col, dout, input_shape, argmax
# --------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1], ids=["rows", "columns"])
def test_col2im_col_not_matching_input_shape(rng, axis):
    call = kernel_call("col2im", rng)
    col = call.kwargs["col"]
    bad = col[1:] if axis == 0 else col[:, 1:]
    assert_raises(call, ValueError, r"col|input_shape", col=bad)


@pytest.mark.parametrize("kernel", TAKES_INPUT_SHAPE)
@pytest.mark.parametrize(
    "input_shape, exc",
    [
        ((2, 3, 6), ValueError),
        ((2, 3, 6, 6, 1), ValueError),
        ((2, -3, 6, 6), ValueError),
        ((2, 3, -6, 6), ValueError),
        ((2.0, 3, 6, 6), (TypeError, ValueError)),
        (6, (TypeError, ValueError)),
        (None, (TypeError, ValueError)),
    ],
    ids=repr,
)
def test_bad_input_shape(rng, kernel, input_shape, exc):
    assert_raises(kernel_call(kernel, rng), exc, "input_shape", input_shape=input_shape)


@pytest.mark.parametrize("kernel", TAKES_INPUT_SHAPE)
@pytest.mark.parametrize("axis", [0, 1, 2, 3], ids=["N", "C", "H", "W"])
def test_input_shape_not_matching_array(rng, kernel, axis):
    """An input_shape that does not produce col's / dout's shape is refused."""
    call = kernel_call(kernel, rng)
    shape = list(call.kwargs["input_shape"])
    shape[axis] += 2 if axis < 2 else 4  # H, W + 4 adds two output rows (stride 2)
    assert_raises(call, ValueError, rf"input_shape|{call.array_arg}", input_shape=tuple(shape))


@pytest.mark.parametrize("kernel", BACKWARD)
@pytest.mark.parametrize("axis", [0, 1, 2, 3], ids=["N", "C", "out_h", "out_w"])
def test_dout_shape_not_matching_input_shape(rng, kernel, axis):
    call = kernel_call(kernel, rng)
    dout = np.moveaxis(np.moveaxis(call.kwargs["dout"], axis, 0)[1:], 0, axis)
    overrides = {"dout": dout}
    if kernel == "max_pool2d_backward":  # keep argmax consistent with dout
        overrides["argmax"] = np.zeros(dout.shape, np.int64)
    assert_raises(call, ValueError, "dout", **overrides)


@pytest.mark.parametrize(
    "make_argmax, exc",
    [
        (lambda a: a[:, :, 1:], ValueError),
        (lambda a: a[0], ValueError),
        (lambda a: np.where(a == a.flat[0], -1, a), ValueError),
        (lambda a: np.where(a == a.flat[0], 9, a), ValueError),  # == pool_h * pool_w
        (lambda a: np.full_like(a, 2**40), ValueError),
        (lambda a: np.full(a.shape, 2**64 - 1, np.uint64), ValueError),  # not -1 once cast
        (lambda a: a.astype(np.float64), TypeError),
        (lambda a: a.astype(np.complex128), TypeError),
        (lambda a: a.astype(np.bool_), TypeError),
    ],
    ids=["short", "3-D", "negative", "too_large", "huge", "uint64", "float64", "complex", "bool"],
)
def test_bad_argmax(rng, make_argmax, exc):
    call = kernel_call("max_pool2d_backward", rng)
    assert_raises(call, exc, "argmax", argmax=make_argmax(call.kwargs["argmax"]))


def test_bad_argmax_message_shows_the_values_given(rng):
    call = kernel_call("max_pool2d_backward", rng)
    argmax = np.full(call.kwargs["argmax"].shape, 2**64 - 1, np.uint64)
    assert_raises(call, ValueError, str(2**64 - 1), argmax=argmax)


def test_argmax_range_uses_the_window_size(rng):
    """argmax 4 is fine for a 3x3 window but out of range for 2x2 windows."""
    call = kernel_call("max_pool2d_backward", rng)
    argmax = np.full_like(call.kwargs["argmax"], 4)
    call(argmax=argmax)
    # a 2x2 window with stride 2 and no pad keeps the 3x3 output of dout
    assert_raises(call, ValueError, "argmax", argmax=argmax, pool_h=2, pool_w=2, pad=0)


@pytest.mark.parametrize("bad", [-1, 4, 2**40], ids=["negative", "window", "huge"])
@pytest.mark.parametrize("where", [0, -1], ids=["first", "last"])
@pytest.mark.parametrize("given_out", [False, True], ids=["new_dx", "out"])
def test_one_bad_argmax_entry_at_either_end_is_reported(rng, n_threads, layout, bad, where, given_out):
    """One out-of-range entry, the very first or the very last, is found.

    The batch is large enough for every thread to take planes, so the entry
    is counted by the first or the last thread; a given ``out`` is left as it
    was, the new ``dx`` is dropped.
    """
    shape = (4, 8, 64, 64)  # 2x2 windows, stride 2: argmax (4, 8, 32, 32), values in [0, 4)
    dout = random_array(rng, (4, 8, 32, 32))
    argmax = rng.integers(0, 4, size=dout.shape)
    argmax.flat[where] = bad
    argmax = with_layout(argmax, layout)
    out = np.full(shape, 7.0) if given_out else None
    with pytest.raises(ValueError, match=rf"argmax values .*\[0, 4\).*{bad}"):
        cconv.max_pool2d_backward(dout, argmax, shape, 2, 2, stride=2, out=out)
    if given_out:
        assert np.all(out == 7.0)
    argmax = np.where((argmax < 0) | (argmax >= 4), 0, argmax)  # the same, repaired: accepted
    cconv.max_pool2d_backward(dout, argmax, shape, 2, 2, stride=2, out=out)


# --------------------------------------------------------------------------
# Sizes that overflow intp: ValueError, never a crash or MemoryError
# --------------------------------------------------------------------------


def huge_view(shape):
    """A float64 array of ``shape`` backed by one element (zero strides)."""
    return np.broadcast_to(np.zeros(1), shape)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_data": np.zeros((1, 1, 1, 1)), "filter_h": 1, "filter_w": 1, "pad": 2**40},
        {"input_data": np.zeros((1, 1, 1, 1)), "filter_h": 1, "filter_w": 1, "pad": 2**62},
        {"input_data": np.zeros((1, 1, 1, 1)), "filter_h": 2**32, "filter_w": 2**32, "pad": 2**31},
        {"input_data": huge_view((2**20, 1, 2**20, 2**19)), "filter_h": 5, "filter_w": 5, "pad": 2},
    ],
    ids=["pad_2**40", "pad_2**62", "filter_2**32", "broadcast_input"],
)
def test_im2col_result_too_large(kwargs):
    with pytest.raises(ValueError):
        cconv.im2col(**kwargs)


@pytest.mark.parametrize("kernel", TAKES_INPUT_SHAPE)
@pytest.mark.parametrize(
    "input_shape", [(2**40, 1, 2**20, 2**20), (1, 2**62, 2**31, 2**31)], ids=["2**80", "2**124"]
)
def test_input_shape_too_large(rng, kernel, input_shape):
    assert_raises(
        kernel_call(kernel, rng), ValueError, r"input_shape|col|dout", input_shape=input_shape
    )


# --------------------------------------------------------------------------
# out= (and argmax_out=)
# --------------------------------------------------------------------------

OUT_ARGUMENTS = [
    (kernel, name)
    for kernel in ALL_KERNELS
    for name in kernel_call(kernel, np.random.default_rng(0)).out_names
]


@pytest.fixture(params=OUT_ARGUMENTS, ids=lambda p: f"{p[0]}-{p[1]}")
def out_case(request, rng, float_dtype):
    """``(call, name, expected)``: a call, one of its out arguments and that result."""
    kernel, name = request.param
    call = kernel_call(kernel, rng, dtype=float_dtype)
    expected = call()[call.out_names.index(name)]
    return call, name, expected


def garbage_like(a):
    """An array shaped like ``a`` full of values no kernel would produce."""
    return np.full_like(a, np.nan if a.dtype.kind == "f" else -12345)


def test_out_is_filled_and_returned(out_case):
    """The result *is* out, even when out held garbage (cores zero what they accumulate)."""
    call, name, expected = out_case
    out = garbage_like(expected)
    result = call(**{name: out})[call.out_names.index(name)]
    assert result is out
    assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, expected)


def test_max_pool2d_both_outs(rng, float_dtype):
    call = kernel_call("max_pool2d", rng, dtype=float_dtype)
    expected = call()
    outs = [garbage_like(e) for e in expected]
    result = call(out=outs[0], argmax_out=outs[1])
    for got, out, want in zip(result, outs, expected, strict=True):
        assert got is out
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "input_dtype, out_dtype, accepted",
    [
        (np.float16, np.float32, True),
        (np.float16, np.float16, False),
        (np.int32, np.float64, True),
        (np.int32, np.int32, False),
        (np.bool_, np.float64, True),
        (np.float32, np.float64, False),
    ],
)
def test_out_dtype_follows_dtype_policy(rng, input_dtype, out_dtype, accepted):
    """out must have the result dtype: float32 for float16 input, float64 for int/bool."""
    call = kernel_call("avg_pool2d", rng, dtype=input_dtype)
    out = np.empty(call()[0].shape, out_dtype)
    if accepted:
        assert call(out=out)[0] is out
    else:
        assert_raises(call, TypeError, "out", out=out)


def test_out_reused_across_calls(rng):
    """One out buffer serves repeated calls (e.g. a training loop)."""
    call = kernel_call("col2im", rng)
    out = call()[0]
    first = out.copy()
    col = call.kwargs["col"]
    assert call(col=2 * col, out=out)[0] is out
    np.testing.assert_allclose(out, 2 * first, rtol=1e-12)


def bad_outs(expected):
    """``{label: (bad_out, exception)}`` for an expected result array."""
    wrong_dtype = {np.dtype(np.float64): np.float32, np.dtype(np.float32): np.float64}.get(
        expected.dtype, np.int32
    )
    not_writeable = np.empty_like(expected)
    not_writeable.flags.writeable = False
    longer = expected.shape[:-1] + (expected.shape[-1] + 1,)
    return {
        "shape": (np.empty(longer, expected.dtype), ValueError),
        "flat": (np.empty(expected.size, expected.dtype), ValueError),
        "dtype": (np.empty(expected.shape, wrong_dtype), TypeError),
        "strided": (
            np.empty(expected.shape[:-1] + (2 * expected.shape[-1],), expected.dtype)[..., ::2],
            ValueError,
        ),
        "fortran": (np.empty(expected.shape, expected.dtype, order="F"), ValueError),
        "readonly": (not_writeable, ValueError),
        # C-contiguous but one byte off: the kernels store whole numbers, C needs them aligned
        "unaligned": (with_layout(expected, "unaligned"), ValueError),
    }


@pytest.mark.parametrize(
    "problem", ["shape", "flat", "dtype", "strided", "fortran", "readonly", "unaligned"]
)
def test_bad_out(out_case, problem):
    call, name, expected = out_case
    bad, exc = bad_outs(expected)[problem]
    assert_raises(call, exc, name, **{name: bad})


def test_out_not_an_array(out_case):
    call, name, expected = out_case
    assert_raises(call, (TypeError, ValueError), name, **{name: expected.tolist()})


def overlapping_pair(value, out_like, out_start):
    """A copy of ``value`` and an out array, both views of one byte buffer.

    ``value`` starts at byte 0, out at byte ``out_start`` (a multiple of its
    itemsize); they overlap when ``out_start < value.nbytes``.
    """
    value = np.asarray(value)
    size = max(value.nbytes, out_start + out_like.nbytes)
    buffer = np.zeros(size, dtype=np.uint8)
    arr = buffer[: value.nbytes].view(value.dtype).reshape(value.shape)
    arr[...] = value
    out = (
        buffer[out_start : out_start + out_like.nbytes].view(out_like.dtype).reshape(out_like.shape)
    )
    return arr, out


@pytest.mark.parametrize("where", ["same_start", "partial"])
def test_out_overlapping_an_input(out_case, where):
    """out must not share memory with any array argument."""
    call, name, expected = out_case
    for arg, value in call.kwargs.items():
        if not isinstance(value, np.ndarray):
            continue
        halfway = value.nbytes // 2 // expected.itemsize * expected.itemsize
        arr, out = overlapping_pair(value, expected, 0 if where == "same_start" else halfway)
        assert np.shares_memory(arr, out)
        assert_raises(call, ValueError, name, **{arg: arr, name: out})


def test_out_next_to_input_is_fine(rng):
    """Adjacent (non-overlapping) views of one buffer are not an overlap."""
    call = kernel_call("im2col", rng)
    expected = call()[0]
    x = call.kwargs["input_data"]
    arr, out = overlapping_pair(x, expected, out_start=x.nbytes)
    assert not np.shares_memory(arr, out)
    assert call(input_data=arr, out=out)[0] is out
    np.testing.assert_array_equal(out, expected)
