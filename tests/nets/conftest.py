"""Puts this folder on ``sys.path`` so the network tests can ``import nets_testutils``
whatever pytest's import mode (as ``tests/conftest.py`` does for ``tests/``)."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
