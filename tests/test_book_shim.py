"""The book's own scripts on cconv through its ``common``/``dataset`` shim (:mod:`cconv.book`).

The tests write book-style scripts into ``tmp_path`` as the book's repository lays
them out (``ch07/simple_convnet.py``, ``ch08/deep_convnet.py``, their imports
``from common.layers import *`` after ``sys.path.append(os.pardir)``, ...), run them
with ``python -m cconv.book`` in a subprocess, from the chapter's folder as the book
does, and compare what they write with cconv's own networks. The networks are the
book's classes as the book writes them, with one change: ``load_params`` reads the
book's ``.pkl`` through cconv's restricted reader instead of ``pickle.load``.

The book's trained parameters and the MNIST test set come from the read-only shared
data (``cconv_testutils.shared_data()``); the tests that need them skip, with the
reason, where it is absent.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import cconv
import cconv.datasets
import cconv.functions
import cconv.gradient
import cconv.layers
import cconv.optim
from cconv.book import shim_path
from cconv.book.__main__ import main as book_main
from cconv.params_io import read_params

from cconv_testutils import load_mnist_test, shared_data

#: Images of the MNIST test set the scripts predict, and the batch size they use.
N_IMAGES = 1000
BATCH = 100

#: Seconds a script may take (the slowest, the DeepConvNet one, takes about 2).
TIMEOUT = 300


def book_params_path(name):
    """The book's trained parameters ``<name>_params.pkl`` (as tests/nets/nets_testutils.py)."""
    return shared_data() / "book-params" / f"{name}_params.pkl"


requires_shared_data = pytest.mark.skipif(
    not (shared_data() / "mnist-test").is_dir() or not (shared_data() / "book-params").is_dir(),
    reason=f"shared data not found at {shared_data()} (set CCONV_SHARED_DATA to the folder "
    "holding mnist-test/ and book-params/)",
)


# --------------------------------------------------------------------------
# The book's scripts
# --------------------------------------------------------------------------

#: ch07/simple_convnet.py, the book's class (its load_params reads through cconv's reader).
SIMPLE_CONVNET = """\
# coding: utf-8
import sys, os
sys.path.append(os.pardir)  # to import the files of the parent folder
import pickle
import numpy as np
from collections import OrderedDict
from common.layers import *
from common.gradient import numerical_gradient
from cconv.params_io import read_params  # the test's one change, see load_params


class SimpleConvNet:
    \"\"\"A simple ConvNet

    conv - relu - pool - affine - relu - affine - softmax
    \"\"\"
    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={'filter_num':30, 'filter_size':5, 'pad':0, 'stride':1},
                 hidden_size=100, output_size=10, weight_init_std=0.01):
        filter_num = conv_param['filter_num']
        filter_size = conv_param['filter_size']
        filter_pad = conv_param['pad']
        filter_stride = conv_param['stride']
        input_size = input_dim[1]
        conv_output_size = (input_size - filter_size + 2*filter_pad) / filter_stride + 1
        pool_output_size = int(filter_num * (conv_output_size/2) * (conv_output_size/2))

        # weights
        self.params = {}
        self.params['W1'] = weight_init_std * \\
                            np.random.randn(filter_num, input_dim[0], filter_size, filter_size)
        self.params['b1'] = np.zeros(filter_num)
        self.params['W2'] = weight_init_std * \\
                            np.random.randn(pool_output_size, hidden_size)
        self.params['b2'] = np.zeros(hidden_size)
        self.params['W3'] = weight_init_std * \\
                            np.random.randn(hidden_size, output_size)
        self.params['b3'] = np.zeros(output_size)

        # layers
        self.layers = OrderedDict()
        self.layers['Conv1'] = Convolution(self.params['W1'], self.params['b1'],
                                           conv_param['stride'], conv_param['pad'])
        self.layers['Relu1'] = Relu()
        self.layers['Pool1'] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers['Affine1'] = Affine(self.params['W2'], self.params['b2'])
        self.layers['Relu2'] = Relu()
        self.layers['Affine2'] = Affine(self.params['W3'], self.params['b3'])

        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)

        return x

    def loss(self, x, t):
        y = self.predict(x)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        if t.ndim != 1 : t = np.argmax(t, axis=1)

        acc = 0.0

        for i in range(int(x.shape[0] / batch_size)):
            tx = x[i*batch_size:(i+1)*batch_size]
            tt = t[i*batch_size:(i+1)*batch_size]
            y = self.predict(tx)
            y = np.argmax(y, axis=1)
            acc += np.sum(y == tt)

        return acc / x.shape[0]

    def numerical_gradient(self, x, t):
        loss_w = lambda w: self.loss(x, t)

        grads = {}
        for idx in (1, 2, 3):
            grads['W' + str(idx)] = numerical_gradient(loss_w, self.params['W' + str(idx)])
            grads['b' + str(idx)] = numerical_gradient(loss_w, self.params['b' + str(idx)])

        return grads

    def gradient(self, x, t):
        # forward
        self.loss(x, t)

        # backward
        dout = 1
        dout = self.last_layer.backward(dout)

        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)

        grads = {}
        grads['W1'], grads['b1'] = self.layers['Conv1'].dW, self.layers['Conv1'].db
        grads['W2'], grads['b2'] = self.layers['Affine1'].dW, self.layers['Affine1'].db
        grads['W3'], grads['b3'] = self.layers['Affine2'].dW, self.layers['Affine2'].db

        return grads

    def save_params(self, file_name="params.pkl"):
        params = {}
        for key, val in self.params.items():
            params[key] = val
        with open(file_name, 'wb') as f:
            pickle.dump(params, f)

    def load_params(self, file_name="params.pkl"):
        # The book: params = pickle.load(f). Read instead with cconv's restricted
        # reader (arrays and dicts only); then assigned as the book does.
        params, _ = read_params(file_name)
        for key, val in params.items():
            self.params[key] = val

        for i, key in enumerate(['Conv1', 'Affine1', 'Affine2']):
            self.layers[key].W = self.params['W' + str(i+1)]
            self.layers[key].b = self.params['b' + str(i+1)]
"""

