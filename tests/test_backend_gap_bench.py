"""benchmarks/backend_gap.py: one part timed on both backends, and its bad input."""

import importlib.util
import json

import pytest

from _benchmark_scripts import load_benchmark

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")


def test_unknown_part_is_one_line(capsys):
    gap = load_benchmark("backend_gap")
    with pytest.raises(SystemExit) as e:
        gap.main(["--parts", "gelu,nosuch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "unknown part 'nosuch'" in err[-1]


@pytest.mark.slow
def test_one_part_is_timed_on_both_backends(tmp_path, capsys):
    gap = load_benchmark("backend_gap")
    out = tmp_path / "gap.json"
    assert gap.main(["--parts", "gelu", "--repeats", "2", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert row["part"] == "gelu" and row["tensorflow_xla_ms"] > 0 and row["jax_ms"] > 0
    assert row["ratio"] == pytest.approx(row["jax_ms"] / row["tensorflow_xla_ms"])
    assert doc["versions"]["jax"] and doc["machine"]["cpus"] >= 1
    printed = capsys.readouterr().out
    assert printed.startswith("CPU: ") and "gelu" in printed
