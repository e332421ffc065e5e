"""`benchmarks/quantizer_compare.py` on a tiny student: the AEQ files hold the weights their recipe
names, shrink in the expected order and stay close to the kit float32 file."""

import json

import pytest

pytest.importorskip("ai_edge_quantizer")

from _benchmark_scripts import load_benchmark  # noqa: E402
from _export_fixtures import build_student, learn_vocab, make_sentences, save_student, train_briefly  # noqa: E402

LAYERS = 2


def test_aeq_files_against_the_kit_float32(tmp_path, capsys):
    bench = load_benchmark("quantizer_compare")
    train = make_sentences(600, seed=1)
    model = build_student(learn_vocab(train, 200), num_layers=LAYERS, seq_len=32)
    train_briefly(model, train, steps=30)
    student = save_student(model, str(tmp_path / "student"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_sentences(300, seed=2)) + "\n", encoding="utf-8")
    out = tmp_path / "compare.json"
    rc = bench.main(["--student", student, "--corpus", str(corpus), "--work", str(tmp_path / "work"),
                     "--kit", "float32", "--recipes", "weight_only_wi8_afp32,dynamic_wi4_afp32,ffn4_fc8_gather8",
                     "--seq-len", "32", "--calibration", "16", "--parity", "48", "--rounds", "1",
                     "--per-round", "3", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    rows = {r["file"]: r for r in doc["files"]}
    assert list(rows) == ["kit float32", "aeq weight_only_wi8_afp32", "aeq dynamic_wi4_afp32", "aeq ffn4_fc8_gather8"]
    assert all("error" not in r for r in rows.values())
    n_fc = sum(rows["kit float32"]["fc_weights"].values())
    assert rows["kit float32"]["fc_weights"] == {"float32": n_fc}
    assert rows["aeq weight_only_wi8_afp32"]["fc_weights"] == {"int8": n_fc}
    assert rows["aeq dynamic_wi4_afp32"]["fc_weights"] == {"int4": n_fc}
    # the mixed recipe: int4 exactly on the two feed-forward FCs of each layer, int8 elsewhere,
    # and the embedding table stored in int8 (every other recipe leaves it float)
    assert doc["ffn_fully_connected"] == 2 * LAYERS
    assert rows["aeq ffn4_fc8_gather8"]["fc_weights"] == {"int4": 2 * LAYERS, "int8": n_fc - 2 * LAYERS}
    assert rows["aeq ffn4_fc8_gather8"]["embedding_table"] == "int8"
    assert rows["aeq dynamic_wi4_afp32"]["embedding_table"] == "float32"
    sizes = [rows[k]["size_mb"] for k in ("kit float32", "aeq weight_only_wi8_afp32", "aeq dynamic_wi4_afp32")]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    assert rows["aeq ffn4_fc8_gather8"]["size_mb"] < rows["aeq dynamic_wi4_afp32"]["size_mb"]
    assert rows["kit float32"]["top1_agreement"] == 1.0
    assert rows["aeq weight_only_wi8_afp32"]["top1_agreement"] >= 0.9
    assert rows["aeq weight_only_wi8_afp32"]["xnnpack_partitions"] == 1
    assert doc["cpu"]["model"] and "avx2" in doc["cpu"]["simd"]
    assert "aeq dynamic_wi4_afp32" in capsys.readouterr().out


def test_without_ai_edge_quantizer_it_says_how_to_install(tmp_path, capsys, monkeypatch):
    bench = load_benchmark("quantizer_compare")
    monkeypatch.setattr(bench, "import_aeq", lambda: None)
    assert bench.main(["--student", str(tmp_path), "--corpus", str(tmp_path / "c.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install ai-edge-quantizer==0.10.0" in err[0]
