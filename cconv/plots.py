"""Pictures of a training run and of what a ConvNet has learned, as the book draws them.

* :func:`accuracy_figure`: train/test accuracy per epoch (the book's ``ch07/train_convnet.py``);
  :func:`loss_figure`: the training loss per iteration.
* :func:`filters_figure`: a convolution's filters (the book's ``filter_show``,
  ``ch07/visualize_filter.py``): random noise before training, edges and blobs after.
* :func:`layer_activations` and :func:`activations_figure`: the feature maps of one image
  through each convolution and pooling layer: simple edge responses in the first layer,
  more abstract patterns deeper.
* :func:`confusion_matrix` and :func:`confusion_figure`; :func:`misclassified_figure`:
  the test images a network gets wrong.

Every ``*_figure`` function builds a :class:`matplotlib.figure.Figure` without
``pyplot`` (no global figure registry, no GUI backend: it works headless and
from threads that each build their own figures), saves it to ``path`` when
one is given, and returns it. The file is rendered to memory first and then
written atomically (:func:`cconv._atomic.atomic_write_bytes`): a reader sees
the old file or the new one, and a failed rendering leaves no file. The format
follows the suffix of ``path``: ``.png`` (default for no suffix), ``.svg`` or
``.pdf``. A PNG is exactly ``round(width * dpi)`` by ``round(height * dpi)``
pixels, the figure size in inches times ``dpi``.

To show a returned figure on screen (a ``--show`` option), hand it to pyplot,
which adopts a figure made without it (checked with matplotlib 3.11)::

    import matplotlib.pyplot as plt
    plt.figure(fig)   # registers fig with pyplot's backend
    plt.show()

matplotlib is imported only when a figure is built, so ``import cconv`` (and
``import cconv.plots``) stay light; it is needed only for these functions.
"""

import io
import math
import numbers
import os

import numpy as np

from cconv._atomic import atomic_write_bytes
from cconv._validation import check_int
from cconv.layers import AvgPooling, Convolution, Pooling, Relu, Sigmoid
from cconv.nets._base import Network, forward_layers, named_layers

__all__ = [
    "accuracy_figure",
    "activations_figure",
    "confusion_figure",
    "confusion_matrix",
    "filters_figure",
    "layer_activations",
    "loss_figure",
    "misclassified_figure",
]

#: Resolution of the saved pictures, in pixels per inch.
DEFAULT_DPI = 100
#: File formats by suffix of ``path``.
_FORMATS = {"": "png", ".png": "png", ".svg": "svg", ".pdf": "pdf"}

#: Size (inches) of the curve figures: matplotlib's default, as the book's plots.
_CURVE_SIZE = (6.4, 4.8)
#: Side (inches) of one filter in :func:`filters_figure`; height of its optional title.
_FILTER_CELL = 0.8
_TITLE_HEIGHT = 0.4
#: One image of :func:`misclassified_figure` (width, height with its label), and the header.
_MISS_CELL = (1.2, 1.5)
_MISS_HEADER = 0.8
_MISS_MIN_WIDTH = 3.0
_EMPTY_SIZE = (4.0, 1.0)
#: :func:`confusion_figure`: inches per class, plus room for labels, within bounds.
_CONFUSION_CELL = 0.5
_CONFUSION_MARGIN = 1.8
_CONFUSION_SIZE_RANGE = (4.0, 16.0)
#: Largest number of classes whose counts are written in the cells.
_CONFUSION_MAX_TEXT = 30
#: :func:`activations_figure`: side of a feature map, width of the row labels, top margin.
_MAP_CELL = 0.6
_LABEL_WIDTH = 1.5
_MAP_TOP = 0.1

#: Layers recorded together with the Convolution they follow.
_ACTIVATIONS = (Relu, Sigmoid)
_POOLINGS = (Pooling, AvgPooling)


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------


