"""cconv.plots: the pictures of training curves, filters, feature maps and classification results.

Each picture is saved to a temporary folder, read back and checked for its
size in pixels (inches times dpi), its colours (not blank) and, through the
returned Figure, what it draws. The recorded feature maps are compared with
the layers run by hand.
"""

import os
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

import cconv
from cconv import plots
from cconv.layers import Convolution, Dropout, Pooling, Relu

from cconv_testutils import load_mnist_test, shared_data

Figure = pytest.importorskip("matplotlib.figure").Figure
imread = pytest.importorskip("matplotlib.image").imread


def read_picture(path, height, width):
    """The PNG at ``path``, checked to be ``height`` x ``width`` RGBA and not blank."""
    image = imread(os.fspath(path))
    assert image.shape == (height, width, 4)
    assert image[..., :3].std() > 0.01
    return image


def gray(image):
    return image[..., :3].mean(axis=2)


def small_simple_convnet(**kwargs):
    conv = {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1}
    return cconv.SimpleConvNet(
        input_dim=(1, 10, 10), conv_param=conv, hidden_size=8, seed=0, **kwargs
    )


# --------------------------------------------------------------------------
# Import and saving
# --------------------------------------------------------------------------


def test_import_is_light_and_pyplot_is_never_used(tmp_path):
    # A fresh interpreter, run in tmp_path so that no source folder shadows the install.
    script = (
        "import sys, cconv.plots as p\n"
        "assert 'matplotlib' not in sys.modules\n"
        "p.accuracy_figure([0.5, 0.9], [0.4, 0.8], 'a.png')\n"
        "assert 'matplotlib.figure' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    read_picture(tmp_path / "a.png", 480, 640)


def test_figure_is_returned_unmanaged_and_nothing_written_without_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = plots.accuracy_figure([0.1, 0.2], [0.3, 0.4])
    assert isinstance(fig, Figure)
    assert fig.canvas.manager is None  # not registered with pyplot
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("dpi, size", [(100, (480, 640)), (50, (240, 320)), (72, (346, 461))])
def test_png_size_is_inches_times_dpi(tmp_path, dpi, size):
    path = tmp_path / "acc.png"
    plots.accuracy_figure([0.1, 0.5, 0.9], [0.2, 0.4, 0.8], path, dpi=dpi)
    read_picture(path, *size)


def test_pixel_size_survives_inexact_inches(tmp_path):
    # 2.9 inches * 100 dpi is 289.99999999999997 in floating point.
    w = np.ones((1, 1, 2, 2))
    w[0, 0, 0, 0] = 0
    fig = plots.filters_figure(w, tmp_path / "f.png", dpi=362.5)
    assert imread(tmp_path / "f.png").shape[:2] == (290, 290)
    assert fig.get_size_inches() * 362.5 == pytest.approx([290, 290], abs=0.05)


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"), ("", b"\x89PNG")])
def test_format_follows_the_suffix(tmp_path, suffix, magic):
    path = tmp_path / f"acc{suffix}"
    plots.accuracy_figure([0.1, 0.5], [0.2, 0.4], path)
    assert path.read_bytes().startswith(magic)


def test_a_failing_render_leaves_no_file(tmp_path, monkeypatch):
    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="renderer broke"):
        plots.accuracy_figure([0.1, 0.5], [0.2, 0.4], tmp_path / "new.png")
    assert os.listdir(tmp_path) == []

    old = tmp_path / "old.png"
    old.write_bytes(b"previous picture")
    with pytest.raises(RuntimeError):
        plots.filters_figure(np.ones((2, 1, 3, 3)), old)
    assert old.read_bytes() == b"previous picture"
    assert os.listdir(tmp_path) == ["old.png"]


