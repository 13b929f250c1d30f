"""``cconv bench``: run the kernel benchmark of a source checkout (``benchmarks/bench_kernels.py``).

The benchmarks live in the source tree, not in the installed package. This
entry point finds ``bench_kernels.py`` in the folder named by the
``CCONV_BENCHMARKS`` environment variable, else in the ``benchmarks/`` folder
beside the package (an in-place or editable install of a checkout), and hands
it the arguments.
"""

import os
import runpy
import sys

import cconv
from cconv.cli._common import EXIT_USAGE

#: The kernel benchmark's file in the benchmark folder.
SCRIPT = "bench_kernels.py"


def benchmark_folder():
    """The folder ``cconv bench`` looks in: ``$CCONV_BENCHMARKS``, else ``benchmarks/`` beside the package."""
    return os.environ.get("CCONV_BENCHMARKS") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(cconv.__file__))), "benchmarks"
    )


def run(argv):
    """``cconv bench ARGS``: the kernel benchmark, which parses ``ARGS`` itself; return its exit status."""
    folder = benchmark_folder()
    path = os.path.join(folder, SCRIPT)
    if not os.path.isfile(path):
        print(
            f"cconv: error: cconv bench runs benchmarks/{SCRIPT} of a source checkout, and {folder} has "
            "none: set CCONV_BENCHMARKS to a checkout's benchmarks folder "
            f"or run 'python benchmarks/{SCRIPT}' there",
            file=sys.stderr,
        )
        return EXIT_USAGE
    main = runpy.run_path(path, run_name="cconv_bench")["main"]
    try:
        return main(argv)
    except SystemExit as exc:  # its argparse: --help, or a bad option (status 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
