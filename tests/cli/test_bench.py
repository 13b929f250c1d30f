"""``cconv bench`` (:mod:`cconv.cli.bench`): the kernel benchmark of the source checkout."""

import os

import pytest

from cconv_testutils import run_cli

#: The checkout's benchmark folder: beside tests/, or where CCONV_BENCHMARKS says (.ci/run sets it
#: where the tests run from a copy outside the checkout).
BENCHMARKS = os.environ.get("CCONV_BENCHMARKS") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks"
)


@pytest.fixture
def benchmarks(monkeypatch):
    """Point ``cconv bench`` at the checkout's benchmarks, which no installed cconv carries."""
    if not os.path.isfile(os.path.join(BENCHMARKS, "bench_kernels.py")):
        pytest.skip(f"no benchmarks/bench_kernels.py at {BENCHMARKS}: the tests run outside a checkout")
    monkeypatch.setenv("CCONV_BENCHMARKS", BENCHMARKS)


@pytest.mark.usefixtures("benchmarks")
def test_bench_prints_a_table(capsys):
    status, out, err = run_cli(capsys, "bench", "--quick", "--ops", "im2col", "--dtype", "float32",
                           "--repeat", "1", "--retries", "0")
    assert status == 0, err
    assert "cconv kernel benchmark" in out
    rows = [line for line in out.splitlines() if line.startswith("im2col ")]
    assert len(rows) == 1 and "float32" in rows[0]
    assert "Sanity check" in out and "all passed" in out


@pytest.mark.usefixtures("benchmarks")
def test_bench_bad_option(capsys):
    status, out, err = run_cli(capsys, "bench", "--ops", "convolve")
    assert status == 2 and "Traceback" not in err and "convolve" in err


def test_bench_without_a_benchmark_folder_says_where_to_find_one(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CCONV_BENCHMARKS", str(tmp_path))  # a folder without bench_kernels.py
    status, out, err = run_cli(capsys, "bench", "--quick")
    assert (status, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and "CCONV_BENCHMARKS" in err and "bench_kernels.py" in err
    assert str(tmp_path) in err  # the folder it looked in


def test_bench_runs_the_script_the_environment_names(capsys, tmp_path, monkeypatch):
    (tmp_path / "bench_kernels.py").write_text(
        "def main(argv=None):\n    print('ran with', argv)\n    return 7\n"
    )
    monkeypatch.setenv("CCONV_BENCHMARKS", str(tmp_path))
    status, out, _ = run_cli(capsys, "bench", "--quick", "--ops", "im2col")
    assert status == 7 and out.strip() == "ran with ['--quick', '--ops', 'im2col']"