#: ch08/deep_convnet.py, the book's class as cconv/nets/deep_convnet.py documents it:
#: three conv-relu-conv-relu-pool blocks (3x3 filters, 16/16/32/32/64/64, pads
#: 1/1/1/2/1/1), affine-relu-dropout-affine-dropout, He initial weights, W1..W8 in
#: the layers at (0, 2, 5, 7, 10, 12, 15, 18).
DEEP_CONVNET = """\
# coding: utf-8
import sys, os
sys.path.append(os.pardir)  # to import the files of the parent folder
import pickle
import numpy as np
from collections import OrderedDict
from common.layers import *
from cconv.params_io import read_params  # the test's one change, see load_params


class DeepConvNet:
    \"\"\"A ConvNet that recognises over 99% of MNIST

        conv - relu - conv- relu - pool -
        conv - relu - conv- relu - pool -
        conv - relu - conv- relu - pool -
        affine - relu - dropout - affine - dropout - softmax
    \"\"\"
    def __init__(self, input_dim=(1, 28, 28),
                 conv_param_1 = {'filter_num':16, 'filter_size':3, 'pad':1, 'stride':1},
                 conv_param_2 = {'filter_num':16, 'filter_size':3, 'pad':1, 'stride':1},
                 conv_param_3 = {'filter_num':32, 'filter_size':3, 'pad':1, 'stride':1},
                 conv_param_4 = {'filter_num':32, 'filter_size':3, 'pad':2, 'stride':1},
                 conv_param_5 = {'filter_num':64, 'filter_size':3, 'pad':1, 'stride':1},
                 conv_param_6 = {'filter_num':64, 'filter_size':3, 'pad':1, 'stride':1},
                 hidden_size=50, output_size=10):
        conv_params = [conv_param_1, conv_param_2, conv_param_3,
                       conv_param_4, conv_param_5, conv_param_6]
        # He initial values: connections of each neuron to the previous layer
        pre_node_nums = np.array([1*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3, 64*3*3, 64*4*4, hidden_size])
        weight_init_scales = np.sqrt(2.0 / pre_node_nums)

        self.params = {}
        pre_channel_num = input_dim[0]
        for idx, conv_param in enumerate(conv_params):
            self.params['W' + str(idx+1)] = weight_init_scales[idx] * np.random.randn(
                conv_param['filter_num'], pre_channel_num,
                conv_param['filter_size'], conv_param['filter_size'])
            self.params['b' + str(idx+1)] = np.zeros(conv_param['filter_num'])
            pre_channel_num = conv_param['filter_num']
        self.params['W7'] = weight_init_scales[6] * np.random.randn(64*4*4, hidden_size)
        self.params['b7'] = np.zeros(hidden_size)
        self.params['W8'] = weight_init_scales[7] * np.random.randn(hidden_size, output_size)
        self.params['b8'] = np.zeros(output_size)

        # layers
        self.layers = []
        for idx, conv_param in enumerate(conv_params):
            self.layers.append(Convolution(self.params['W' + str(idx+1)], self.params['b' + str(idx+1)],
                                           conv_param['stride'], conv_param['pad']))
            self.layers.append(Relu())
            if idx % 2 == 1:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        self.layers.append(Affine(self.params['W7'], self.params['b7']))
        self.layers.append(Relu())
        self.layers.append(Dropout(0.5))
        self.layers.append(Affine(self.params['W8'], self.params['b8']))
        self.layers.append(Dropout(0.5))

        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for layer in self.layers:
            if isinstance(layer, Dropout):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t):
        y = self.predict(x, train_flg=True)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        if t.ndim != 1 : t = np.argmax(t, axis=1)

        acc = 0.0

        for i in range(int(x.shape[0] / batch_size)):
            tx = x[i*batch_size:(i+1)*batch_size]
            tt = t[i*batch_size:(i+1)*batch_size]
            y = self.predict(tx, train_flg=False)
            y = np.argmax(y, axis=1)
            acc += np.sum(y == tt)

        return acc / x.shape[0]

    def gradient(self, x, t):
        # forward
        self.loss(x, t)

        # backward
        dout = 1
        dout = self.last_layer.backward(dout)

        tmp_layers = self.layers.copy()
        tmp_layers.reverse()
        for layer in tmp_layers:
            dout = layer.backward(dout)

        grads = {}
        for i, layer_idx in enumerate((0, 2, 5, 7, 10, 12, 15, 18)):
            grads['W' + str(i+1)] = self.layers[layer_idx].dW
            grads['b' + str(i+1)] = self.layers[layer_idx].db

        return grads

    def save_params(self, file_name="params.pkl"):
        params = {}
        for key, val in self.params.items():
            params[key] = val
        with open(file_name, 'wb') as f:
            pickle.dump(params, f)

    def load_params(self, file_name="params.pkl"):
        # The book: params = pickle.load(f). Read instead with cconv's restricted
        # reader (arrays and dicts only); then assigned as the book does.
        params, _ = read_params(file_name)
        for key, val in params.items():
            self.params[key] = val

        for i, layer_idx in enumerate((0, 2, 5, 7, 10, 12, 15, 18)):
            self.layers[layer_idx].W = self.params['W' + str(i+1)]
            self.layers[layer_idx].b = self.params['b' + str(i+1)]
"""

