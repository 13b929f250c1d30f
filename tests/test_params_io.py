"""Parameter files: atomic .npz with metadata, strict checks, a restricted unpickler for .pkl."""

import io
import json
import os
import pickle
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from cconv import params_io
from cconv.nets import AlexNet, DeepConvNet, LeNet, SimpleConvNet, load_network
from cconv.params_io import UnsafePickleError, read_params

from cconv_testutils import shared_data
from npz_testutils import MAX_PEAK_BYTES, peak_of, write_bomb

SMALL_NETS = {
    "SimpleConvNet": lambda **kw: SimpleConvNet(
        input_dim=(1, 10, 10),
        conv_param={"filter_num": 3, "filter_size": 3},
        hidden_size=6,
        output_size=4,
        **kw,
    ),
    "DeepConvNet": lambda **kw: DeepConvNet(
        input_dim=(1, 8, 8),
        **{f"conv_param_{i}": {"filter_num": 2} for i in range(1, 7)},
        hidden_size=5,
        **kw,
    ),
    "LeNet": lambda **kw: LeNet(
        input_dim=(1, 12, 12), filter_nums=(2, 3), hidden_sizes=(5, 4), activation="relu", **kw
    ),
    "AlexNet": lambda **kw: AlexNet(
        input_dim=(1, 16, 16), output_size=3, width=0.02, hidden_size=6, **kw
    ),
}


@pytest.fixture
def simple():
    return SMALL_NETS["SimpleConvNet"](seed=0)


def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL_NETS))
def test_round_trip(tmp_path, rng, name):
    make = SMALL_NETS[name]
    saved, fresh = make(seed=1), make(seed=2)
    x = rng.standard_normal((2, *saved.config["input_dim"]))
    path = tmp_path / "params.npz"
    saved.save_params(path)
    arrays = {key: value for key, value in fresh.params.items()}
    fresh.load_params(path)
    for key, value in saved.params.items():
        assert np.array_equal(fresh.params[key], value)
        assert (
            fresh.params[key] is arrays[key]
        )  # loaded in place: layers and optimizers stay linked
    assert np.array_equal(fresh.predict(x), saved.predict(x))

    rebuilt = load_network(path)
    assert type(rebuilt) is type(saved) and _json(rebuilt.config) == _json(saved.config)
    assert np.array_equal(rebuilt.predict(x), saved.predict(x))


def _json(config):
    return json.loads(json.dumps(config))


def test_file_is_plain_npz_with_json_meta(tmp_path, simple):
    path = tmp_path / "p.npz"
    simple.save_params(path)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted([*simple.params, "__meta__"])
        meta = archive["__meta__"]
        assert meta.shape == () and meta.dtype.kind == "U"
        info = json.loads(str(meta))
        for key in simple.params:
            assert archive[key].dtype == np.float64
    assert info["format"] == "cconv-params" and info["version"] == 1
    assert info["net"] == "SimpleConvNet"
    assert info["config"]["conv_param"] == {
        "filter_num": 3,
        "filter_size": 3,
        "pad": 0,
        "stride": 1,
    }
    assert info["config"]["dtype"] == "float64"


def test_load_network_in_another_dtype(tmp_path, simple, rng):
    path = tmp_path / "p.npz"
    simple.save_params(path)
    net32 = load_network(path, dtype=np.float32)
    assert net32.dtype == np.float32 and net32.params["W1"].dtype == np.float32
    x = rng.standard_normal((2, 1, 10, 10))
    np.testing.assert_allclose(net32.predict(x), simple.predict(x), rtol=1e-4, atol=1e-5)


def test_book_style_file_name_writes_npz(tmp_path, simple):
    # The book's scripts call save_params("params.pkl"): the name is kept, the content is .npz.
    path = tmp_path / "params.pkl"
    simple.save_params(str(path))
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    other = SMALL_NETS["SimpleConvNet"](seed=5)
    other.load_params(str(path))
    assert np.array_equal(other.params["W2"], simple.params["W2"])


