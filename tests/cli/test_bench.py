"""``cconv bench`` (:mod:`cconv.cli.bench`): the kernel benchmark of the source checkout."""

from cconv_testutils import run_cli


def test_bench_prints_a_table(capsys):
    status, out, err = run_cli(capsys, "bench", "--quick", "--ops", "im2col", "--dtype", "float32",
                           "--repeat", "1", "--retries", "0")
    assert status == 0, err
    assert "cconv kernel benchmark" in out
    rows = [line for line in out.splitlines() if line.startswith("im2col ")]
    assert len(rows) == 1 and "float32" in rows[0]
    assert "Sanity check" in out and "all passed" in out


def test_bench_bad_option(capsys):
    status, out, err = run_cli(capsys, "bench", "--ops", "convolve")
    assert status == 2 and "Traceback" not in err and "convolve" in err
