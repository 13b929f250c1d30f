"""What every network offers beyond the book's interface: its layers, their outputs, labels, generators."""

from collections import OrderedDict

import numpy as np
import pytest

from cconv.layers import Affine, Convolution, Dropout, Pooling, Relu
from cconv.nets import AlexNet, DeepConvNet, SimpleConvNet
from cconv.nets._base import forward_layers, named_layers, network_rngs


def images(n, shape=(1, 28, 28), seed=0):
    return np.random.default_rng(seed).random((n, *shape))


def test_named_layers_are_the_keys_of_an_ordereddict_in_order():
    net = SimpleConvNet(seed=0)
    names = [name for name, _ in net.named_layers()]
    assert names == list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert [layer for _, layer in net.named_layers()] == list(net.layers.values())


def test_named_layers_of_a_list_are_counted_per_kind():
    net = DeepConvNet(seed=0)
    named = net.named_layers()
    assert [layer for _, layer in named] == net.layers
    names = [name for name, _ in named]
    assert names[:6] == ["Conv1", "Relu1", "Conv2", "Relu2", "Pool1", "Conv3"]
    assert names.count("Pool3") == 1 and "Pool4" not in names
    assert len(set(names)) == len(names)


def test_named_layers_refuses_what_is_neither_dict_nor_list():
    with pytest.raises(TypeError, match="OrderedDict or a list"):
        named_layers({"a", "b"})


@pytest.mark.parametrize("make", [lambda: SimpleConvNet(seed=1), lambda: DeepConvNet(seed=1)])
def test_forward_layers_ends_in_predict_and_feeds_each_output_on(make):
    net = make()
    x = images(3)
    outputs = list(net.forward_layers(x))
    assert len(outputs) == len(net.named_layers())
    np.testing.assert_array_equal(outputs[-1][2], net.predict(x))
    # Each layer's output is that layer applied to the previous one's (test mode).
    name, layer, out = outputs[1]
    assert name == net.named_layers()[1][0] and layer is net.named_layers()[1][1]
    np.testing.assert_array_equal(layer.forward(outputs[0][2]), out)


def test_forward_layers_passes_train_flg_to_dropout():
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((4, 3)), np.zeros(3)
    named = named_layers(OrderedDict(a=Affine(W, b), d=Dropout(0.5, rng=np.random.default_rng(1))))
    x = rng.standard_normal((64, 4))
    test_mode = list(forward_layers(named, x, False))[-1][2]
    train_mode = list(forward_layers(named, x, True))[-1][2]
    assert np.count_nonzero(train_mode == 0) > np.count_nonzero(test_mode == 0)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_predict_labels_is_argmax_of_predict_whatever_the_batch(batch_size):
    net = SimpleConvNet(seed=2)
    x = images(7)
    labels = net.predict_labels(x, batch_size)
    assert labels.dtype == np.int64 and labels.shape == (7,)
    np.testing.assert_array_equal(labels, np.argmax(net.predict(x), axis=1))


def test_predict_labels_checks_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        SimpleConvNet(seed=0).predict_labels(images(2), 0)


def test_accuracy_counts_predict_labels():
    net = SimpleConvNet(seed=3)
    x = images(9)
    t = np.arange(9) % 10
    assert net.accuracy(x, t, batch_size=4) == np.mean(net.predict_labels(x) == t)


def test_rngs_are_the_network_generator_once_or_none():
    assert SimpleConvNet().rngs() == []
    net = AlexNet(input_dim=(3, 67, 67), seed=0)
    assert net.rngs() == [net.rng]  # the dropout layers share the network's generator


def test_network_rngs_finds_generators_of_book_style_networks():
    class BookNet:
        pass

    own, layer_rng = np.random.default_rng(0), np.random.RandomState(1)
    net = BookNet()
    net.rng = own
    net.layers = [Convolution(np.ones((1, 1, 1, 1)), np.zeros(1)), Relu(),
                  Dropout(0.5, rng=layer_rng), Pooling(1, 1), Dropout(0.5, rng=own)]
    assert network_rngs(net) == [own, layer_rng]
    assert network_rngs(object()) == []
