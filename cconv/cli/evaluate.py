"""``cconv evaluate``: test accuracy, a confusion matrix and the misclassified images of a trained network."""

import os

import numpy as np

from cconv.cli import run_folder
from cconv.cli._common import DEFAULT_BATCH_SIZE, add_params_command, output_dir, save_figures

HELP = "test accuracy, a confusion matrix and misclassified.png of a trained network"


def add_parser(subparsers):
    """Add ``evaluate`` to the command's subparsers."""
    add_params_command(subparsers, "evaluate", HELP, run)


def confusion_text(matrix, classes):
    """The confusion matrix as text: a row per true class (named), a column per predicted label."""
    corner = "true\\pred"
    label_width = max(len(corner), *(len(str(c)) for c in classes)) + 2
    width = max(5, len(str(len(classes) - 1)), len(str(int(matrix.max(initial=0)))))
    head = corner.ljust(label_width) + " ".join(str(c).rjust(width) for c in range(len(classes)))
    rows = [
        str(classes[i]).ljust(label_width) + " ".join(f"{v:{width}d}" for v in row)
        for i, row in enumerate(matrix)
    ]
    return "\n".join([head, *rows])


def run(args, console):
    """Run ``cconv evaluate``; return the exit status."""
    from cconv import plots

    network, data = run_folder.open_trained(args, console)
    out = output_dir(args.out or os.path.dirname(os.path.abspath(args.params)))

    predicted = network.predict_labels(data.x_test.astype(network.dtype, copy=False), DEFAULT_BATCH_SIZE)
    true = data.t_test.astype(np.int64)
    accuracy = float(np.mean(predicted == true))
    matrix = plots.confusion_matrix(true, predicted, len(data.classes))
    console.say(
        f"{type(network).__name__} on the {data.name} test set ({len(true)} images): "
        f"accuracy {accuracy:.4f} ({int(np.sum(predicted != true))} misclassified)"
    )
    console.say(confusion_text(matrix, data.classes))

    misclassified_path = os.path.join(out, "misclassified.png")
    confusion_path = os.path.join(out, "confusion.png")
    figures = {
        plots.misclassified_figure(
            data.x_test, true, predicted, misclassified_path, class_names=data.classes
        ): misclassified_path,
        plots.confusion_figure(matrix, confusion_path, class_names=data.classes): confusion_path,
    }
    save_figures(console, args.show, figures)
    console.result({
        "params": os.path.abspath(args.params),
        "network": type(network).__name__,
        "dataset": data.name,
        "test_images": len(true),
        "accuracy": accuracy,
        "confusion_matrix": matrix.tolist(),
        "classes": list(data.classes),
        "misclassified_png": misclassified_path,
        "confusion_png": confusion_path,
    })
    return 0