#: A chapter script that predicts MNIST images with the chapter's network.
PREDICT = """\
# coding: utf-8
import sys, os
sys.path.append(os.pardir)
import json
import numpy as np
import common.layers
from {module} import {cls}

params_file, images_file, labels_file, out_prefix = sys.argv[1:]
x = np.load(images_file)
t = np.load(labels_file)

network = {cls}()
network.load_params(params_file)
scores = np.concatenate([network.predict(x[i:i+{batch}]) for i in range(0, len(x), {batch})])
accuracy = network.accuracy(x, t, batch_size={batch})

layers = network.layers.values() if isinstance(network.layers, dict) else network.layers
np.save(out_prefix + "-scores.npy", scores)
with open(out_prefix + ".json", "w") as f:
    json.dump({{"accuracy": float(accuracy),
               "layers": sorted({{type(layer).__module__ for layer in layers}}),
               "common": os.path.dirname(common.layers.__file__)}}, f)
"""

#: ch07/train_convnet.py as the book's, but seeded, on data from a file, shorter and
#: without the plot; it reports the trainer's lists.
TRAIN_CONVNET = """\
# coding: utf-8
import sys, os
sys.path.append(os.pardir)  # to import the files of the parent folder
import json
import numpy as np
from simple_convnet import SimpleConvNet
from common.trainer import Trainer

# changed: the book reads (x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
data = np.load(sys.argv[1])
x_train, t_train, x_test, t_test = (data[k] for k in ("x_train", "t_train", "x_test", "t_test"))
np.random.seed(0)  # added: the book draws unseeded

max_epochs = 1  # the book: 20

network = SimpleConvNet(input_dim=(1,28,28),
                        conv_param = {'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1},
                        hidden_size=100, output_size=10, weight_init_std=0.01)

trainer = Trainer(network, x_train, t_train, x_test, t_test,
                  epochs=max_epochs, mini_batch_size=100,
                  optimizer='Adam', optimizer_param={'lr': 0.001},
                  evaluate_sample_num_per_epoch=EVALUATE)
trainer.train()

# Save the parameters
network.save_params("params.pkl")
print("Saved Network Parameters!")

# added: the lists the book plots, for the test
with open(sys.argv[2], "w") as f:
    json.dump({"train_loss_list": [float(v) for v in trainer.train_loss_list],
               "train_acc_list": [float(v) for v in trainer.train_acc_list],
               "test_acc_list": [float(v) for v in trainer.test_acc_list]}, f)
"""


