"""benchmarks/dual_products.py: both orders timed and equal, and its bad input."""

import json

import pytest

from _benchmark_scripts import load_benchmark


@pytest.mark.parametrize("args, message", [
    (["--parts", "projections,nosuch"], "unknown part 'nosuch'"),
    (["--widths", "6"], "widths multiples of 4"),
])
def test_bad_input_is_one_line(args, message, capsys):
    bench = load_benchmark("dual_products")
    with pytest.raises(SystemExit) as e:
        bench.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and message in err[-1]


def test_both_orders_are_timed_and_give_the_same_loss(tmp_path, capsys):
    bench = load_benchmark("dual_products")
    bench.TEACHER = dict(num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=128)  # tiny, same code
    bench.VOCAB = 300
    out = tmp_path / "products.json"
    assert bench.main(["--widths", "8", "--repeats", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["part"] for r in doc["rows"]] == ["projections (up)", "projections (down)", "student-head"]
    for row in doc["rows"]:
        assert row["kit_ms"] > 0 and row["left_to_right_ms"] > 0
        assert row["speedup"] == pytest.approx(row["left_to_right_ms"] / row["kit_ms"])
        assert row["loss"] > 0 and row["loss_difference"] <= 1e-5 * row["loss"]
    assert doc["teacher"]["hidden_dim"] == 32 and doc["machine"]["cpus"] >= 1
    printed = capsys.readouterr().out
    assert printed.startswith("CPU: ") and "student-head" in printed