def test_a_failing_write_leaves_the_old_file(tmp_path, monkeypatch):
    old = tmp_path / "old.png"
    old.write_bytes(b"previous picture")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr("cconv._atomic.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        plots.accuracy_figure([0.1, 0.5], [0.2, 0.4], old)
    assert old.read_bytes() == b"previous picture"
    assert os.listdir(tmp_path) == ["old.png"]


def test_missing_folder_raises_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        plots.accuracy_figure([0.1], [0.2], tmp_path / "no" / "acc.png")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"path": 3}, TypeError, "path"),
        ({"path": "acc.jpg"}, ValueError, "path"),
        ({"dpi": 0}, ValueError, "dpi"),
        ({"dpi": float("nan")}, ValueError, "dpi"),
        ({"dpi": True}, ValueError, "dpi"),
        ({"title": 5}, TypeError, "title"),
    ],
)
def test_common_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        plots.accuracy_figure([0.1], [0.2], **kwargs)


# --------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------


def test_accuracy_figure_draws_the_books_plot(tmp_path):
    train = [0.2, 0.6, 0.8, 0.9, 0.95]
    test = [0.25, 0.55, 0.75, 0.85, 0.9]
    path = tmp_path / "acc.png"
    fig = plots.accuracy_figure(train, test, path, title="SimpleConvNet")
    read_picture(path, 480, 640)
    (ax,) = fig.axes
    first, second = ax.lines
    np.testing.assert_array_equal(first.get_xdata(), np.arange(5))
    np.testing.assert_array_equal(first.get_ydata(), train)
    np.testing.assert_array_equal(second.get_ydata(), test)
    assert (first.get_marker(), second.get_marker()) == ("o", "s")
    assert (first.get_label(), second.get_label()) == ("train", "test")
    assert first.get_markevery() == 2
    assert ax.get_xlabel() == "epochs" and ax.get_ylabel() == "accuracy"
    assert ax.get_ylim() == (0, 1.0)
    assert ax.get_legend() is not None
    assert ax.get_title() == "SimpleConvNet"


@pytest.mark.parametrize(
    "train, test, error, match",
    [
        ([0.1, 0.2], [0.1], ValueError, "one value per epoch"),
        ([], [], ValueError, "non-empty"),
        ([[0.1]], [[0.1]], ValueError, "1-D"),
        ([0.1, 1.5], [0.1, 0.2], ValueError, r"train_acc .*\[0, 1\]"),
        ([0.1, 0.2], [0.1, float("nan")], ValueError, "test_acc"),
        (["a"], [0.1], TypeError, "train_acc"),
    ],
)
def test_accuracy_figure_refuses_bad_curves(train, test, error, match):
    with pytest.raises(error, match=match):
        plots.accuracy_figure(train, test)


def test_loss_figure_smooths_long_curves_and_leaves_gaps(tmp_path):
    rng = np.random.default_rng(0)
    loss = 2.3 * np.exp(-np.arange(600) / 100) + 0.1 * rng.random(600)
    loss[100] = np.nan
    loss[200] = np.inf
    path = tmp_path / "loss.png"
    fig = plots.loss_figure(loss, path)
    read_picture(path, 480, 640)
    (ax,) = fig.axes
    raw, mean = ax.lines
    assert np.isnan(raw.get_ydata()[200])  # inf left as a gap
    window = 600 // 50
    assert len(mean.get_xdata()) == 600 - window + 1
    expected = np.mean(loss[300 : 300 + window])
    assert mean.get_ydata()[300] == pytest.approx(expected)
    assert np.isfinite(mean.get_ydata()).all()  # a window with a NaN averages the rest
    assert ax.get_xlabel() == "iterations" and ax.get_ylabel() == "loss"

    (ax,) = plots.loss_figure(loss, smooth=1).axes
    assert len(ax.lines) == 1


def test_loss_figure_refuses_a_curve_without_numbers():
    with pytest.raises(ValueError, match="finite"):
        plots.loss_figure([np.nan, np.inf])
    with pytest.raises(ValueError, match="smooth"):
        plots.loss_figure([1.0, 0.5], smooth=0)


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------