def test_load_params_default_name_falls_back_to_the_books_params_pkl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    book, cconv_saved, net = (SMALL_NETS["SimpleConvNet"](seed=s) for s in (1, 2, 3))
    with pytest.raises(FileNotFoundError, match="params.npz"):
        net.load_params()  # neither file: the error names the default
    with open("params.pkl", "wb") as f:  # as the book's save_params() writes it
        pickle.dump({key: value for key, value in book.params.items()}, f)
    net.load_params()
    assert all(np.array_equal(net.params[k], v) for k, v in book.params.items())
    cconv_saved.save_params()  # the default name for writing stays params.npz
    assert sorted(os.listdir()) == ["params.npz", "params.pkl"]
    net.load_params()  # params.npz first when both exist
    assert all(np.array_equal(net.params[k], v) for k, v in cconv_saved.params.items())
    net.load_params("params.pkl")
    assert all(np.array_equal(net.params[k], v) for k, v in book.params.items())


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_book_pickles_of_every_protocol(tmp_path, simple, protocol):
    path = tmp_path / "params.pkl"
    with open(path, "wb") as f:
        pickle.dump({key: value for key, value in simple.params.items()}, f, protocol=protocol)
    other = SMALL_NETS["SimpleConvNet"](seed=5)
    other.load_params(path)
    assert all(np.array_equal(other.params[k], v) for k, v in simple.params.items())


def test_save_replaces_atomically(tmp_path, simple, monkeypatch):
    path = tmp_path / "p.npz"
    simple.save_params(path)
    before = path.read_bytes()
    other = SMALL_NETS["SimpleConvNet"](seed=9)

    def fail(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="simulated"):
        other.save_params(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]  # no temporary file left
    other.save_params(path)
    assert path.read_bytes() != before


def test_config_mismatch_warns_and_other_net_refused(tmp_path):
    path = tmp_path / "lenet.npz"
    LeNet(activation="relu", seed=0).save_params(path)
    with pytest.warns(UserWarning, match="activation"):
        LeNet(activation="sigmoid", seed=0).load_params(path)
    SMALL_NETS["DeepConvNet"](seed=0).save_params(path)
    with pytest.raises(ValueError, match="DeepConvNet.*SimpleConvNet"):
        SMALL_NETS["SimpleConvNet"](seed=0).load_params(path)


@pytest.fixture
def global_rng_restored():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def _same_global_state(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def test_load_network_dropout_follows_np_random_and_leaves_it_alone(
    tmp_path, rng, global_rng_restored
):
    path = tmp_path / "deep.npz"
    SMALL_NETS["DeepConvNet"](seed=0).save_params(path)
    x = rng.standard_normal((4, 1, 8, 8))

    def train_forward(global_seed):
        np.random.seed(123)
        before = np.random.get_state()
        net = load_network(path)
        assert _same_global_state(np.random.get_state(), before)  # nothing drawn
        np.random.seed(global_seed)
        return net, net.predict(x, train_flg=True)

    net, first = train_forward(1)
    _, again = train_forward(1)
    _, other = train_forward(2)
    assert np.array_equal(first, again)  # np.random.seed(1) repeats the masks in any process
    assert not np.array_equal(first, other)  # ... which come from np.random, not a fixed generator
    np.random.seed(1)
    dropout = next(layer for layer in net.layers if type(layer).__name__ == "Dropout")
    assert dropout.rng is None  # the book's np.random.rand
    assert np.array_equal(dropout.mask, np.random.rand(*dropout.mask.shape) > 0.5)


def _with_config(net, **changes):
    return {
        "format": "cconv-params",
        "version": 1,
        "net": type(net).__name__,
        "config": {**net.config, **changes},
    }


def test_load_network_checks_the_settings_against_the_arrays_before_building(tmp_path, simple):
    # a crafted file: small real arrays, settings that would allocate 48 x 10**9 floats
    meta = _with_config(simple, hidden_size=10**9)
    path = write_npz(tmp_path / "p.npz", __meta__=np.array(json.dumps(meta)), **good_arrays(simple))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"'W2' has shape \(48, 6\).*\(48, 1000000000\)"):
            load_network(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 16 * 2**20


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"output_size": 7}, r"'W3' has shape \(6, 4\).*\(6, 7\)"),
        ({"input_dim": [1, 12, 12]}, r"'W2' has shape \(48, 6\).*\(75, 6\)"),
        ({"hidden_size": -1}, "hidden_size must be an integer >= 1"),
        ({"colour": "red"}, "do not fit SimpleConvNet.*colour"),
    ],
)
def test_load_network_refuses_settings_that_do_not_fit(tmp_path, simple, change, match):
    meta = _with_config(simple, **change)
    path = write_npz(tmp_path / "p.npz", __meta__=np.array(json.dumps(meta)), **good_arrays(simple))
    with pytest.raises(ValueError, match=match):
        load_network(path)


