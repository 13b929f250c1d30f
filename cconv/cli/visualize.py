"""``cconv visualize``: the first layer's filters and one test image's feature maps through the network."""

import os

from cconv.cli import run_folder
from cconv.cli._common import UsageError, add_params_command, int_at_least, output_dir, save_figures

HELP = "filters.png and activations.png (feature maps of one test image through each layer)"


def add_parser(subparsers):
    """Add ``visualize`` to the command's subparsers."""
    parser = add_params_command(subparsers, "visualize", HELP, run)
    parser.add_argument("--index", type=int_at_least(0), default=0, help="which test image (default 0)")


def run(args, console):
    """Run ``cconv visualize``; return the exit status."""
    from cconv import plots

    network, data = run_folder.open_trained(args, console)
    if args.index >= data.x_test.shape[0]:
        raise UsageError(
            f"--index: expected an index below {data.x_test.shape[0]} (the test images), got {args.index}"
        )
    out = output_dir(args.out or os.path.dirname(os.path.abspath(args.params)))

    image = data.x_test[args.index].astype(network.dtype, copy=False)
    label = data.classes[int(data.t_test[args.index])]
    filters_path = os.path.join(out, "filters.png")
    activations_path = os.path.join(out, "activations.png")
    activations = plots.layer_activations(network, image)
    figures = {
        plots.filters_figure(network.params["W1"], filters_path): filters_path,
        plots.activations_figure(
            network, image, activations_path,
            title=f"{type(network).__name__}: {data.name} test image {args.index} ({label})",
        ): activations_path,
    }
    save_figures(console, args.show, figures)
    console.result({
        "params": os.path.abspath(args.params),
        "network": type(network).__name__,
        "dataset": data.name,
        "index": args.index,
        "label": label,
        "layers": [{"name": name, "shape": list(values.shape)} for name, values in activations],
        "filters_png": filters_path,
        "activations_png": activations_path,
    })
    return 0