def smooth_filters(n, size=5):
    """Oriented ramps and blobs, as trained first-layer filters look."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    filters = []
    for k in range(n):
        angle = np.pi * k / n
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        filters.append(ramp if k % 2 else np.exp(-4 * ((xx - ramp / 2) ** 2 + yy**2)))
    return np.array(filters)[:, np.newaxis]


def test_filters_figure_is_the_books_filter_show(tmp_path):
    rng = np.random.default_rng(1)
    W = 0.01 * rng.standard_normal((30, 1, 5, 5))
    path = tmp_path / "filters.png"
    fig = plots.filters_figure(W, path)
    read_picture(path, 320, 640)  # 8 columns x 4 rows of 0.8 inch
    assert len(fig.axes) == 30
    for i, ax in enumerate(fig.axes):
        (image,) = ax.get_images()
        np.testing.assert_array_equal(image.get_array(), W[i, 0])
        assert image.get_cmap().name == "gray_r"
        assert image.get_interpolation() == "nearest"
        assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    # Row major, 8 per row, the book's margins.
    positions = [ax.get_position(original=True) for ax in fig.axes]
    assert positions[0].x0 == pytest.approx(0) and positions[7].x1 == pytest.approx(1)
    assert positions[8].y1 < positions[0].y0
    assert positions[0].y1 == pytest.approx(1)


@pytest.mark.parametrize(
    "shape, kwargs, size",
    [
        ((6, 1, 5, 5), {}, (80, 480)),  # fewer filters than nx: one row of 6
        ((16, 1, 3, 3), {"nx": 4}, (320, 320)),
        ((30, 1, 5, 5), {"title": "W1"}, (360, 640)),  # 0.4 inch of title
        ((16, 16, 3, 3), {"channel": 5}, (160, 640)),
    ],
)
def test_filters_figure_sizes(tmp_path, shape, kwargs, size):
    W = np.random.default_rng(2).standard_normal(shape)
    fig = plots.filters_figure(W, tmp_path / "f.png", **kwargs)
    read_picture(tmp_path / "f.png", *size)
    assert len(fig.axes) == shape[0]
    if "channel" in kwargs:
        np.testing.assert_array_equal(fig.axes[3].get_images()[0].get_array(), W[3, 5])


def test_filters_figure_draws_rgb_filters_in_colour(tmp_path):
    W = np.random.default_rng(3).standard_normal((5, 3, 4, 4))
    fig = plots.filters_figure(W, tmp_path / "rgb.png")
    image = read_picture(tmp_path / "rgb.png", 80, 400)
    assert np.abs(image[..., 0] - image[..., 1]).max() > 0.1  # not grey
    shown = fig.axes[2].get_images()[0].get_array()
    assert shown.shape == (4, 4, 3)
    assert shown.min() == 0 and shown.max() == 1
    expected = np.moveaxis(W[2], 0, -1)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(shown, expected)
    # channel= still draws one channel in grey
    fig = plots.filters_figure(W, channel=1)
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), W[0, 1])


@pytest.mark.parametrize("kind", ["trained-looking", "random"])
def test_filters_figure_shows_each_filter(tmp_path, kind):
    """The pixels of the picture are the filters' weights through gray_r (dark = large)."""
    W = smooth_filters(16) if kind != "random" else np.random.default_rng(4).random((16, 1, 5, 5))
    path = tmp_path / "filters.png"
    fig = plots.filters_figure(W, path)
    picture = gray(read_picture(path, 160, 640))
    height, width = picture.shape
    for i, ax in enumerate(fig.axes):
        box = ax.get_position()  # where the drawn (square) image sits
        x0, y0 = box.x0 * width, (1 - box.y1) * height
        step_x, step_y = box.width * width / 5, box.height * height / 5
        centres = np.arange(5) + 0.5
        rows = (y0 + centres * step_y).astype(int)
        cols = (x0 + centres * step_x).astype(int)
        drawn = picture[np.ix_(rows, cols)]
        w = W[i, 0]
        expected = 1 - (w - w.min()) / (w.max() - w.min())  # each filter by its own range
        np.testing.assert_allclose(drawn, expected, atol=0.02)


@pytest.mark.parametrize(
    "W, kwargs, error, match",
    [
        (np.ones((3, 5, 5)), {}, ValueError, "W must be"),
        (np.ones((0, 1, 5, 5)), {}, ValueError, "W must be"),
        (np.ones((3, 1, 5, 5)), {"nx": 0}, ValueError, "nx"),
        (np.ones((3, 1, 5, 5)), {"nx": 2.0}, ValueError, "nx"),
        (np.ones((3, 2, 5, 5)), {"channel": 2}, ValueError, "channel"),
        (np.ones((3, 2, 5, 5)), {"channel": -1}, ValueError, "channel"),
        (np.ones((3, 1, 5, 5), complex), {}, TypeError, "W must hold"),
        (np.full((3, 1, 5, 5), "a"), {}, TypeError, "W must hold"),
    ],
)
def test_filters_figure_refuses_bad_arguments(W, kwargs, error, match):
    with pytest.raises(error, match=match):
        plots.filters_figure(W, **kwargs)