def _check_path(path):
    """``None``, or ``(path, format)`` for a str or os.PathLike ending in a known suffix."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a text path, got {path!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _FORMATS:
        raise ValueError(f"path must end in .png, .svg or .pdf, got {path!r}")
    return path, _FORMATS[suffix]


def _check_dpi(dpi):
    if (
        isinstance(dpi, bool)
        or not isinstance(dpi, numbers.Real)
        or not math.isfinite(dpi)
        or not dpi > 0
    ):
        raise ValueError(f"dpi must be a number > 0, got {dpi!r}")
    return float(dpi)


def _check_title(title):
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    return title


def _real_array(value, name):
    """``value`` as an ndarray of integers or floats; ``TypeError`` naming ``name`` otherwise."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers ({exc})") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integers or floats, got dtype {array.dtype}")
    return array


def _labels(value, name):
    """Class labels as a 1-D int64 array; a 2-D array (scores or one-hot) gives its argmax."""
    array = np.asarray(value)
    if array.ndim == 2:
        if array.dtype.kind not in "iuf":
            raise TypeError(f"2-D {name} must be scores or one-hot rows of numbers")
        if array.shape[1] == 0:
            raise ValueError(f"2-D {name} must have one column per class, got shape {array.shape}")
        return np.argmax(array, axis=1).astype(np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D labels (or 2-D scores), got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0, got {array.min()}")
    return array.astype(np.int64)


def _check_class_names(class_names, num_classes, name="class_names"):
    """``class_names`` as a list of str covering labels ``0 .. num_classes - 1``, or None."""
    if class_names is None:
        return None
    if isinstance(class_names, str):
        raise TypeError(f"{name} must be a sequence of str, not a str")
    names = list(class_names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{name} must be a sequence of str")
    if len(names) < num_classes:
        raise ValueError(
            f"{name} has {len(names)} names but the labels need {num_classes} "
            f"(labels 0 to {num_classes - 1})"
        )
    return names


def _image_batch(images):
    """``images`` as (N, C, H, W), C 1 or 3, from (N, C, H, W), (N, H, W) or (N, H*W) square."""
    array = _real_array(images, "images")
    if array.ndim == 1 and array.size == 0:
        return array.reshape(0, 1, 1, 1)
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1] or side == 0:
            raise ValueError(
                f"images of shape {array.shape}: flattened images must be square "
                f"(H*W with H == W), {array.shape[1]} is not a square"
            )
        return array.reshape(-1, 1, side, side)
    if array.ndim == 3:
        return array[:, np.newaxis]
    if array.ndim == 4 and array.shape[1] in (1, 3):
        return array
    raise ValueError(
        f"images must be (N, 1, H, W), (N, 3, H, W), (N, H, W) or (N, H*W), got shape {array.shape}"
    )


# --------------------------------------------------------------------------
# Figures: creation, images, saving
# --------------------------------------------------------------------------


def _new_figure(width, height, dpi, **kwargs):
    """A pyplot-free Figure of ``width`` x ``height`` inches at ``dpi``.

    The size is snapped to whole pixels (plus 1/100 of a pixel, as Agg
    truncates ``width * dpi``: 0.29 * 100 is 28.999...).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "cconv.plots needs matplotlib to draw figures: pip install matplotlib"
        ) from exc
    w_px = max(1, round(width * dpi))
    h_px = max(1, round(height * dpi))
    return Figure(figsize=((w_px + 0.01) / dpi, (h_px + 0.01) / dpi), dpi=dpi, **kwargs)


def _finish(fig, target):
    """Save ``fig`` to ``target`` (``(path, format)`` or None) atomically; return ``fig``."""
    if target is not None:
        path, fmt = target
        buffer = io.BytesIO()
        # An explicit bbox: a user's rcParams["savefig.bbox"] = "tight" would change the size.
        fig.savefig(buffer, format=fmt, dpi=fig.dpi, bbox_inches=fig.bbox_inches)
        atomic_write_bytes(path, buffer.getvalue())
    return fig


def _display(image, channel=None):
    """A (C, H, W) image as imshow takes it.

    Channel ``channel`` as a 2-D array, or, with ``channel=None``, the only
    channel, or for C == 3 the colour image as (H, W, 3) scaled to [0, 1] by
    its own minimum and maximum (mid-grey if constant).
    """
    if channel is None and image.shape[0] == 3:
        rgb = np.nan_to_num(np.moveaxis(image, 0, -1).astype(np.float64))
        low, high = rgb.min(), rgb.max()
        return (rgb - low) / (high - low) if high > low else np.full_like(rgb, 0.5)
    return image[0 if channel is None else channel]


def _show_image(fig, spec, image, cmap, title=None):
    """An axes without ticks at ``spec`` showing ``image`` (each image scaled by its own range)."""
    ax = fig.add_subplot(spec, xticks=[], yticks=[])
    ax.imshow(image, cmap=cmap, interpolation="nearest")
    if title is not None:
        ax.set_title(title, fontsize=8, pad=2)
    return ax


def _image_grid(fig, images, ncols, *, cmap, titles=None, top=1.0, bottom=0.0, hspace=0.05):
    """``images`` (2-D or RGB arrays) row by row in an ``ncols``-wide grid spanning ``fig``.

    Margins as the book's ``filter_show``: none at the sides, 0.05 between cells.
    """
    nrows = math.ceil(len(images) / ncols)
    grid = fig.add_gridspec(
        nrows, ncols, left=0, right=1, bottom=bottom, top=top, hspace=hspace, wspace=0.05
    )
    for i, image in enumerate(images):
        title = None if titles is None else titles[i]
        _show_image(fig, grid[i // ncols, i % ncols], image, cmap, title)


# --------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------


def _curve_axes(dpi, xlabel, ylabel, title):
    """A 6.4 x 4.8 inch figure with one labelled axes for a training curve."""
    fig = _new_figure(*_CURVE_SIZE, dpi, layout="constrained")
    ax = fig.add_subplot(xlabel=xlabel, ylabel=ylabel)
    if title is not None:
        ax.set_title(title)
    return fig, ax


def _curve(values, name):
    array = _real_array(values, name).astype(np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    return array


def accuracy_figure(train_acc, test_acc, path=None, *, title=None, dpi=DEFAULT_DPI):
    """Train and test accuracy per epoch, as the book's ``ch07/train_convnet.py`` plots them.

    Parameters
    ----------
    train_acc, test_acc : sequence of float, shape (epochs,)
        Accuracies in [0, 1], one per epoch (``Trainer.train_acc_list`` and
        ``test_acc_list``), the same length. Drawn against ``np.arange(epochs)``
        with markers ``'o'`` (train) and ``'s'`` (test) on every other point.
    path : str or os.PathLike, optional
        Where to save the picture (``.png``, ``.svg`` or ``.pdf``), atomically.
    title : str, optional
    dpi : float, default 100
        A PNG is 6.4 x 4.8 inches times ``dpi`` (640 x 480 pixels by default).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Empty or not 1-D, of different lengths, or a value outside [0, 1] (NaN included).
    TypeError
        Values that are not numbers.
    """
    target = _check_path(path)
    dpi = _check_dpi(dpi)
    title = _check_title(title)
    train = _curve(train_acc, "train_acc")
    test = _curve(test_acc, "test_acc")
    if train.size != test.size:
        raise ValueError(
            f"train_acc and test_acc must have one value per epoch each, "
            f"got {train.size} and {test.size}"
        )
    for name, values in (("train_acc", train), ("test_acc", test)):
        if not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"{name} must hold accuracies in [0, 1], got {values}")

    fig, ax = _curve_axes(dpi, "epochs", "accuracy", title)
    x = np.arange(train.size)
    ax.plot(x, train, marker="o", label="train", markevery=2)
    ax.plot(x, test, marker="s", label="test", markevery=2)
    ax.set_ylim(0, 1.0)
    ax.legend(loc="lower right")
    return _finish(fig, target)


def _moving_average(values, window):
    """Mean of each run of ``window`` values, ignoring NaN (NaN where a run has none)."""
    finite = np.isfinite(values)
    sums = np.concatenate(([0.0], np.cumsum(np.where(finite, values, 0.0))))
    counts = np.concatenate(([0], np.cumsum(finite)))
    total = sums[window:] - sums[:-window]
    count = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def loss_figure(train_loss, path=None, *, smooth=None, title=None, dpi=DEFAULT_DPI):
    """The training loss per iteration, with its moving average.

    Parameters
    ----------
    train_loss : sequence of float, shape (iterations,)
        ``Trainer.train_loss_list``. NaN and inf (a diverged step) leave gaps.
    path : str or os.PathLike, optional
        Where to save the picture (``.png``, ``.svg`` or ``.pdf``), atomically.
    smooth : int, optional
        Window of the moving average drawn over the raw curve; 1 draws the raw
        curve only. Default: ``iterations // 50`` (1 under 100 iterations).
    title : str, optional
    dpi : float, default 100
        A PNG is 6.4 x 4.8 inches times ``dpi`` (640 x 480 pixels by default).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Empty, not 1-D, without a finite value, or a bad ``smooth``.
    TypeError
        Values that are not numbers.
    """
    target = _check_path(path)
    dpi = _check_dpi(dpi)
    title = _check_title(title)
    loss = _curve(train_loss, "train_loss")
    finite = np.isfinite(loss)
    if not finite.any():
        raise ValueError("train_loss has no finite value to draw")
    if smooth is None:
        window = max(1, loss.size // 50)
    else:
        window = check_int(smooth, "smooth", non_int_error=ValueError)
    window = min(window, loss.size)

    fig, ax = _curve_axes(dpi, "iterations", "loss", title)
    x = np.arange(loss.size)
    raw = np.where(finite, loss, np.nan)
    if window == 1:
        ax.plot(x, raw, label="train loss")
    else:
        ax.plot(x, raw, color="C0", alpha=0.3, linewidth=0.8, label="train loss")
        ax.plot(
            x[window - 1 :],
            _moving_average(loss, window),
            color="C0",
            label=f"mean of {window} iterations",
        )
    ax.legend(loc="upper right")
    return _finish(fig, target)


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------


def filters_figure(W, path=None, *, nx=8, channel=None, title=None, dpi=DEFAULT_DPI):
    """A convolution's filters as small images: the book's ``filter_show``.

    Each filter is drawn from channel 0 (``W[i, 0]``) with ``cmap='gray_r'``
    (dark = large weight) and nearest-neighbour pixels, scaled by its own
    range, without ticks, in a grid ``nx`` filters wide with the book's
    margins (none at the sides, 0.05 between filters). Filters of 3 channels
    (an RGB network's first layer, e.g. AlexNet) are drawn in colour instead,
    each scaled to [0, 1] by its own minimum and maximum.

    Parameters
    ----------
    W : array_like, shape (FN, C, FH, FW)
        The filters, e.g. ``network.params['W1']``; any integer or float dtype.
    path : str or os.PathLike, optional
        Where to save the picture (``.png``, ``.svg`` or ``.pdf``), atomically.
    nx : int, default 8
        Filters per row; the grid has ``min(nx, FN)`` columns and
        ``ceil(FN / nx)`` rows.
    channel : int, optional
        Draw this input channel of every filter in grey (default: 0, or the
        colour filter when C == 3).
    title : str, optional
        Written above the grid (0.4 inch more height).
    dpi : float, default 100
        A PNG is 0.8 inch per filter times ``dpi``: 30 filters with ``nx=8``
        give 640 x 320 pixels.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        ``W`` not 4-D or empty, bad ``nx`` or ``channel``.
    TypeError
        ``W`` not numbers.
    """
    target = _check_path(path)
    dpi = _check_dpi(dpi)
    title = _check_title(title)
    nx = check_int(nx, "nx", non_int_error=ValueError)
    W = _real_array(W, "W")
    if W.ndim != 4 or W.size == 0:
        raise ValueError(f"W must be a non-empty (FN, C, FH, FW) array, got shape {W.shape}")
    FN, C = W.shape[:2]
    if channel is not None:
        channel = check_int(channel, "channel", minimum=0, non_int_error=ValueError)
        if channel >= C:
            raise ValueError(f"channel must be < {C} (the channels of W), got {channel}")

    ncols = min(nx, FN)
    nrows = math.ceil(FN / nx)
    header = _TITLE_HEIGHT if title is not None else 0.0
    height = nrows * _FILTER_CELL + header
    fig = _new_figure(ncols * _FILTER_CELL, height, dpi)
    images = [_display(W[i], channel) for i in range(FN)]
    _image_grid(fig, images, ncols, cmap="gray_r", top=1 - header / height)
    if title is not None:
        fig.suptitle(title, y=1 - 0.5 * header / height, va="center")
    return _finish(fig, target)


# --------------------------------------------------------------------------
# Classification results
# --------------------------------------------------------------------------


def _label_pairs(true, predicted):
    true = _labels(true, "true")
    predicted = _labels(predicted, "predicted")
    if true.size != predicted.size:
        raise ValueError(
            f"true and predicted must have one label per image each, "
            f"got {true.size} and {predicted.size}"
        )
    return true, predicted


def confusion_matrix(true, predicted, num_classes=None):
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    true, predicted : array_like, shape (N,)
        Integer class labels; a 2-D array (scores from ``predict``, or one-hot
        labels) stands for its ``argmax`` along axis 1.
    num_classes : int, optional
        Default: the largest label + 1.

    Returns
    -------
    matrix : ndarray of int64, shape (num_classes, num_classes)
        ``matrix[i, j]`` is the number of images of class ``i`` predicted as
        ``j`` (rows: true, columns: predicted, as scikit-learn). Its trace is
        the number of correct predictions; row sums count the classes.

    Raises
    ------
    ValueError
        Different lengths, negative labels or labels >= ``num_classes``, no
        labels and no ``num_classes``.
    TypeError
        Labels that are not integers.

    Examples
    --------
    >>> confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2])
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 1]])
    """
    true, predicted = _label_pairs(true, predicted)
    largest = max(int(true.max()), int(predicted.max())) if true.size else -1
    if num_classes is None:
        if largest < 0:
            raise ValueError("num_classes is needed when there are no labels")
        num_classes = largest + 1
    num_classes = check_int(num_classes, "num_classes", non_int_error=ValueError)
    if largest >= num_classes:
        raise ValueError(f"labels must be < num_classes = {num_classes}, got {largest}")
    counts = np.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def confusion_figure(matrix, path=None, *, class_names=None, title=None, dpi=DEFAULT_DPI):
    """A confusion matrix as a heat map with the counts written in the cells.

    Parameters
    ----------
    matrix : array_like, shape (K, K)
        Non-negative counts (or rates), rows true classes and columns
        predicted, as :func:`confusion_matrix` returns. Counts are written in
        the cells up to 30 classes.
    path : str or os.PathLike, optional
        Where to save the picture (``.png``, ``.svg`` or ``.pdf``), atomically.
    class_names : sequence of str, optional
        Tick labels (default: the class numbers); the ticks are labelled up to 30 classes.
    title : str, optional
        Default: the accuracy (trace over total) and the number of images.
    dpi : float, default 100
        A PNG is ``0.5 * K + 1.8`` inches square (kept between 4 and 16) times
        ``dpi``: 680 x 680 pixels for 10 classes.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        ``matrix`` not square, empty, negative or not finite; too few ``class_names``.
    TypeError
        ``matrix`` not numbers, ``class_names`` not strings.
    """
    target = _check_path(path)
    dpi = _check_dpi(dpi)
    title = _check_title(title)
    matrix = _real_array(matrix, "matrix")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
        raise ValueError(f"matrix must be square (K, K) with K >= 1, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or matrix.min() < 0:
        raise ValueError("matrix must hold finite values >= 0")
    K = matrix.shape[0]
    class_names = _check_class_names(class_names, K)

    low, high = _CONFUSION_SIZE_RANGE
    side = min(max(_CONFUSION_CELL * K + _CONFUSION_MARGIN, low), high)
    fig = _new_figure(side, side, dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues", interpolation="nearest", vmin=0)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if K <= _CONFUSION_MAX_TEXT:
        ticks = np.arange(K)
        ax.set_xticks(ticks, class_names if class_names else [str(k) for k in ticks])
        ax.set_yticks(ticks, class_names if class_names else [str(k) for k in ticks])
        if class_names:
            for label in ax.get_xticklabels():
                label.set_rotation(45)
                label.set_horizontalalignment("right")
        integral = matrix.dtype.kind in "iu" or np.all(matrix == np.round(matrix))
        threshold = matrix.max() / 2
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                f"{int(value)}" if integral else f"{value:.2g}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > threshold else "black",
            )
    total = matrix.sum()
    if title is None:
        accuracy = np.trace(matrix) / total if total > 0 else float("nan")
        count = f"{int(total)} images" if matrix.dtype.kind in "iu" else f"total {total:.3g}"
        title = f"confusion matrix: accuracy {accuracy:.2%}, {count}"
    ax.set_title(title)
    return _finish(fig, target)


def misclassified_figure(
    images,
    true,
    predicted,
    path=None,
    *,
    class_names=None,
    max_images=36,
    ncols=6,
    title=None,
    dpi=DEFAULT_DPI,
):
    """A grid of the images whose prediction is wrong, each titled ``pred X`` over ``true Y``.

    Parameters
    ----------
    images : array_like, shape (N, 1, H, W), (N, 3, H, W), (N, H, W) or (N, H*W)
        Any integer or float dtype; flattened images must be square (H == W).
        Each is drawn in grey (``cmap='gray'``) or colour (3 channels, scaled
        to [0, 1]) by its own range.
    true, predicted : array_like, shape (N,)
        Integer labels of every image (or 2-D scores / one-hot rows, whose
        argmax is taken). Only the images where they differ are drawn, in
        order, so the whole test set can be passed as is.
    path : str or os.PathLike, optional
        Where to save the picture (``.png``, ``.svg`` or ``.pdf``), atomically.
    class_names : sequence of str, optional
        Names for the labels (default: the numbers).
    max_images : int, default 36
        At most this many (the first ones) are drawn.
    ncols : int, default 6
        Images per row.
    title : str, optional
        Default: how many of the N are misclassified, and how many are shown.
    dpi : float, default 100
        A PNG is ``1.2`` inches per column (3 inches at least) by ``1.5`` per
        row plus 0.5 inch of header, times ``dpi``: 720 x 950 pixels for 36
        images in 6 columns. With nothing misclassified it is 4 x 1 inches
        and says "no misclassified images".

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Shapes that do not match or do not fit, negative labels, too few ``class_names``.
    TypeError
        Non-numeric images, non-integer labels.
    """
    target = _check_path(path)
    dpi = _check_dpi(dpi)
    title = _check_title(title)
    max_images = check_int(max_images, "max_images", non_int_error=ValueError)
    ncols = check_int(ncols, "ncols", non_int_error=ValueError)
    batch = _image_batch(images)
    true, predicted = _label_pairs(true, predicted)
    if true.size != batch.shape[0]:
        raise ValueError(
            f"true and predicted must have one label per image: {batch.shape[0]} images, "
            f"{true.size} labels"
        )
    num_classes = max(int(true.max()), int(predicted.max())) + 1 if true.size else 0
    class_names = _check_class_names(class_names, num_classes)

    wrong = np.flatnonzero(true != predicted)
    shown = wrong[:max_images]
    if shown.size == 0:
        fig = _new_figure(*_EMPTY_SIZE, dpi)
        fig.text(0.5, 0.5, title or "no misclassified images", ha="center", va="center")
        return _finish(fig, target)

    def name(label):
        return class_names[label] if class_names else str(label)

    columns = min(ncols, shown.size)
    rows = math.ceil(shown.size / columns)
    width = max(columns * _MISS_CELL[0], _MISS_MIN_WIDTH)
    height = rows * _MISS_CELL[1] + _MISS_HEADER
    fig = _new_figure(width, height, dpi)
    _image_grid(
        fig,
        [_display(batch[i]) for i in shown],
        columns,
        cmap="gray",
        # Two lines, so that long class names (Fashion-MNIST's) fit the cell.
        titles=[f"pred {name(predicted[i])}\ntrue {name(true[i])}" for i in shown],
        top=1 - _MISS_HEADER / height,
        bottom=0.05 / height,
        hspace=0.45,
    )
    if title is None:
        title = f"{wrong.size} misclassified of {true.size}"
        if wrong.size > shown.size:
            title += f" (the first {shown.size} shown)"
    fig.suptitle(title, y=1 - 0.5 * _MISS_HEADER / height, va="center")
    return _finish(fig, target)


# --------------------------------------------------------------------------
# Feature maps
# --------------------------------------------------------------------------


def _forward_pass(network):
    """A function that runs a batch through ``network`` and yields ``(name, layer, output)``.

    ``network.forward_layers`` for a cconv network; for a book network (any
    object with a ``layers`` OrderedDict or list), the same walk, its layers
    named as :func:`cconv.nets._base.named_layers` names them.
    """
    if isinstance(network, Network):
        return network.forward_layers
    layers = getattr(network, "layers", None)
    try:
        named = named_layers(layers)
    except TypeError:
        raise TypeError(
            "network must have a `layers` OrderedDict or list (a cconv or book network), "
            f"got {type(network).__name__} with layers={type(layers).__name__}"
        ) from None
    return lambda batch: forward_layers(named, batch)


def layer_activations(network, x):
    """The feature maps an input gives after each convolution and pooling layer.

    The input runs through ``network.layers`` in test mode (as
    ``network.predict(x)``), stopping at the first output that is not 4-D
    (the classifier). Recorded, in order:

    * each ``Convolution``'s output *after* the activation (``Relu`` or
      ``Sigmoid``) that directly follows it, named ``"Conv1+Relu1"``: the
      response a viewer sees (a bare ``"Conv1"`` when no activation follows);
    * each ``Pooling`` / ``AvgPooling`` output, named ``"Pool1"``.

    Other layers (LRN, Dropout, BatchNormalization) run but are not recorded.
    Layer names are the keys of ``network.layers``, or for a list (DeepConvNet)
    ``Conv<k>``, ``Relu<k>``, ``Pool<k>`` counted per kind. Like ``predict``,
    this overwrites the state the layers keep for backward.

    Parameters
    ----------
    network : a cconv network, or any object with a ``layers`` OrderedDict or list
    x : array_like, shape (C, H, W) or (N, C, H, W)
        Converted to ``network.dtype`` when the network has one.

    Returns
    -------
    list of (str, ndarray)
        Each array C-contiguous, shape (C', H', W') for a 3-D ``x`` or
        (N, C', H', W') for a 4-D one, in the network's dtype.

    Raises
    ------
    ValueError
        ``x`` not 3-D or 4-D (or not matching the first layer).
    TypeError
        ``network`` without layers, ``x`` not numbers.
    """
    forward_pass = _forward_pass(network)
    x = _real_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be one image (C, H, W) or a batch (N, C, H, W), got {x.shape}")
    single = x.ndim == 3
    dtype = getattr(network, "dtype", None)
    batch = x[np.newaxis] if single else x
    if dtype is not None:
        batch = batch.astype(dtype, copy=False)

    records = []
    pending = None  # a Convolution's (name, output), until we see whether an activation follows
    for name, layer, out in forward_pass(batch):
        if pending is not None:
            if isinstance(layer, _ACTIVATIONS):
                records.append((f"{pending[0]}+{name}", out))
                pending = None
                continue
            records.append(pending)
            pending = None
        if out.ndim != 4:
            break
        if isinstance(layer, Convolution):
            pending = (name, out)
        elif isinstance(layer, _POOLINGS):
            records.append((name, out))
    if pending is not None:
        records.append(pending)
    return [(name, np.ascontiguousarray(out[0] if single else out)) for name, out in records]


def _shape_text(shape):
    return "\u00d7".join(str(d) for d in shape)


def activations_figure(network, x, path=None, *, max_maps=16, title=None, dpi=DEFAULT_DPI):
    """The feature maps of one image through a network's convolution and pooling layers.

    One row per layer recorded by :func:`layer_activations`, after a first row
    showing the input: the first ``max_maps`` channels (feature maps) of the
    layer's output as small grey images (``cmap='gray'``: bright = strong
    response, each map scaled by its own range, a dead map black), with the
    layer's name and output shape (C x H x W) on the left. The first layer
    responds to edges and strokes of the input; deeper layers give coarser,
    more abstract patterns.

    Parameters
    ----------
    network : a cconv network, or any object with a ``layers`` OrderedDict or list
    x : array_like, shape (C, H, W) or (1, C, H, W)
        One image, as the network takes it.
    path : str or os.PathLike, optional
        Where to save the picture (``.png``, ``.svg`` or ``.pdf``), atomically.
    max_maps : int, default 16
        Feature maps drawn per layer.
    title : str, optional
        Written above the rows (0.4 inch more height).
    dpi : float, default 100
        A PNG is ``1.5 + 0.6 * columns`` by ``0.1 + 0.6 * rows`` inches times
        ``dpi``, where ``columns = min(max_maps, most channels of a row)`` and
        ``rows`` is 1 + the recorded layers: SimpleConvNet (30 filters) gives
        1110 x 190 pixels.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        ``x`` not one image, a bad ``max_maps``, or a network without
        convolution or pooling layers.
    TypeError
        ``network`` without layers, ``x`` not numbers.
    """
    target = _check_path(path)
    dpi = _check_dpi(dpi)
    title = _check_title(title)
    max_maps = check_int(max_maps, "max_maps", non_int_error=ValueError)
    image = _real_array(x, "x")
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"x must be one image, (C, H, W) or (1, C, H, W), got {image.shape}")
    records = layer_activations(network, image)
    if not records:
        raise ValueError("network has no Convolution or Pooling layer whose maps could be drawn")

    rows = [("input", image, [_display(image)] if image.shape[0] == 3 else list(image))]
    rows += [(name, maps, list(maps)) for name, maps in records]
    ncols = min(max_maps, max(len(maps) for _, _, maps in rows))
    header = _MAP_TOP + (_TITLE_HEIGHT if title is not None else 0.0)
    width = _LABEL_WIDTH + ncols * _MAP_CELL
    height = header + len(rows) * _MAP_CELL
    fig = _new_figure(width, height, dpi)
    grid = fig.add_gridspec(
        len(rows),
        ncols,
        left=_LABEL_WIDTH / width,
        right=1,
        bottom=0,
        top=1 - header / height,
        hspace=0.08,
        wspace=0.08,
    )
    for r, (name, array, maps) in enumerate(rows):
        for c, feature_map in enumerate(maps[:ncols]):
            _show_image(fig, grid[r, c], feature_map, "gray")
        box = grid[r, 0].get_position(fig)
        fig.text(
            0.08 / width,
            (box.y0 + box.y1) / 2,
            f"{name}\n{_shape_text(array.shape)}",
            ha="left",
            va="center",
            fontsize=8,
        )
    if title is not None:
        fig.suptitle(title, y=1 - 0.5 * _TITLE_HEIGHT / height, va="center")
    return _finish(fig, target)
