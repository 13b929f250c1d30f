"""The book's ``common`` package, made of cconv (see :mod:`cconv.book`).

Put :func:`cconv.book.shim_path` first on ``sys.path`` (``python -m cconv.book SCRIPT``
does) and ``import common.layers`` gives cconv's layers under the book's names.

A module the shim does not have (the book's ``multi_layer_net``,
``multi_layer_net_extend``, ``three_layer_net``) is looked up next in any other
``common/`` folder on ``sys.path`` when this package is first imported, such as the
book's own after its scripts' ``sys.path.append(os.pardir)``; the shim's modules come
first, so such a module builds on cconv's layers.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