# --------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------


def test_confusion_matrix_matches_a_loop(rng):
    true = rng.integers(0, 7, size=500)
    predicted = np.where(rng.random(500) < 0.7, true, rng.integers(0, 7, size=500))
    matrix = plots.confusion_matrix(true, predicted, 7)
    expected = np.zeros((7, 7), np.int64)
    for t, p in zip(true, predicted, strict=True):
        expected[t, p] += 1
    assert matrix.dtype == np.int64 and matrix.shape == (7, 7)
    np.testing.assert_array_equal(matrix, expected)
    # rows are the true classes, columns the predictions; the trace counts the correct ones
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(true, minlength=7))
    np.testing.assert_array_equal(matrix.sum(axis=0), np.bincount(predicted, minlength=7))
    assert np.trace(matrix) == np.sum(true == predicted)


def test_confusion_matrix_conventions():
    matrix = plots.confusion_matrix([0, 0, 1], [1, 1, 1])
    np.testing.assert_array_equal(matrix, [[0, 2], [0, 1]])  # two 0s predicted as 1
    assert plots.confusion_matrix([2], [2], num_classes=4).shape == (4, 4)
    assert plots.confusion_matrix([], [], num_classes=3).sum() == 0
    # scores and one-hot rows stand for their argmax
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    one_hot = np.eye(2)[[1, 1]]
    np.testing.assert_array_equal(plots.confusion_matrix(one_hot, scores), [[0, 0], [1, 1]])
    # any integer dtype
    labels = np.array([0, 1, 2], np.uint8)
    np.testing.assert_array_equal(plots.confusion_matrix(labels, labels), np.eye(3))


@pytest.mark.parametrize(
    "true, predicted, num_classes, error, match",
    [
        ([0, 1], [0], None, ValueError, "one label per image"),
        ([0, 3], [0, 1], 3, ValueError, "< num_classes"),
        ([0, -1], [0, 1], None, ValueError, "true must hold labels >= 0"),
        ([0.0, 1.0], [0, 1], None, TypeError, "true must hold integer"),
        ([0, 1], [True, False], None, TypeError, "predicted"),
        ([], [], None, ValueError, "num_classes"),
        ([0], [0], 0, ValueError, "num_classes"),
        (np.zeros((2, 2, 2), int), [0, 1], None, ValueError, "1-D"),
    ],
)
def test_confusion_matrix_refuses_bad_labels(true, predicted, num_classes, error, match):
    with pytest.raises(error, match=match):
        plots.confusion_matrix(true, predicted, num_classes)


def test_confusion_figure_writes_the_counts(tmp_path, rng):
    true = rng.integers(0, 10, size=300)
    predicted = np.where(rng.random(300) < 0.8, true, rng.integers(0, 10, size=300))
    matrix = plots.confusion_matrix(true, predicted, 10)
    path = tmp_path / "confusion.png"
    fig = plots.confusion_figure(matrix, path, class_names=[f"digit {k}" for k in range(10)])
    read_picture(path, 680, 680)  # 0.5 * 10 + 1.8 inches
    (ax,) = fig.axes
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), matrix)
    texts = [int(t.get_text()) for t in ax.texts]
    assert texts == matrix.ravel().tolist()
    assert [t.get_text() for t in ax.get_xticklabels()][3] == "digit 3"
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    accuracy = np.trace(matrix) / 300
    assert f"{accuracy:.2%}" in ax.get_title()


