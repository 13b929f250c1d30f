"""Helpers shared by the cconv tests: dtypes, memory layouts, geometries, checks.

Kept apart from ``conftest.py`` so that test modules can import them by name
(``conftest.py`` puts this folder on ``sys.path``).
"""

import dataclasses
import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import cconv

import reference as ref

# --------------------------------------------------------------------------
# dtypes and tolerances
# --------------------------------------------------------------------------

#: dtypes the kernels compute in.
FLOAT_DTYPES = (np.float32, np.float64)

#: Every accepted input dtype; see :func:`result_dtype` for what each becomes.
INPUT_DTYPES = (np.float32, np.float64, np.float16, np.int8, np.int32, np.int64, np.uint8, np.bool_)

#: Dtypes that must be refused with ``TypeError``.
REJECTED_DTYPES = (np.complex64, np.complex128, np.object_, np.str_, np.bytes_, "datetime64[s]")

#: Tolerances per output dtype, for one rounding per element; sums of ``k`` terms
#: scale ``atol`` by ``k`` (see :func:`assert_close`).
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-12},
}


def result_dtype(dtype):
    """The dtype policy: float32/float64 kept, float16 -> float32, int/bool -> float64."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    return dtype


def assert_close(actual, expected, terms=1):
    """Compare with the tolerance of ``actual.dtype``; ``terms`` summands per element."""
    tol = TOLERANCES[actual.dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * terms)


#: Relative tolerances per output dtype for sums of products (the convolution),
#: of an element and of the largest sum of absolute terms (see :func:`assert_sum_close`).
SUM_RTOL = {
    np.dtype(np.float32): 1e-4,
    np.dtype(np.float64): 1e-10,
}


def assert_sum_close(actual, expected, bound, err_msg=""):
    """Compare sums whose terms' absolute values sum to ``bound`` (same shape).

    Where ``bound`` is finite: within ``rtol`` of ``expected`` plus ``rtol``
    times the largest finite bound (``rtol`` from ``SUM_RTOL`` for
    ``actual.dtype``), so that sums that cancel are not held to a relative
    error they cannot have. Where it is not (a term is inf or NaN, so
    ``expected`` is too): equal, NaN where NaN.
    """
    rtol = SUM_RTOL[actual.dtype]
    actual, expected, bound = (np.asarray(a) for a in (actual, expected, bound))
    assert actual.shape == expected.shape == bound.shape, (actual.shape, expected.shape, bound.shape)
    finite = np.isfinite(bound)
    atol = rtol * float(np.max(bound[finite], initial=0.0))
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=atol, err_msg=err_msg)
    np.testing.assert_array_equal(actual[~finite], expected[~finite].astype(actual.dtype), err_msg=err_msg)


def random_array(rng, shape, dtype=np.float64):
    """Random values that are exact in ``dtype`` (small integers for int/uint/bool)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        low = 0 if dtype.kind == "u" else -9
        return rng.integers(low, 10, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def with_special_values(rng, x, fraction):
    """Copy of ``x`` with about ``fraction`` of its entries set to -inf (mostly), +inf or NaN.

    Integer and bool arrays come back unchanged. A large fraction makes
    windows whose real elements are all -inf.
    """
    if x.dtype.kind != "f" or fraction == 0:
        return x
    x = x.copy()
    chosen = rng.random(x.shape) < fraction
    x[chosen] = rng.choice([-np.inf, -np.inf, -np.inf, np.inf, np.nan], size=int(chosen.sum()))
    return x


def distinct_values(rng, shape):
    """A shuffled ``arange`` in float64: all values distinct, spaced by 1 (Chainer's trick)."""
    values = np.arange(math.prod(shape), dtype=np.float64) - math.prod(shape) / 2
    rng.shuffle(values)
    return values.reshape(shape)


# --------------------------------------------------------------------------
# Memory layouts
# --------------------------------------------------------------------------

#: Ways to store the same values; every kernel must give the contiguous result.
LAYOUTS = ("C", "F", "transposed", "strided", "negative", "readonly", "unaligned")


def _sentinel(dtype):
    """A value for the gaps of a strided view; reading it gives a visible error."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.nan
    return True if dtype == np.bool_ else 7


def with_layout(a, layout):
    """Return an array equal to ``a`` whose memory follows ``layout``.

    ``"C"``: contiguous copy; ``"F"``: Fortran order; ``"transposed"``: the
    first axis stored innermost (NHWC-like for 4-D, Fortran for 2-D);
    ``"strided"``: every other element of a larger buffer whose gaps hold NaN;
    ``"negative"``: negative strides on every axis; ``"readonly"``: contiguous
    and not writeable; ``"unaligned"``: contiguous, one byte off alignment.
    """
    a = np.asarray(a)

    def every_axis(step):
        return (slice(None, None, step),) * a.ndim

    if layout == "C":
        view = a.copy(order="C")
    elif layout == "F":
        view = np.asfortranarray(a)
    elif layout == "transposed":
        view = np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 0, -1)), -1, 0)
    elif layout == "strided":
        big = np.full(tuple(2 * s for s in a.shape), _sentinel(a.dtype), dtype=a.dtype)
        view = big[every_axis(2)]
        view[...] = a
    elif layout == "negative":
        view = a[every_axis(-1)].copy()[every_axis(-1)]
    elif layout == "readonly":
        view = a.copy()
        view.flags.writeable = False
    elif layout == "unaligned":
        view = np.zeros(a.nbytes + 1, dtype=np.uint8)[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
    else:
        raise ValueError(f"unknown layout {layout!r}")
    np.testing.assert_array_equal(view, a)
    return view


# --------------------------------------------------------------------------
# Geometries
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Geometry:
    """One im2col / pooling / convolution problem: input shape, window, stride, pad, dilation.

    ``stride``, ``pad`` and ``dilation`` keep the form the kernel receives
    (int or pair). ``dilation`` is for im2col, col2im and the convolution;
    it goes into :attr:`kwargs` only when it is not 1, so pooling geometries
    (always dilation 1) still call the pooling kernels as before.
    """

    shape: tuple
    filter_h: int
    filter_w: int
    stride: object = 1
    pad: object = 0
    dilation: object = 1

    @property
    def out_hw(self):
        (sh, sw), (ph, pw) = ref.as_pair(self.stride), ref.as_pair(self.pad)
        dh, dw = ref.as_pair(self.dilation)
        _, _, h, w = self.shape
        return (
            ref.output_size(h, self.filter_h, sh, ph, dh),
            ref.output_size(w, self.filter_w, sw, pw, dw),
        )

    @property
    def dilated(self):
        return ref.as_pair(self.dilation) != (1, 1)

    @property
    def out_shape(self):
        """Pooling output shape ``(N, C, out_h, out_w)``."""
        return tuple(self.shape[:2]) + self.out_hw

    @property
    def col_shape(self):
        """``im2col`` output shape ``(N*out_h*out_w, C*filter_h*filter_w)``."""
        n, c = self.shape[:2]
        return n * math.prod(self.out_hw), c * self.filter_h * self.filter_w

    @property
    def overlap(self):
        """Upper bound on how many windows cover one input pixel (summands in col2im).

        Along each axis at most one tap of a window covers a pixel, and the
        windows covering it start within one dilated span: ``min(filter,
        ceil(span / stride))`` (``ceil(filter / stride)`` without dilation).
        """
        (sh, sw), (dh, dw) = ref.as_pair(self.stride), ref.as_pair(self.dilation)
        span_h, span_w = dh * (self.filter_h - 1) + 1, dw * (self.filter_w - 1) + 1
        return min(self.filter_h, math.ceil(span_h / sh)) * min(self.filter_w, math.ceil(span_w / sw))

    @property
    def args(self):
        """Positional window arguments: ``(filter_h, filter_w)``."""
        return self.filter_h, self.filter_w

    @property
    def kwargs(self):
        """``stride`` and ``pad``, and ``dilation`` when it is not 1."""
        kwargs = {"stride": self.stride, "pad": self.pad}
        if self.dilated:
            kwargs["dilation"] = self.dilation
        return kwargs

    def __str__(self):
        n, c, h, w = self.shape
        text = f"{n}x{c}x{h}x{w}-k{self.filter_h}x{self.filter_w}-s{self.stride}-p{self.pad}"
        return text + (f"-d{self.dilation}" if self.dilated else "")


#: Fixed im2col / col2im problems, the book's first.
CONV_GEOMETRIES = (
    Geometry((1, 3, 7, 7), 5, 5),  # the book's im2col example
    Geometry((10, 3, 7, 7), 5, 5),  # ... and its batch of 10
    Geometry((2, 3, 6, 5), 3, 3, 1, 1),
    Geometry((2, 2, 9, 8), 3, 2, (2, 1), (1, 0)),
    Geometry((1, 4, 5, 7), 2, 4, (1, 3), (2, 1)),
    Geometry((3, 1, 4, 4), 4, 4, 4, 0),
    Geometry((2, 3, 8, 8), 1, 1, 2, 0),
    Geometry((1, 2, 3, 3), 3, 3, 1, 3),  # pad wider than the image
)

#: Fixed im2col / col2im / conv2d problems with dilated filters.
DILATED_GEOMETRIES = (
    Geometry((1, 1, 4, 4), 2, 2, 1, 0, 2),  # im2col's docstring example
    Geometry((2, 3, 7, 7), 3, 3, 1, 0, 2),  # a 5x5 span
    Geometry((2, 3, 6, 5), 3, 3, 1, 2, 2),  # "same" padding for dilation 2
    Geometry((2, 2, 9, 8), 3, 2, (2, 1), (1, 0), (2, 3)),
    Geometry((1, 4, 5, 7), 2, 4, (1, 3), (2, 1), (3, 1)),
    Geometry((3, 1, 9, 9), 3, 3, 3, 0, 4),  # the span is the whole image
    Geometry((2, 2, 4, 4), 2, 2, 1, 3, 5),  # taps far into the padding
    Geometry((1, 2, 3, 3), 3, 3, 2, 3, (1, 2)),  # pad wider than the image
)

#: Fixed pooling problems (pad <= pool // 2).
POOL_GEOMETRIES = (
    Geometry((2, 3, 8, 8), 2, 2, 2, 0),  # the book's SimpleConvNet pooling
    Geometry((2, 3, 7, 7), 3, 3, 2, 1),
    Geometry((1, 2, 5, 6), 3, 2, 1, (1, 1)),
    Geometry((2, 2, 7, 5), 2, 3, (2, 1), (1, 0)),
    Geometry((3, 1, 6, 6), 5, 4, (3, 2), (2, 2)),
    Geometry((1, 1, 1, 1), 1, 1),
)


def _int_or_pair(draw, h, w):
    """Draw the int form when both values agree (sometimes), else the pair."""
    if h == w and draw(st.booleans()):
        return h
    return (h, w)


@st.composite
def geometries(draw, pooling=False, max_batch=3, max_hw=7, max_filter=4, max_stride=3, max_pad=2,
               max_dilation=1, min_batch=1):
    """Random small :class:`Geometry` with an output of at least 1x1.

    With ``pooling`` the pad obeys ``pad <= pool // 2``. With ``max_dilation``
    above 1 the filter taps are spaced 1 to ``max_dilation`` apart (the
    image then grows to fit the dilated span). ``min_batch`` 0 allows empty
    batches and channel-free images.
    """
    fh, fw = draw(st.integers(1, max_filter)), draw(st.integers(1, max_filter))
    ph = draw(st.integers(0, min(max_pad, fh // 2) if pooling else max_pad))
    pw = draw(st.integers(0, min(max_pad, fw // 2) if pooling else max_pad))
    dh, dw = (1, 1) if max_dilation == 1 else (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    span_h, span_w = dh * (fh - 1) + 1, dw * (fw - 1) + 1
    h = draw(st.integers(max(1, span_h - 2 * ph), max(max_hw, span_h)))
    w = draw(st.integers(max(1, span_w - 2 * pw), max(max_hw, span_w)))
    shape = (draw(st.integers(min_batch, max_batch)), draw(st.integers(min_batch, max_batch)), h, w)
    stride = _int_or_pair(draw, draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    geom = Geometry(shape, fh, fw, stride, _int_or_pair(draw, ph, pw))
    if max_dilation == 1:
        return geom
    return dataclasses.replace(geom, dilation=_int_or_pair(draw, dh, dw))


#: Settings for the property tests: no deadline (first calls compile caches),
#: a moderate number of examples so the suite stays fast, and no example
#: database written into the working directory.
PROPERTY_SETTINGS = settings(
    deadline=None,
    max_examples=60,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

seeds = st.integers(0, 2**32 - 1)
input_dtypes = st.sampled_from(INPUT_DTYPES)
layouts = st.sampled_from(LAYOUTS)


# --------------------------------------------------------------------------
# One valid call of every kernel, for tests that treat them alike
# --------------------------------------------------------------------------


@dataclasses.dataclass
class KernelCall:
    """A valid call of the public function ``name``, every argument by keyword.

    ``array_arg`` is the main array argument; ``out_names`` are the keyword
    arguments that receive the results, in the order they are returned.
    """

    name: str
    kwargs: dict
    array_arg: str
    out_names: tuple = ("out",)

    def __call__(self, **overrides):
        """Call the kernel with some arguments replaced; always return a tuple."""
        result = getattr(cconv, self.name)(**{**self.kwargs, **overrides})
        return result if isinstance(result, tuple) else (result,)

    def __str__(self):
        return self.name


#: The kernels that take a filter or pooling window by its size (the generic
#: argument tests of test_validation.py run over these).
KERNEL_NAMES = (
    "im2col",
    "col2im",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
)

#: The convolution kernels: their filter is the array W, not sizes.
CONV_KERNEL_NAMES = ("conv2d", "conv2d_backward")

#: Number of filters of the convolution calls of :func:`kernel_call`.
CONV_FILTERS = 4


def kernel_call(name, rng, dtype=np.float64, shape=(2, 3, 6, 6)):
    """The :class:`KernelCall` of kernel ``name`` on random data of ``dtype``.

    im2col, col2im and the convolution use a 3x3 filter with stride 1 and pad
    1 (conv2d: ``CONV_FILTERS`` filters and biases; conv2d_backward returns
    dx, dW and db and takes no ``out=``); pooling kernels a 3x3 window with
    stride 2 and pad 1.
    """
    conv = Geometry(shape, 3, 3, 1, 1)
    pool = Geometry(shape, 3, 3, 2, 1)
    conv_window = {"filter_h": 3, "filter_w": 3, **conv.kwargs}
    pool_window = {"pool_h": 3, "pool_w": 3, **pool.kwargs}
    x = random_array(rng, shape, dtype)
    if name in CONV_KERNEL_NAMES:
        W = random_array(rng, (CONV_FILTERS, shape[1], 3, 3), dtype)
        if name == "conv2d":
            b = random_array(rng, (CONV_FILTERS,), dtype)
            return KernelCall(name, {"x": x, "W": W, "b": b, **conv.kwargs}, "x")
        dout = random_array(rng, (shape[0], CONV_FILTERS) + conv.out_hw, dtype)
        kwargs = {"dout": dout, "x": x, "W": W, **conv.kwargs}
        return KernelCall(name, kwargs, "dout", out_names=())
    dout = random_array(rng, pool.out_shape, dtype)
    if name == "im2col":
        return KernelCall(name, {"input_data": x, **conv_window}, "input_data")
    if name == "col2im":
        col = random_array(rng, conv.col_shape, dtype)
        return KernelCall(name, {"col": col, "input_shape": shape, **conv_window}, "col")
    if name == "max_pool2d":
        return KernelCall(name, {"x": x, **pool_window}, "x", ("out", "argmax_out"))
    if name == "max_pool2d_backward":
        argmax = rng.integers(0, 9, size=pool.out_shape).astype(np.int64)
        kwargs = {"dout": dout, "argmax": argmax, "input_shape": shape, **pool_window}
        return KernelCall(name, kwargs, "dout")
    if name == "avg_pool2d":
        return KernelCall(name, {"x": x, **pool_window}, "x")
    if name == "avg_pool2d_backward":
        return KernelCall(name, {"dout": dout, "input_shape": shape, **pool_window}, "dout")
    raise ValueError(f"unknown kernel {name!r}")


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------


def numerical_gradient(f, x, eps=1e-3):
    """Central differences of the scalar function ``f`` at the float64 array ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + eps
        upper = f(x)
        flat_x[i] = saved - eps
        lower = f(x)
        flat_x[i] = saved
        flat_grad[i] = (upper - lower) / (2 * eps)
    return grad


# --------------------------------------------------------------------------
# Shared data (MNIST test set, the book's parameters), for the network and trainer tests
# --------------------------------------------------------------------------


def shared_data():
    """``$CCONV_SHARED_DATA`` or ``<repo>/../shared/data`` (a Path; may not exist).

    The read-only folder holding ``mnist-test/`` (the MNIST test set as gzip
    IDX files) and ``book-params/`` (the book's trained parameters).
    """
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return Path(os.environ.get("CCONV_SHARED_DATA", default))


def read_idx(path):
    """Read a gzip IDX file: magic 2049 (labels, 1-D) or 2051 (images, 3-D), big-endian dims."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = {2049: 1, 2051: 3}.get(magic)
    if ndim is None:
        raise ValueError(f"{path}: unexpected IDX magic {magic}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != math.prod(dims):
        raise ValueError(f"{path}: {array.size} values for dims {dims}")
    return array.reshape(dims)


_MNIST_TEST = []


def load_mnist_test():
    """The 10,000 MNIST test images of :func:`shared_data` as the book loads them, and their labels.

    Returns ``x`` float32 ``(10000, 1, 28, 28)`` in [0, 1] (``uint8 -> float32``,
    then ``/= 255.0``, as ``load_mnist(normalize=True, flatten=False)``) and
    ``t`` int64 ``(10000,)``. Read-only arrays, read once.
    """
    if not _MNIST_TEST:
        folder = shared_data() / "mnist-test"
        x = read_idx(folder / "t10k-images-idx3-ubyte.gz").astype(np.float32)
        x /= 255.0
        x = x.reshape(-1, 1, 28, 28)
        t = read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
        x.flags.writeable = False
        t.flags.writeable = False
        _MNIST_TEST.append((x, t))
    return _MNIST_TEST[0]


# --------------------------------------------------------------------------
# Small data sets for the command and trainer tests
# --------------------------------------------------------------------------


def write_idx(path, array):
    """Write ``array`` (uint8) as a gzip-compressed IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_sample_subset(folder, n_train, n_test):
    """The first images of the bundled MNIST sample, as the four IDX files of a data folder."""
    from cconv import datasets

    source = os.path.join(os.path.dirname(cconv.__file__), "data", "mnist-sample")
    for name, count in zip(datasets.IDX_NAMES, (n_train, n_train, n_test, n_test)):
        images = datasets.read_idx(os.path.join(source, f"{name}.gz"))[:count]
        write_idx(os.path.join(folder, f"{name}.gz"), images)
    return folder


# --------------------------------------------------------------------------
# Running the command
# --------------------------------------------------------------------------


def run_cli(capsys, *args):
    """``cconv ARGS`` in-process: ``(status, stdout, stderr)``."""
    from cconv import cli

    capsys.readouterr()
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def command_env(tmp_path):
    """The environment of a subprocess: CCONV_DATA inside ``tmp_path``, MPLBACKEND unset."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env["CCONV_DATA"] = str(tmp_path / "cconv-data")
    return env
