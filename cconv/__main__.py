"""``python -m cconv``: the ``cconv`` command (see :mod:`cconv.cli`)."""

import sys

from cconv.cli import main

if __name__ == "__main__":
    sys.exit(main())