def test_confusion_figure_sizes_and_rates(tmp_path):
    plots.confusion_figure(np.eye(2, dtype=int) * 5, tmp_path / "two.png")
    read_picture(tmp_path / "two.png", 400, 400)  # at least 4 inches
    fig = plots.confusion_figure(np.full((100, 100), 3), tmp_path / "many.png")
    read_picture(tmp_path / "many.png", 1600, 1600)  # at most 16 inches
    assert len(fig.axes[0].texts) == 0  # no counts written for 100 classes
    rates = np.array([[0.75, 0.25], [0.1, 0.9]])
    fig = plots.confusion_figure(rates)
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.75", "0.25", "0.1", "0.9"]


@pytest.mark.parametrize(
    "matrix, kwargs, error, match",
    [
        (np.ones((2, 3)), {}, ValueError, "square"),
        (np.ones((0, 0)), {}, ValueError, "square"),
        (np.ones(4), {}, ValueError, "square"),
        (-np.ones((2, 2)), {}, ValueError, ">= 0"),
        (np.full((2, 2), np.nan), {}, ValueError, "finite"),
        (np.ones((2, 2)), {"class_names": ["a"]}, ValueError, "class_names"),
        (np.ones((2, 2)), {"class_names": "ab"}, TypeError, "class_names"),
        (np.ones((2, 2)), {"class_names": [0, 1]}, TypeError, "class_names"),
    ],
)
def test_confusion_figure_refuses_bad_arguments(matrix, kwargs, error, match):
    with pytest.raises(error, match=match):
        plots.confusion_figure(matrix, **kwargs)


# --------------------------------------------------------------------------
# Misclassified images
# --------------------------------------------------------------------------


def test_misclassified_figure_without_mistakes(tmp_path):
    path = tmp_path / "none.png"
    fig = plots.misclassified_figure(np.zeros((0, 1, 28, 28)), [], [], path)
    read_picture(path, 100, 400)
    assert [t.get_text() for t in fig.texts] == ["no misclassified images"]
    assert fig.axes == []
    # all right: the same picture
    labels = [1, 2, 3]
    fig = plots.misclassified_figure(np.ones((3, 4, 4)), labels, labels, path)
    read_picture(path, 100, 400)
    assert fig.axes == []


def test_misclassified_figure_with_one_image(tmp_path, rng):
    image = rng.random((1, 1, 28, 28))
    path = tmp_path / "one.png"
    fig = plots.misclassified_figure(
        image, [5], [3], path, class_names=[str(k) for k in range(9)] + ["nine"]
    )
    read_picture(path, 230, 300)  # 3 inches wide at least, 1.5 + 0.8 high
    (ax,) = fig.axes
    assert ax.get_title() == "pred 3\ntrue 5"
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), image[0, 0])
    assert fig.get_suptitle() == "1 misclassified of 1"


def test_misclassified_figure_with_fifty_images(tmp_path, rng):
    images = rng.random((50, 784))
    true = rng.integers(0, 10, size=50)
    predicted = (true + 1) % 10
    predicted[[3, 7]] = true[[3, 7]]  # right: not drawn
    path = tmp_path / "fifty.png"
    fig = plots.misclassified_figure(images, true, predicted, path)
    read_picture(path, 980, 720)  # 36 images in 6 columns: 6 * 1.5 + 0.8 inches high
    assert len(fig.axes) == 36
    wrong = [i for i in range(50) if i not in (3, 7)]
    for ax, i in zip(fig.axes, wrong[:36], strict=True):
        assert ax.get_title() == f"pred {predicted[i]}\ntrue {true[i]}"
        np.testing.assert_array_equal(ax.get_images()[0].get_array(), images[i].reshape(28, 28))
    assert fig.get_suptitle() == "48 misclassified of 50 (the first 36 shown)"

    fig = plots.misclassified_figure(images, true, predicted, max_images=10, ncols=4)
    assert len(fig.axes) == 10
    assert fig.get_size_inches() * 100 == pytest.approx([480, 530], abs=0.05)


