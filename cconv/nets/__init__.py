"""Networks of the book's chapters 7 and 8 on the cconv layers, and their parameter files.

* :class:`SimpleConvNet`: ``ch07/simple_convnet.py``.
* :class:`DeepConvNet`: ``ch08/deep_convnet.py``.
* :class:`LeNet`: LeNet-5, sigmoid or ReLU, average or max pooling.
* :class:`AlexNet`: conv-relu-LRN-pool blocks and a dropout classifier, for any input size.

Every network takes ``dtype`` (float64, as the book, or float32) and has the
book's ``params``, ``layers``, ``last_layer``, ``predict``, ``loss``,
``accuracy``, ``gradient``, ``numerical_gradient``, ``save_params`` and
``load_params``. Parameters are saved as ``.npz`` with the network's name and
settings, so :func:`load_network` rebuilds the network from the file alone.
"""

from cconv import params_io
from cconv.nets._base import Network
from cconv.nets.alexnet import AlexNet
from cconv.nets.deep_convnet import DeepConvNet
from cconv.nets.lenet import LeNet
from cconv.nets.simple_convnet import SimpleConvNet

__all__ = [
    "NETWORKS",
    "AlexNet",
    "DeepConvNet",
    "LeNet",
    "Network",
    "SimpleConvNet",
    "load_network",
]

#: Network classes by the name ``save_params`` records (each also has a ``short_name``: ``cconv train --net``).
NETWORKS = {cls.__name__: cls for cls in (SimpleConvNet, LeNet, DeepConvNet, AlexNet)}


def load_network(path, dtype=None):
    """Rebuild the network saved in ``path`` by ``save_params`` and load its parameters.

    The saved settings are checked against the arrays in the file before
    anything is built: the parameter shapes they imply are computed without
    allocating (:meth:`Network.param_shapes`) from the ``__meta__`` entry
    alone, and each stored array's header must show exactly its shape before
    its data is decompressed, so a file cannot make this allocate more than
    the network it describes.
    The network is then built with zero weights (nothing is drawn, the state
    of ``np.random`` is left as it was) and without a seed: its Dropout layers
    draw their masks from ``np.random``, as the book's, so ``np.random.seed``
    makes them repeat.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file written by a cconv network's ``save_params``.
    dtype : float32 or float64, optional
        Build the network in this dtype (converting the parameters) instead of
        the saved one.

    Raises
    ------
    ValueError
        If the file has no cconv metadata (a book ``.pkl`` or a plain ``.npz``:
        build the network yourself and call its ``load_params``), names an
        unknown network, has settings the network does not accept, or arrays
        that do not match the network its settings describe (naming the key).
    """
    meta = params_io.read_meta(path)  # only __meta__ is decompressed
    if meta is None:
        raise ValueError(
            f"{path}: no {params_io.META_KEY!r} entry naming the network; build the network "
            "and call its load_params() instead"
        )
    name = meta.get("net")
    if name not in NETWORKS:
        raise ValueError(f"{path}: unknown network {name!r} (known: {sorted(NETWORKS)})")
    cls = NETWORKS[name]
    config = meta.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the saved settings of {name} are not a JSON object")
    config = dict(config)
    config.pop("seed", None)
    if dtype is not None:
        config["dtype"] = dtype
    try:
        shapes = cls.param_shapes(**config)  # arithmetic only: nothing allocated yet
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the saved settings do not fit {name}: {exc}") from exc
    # each array's header is checked against the shapes before its data is decompressed
    wording = f"the saved settings of {name} give"
    loaded, meta = params_io.read_params(path, shapes, expected_text=wording)
    params_io.check_param_shapes(loaded, shapes, str(path), wording)
    try:
        net = cls._for_loading(config)
    except (TypeError, ValueError) as exc:  # a bad dtype
        raise ValueError(f"{path}: the saved settings do not fit {name}: {exc}") from exc
    net._assign(loaded, meta, str(path), cast=dtype is not None)
    return net