def test_load_network_names_a_missing_array(tmp_path, simple):
    arrays = good_arrays(simple)
    del arrays["b2"]
    path = write_npz(
        tmp_path / "p.npz", __meta__=np.array(json.dumps(_with_config(simple))), **arrays
    )
    with pytest.raises(ValueError, match="missing parameter.*'b2'"):
        load_network(path)


@pytest.mark.parametrize("name", sorted(SMALL_NETS))
def test_param_shapes_match_the_built_network(name):
    net = SMALL_NETS[name](seed=0)
    expected = {key: value.shape for key, value in net.params.items()}
    assert type(net).param_shapes(**net.config) == expected
    assert type(net).param_shapes(**_json(net.config)) == expected  # as read back from a file


def test_param_shapes_of_the_default_networks_allocate_nothing():
    assert SimpleConvNet.param_shapes()["W2"] == (4320, 100)
    assert DeepConvNet.param_shapes()["W7"] == (1024, 50)
    assert LeNet.param_shapes()["W3"] == (400, 120)
    shapes = AlexNet.param_shapes(hidden_size=10**9)  # no allocation: instant
    assert shapes["W6"] == (9216, 10**9) and shapes["b7"] == (10**9,)
    with pytest.raises(TypeError):
        SimpleConvNet.param_shapes(colour="red")


# --------------------------------------------------------------------------
# Refused .npz files
# --------------------------------------------------------------------------


def good_arrays(net):
    return {key: value.copy() for key, value in net.params.items()}


def test_wrong_shape_refused_and_nothing_loaded(tmp_path, simple):
    arrays = good_arrays(SMALL_NETS["SimpleConvNet"](seed=3))
    arrays["W2"] = arrays["W2"][:-1]
    path = write_npz(tmp_path / "p.npz", **arrays)
    w1 = simple.params["W1"].copy()
    with pytest.raises(ValueError, match=r"'W2' has shape \(47, 6\).*\(48, 6\)"):
        simple.load_params(path)
    assert np.array_equal(simple.params["W1"], w1)  # all or nothing


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_missing_or_extra_key_refused(tmp_path, simple, change):
    arrays = good_arrays(simple)
    if change == "missing":
        del arrays["b3"]
    else:
        arrays["W4"] = np.zeros((2, 2))
    path = write_npz(tmp_path / "p.npz", **arrays)
    key = "b3" if change == "missing" else "W4"
    with pytest.raises(
        ValueError, match=f"{'missing' if change == 'missing' else 'unexpected'}.*'{key}'"
    ):
        simple.load_params(path)


def test_dtype_mismatch_refused_unless_cast(tmp_path, simple):
    arrays = {key: value.astype(np.float32) for key, value in simple.params.items()}
    path = write_npz(tmp_path / "p.npz", **arrays)
    with pytest.raises(ValueError, match="'W1' has dtype float32.*float64"):
        simple.load_params(path)
    simple.load_params(path, cast=True)
    assert simple.params["W1"].dtype == np.float64
    assert np.array_equal(simple.params["W1"], arrays["W1"].astype(np.float64))
    arrays["W1"] = arrays["W1"].astype(np.int64)
    with pytest.raises(ValueError, match="'W1' has dtype int64"):
        simple.load_params(write_npz(tmp_path / "i.npz", **arrays), cast=True)


def test_object_array_npz_refused(tmp_path, simple):
    arrays = good_arrays(simple)
    arrays["b1"] = np.array([1.0, "x", None], dtype=object)  # np.savez pickles it
    path = write_npz(tmp_path / "p.npz", **arrays)
    with pytest.raises(ValueError, match="'b1'.*pickle"):
        simple.load_params(path)


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (np.array("{not json"), "not valid JSON"),
        (np.array(json.dumps({"format": "other"})), "not cconv metadata"),
        (np.array(json.dumps({"format": "cconv-params", "version": 99})), "version 99"),
        (np.array(["{}"]), "0-d unicode"),
    ],
)
def test_bad_meta_refused(tmp_path, simple, meta, match):
    path = write_npz(tmp_path / "p.npz", __meta__=meta, **good_arrays(simple))
    with pytest.raises(ValueError, match=match):
        simple.load_params(path)