@pytest.mark.parametrize("shape", [(4, 1, 6, 6), (4, 6, 6), (4, 36), (4, 3, 6, 6)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_misclassified_figure_image_layouts(tmp_path, shape, dtype):
    images = (np.random.default_rng(5).random(shape) * 255).astype(dtype)
    scores = np.eye(3)[[0, 1, 2, 0]]  # 2-D scores: argmax taken
    fig = plots.misclassified_figure(images, [1, 1, 1, 1], scores, tmp_path / "m.png")
    read_picture(tmp_path / "m.png", 230, 360)
    assert len(fig.axes) == 3
    expected = (6, 6, 3) if shape[1:2] == (3,) else (6, 6)
    assert fig.axes[0].get_images()[0].get_array().shape == expected


@pytest.mark.parametrize(
    "images, true, predicted, kwargs, error, match",
    [
        (np.ones((2, 35)), [0, 1], [1, 0], {}, ValueError, "square"),
        (np.ones((2, 2, 5, 5)), [0, 1], [1, 0], {}, ValueError, "images must be"),
        (np.ones((2, 5, 5)), [0, 1, 2], [1, 0, 2], {}, ValueError, "one label per image"),
        (np.ones((2, 5, 5)), [0, 1], [1], {}, ValueError, "one label per image"),
        (np.ones((2, 5, 5)), [0, 4], [1, 0], {"class_names": ["a"]}, ValueError, "class_names"),
        (np.ones((2, 5, 5)), [0, 1], [1.0, 0.0], {}, TypeError, "predicted"),
        (np.ones((2, 5, 5)), [0, 1], [1, 0], {"max_images": 0}, ValueError, "max_images"),
        (np.ones((2, 5, 5)), [0, 1], [1, 0], {"ncols": -1}, ValueError, "ncols"),
        (np.full((2, 5, 5), "x"), [0, 1], [1, 0], {}, TypeError, "images"),
    ],
)
def test_misclassified_figure_refuses_bad_arguments(images, true, predicted, kwargs, error, match):
    with pytest.raises(error, match=match):
        plots.misclassified_figure(images, true, predicted, **kwargs)


# --------------------------------------------------------------------------
# Feature maps
# --------------------------------------------------------------------------


def run_layers(layers, x, count):
    """``x`` through the first ``count`` layers, by hand, in test mode."""
    for layer in layers[:count]:
        x = layer.forward(x, False) if isinstance(layer, Dropout) else layer.forward(x)
    return x


def test_layer_activations_of_simple_convnet(rng):
    net = small_simple_convnet()
    x = rng.random((1, 10, 10))
    records = plots.layer_activations(net, x)
    assert [name for name, _ in records] == ["Conv1+Relu1", "Pool1"]
    assert [maps.shape for _, maps in records] == [(4, 8, 8), (4, 4, 4)]
    layers = list(net.layers.values())
    np.testing.assert_array_equal(records[0][1], run_layers(layers, x[None], 2)[0])
    np.testing.assert_array_equal(records[1][1], run_layers(layers, x[None], 3)[0])
    assert all(maps.flags.c_contiguous and maps.dtype == np.float64 for _, maps in records)
    # a batch keeps its batch axis; float32 networks compute in float32
    batch = rng.random((3, 1, 10, 10))
    pool = plots.layer_activations(net, batch)[1][1]
    assert pool.shape == (3, 4, 4, 4)
    np.testing.assert_array_equal(pool, run_layers(layers, batch, 3))
    net32 = small_simple_convnet(dtype=np.float32)
    assert plots.layer_activations(net32, x)[1][1].dtype == np.float32


def test_layer_activations_of_lenet(rng):
    net = cconv.LeNet(seed=0)  # sigmoid and average pooling
    x = rng.random((1, 28, 28))
    records = plots.layer_activations(net, x)
    assert [name for name, _ in records] == ["Conv1+Act1", "Pool1", "Conv2+Act2", "Pool2"]
    assert [maps.shape for _, maps in records] == [
        (6, 28, 28),
        (6, 14, 14),
        (16, 10, 10),
        (16, 5, 5),
    ]
    expected = run_layers(list(net.layers.values()), x[None], 6)[0]
    np.testing.assert_allclose(records[-1][1], expected, rtol=1e-12, atol=0)


def test_layer_activations_of_deep_convnet(rng):
    net = cconv.DeepConvNet(seed=0)  # the book's 28x28 network; layers is a list
    x = rng.random((1, 1, 28, 28))
    records = plots.layer_activations(net, x)
    names = [name for name, _ in records]
    assert names == [
        "Conv1+Relu1", "Conv2+Relu2", "Pool1",
        "Conv3+Relu3", "Conv4+Relu4", "Pool2",
        "Conv5+Relu5", "Conv6+Relu6", "Pool3",
    ]  # fmt: skip
    assert records[-1][1].shape == (1, 64, 4, 4)
    assert records[4][1].shape == (1, 32, 16, 16)  # the book's pad 2 on conv4
    np.testing.assert_array_equal(records[-1][1], run_layers(net.layers, x, 15))
    np.testing.assert_array_equal(records[3][1], run_layers(net.layers, x, 7))


def test_layer_activations_of_alexnet(rng):
    net = cconv.AlexNet(input_dim=(3, 32, 32), output_size=10, width=0.05, hidden_size=8, seed=0)
    x = rng.random((3, 32, 32))
    records = plots.layer_activations(net, x)
    assert [name for name, _ in records] == [
        "Conv1+Relu1", "Pool1", "Conv2+Relu2", "Pool2",
        "Conv3+Relu3", "Conv4+Relu4", "Conv5+Relu5", "Pool5",
    ]  # fmt: skip
    layers = list(net.layers.values())
    np.testing.assert_array_equal(records[-1][1], run_layers(layers, x[None], 15)[0])


def test_layer_activations_run_in_test_mode():
    """Dropout gets train_flg=False (scales by 1 - ratio, no random mask); a bare conv is kept."""

    class Net:
        pass

    net = Net()
    W = np.ones((2, 1, 3, 3))
    b = np.zeros(2)
    pool = Pooling(2, 2, stride=2)
    net.layers = [Convolution(W, b), Dropout(0.5), pool, Convolution(np.ones((2, 2, 1, 1)), b)]
    x = np.arange(36.0).reshape(1, 1, 6, 6)
    records = plots.layer_activations(net, x)
    assert [name for name, _ in records] == ["Conv1", "Pool1", "Conv2"]
    conv = Convolution(W, b).forward(x)
    np.testing.assert_array_equal(records[0][1], conv)
    np.testing.assert_array_equal(records[1][1], Pooling(2, 2, stride=2).forward(conv * 0.5))

    net.layers = OrderedDict(first=Convolution(W, b), act=Relu(), pool=Pooling(2, 2, stride=2))
    assert [name for name, _ in plots.layer_activations(net, x)] == ["first+act", "pool"]


@pytest.mark.parametrize(
    "network, x, error, match",
    [
        (object(), np.ones((1, 10, 10)), TypeError, "layers"),
        ("net", np.ones((1, 10, 10)), TypeError, "layers"),
        (None, np.ones((10, 10)), ValueError, "x must be"),
        (None, np.ones((1, 1, 1, 10, 10)), ValueError, "x must be"),
        (None, np.full((1, 10, 10), "a"), TypeError, "x must hold"),
        (None, np.ones((2, 10, 10)), ValueError, "channels"),
    ],
)
def test_layer_activations_refuse_bad_arguments(network, x, error, match):
    network = small_simple_convnet() if network is None else network
    with pytest.raises(error, match=match):
        plots.layer_activations(network, x)


def test_activations_figure_of_simple_convnet(tmp_path, rng):
    net = cconv.SimpleConvNet(seed=0)  # 30 filters
    x = rng.random((1, 1, 28, 28))
    path = tmp_path / "act.png"
    fig = plots.activations_figure(net, x, path)
    # 1.5 + 16 * 0.6 inches wide; 0.1 + 3 rows * 0.6 high (input, Conv1+Relu1, Pool1)
    read_picture(path, 190, 1110)
    assert len(fig.axes) == 1 + 16 + 16
    labels = [t.get_text() for t in fig.texts]
    assert labels == ["input\n1\u00d728\u00d728", "Conv1+Relu1\n30\u00d724\u00d724",
                      "Pool1\n30\u00d712\u00d712"]  # fmt: skip
    pool = plots.layer_activations(net, x)[1][1]
    np.testing.assert_array_equal(fig.axes[-1].get_images()[0].get_array(), pool[0, 15])
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), x[0, 0])

    fig = plots.activations_figure(net, x[0], tmp_path / "few.png", max_maps=4, title="net")
    read_picture(tmp_path / "few.png", 230, 390)  # 0.4 inch more for the title
    assert len(fig.axes) == 1 + 4 + 4
    assert fig.get_suptitle() == "net"


