"""benchmarks/albert_size.py at a tiny size: what it measures, where it stops, bad input."""

import json

import pytest
from _benchmark_scripts import load_benchmark

from mobile_bert_distill.bench.params import param_counts, student_config


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("albert_size")
    bench = load_benchmark("albert_size")
    code = bench.main(["--out", str(out), "--widths", "16,8,32", "--num-layers", "3", "--embedding-dim", "8",
                       "--seq-len", "16", "--calibration", "2", "--variants", "factorised,shared",
                       "--budget-mb", "0.05"])
    assert code == 0
    return json.loads((out / "albert_size.json").read_text())


def test_parameters_are_the_analytic_counts_and_sharing_stores_one_layer(result):
    rows = {(r["variant"], r["hidden_dim"]): r for r in result["rows"]}
    for (variant, hidden), r in rows.items():
        cfg = student_config(hidden, num_layers=3, embedding_dim=8, distinct_layers=1 if variant == "shared" else None)
        assert r["parameters"] == param_counts(cfg)["masked_lm"], (variant, hidden)
    # the same student but for sharing: two layers' weights fewer, in the int8 file too, at one byte
    # (int8 kernels) to four (float LayerNorms; int32 biases and float scales) per parameter
    fact, shared = rows[("factorised", 8)], rows[("shared", 8)]
    two_layers = fact["parameters"] - shared["parameters"]
    assert two_layers > 0 and two_layers <= fact["int8_bytes"] - shared["int8_bytes"] <= 4 * two_layers


def test_each_variant_stops_at_its_first_width_over_the_budget(result):
    widths = {v: [r["hidden_dim"] for r in result["rows"] if r["variant"] == v] for v in ("factorised", "shared")}
    for variant, measured in widths.items():
        assert measured == sorted(measured) and measured[0] == 8
        fits = [r["fits"] for r in result["rows"] if r["variant"] == variant]
        assert all(fits[:-1]) and (not fits[-1] or measured[-1] == 32), (variant, fits)
        widest = max((w for w, f in zip(measured, fits) if f), default=None)
        assert result["widest_under_budget"][variant] == widest
    # the 4,928-row table alone is ~0.04 MB in int8: the widest factorised student cannot fit 0.05 MB
    assert widths["factorised"][-1] < 32


def test_bad_variant_or_width_is_one_line(tmp_path, capsys):
    bench = load_benchmark("albert_size")
    assert bench.main(["--out", str(tmp_path / "o"), "--variants", "bert,albert", "--widths", "18"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "albert" in err[0] and "18" in err[0]
    assert not (tmp_path / "o").exists()