def test_garbage_and_truncated_files_refused(tmp_path, simple):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01 this is no params file")
    with pytest.raises(ValueError, match="neither an .npz archive nor a readable params pickle"):
        simple.load_params(garbage)
    good = tmp_path / "good.npz"
    simple.save_params(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.npz"):
        simple.load_params(truncated)
    with pytest.raises(FileNotFoundError):
        simple.load_params(tmp_path / "absent.npz")


def test_save_refuses_what_needs_pickle_or_reserved_names(tmp_path):
    with pytest.raises(ValueError, match="object"):
        params_io.save_params(tmp_path / "a.npz", {"W1": np.array([None])})
    with pytest.raises(ValueError, match="reserved"):
        params_io.save_params(tmp_path / "b.npz", {"__meta__": np.zeros(1)})
    with pytest.raises(ValueError, match="JSON"):
        params_io.save_params(tmp_path / "c.npz", {"W1": np.zeros(1)}, {"config": {"f": object()}})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# Refused pickles: nothing may run
# --------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls ``func(code)``; only test_payload_is_live lets plain pickle do it."""

    def __init__(self, code, func=exec):
        self.code, self.func = code, func

    def __reduce__(self):
        return (self.func, (self.code,))


def _touch_code(sentinel):
    return f"open({str(sentinel)!r}, 'w').close()"


def test_payload_is_live(tmp_path):
    """Control: the payload used below does create the sentinel when plain pickle loads it."""
    sentinel = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(_touch_code(sentinel))))
    assert sentinel.exists()


def _malicious_pickles(sentinel):
    code = _touch_code(sentinel)
    shell = f"touch {sentinel}"
    return {
        "exec": pickle.dumps({"W1": _Payload(code)}),
        "os.system": pickle.dumps({"W1": _Payload(shell, os.system)}, protocol=2),
        "eval-protocol-0": pickle.dumps(_Payload(code, eval), protocol=0),
        "hand-written GLOBAL": f"cos\nsystem\n(S'{shell}'\ntR.".encode(),
        "nested in an array dict": pickle.dumps({"W1": np.zeros(3), "b1": [_Payload(code)]}),
        "numpy function": pickle.dumps({"W1": _Payload(str(sentinel), np.save)}),
    }


@pytest.mark.parametrize("kind", list(_malicious_pickles("x")))
def test_malicious_pickle_refused_and_not_run(tmp_path, simple, kind):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "params.pkl"
    path.write_bytes(_malicious_pickles(sentinel)[kind])
    with pytest.raises(UnsafePickleError, match="refusing to unpickle global") as info:
        simple.load_params(path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, pickle.UnpicklingError)
    assert not sentinel.exists()
    assert not (tmp_path / "pwned.npy").exists()


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (np.array([1, "a"], dtype=object), "object dtype"),
        ({"W1": np.array([1.0, None], dtype=object)}, "object dtype"),
        ([np.zeros(2)], "must hold a dict"),
        ({"W1": [1.0, 2.0]}, "numeric NumPy array"),
        ({"W1": np.array(["a", "b"])}, "numeric NumPy array"),
        ({1: np.zeros(2)}, "names must be strings"),
    ],
    ids=["object-array", "object-array-in-dict", "list", "list-value", "string-array", "int-key"],
)
def test_non_params_pickles_refused(tmp_path, simple, obj, match):
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match=match):
        simple.load_params(path)


class _ForgingPickler(pickle.Pickler):
    """Pickles arrays whose dtype state sets ``flags`` (1: "holds Python objects") on a float dtype."""

    def reducer_override(self, obj):
        if isinstance(obj, np.dtype):
            cls, args, state = obj.__reduce__()
            return cls, args, (*state[:-1], 1)
        return NotImplemented


def _forged_dtype_pickle(protocol):
    buffer = io.BytesIO()
    _ForgingPickler(buffer, protocol=protocol).dump({"W1": np.zeros(3)})
    return buffer.getvalue()


FORGING_PROTOCOLS = (2, 4, 5)


@pytest.mark.parametrize("protocol", FORGING_PROTOCOLS)
def test_forged_dtype_state_refused(tmp_path, simple, protocol):
    data = _forged_dtype_pickle(protocol)
    if protocol < 5:  # control: plain pickle builds the forged array (5: numpy's frombuffer balks)
        plain = pickle.loads(data)["W1"]
        assert plain.dtype == np.float64 and plain.dtype.hasobject
        plain.dtype.__setstate__(np.dtype(np.float64).__reduce__()[2])  # defuse before it is freed
    path = tmp_path / "params.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match="dtype state"):
        read_params(path)