def test_activations_figure_of_deep_convnet(tmp_path, rng):
    net = cconv.DeepConvNet(seed=0)
    path = tmp_path / "deep.png"
    fig = plots.activations_figure(net, rng.random((1, 28, 28)), path, max_maps=8)
    read_picture(path, 610, 630)  # 1 + 9 rows; 8 columns
    assert len(fig.axes) == 1 + 9 * 8
    assert fig.texts[-1].get_text() == "Pool3\n64\u00d74\u00d74"


def test_activations_figure_of_colour_and_small_networks(tmp_path, rng):
    net = cconv.AlexNet(input_dim=(3, 32, 32), output_size=10, width=0.05, hidden_size=8, seed=0)
    fig = plots.activations_figure(net, rng.random((3, 32, 32)), tmp_path / "alex.png")
    assert fig.axes[0].get_images()[0].get_array().shape == (32, 32, 3)  # the input in colour
    assert len(fig.texts) == 1 + 8
    widest = max(maps.shape[0] for _, maps in plots.layer_activations(net, rng.random((3, 32, 32))))
    columns = min(16, widest)
    read_picture(tmp_path / "alex.png", 550, round((1.5 + 0.6 * columns) * 100))

    fig = plots.activations_figure(small_simple_convnet(), rng.random((1, 10, 10)))
    assert len(fig.axes) == 1 + 4 + 4
    assert fig.get_size_inches() * 100 == pytest.approx([390, 190], abs=0.05)


