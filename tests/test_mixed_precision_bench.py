"""`benchmarks/mixed_precision.py` on two tiny students of one vocabulary: every file is scored
beside its preset, fits its budget, is timed beside the baseline, and the verdicts follow."""

import json

import pytest

pytest.importorskip("ai_edge_quantizer")

from _benchmark_scripts import load_benchmark  # noqa: E402
from _export_fixtures import build_student, learn_vocab, make_sentences, save_student, train_briefly  # noqa: E402

SMALL_MB, WIDE_MB = 0.03, 0.06  # the tiny students' int8 files: 0.029 and 0.050 MB; all float16: 0.087 (wide)


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed_bench")
    sentences = make_sentences(600, seed=3)
    vocab = learn_vocab(sentences, size=300)
    small = train_briefly(build_student(vocab, hidden=16, intermediate=32), sentences, steps=30)
    wide = train_briefly(build_student(vocab, hidden=32, intermediate=64), sentences, steps=30)
    corpus = root / "heldout.txt"
    corpus.write_text("\n".join(make_sentences(300, seed=4)) + "\n", encoding="utf-8")
    return {"small": save_student(small, str(root / "small")), "wide": save_student(wide, str(root / "wide")),
            "corpus": str(corpus), "root": root}


def test_scores_sizes_latency_and_verdicts(students, tmp_path, capsys):
    bench = load_benchmark("mixed_precision")
    out = tmp_path / "mixed.json"
    rc = bench.main(["--small", students["small"], "--wide", students["wide"], "--corpus", students["corpus"],
                     "--small-mb", str(SMALL_MB), "--wide-mb", str(WIDE_MB), "--seq-len", "32", "--latency-seq-len", "32",
                     "--baseline", f"keras-hub-preset:{students['wide']}", "--runs", "3", "--rounds", "1",
                     "--work", str(tmp_path / "work"), "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert list(rows) == ["small_int8", "small_mixed", "wide_int8", "wide_mixed"]
    assert [rows[k]["hidden_dim"] for k in rows] == [16, 16, 32, 32]
    assert rows["small_mixed"]["size_mb"] <= SMALL_MB and rows["wide_mixed"]["size_mb"] <= WIDE_MB
    assert rows["small_mixed"]["mixed_precision"]["target_size_mb"] == SMALL_MB
    assert rows["small_int8"]["mixed_precision"] is None
    # the wide budget is under its float16 file and above its int8 one: the plan mixes precisions
    plan = {m["precision"] for m in rows["wide_mixed"]["mixed_precision"]["matrices"]}
    assert len(plan) > 1 and rows["wide_int8"]["size_mb"] < WIDE_MB
    for r in rows.values():  # every file scored beside its own preset, on one set of positions
        assert r["masked_tokens"] == rows["small_int8"]["masked_tokens"] > 0 and r["seq_len"] == 32
        assert r["drop_points"] == pytest.approx(100 * (r["student_accuracy"] - r["file_accuracy"]))
    assert rows["small_int8"]["student_accuracy"] == rows["small_mixed"]["student_accuracy"]
    small, wide = doc["targets"]["small_mixed"], doc["targets"]["wide_mixed"]
    assert small["met"] == (small["size_mb"] <= SMALL_MB and small["drop_points"] <= 0.5)
    assert wide["fits"] and wide["gain_points"] == pytest.approx(
        100 * (rows["wide_mixed"]["file_accuracy"] - rows["small_int8"]["file_accuracy"]))
    lat = doc["latency"]
    assert set(lat["p50_ms"]) == set(rows) and all(v > 0 for v in lat["p50_ms"].values())
    assert lat["baseline_p50_ms"] > 0 and lat["baseline"] and lat["seq_len"] == 32
    assert doc["machine"]["cpu"]["model"]
    printed = capsys.readouterr().out
    assert "| small_mixed (16-d mixed) |" in printed and "small student:" in printed


def test_bad_input_one_line_exit_2(students, tmp_path, capsys):
    bench = load_benchmark("mixed_precision")
    work = tmp_path / "work"
    assert bench.main(["--small", str(tmp_path / "nope"), "--wide", students["wide"], "--corpus", students["corpus"],
                       "--work", str(work)]) == 2
    assert bench.main(["--small", students["small"], "--wide", students["wide"], "--corpus", students["corpus"],
                       "--small-mb", "0", "--work", str(work)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "does not exist" in err[0] and "must be positive" in err[1]
    assert not work.exists()