def test_forged_dtype_state_leaves_no_numpy_internal_error(tmp_path):
    """In a fresh process (the error shows when the array is freed, even at exit)."""
    paths = []
    for protocol in FORGING_PROTOCOLS:
        paths.append(str(tmp_path / f"forged-{protocol}.pkl"))
        (tmp_path / f"forged-{protocol}.pkl").write_bytes(_forged_dtype_pickle(protocol))
    code = (
        "import gc, sys\n"
        "from cconv.params_io import UnsafePickleError, read_params\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        read_params(path)\n"
        "    except UnsafePickleError:\n"
        "        print('refused')\n"
        "    gc.collect()\n"
    )
    done = subprocess.run(  # cwd away from a source checkout, whose cconv/ has no kernels
        [sys.executable, "-c", code, *paths],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused"] * len(paths)
    assert "get_clear_loop" not in done.stderr and "Internal error" not in done.stderr, done.stderr


def test_build_on_an_allowed_function_refused(tmp_path):
    # GLOBAL numpy.dtype (the unpickler's own function), then BUILD with a dict state:
    # plain pickle would set an attribute on that function, for the whole process.
    target = params_io.RestrictedUnpickler(io.BytesIO()).find_class("numpy", "dtype")
    path = tmp_path / "params.pkl"
    path.write_bytes(b"cnumpy\ndtype\n(dS'pwned'\nI1\nsb.")
    with pytest.raises(UnsafePickleError, match="BUILD"):
        read_params(path)
    assert not hasattr(target, "pwned")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I100000000000\ntS'b'\ntR.",
            "refusing _reconstruct",
        ),
        (b"cnumpy\nndarray\n(I100000000000\ntR.", "not callable"),
    ],
    ids=["_reconstruct", "ndarray"],
)
def test_huge_array_shapes_refused_without_allocating(tmp_path, data, match):
    # numpy always pickles _reconstruct(ndarray, (0,), b'b'), then the data; a pickle that
    # asks for a 100 GB array up front must not get it
    path = tmp_path / "params.pkl"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        read_params(path)
    assert time.perf_counter() - start < 1.0


def _forged_float64():
    dtype = np.dtype("f8", False, True)  # a copy, not numpy's float64 singleton
    dtype.__setstate__((3, "<", None, None, None, -1, -1, 1))
    return dtype


@pytest.mark.parametrize(
    ("dtype", "plain"),
    [
        (np.dtype("<f8"), True),
        (np.dtype(">f4"), True),
        (np.dtype(np.uint8), True),
        (np.dtype(bool), True),
        (np.dtype([("a", "<f8")]), False),
        (np.dtype(("<f8", (2,))), False),
        (np.dtype("<f8", metadata={"x": 1}), False),
        (np.dtype("<U3"), False),
        (np.dtype(complex), False),
        (np.dtype(object), False),
    ],
    ids=lambda value: str(value),
)
def test_plain_numeric_dtype(dtype, plain):
    assert params_io.is_plain_numeric_dtype(dtype) is plain


def test_forged_flags_are_not_a_plain_dtype():
    forged = _forged_float64()
    try:
        assert forged == np.float64  # equality alone does not see the flags
        assert not params_io.is_plain_numeric_dtype(forged)
    finally:
        forged.__setstate__(np.dtype(np.float64).__reduce__()[2])


def test_pickled_arrays_are_rebuilt_as_fresh_plain_arrays(tmp_path):
    values = {"W1": np.arange(6.0).reshape(2, 3), "b1": np.arange(3, dtype=np.int32)}
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps(values))
    params, _ = read_params(path)
    for key, value in values.items():
        assert np.array_equal(params[key], value) and params[key].dtype == value.dtype
        assert params[key].flags.owndata and params[key].flags.writeable
        assert params_io.is_plain_numeric_dtype(params[key].dtype)


# --------------------------------------------------------------------------
# The book's real files
# --------------------------------------------------------------------------


def book_params_path(name):
    return shared_data() / "book-params" / f"{name}_params.pkl"