#: ch07/gradient_check.py as the book's, seeded (the book draws unseeded) and saving both gradients.
GRADIENT_CHECK = """\
# coding: utf-8
import sys
import numpy as np
from simple_convnet import SimpleConvNet

np.random.seed(int(sys.argv[1]))  # added: the book draws unseeded

network = SimpleConvNet(input_dim=(1,10, 10),
                        conv_param = {'filter_num':10, 'filter_size':3, 'pad':0, 'stride':1},
                        hidden_size=10, output_size=10, weight_init_std=0.01)

X = np.random.rand(100).reshape((1, 1, 10, 10))
T = np.array([1]).reshape((1,1))

grad_num = network.numerical_gradient(X, T)
grad = network.gradient(X, T)

for key, val in grad_num.items():
    print(key, np.abs(grad_num[key] - grad[key]).mean())

# added: the input, the weights and both gradients, for the test
np.savez(sys.argv[2], X=X, T=T, **{'param_' + k: v for k, v in network.params.items()},
         **{'num_' + k: v for k, v in grad_num.items()},
         **{'backprop_' + k: v for k, v in grad.items()})
"""

#: Every import the book's chapter 7 and 8 scripts make, then where each name came from.
IMPORTS = """\
# coding: utf-8
import sys, os
sys.path.append(os.pardir)
import json
import numpy as np
from collections import OrderedDict
from common.layers import *
from common.util import im2col, col2im
from common.util import smooth_curve, shuffle_dataset, conv_output_size
from common.gradient import numerical_gradient
from common.trainer import Trainer
from common.optimizer import *
from common.functions import *
from dataset.mnist import load_mnist
import common, dataset

origin = {name: value.__module__ + "." + value.__qualname__
          for name, value in sorted(globals().items())
          if callable(value) and not name.startswith("_")
          and name not in ("OrderedDict", "json")}
with open(sys.argv[1], "w") as f:
    json.dump({"origin": origin, "np": "np" in globals(),
               "common": common.__file__, "dataset": dataset.__file__}, f)
"""