def test_activations_figure_refuses_bad_arguments(rng):
    net = small_simple_convnet()
    with pytest.raises(ValueError, match="one image"):
        plots.activations_figure(net, rng.random((2, 1, 10, 10)))
    with pytest.raises(ValueError, match="max_maps"):
        plots.activations_figure(net, rng.random((1, 10, 10)), max_maps=0)

    class Mlp:
        def __init__(self):
            self.layers = [Relu()]

    with pytest.raises(ValueError, match="no Convolution or Pooling"):
        plots.activations_figure(Mlp(), rng.random((1, 4, 4)))


# --------------------------------------------------------------------------
# The book's trained network on MNIST (shared data)
# --------------------------------------------------------------------------

BOOK_PARAMS = shared_data() / "book-params" / "simple_convnet_params.pkl"


@pytest.mark.skipif(
    not BOOK_PARAMS.is_file() or not (shared_data() / "mnist-test").is_dir(),
    reason=f"shared data not found at {shared_data()}",
)
def test_book_network_pictures(tmp_path):
    """Trained filters are smoother than random ones; the pictures of a real run draw."""
    np.random.seed(0)
    random_net = cconv.SimpleConvNet()
    trained = cconv.SimpleConvNet()
    trained.load_params(BOOK_PARAMS)

    def roughness(W):
        """Mean jump between neighbouring weights, relative to the filters' spread."""
        jumps = np.abs(np.diff(W, axis=3)).mean() + np.abs(np.diff(W, axis=2)).mean()
        return jumps / W.std()

    assert roughness(trained.params["W1"]) < 0.8 * roughness(random_net.params["W1"])
    for name, net in (("random", random_net), ("trained", trained)):
        plots.filters_figure(net.params["W1"], tmp_path / f"{name}.png")
        read_picture(tmp_path / f"{name}.png", 320, 640)

    x, t = load_mnist_test()
    x, t = x[:500], t[:500]
    predicted = np.argmax(trained.predict(x), axis=1)
    matrix = plots.confusion_matrix(t, predicted, 10)
    assert np.trace(matrix) == np.sum(predicted == t) > 450
    plots.confusion_figure(matrix, tmp_path / "confusion.png")
    fig = plots.misclassified_figure(x, t, predicted, tmp_path / "wrong.png")
    assert len(fig.axes) == min(36, int(np.sum(predicted != t)))
    plots.activations_figure(trained, x[0], tmp_path / "maps.png")
    read_picture(tmp_path / "maps.png", 190, 1110)