requires_shared_data = pytest.mark.skipif(
    not book_params_path("simple_convnet").is_file(),
    reason=f"the book's parameters not found in {shared_data() / 'book-params'} "
    "(set CCONV_SHARED_DATA to the folder holding book-params/)",
)


@requires_shared_data
@pytest.mark.parametrize(
    ("name", "cls", "n_layers"),
    [("simple_convnet", SimpleConvNet, 3), ("deep_convnet", DeepConvNet, 8)],
)
def test_book_pickles_read_safely(name, cls, n_layers):
    params, meta = read_params(book_params_path(name))
    assert meta is None
    assert list(params) == [f"{p}{i}" for i in range(1, n_layers + 1) for p in "Wb"]
    assert all(v.dtype == np.float64 for v in params.values())
    net = cls(seed=0)
    assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in net.params.items()}
    with pytest.raises(ValueError, match="no '__meta__'"):
        load_network(book_params_path(name))


def test_zip_without_npy_members_refused(tmp_path, simple):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("W1.npy", b"not an npy header")
    with pytest.raises(ValueError, match="'W1'"):
        simple.load_params(path)


# --------------------------------------------------------------------------
# Bombs: shapes and dtypes are checked from the headers, before any data is decompressed
# --------------------------------------------------------------------------

#: (4096, 4096) float64: 128 MiB of deflated zeros, some 600 KiB on disk.
BOMB_SHAPE = (4096, 4096)


@pytest.fixture(scope="module")
def simple_bomb(tmp_path_factory):
    """A SimpleConvNet params file (its real __meta__ and b1) whose W1 is a consistent 128 MiB bomb."""
    net = SMALL_NETS["SimpleConvNet"](seed=0)
    meta = np.array(json.dumps(_with_config(net)))
    path = tmp_path_factory.mktemp("bomb") / "params.npz"
    return write_bomb(path, BOMB_SHAPE, 8 * 4096 * 4096, others={"__meta__": meta, "b1": net.params["b1"]})


def assert_refused_fast(call, *fragments):
    result, peak = peak_of(call)
    assert isinstance(result, ValueError), result
    for fragment in fragments:
        assert fragment in str(result), (fragment, str(result))
    assert peak < MAX_PEAK_BYTES, f"refusing took {peak} bytes"
    return result


def test_bomb_refused_by_load_params_from_its_header(simple_bomb, simple):
    before = simple.params["W1"].copy()
    assert_refused_fast(
        lambda: params_io.load_params(simple_bomb, simple.params),
        str(simple_bomb), "parameter 'W1' has shape (4096, 4096), the network expects (3, 1, 3, 3)",
    )
    assert_refused_fast(
        lambda: params_io.load_params(simple_bomb, simple.params, cast=True),
        "parameter 'W1' has shape (4096, 4096), the network expects (3, 1, 3, 3)",
    )
    assert np.array_equal(simple.params["W1"], before)


@pytest.mark.parametrize("form", ["shapes", "shapes-and-dtypes", "callable"])
def test_bomb_refused_by_read_params_with_expected(simple_bomb, simple, form):
    if form == "shapes":
        expected = {key: value.shape for key, value in simple.params.items()}
    elif form == "shapes-and-dtypes":
        expected = {key: (value.shape, value.dtype) for key, value in simple.params.items()}
    else:
        def expected(key, shape, dtype):
            if shape != simple.params[key].shape:
                raise ValueError(f"{key!r}: shape {shape}")
    assert_refused_fast(lambda: read_params(simple_bomb, expected), "'W1'", "(4096, 4096)")


def test_bomb_refused_by_load_network_from_its_header(simple_bomb):
    assert_refused_fast(
        lambda: load_network(simple_bomb),
        str(simple_bomb), "'W1' has shape (4096, 4096), the saved settings of SimpleConvNet give (3, 1, 3, 3)",
    )




def test_bomb_refused_by_network_load_params_from_its_header(simple_bomb, simple):
    assert_refused_fast(lambda: simple.load_params(simple_bomb), "'W1' has shape (4096, 4096)")


def test_bomb_refused_by_read_params_budget(simple_bomb):
    assert_refused_fast(
        lambda: read_params(simple_bomb, max_bytes=2**20), str(simple_bomb), "'W1'", "holds 134217728 bytes"
    )
    params, meta = read_params(simple_bomb)  # control: within the default budget, a real (zero) array
    assert params["W1"].shape == BOMB_SHAPE and meta["net"] == "SimpleConvNet"