#: Reports how it was run, then exits with the status it is given.
PROBE = """\
import json, os, sys
with open(sys.argv[1], "w") as f:
    json.dump({"argv": sys.argv, "path": sys.path, "name": __name__, "file": __file__,
               "cwd": os.getcwd()}, f)
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def global_rng_state():
    """Restore ``np.random``'s global state after a test that seeds it."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run_book(script, *args, cwd, launcher="module"):
    """Run ``script`` (relative to ``cwd``) with ``python -m cconv.book``, or by hand.

    ``launcher="pythonpath"``: ``python script`` with :func:`shim_path` on
    ``PYTHONPATH``, the other documented way. Returns the completed process.
    """
    env = dict(os.environ)
    if launcher == "module":
        command = [sys.executable, "-m", "cconv.book", str(script), *map(str, args)]
    else:
        command = [sys.executable, str(script), *map(str, args)]
        env["PYTHONPATH"] = os.pathsep.join(
            [shim_path()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def check_ran(result):
    assert result.returncode == 0, (
        f"exit status {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


# --------------------------------------------------------------------------
# The book's networks with the book's trained parameters
# --------------------------------------------------------------------------


def predict_with_book_script(tmp_path, chapter, module, cls, source, params_name):
    """Write ``<chapter>/<module>.py`` and a predicting script; run it; return its outputs."""
    write(tmp_path / chapter / f"{module}.py", source)
    write(
        tmp_path / chapter / "predict_mnist.py",
        PREDICT.format(module=module, cls=cls, batch=BATCH),
    )
    x, t = load_mnist_test()
    np.save(tmp_path / "images.npy", x[:N_IMAGES])  # float32 in [0, 1], as the book's load_mnist
    np.save(tmp_path / "labels.npy", t[:N_IMAGES])
    out = tmp_path / "out"
    check_ran(
        run_book(
            "predict_mnist.py",
            book_params_path(params_name),
            tmp_path / "images.npy",
            tmp_path / "labels.npy",
            out,
            cwd=tmp_path / chapter,
        )
    )
    report = json.loads((tmp_path / "out.json").read_text())
    # The script's layers are cconv's, reached through the shim's common package.
    assert report["layers"] == ["cconv.layers"]
    assert report["common"] == os.path.join(shim_path(), "common")
    return np.load(tmp_path / "out-scores.npy"), report["accuracy"]


def cconv_scores(net, x):
    return np.concatenate([net.predict(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])


def check_same_as_cconv(scores, accuracy, net, params_name, min_accuracy):
    x, t = load_mnist_test()
    x, t = x[:N_IMAGES], t[:N_IMAGES]
    net.load_params(book_params_path(params_name))
    expected = cconv_scores(net, x)
    assert scores.shape == expected.shape == (N_IMAGES, 10)
    assert scores.dtype == np.float64  # float32 images into the book's float64 weights
    assert np.array_equal(np.argmax(scores, axis=1), np.argmax(expected, axis=1))
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-10)
    assert accuracy == net.accuracy(x, t, BATCH) == np.mean(np.argmax(expected, axis=1) == t)
    # The bound tests/nets/ set for these parameters on the whole test set holds on
    # these images too.
    assert accuracy > min_accuracy


@requires_shared_data
def test_book_simple_convnet_predicts_as_cconv(tmp_path):
    scores, accuracy = predict_with_book_script(
        tmp_path, "ch07", "simple_convnet", "SimpleConvNet", SIMPLE_CONVNET, "simple_convnet"
    )
    # tests/nets/test_simple_convnet.py: accuracy > 0.955 (96.0% on all 10,000; 96.1% here).
    check_same_as_cconv(scores, accuracy, cconv.SimpleConvNet(), "simple_convnet", 0.955)


@requires_shared_data
def test_book_deep_convnet_predicts_as_cconv(tmp_path):
    scores, accuracy = predict_with_book_script(
        tmp_path, "ch08", "deep_convnet", "DeepConvNet", DEEP_CONVNET, "deep_convnet"
    )
    # tests/nets/test_deep_convnet.py: accuracy > 0.975 (97.97% on all 10,000; 97.6% here).
    check_same_as_cconv(scores, accuracy, cconv.DeepConvNet(), "deep_convnet", 0.975)


@requires_shared_data
def test_book_scripts_load_the_book_params_as_read(tmp_path):
    # The book's load_params puts the file's very arrays into params and the layers.
    write(tmp_path / "ch07" / "simple_convnet.py", SIMPLE_CONVNET)
    write(
        tmp_path / "ch07" / "dump_params.py",
        "import sys\nimport numpy as np\nfrom simple_convnet import SimpleConvNet\n"
        "net = SimpleConvNet()\nnet.load_params(sys.argv[1])\n"
        "assert net.layers['Affine1'].W is net.params['W2']\n"
        "np.savez(sys.argv[2], **net.params)\n",
    )
    out = tmp_path / "params.npz"
    check_ran(run_book("dump_params.py", book_params_path("simple_convnet"), out, cwd=tmp_path / "ch07"))
    expected, _ = read_params(book_params_path("simple_convnet"))
    with np.load(out) as loaded:
        assert sorted(loaded.files) == sorted(expected)
        for key in expected:
            assert np.array_equal(loaded[key], expected[key]), key


# --------------------------------------------------------------------------
# The book's gradient check (ch07/gradient_check.py)
# --------------------------------------------------------------------------


def relative_error(a, b):
    """``max|a - b| / max(|a| + |b|)`` (as tests/nets/nets_testutils.py)."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-300))


#: The network of the book's gradient check.
GRADIENT_CHECK_NET = dict(
    input_dim=(1, 10, 10),
    conv_param={"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1},
    hidden_size=10,
    output_size=10,
)


def test_book_gradient_check_agrees(tmp_path):
    write(tmp_path / "ch07" / "simple_convnet.py", SIMPLE_CONVNET)
    write(tmp_path / "ch07" / "gradient_check.py", GRADIENT_CHECK)
    out = tmp_path / "grads.npz"
    result = check_ran(run_book("gradient_check.py", 0, out, cwd=tmp_path / "ch07"))
    with np.load(out) as saved:
        saved = dict(saved)
    keys = ["W1", "b1", "W2", "b2", "W3", "b3"]

    # The book's printout: one line per parameter with the mean absolute difference.
    printed = dict(line.split() for line in result.stdout.splitlines())
    assert sorted(printed) == sorted(keys)
    for key in keys:
        diff = np.abs(saved[f"num_{key}"] - saved[f"backprop_{key}"]).mean()
        assert float(printed[key]) == pytest.approx(diff, rel=1e-6)

    # Both gradients are cconv's SimpleConvNet's for the same weights and input.
    net = cconv.SimpleConvNet(**GRADIENT_CHECK_NET, seed=0)
    for key in keys:
        net.params[key][...] = saved[f"param_{key}"]
    backprop = net.gradient(saved["X"], saved["T"])
    numerical = net.numerical_gradient(saved["X"], saved["T"])
    for key in keys:
        np.testing.assert_allclose(saved[f"backprop_{key}"], backprop[key], rtol=1e-12, atol=1e-18)
        np.testing.assert_allclose(saved[f"num_{key}"], numerical[key], rtol=0, atol=1e-10)

    # They agree. The book's loss adds 1e-7 inside the log, which central differences
    # see and backprop does not: a relative difference of about 1e-7 / y ~ 1e-6 for a
    # class probability y ~ 0.1. The book's weights (std 0.01) put convolution outputs
    # within the step (1e-4) of the ReLU's or the max pooling's kink, where the two
    # legitimately differ: here some elements of W1 and b1 (those of one filter).
    for key in keys:
        numerical, backprop = saved[f"num_{key}"], saved[f"backprop_{key}"]
        assert np.max(np.abs(backprop)) > 0, f"{key}: zero gradient, the check proves nothing"
        close = np.abs(numerical - backprop) <= 1e-5 * np.abs(backprop) + 1e-12
        assert np.mean(close) >= 0.85, f"{key}: {np.mean(close):.0%} of the elements agree"
    for key in ["W2", "b2", "W3", "b3"]:  # no kink in their reach
        assert relative_error(saved[f"num_{key}"], saved[f"backprop_{key}"]) < 1e-5, key


# --------------------------------------------------------------------------
# The book's training script (ch07/train_convnet.py) with the book's Trainer
# --------------------------------------------------------------------------

#: Training and test images of the bundled MNIST sample used, and the evaluation size.
N_TRAIN, N_TEST, N_EVALUATE = 500, 200, 200


def test_book_training_script_follows_cconvs_trajectory(tmp_path, global_rng_state):
    # The book's SimpleConvNet class trained by common.trainer.Trainer (cconv's) follows
    # the very trajectory of cconv's SimpleConvNet and Trainer: both draw the initial
    # weights and the batches from the global np.random, as the book does.
    (x_train, t_train), (x_test, t_test) = cconv.datasets.load_mnist_sample(flatten=False)
    data = dict(x_train=x_train[:N_TRAIN], t_train=t_train[:N_TRAIN],
                x_test=x_test[:N_TEST], t_test=t_test[:N_TEST])
    np.savez(tmp_path / "data.npz", **data)
    write(tmp_path / "ch07" / "simple_convnet.py", SIMPLE_CONVNET)
    write(tmp_path / "ch07" / "train_convnet.py", TRAIN_CONVNET.replace("EVALUATE", str(N_EVALUATE)))
    out = tmp_path / "lists.json"
    result = check_ran(run_book("train_convnet.py", tmp_path / "data.npz", out, cwd=tmp_path / "ch07"))
    assert "Saved Network Parameters!" in result.stdout
    book = json.loads(out.read_text())

    np.random.seed(0)
    net = cconv.SimpleConvNet()
    trainer = cconv.Trainer(net, *data.values(), epochs=1, mini_batch_size=100, optimizer="Adam",
                            optimizer_param={"lr": 0.001}, evaluate_sample_num_per_epoch=N_EVALUATE,
                            verbose=False, progress=False)
    trainer.train()
    # Bit-identical where both run the same BLAS; the tolerances allow for another
    # summation order.
    assert len(book["train_loss_list"]) == N_TRAIN // 100
    np.testing.assert_allclose(book["train_loss_list"], trainer.train_loss_list, rtol=1e-9)
    assert book["train_acc_list"] == trainer.train_acc_list
    assert book["test_acc_list"] == trainer.test_acc_list
    # The book's save_params pickled the trained parameters (read back safely).
    saved, _ = read_params(tmp_path / "ch07" / "params.pkl")
    assert sorted(saved) == sorted(net.params)
    for key, value in net.params.items():
        np.testing.assert_allclose(saved[key], value, rtol=1e-7, atol=1e-10, err_msg=key)


# --------------------------------------------------------------------------
# What the book's imports give
# --------------------------------------------------------------------------


def qualified(obj):
    return f"{obj.__module__}.{obj.__qualname__}"


#: The names the book's modules give a script, and the cconv object behind each.
BOOK_LAYERS = ("Affine", "BatchNormalization", "Convolution", "Dropout", "Pooling", "Relu",
               "Sigmoid", "SoftmaxWithLoss")
BOOK_OPTIMIZERS = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")
FROM_CCONV = {
    **{name: getattr(cconv.layers, name) for name in BOOK_LAYERS},
    **{name: getattr(cconv.optim, name) for name in BOOK_OPTIMIZERS},
    **{
        name: getattr(cconv.functions, name)
        for name in ("sigmoid", "relu", "softmax", "cross_entropy_error")
    },
    "im2col": cconv.im2col,
    "col2im": cconv.col2im,
    "numerical_gradient": cconv.gradient.numerical_gradient,
    "Trainer": cconv.Trainer,
    "load_mnist": cconv.datasets.load_mnist,
}

#: The book's functions cconv has no counterpart of: the shim's own.
FROM_SHIM = {
    "identity_function": "common.functions",
    "step_function": "common.functions",
    "sigmoid_grad": "common.functions",
    "relu_grad": "common.functions",
    "sum_squared_error": "common.functions",
    "softmax_loss": "common.functions",
    "smooth_curve": "common.util",
    "shuffle_dataset": "common.util",
    "conv_output_size": "common.util",
}


@pytest.mark.parametrize("launcher", ["module", "pythonpath"])
def test_book_imports_give_cconv_objects(tmp_path, launcher):
    write(tmp_path / "ch07" / "imports.py", IMPORTS)
    out = tmp_path / "imports.json"
    check_ran(run_book("imports.py", out, cwd=tmp_path / "ch07", launcher=launcher))
    report = json.loads(out.read_text())
    expected = {name: qualified(obj) for name, obj in FROM_CCONV.items()}
    expected.update({name: f"{module}.{name}" for name, module in FROM_SHIM.items()})
    assert report["origin"] == expected
    assert report["common"] == os.path.join(shim_path(), "common", "__init__.py")
    assert report["dataset"] == os.path.join(shim_path(), "dataset", "__init__.py")
    assert report["np"]  # the script's own `import numpy as np`


def test_modules_the_shim_lacks_come_from_the_books_common(tmp_path):
    # A book checkout: its common/ has multi_layer_net.py, which the shim lacks, and its
    # own layers.py, which the shim's must shadow.
    write(tmp_path / "common" / "layers.py", "raise ImportError('the book layers were imported')\n")
    write(
        tmp_path / "common" / "multi_layer_net.py",
        "import numpy as np\nfrom collections import OrderedDict\nfrom common.layers import *\n\n"
        "class MultiLayerNet:\n    def __init__(self):\n        self.layers = OrderedDict()\n"
        "        self.layers['Affine1'] = Affine(np.ones((3, 2)), np.zeros(2))\n"
        "        self.layers['Relu1'] = Relu()\n",
    )
    write(
        tmp_path / "ch06" / "uses_multi_layer_net.py",
        "import sys, os\nsys.path.append(os.pardir)\nimport numpy as np\n"
        "from common.multi_layer_net import MultiLayerNet\n"
        "net = MultiLayerNet()\n"
        "print(*sorted({type(layer).__module__ for layer in net.layers.values()}))\n"
        "print(net.layers['Affine1'].forward(np.ones((1, 3))).tolist())\n",
    )
    result = check_ran(run_book("uses_multi_layer_net.py", cwd=tmp_path / "ch06"))
    assert result.stdout.splitlines() == ["cconv.layers", "[[3.0, 3.0]]"]


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def test_script_runs_as_python_runs_it(tmp_path):
    script = write(tmp_path / "ch07" / "probe.py", PROBE)
    out = tmp_path / "probe.json"
    # From the book's root folder, the script in ch07/: the working directory is not
    # on sys.path (as `python ch07/probe.py`), the script's folder is, after the shim.
    result = run_book(os.path.join("ch07", "probe.py"), out, 3, "--flag", "two words", cwd=tmp_path)
    assert result.returncode == 3, result.stderr  # the script's sys.exit(3)
    report = json.loads(out.read_text())
    assert report["name"] == "__main__"
    assert report["file"] == str(script)
    assert report["argv"] == [str(script), str(out), "3", "--flag", "two words"]
    assert report["path"][:2] == [shim_path(), str(script.parent)]
    assert report["cwd"] not in report["path"]


def test_missing_script_exits_nonzero_with_one_line(tmp_path):
    result = run_book("no_such_script.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("python -m cconv.book: can't open file ")
    assert str(tmp_path / "no_such_script.py") in lines[0]


def test_usage_help_and_path(capsys):
    assert book_main([]) == 2
    assert capsys.readouterr().err.startswith("usage: python -m cconv.book SCRIPT")
    assert book_main(["--bogus"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert book_main(["--help"]) == 0
    assert "SCRIPT" in capsys.readouterr().out
    assert book_main(["--path"]) == 0
    assert capsys.readouterr().out == shim_path() + "\n"
    assert os.path.isdir(os.path.join(shim_path(), "common"))
    assert os.path.isdir(os.path.join(shim_path(), "dataset"))


# --------------------------------------------------------------------------
# The book's small helpers the shim implements (imported by their full names)
# --------------------------------------------------------------------------


@pytest.fixture
def shim_util():
    import importlib

    return importlib.import_module("cconv.book.compat.common.util")


@pytest.fixture
def shim_functions():
    import importlib

    return importlib.import_module("cconv.book.compat.common.functions")


def test_conv_output_size_is_the_books_float(shim_util):
    assert shim_util.conv_output_size(28, 5) == 24.0
    assert isinstance(shim_util.conv_output_size(28, 5), float)
    assert shim_util.conv_output_size(7, 3, stride=2, pad=1) == 4.0
    assert shim_util.conv_output_size(8, 3, 2) == 3.5  # true division, as the book


def test_smooth_curve(shim_util):
    ramp = np.arange(40.0)
    smooth = shim_util.smooth_curve(ramp)
    assert smooth.shape == ramp.shape
    # A symmetric window of 11 taps keeps a straight line away from the mirrored ends.
    np.testing.assert_allclose(smooth[5:-5], ramp[5:-5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(shim_util.smooth_curve(np.full(15, 2.5)), 2.5, rtol=1e-15)
    noisy = np.random.default_rng(0).standard_normal(200)
    assert np.std(shim_util.smooth_curve(noisy)) < 0.5 * np.std(noisy)


@pytest.mark.parametrize("shape", [(10, 4), (10, 1, 2, 2)], ids=["2-D", "4-D"])
def test_shuffle_dataset_draws_from_np_random(shim_util, global_rng_state, shape):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    t = np.arange(10)
    np.random.seed(5)
    xs, ts = shim_util.shuffle_dataset(x, t)
    np.random.seed(5)
    permutation = np.random.permutation(10)
    assert np.array_equal(xs, x[permutation]) and np.array_equal(ts, t[permutation])


def test_the_books_one_line_functions(shim_functions):
    f = shim_functions
    x = np.array([-1.0, 0.0, 2.0])
    assert f.identity_function(x) is x
    step = f.step_function(x)
    assert step.tolist() == [0, 0, 1] and step.dtype.kind == "i"
    assert f.relu_grad(x).tolist() == [0.0, 1.0, 1.0]  # the book counts x == 0 as on
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(f.sigmoid_grad(x), (1 - s) * s, rtol=1e-15)
    assert f.sum_squared_error(np.array([1.0, 2.0]), np.array([0.0, 0.0])) == 2.5
    scores, labels = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]]), np.array([1, 2])
    assert f.softmax_loss(scores, labels) == cconv.functions.cross_entropy_error(
        cconv.functions.softmax(scores), labels
    )


# --------------------------------------------------------------------------
# The wheel ships the shim (.ci/run sets CCONV_WHEEL, as for tests/test_distributions.py)
# --------------------------------------------------------------------------

SHIM_FILES = [
    "cconv/book/__init__.py",
    "cconv/book/__main__.py",
    *(
        f"cconv/book/compat/common/{name}.py"
        for name in ("__init__", "functions", "gradient", "layers", "optimizer", "trainer", "util")
    ),
    "cconv/book/compat/dataset/__init__.py",
    "cconv/book/compat/dataset/mnist.py",
]


@pytest.mark.skipif(not os.environ.get("CCONV_WHEEL"), reason="CCONV_WHEEL names a built wheel (.ci/run)")
def test_wheel_ships_the_shim():
    with zipfile.ZipFile(os.environ["CCONV_WHEEL"]) as wheel:
        names = set(wheel.namelist())
    missing = [name for name in SHIM_FILES if name not in names]
    assert not missing, f"the wheel lacks {missing}"