def test_huge_header_with_little_data_refused(tmp_path, simple):
    # W1 declares (20000, 20000) float64 = 3.2 GB and holds 1 MiB of zeros
    path = write_bomb(tmp_path / "p.npz", (20000, 20000), 2**20)
    assert_refused_fast(lambda: read_params(path), str(path), "'W1'", "corrupt", "3200000000")
    # The network knows its shapes: refused from the header, before the stream is read.
    assert_refused_fast(lambda: simple.load_params(path), str(path), "'W1' has shape (20000, 20000)")
    assert_refused_fast(lambda: params_io.load_params(path, simple.params), "'W1' has shape (20000, 20000)")


def test_other_network_named_from_the_meta_before_arrays_are_read(simple_bomb):
    # the bomb's meta names a SimpleConvNet: a LeNet refuses it by name, not by decompressing W1
    net = LeNet(seed=0)
    assert_refused_fast(lambda: net.load_params(simple_bomb), "'SimpleConvNet' network cannot be loaded into a LeNet")


# --------------------------------------------------------------------------
# read_meta, param_specs
# --------------------------------------------------------------------------


def test_read_meta_decompresses_the_meta_alone(simple_bomb, tmp_path, simple):
    meta, peak = peak_of(lambda: params_io.read_meta(simple_bomb))
    assert meta == _json(_with_config(simple)) and peak < MAX_PEAK_BYTES
    path = tmp_path / "p.npz"
    simple.save_params(path)
    assert params_io.read_meta(path) == read_params(path)[1]
    assert params_io.read_meta(write_npz(tmp_path / "plain.npz", **good_arrays(simple))) is None
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(good_arrays(simple)))
    assert params_io.read_meta(tmp_path / "p.pkl") is None  # not a zip: nothing read
    with pytest.raises(FileNotFoundError):
        params_io.read_meta(tmp_path / "absent.npz")


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (np.array(["{}"]), r"'__meta__' must be a 0-d unicode array, got shape \(1,\)"),
        (np.array(1.0), "'__meta__' must be a 0-d unicode array"),
        (np.array("x" * (2**18 + 1)), r"'__meta__' holds 1048580 bytes, more than the 1048576"),
        (np.array("{not json"), "not valid JSON"),
    ],
)
def test_read_meta_refuses_bad_or_oversized_meta(tmp_path, meta, match):
    path = write_npz(tmp_path / "p.npz", __meta__=meta, W1=np.zeros(2))
    with pytest.raises(ValueError, match=match):
        params_io.read_meta(path)
    with pytest.raises(ValueError, match=match):
        read_params(path)


def test_param_specs(simple):
    specs = params_io.param_specs(simple.params)
    assert specs["W1"] == ((3, 1, 3, 3), np.dtype(np.float64))
    assert params_io.param_specs(simple.params, cast=True)["W1"] == (3, 1, 3, 3)


def test_read_params_expected_checks_pickles_too(tmp_path, simple):
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps(good_arrays(simple)))
    assert read_params(path, params_io.param_specs(simple.params))[0].keys() == simple.params.keys()
    with pytest.raises(ValueError, match=r"'W1' has dtype float64, the network expects float32"):
        read_params(path, {key: (value.shape, np.float32) for key, value in simple.params.items()})
    with pytest.raises(ValueError, match=r"unexpected parameter\(s\) 'b3'"):
        read_params(path, {key: value.shape for key, value in simple.params.items() if key != "b3"})


@pytest.mark.parametrize("load", ["load_network", "load_params_cast"])
def test_a_wide_dtype_of_the_right_shape_is_refused_by_the_size_budget(tmp_path, load):
    # W1 has the network's shape but 80,000 bytes per element: its data would take some 80 MB
    net = SimpleConvNet(seed=0)
    arrays = {key: np.asarray(value) for key, value in net.params.items()}
    arrays["W1"] = np.full(arrays["W1"].shape, "x" * 20_000)
    path = tmp_path / "p.npz"
    np.savez_compressed(path, __meta__=np.array(json.dumps(_with_config(net))), **arrays)
    target = SimpleConvNet()
    call = (lambda: load_network(path)) if load == "load_network" else (
        lambda: target.load_params(path, cast=True))
    assert_refused_fast(call, str(path), "'W1'")
