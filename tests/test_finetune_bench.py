"""`benchmarks/finetune_kd.py` end to end on tiny presets and a generated labelled CSV pair (no network)."""

import csv
import json
import os
import random

import pytest

from _benchmark_scripts import load_benchmark

CUES = {"1": ("happily", "carefully"), "-1": ("slowly", "again")}


def _bench():
    return load_benchmark("finetune_kd")


def _labelled_csv(path, n, seed):
    """``n`` generated sentences; an adverb at the front says the label (none of them elsewhere)."""
    from mobile_bert_distill.demo import synthetic

    rng = random.Random(seed)
    cue_words = {w for ws in CUES.values() for w in ws}
    rows = []
    while len(rows) < n:
        s = synthetic.sentence(rng).rstrip(".!?")
        if cue_words & set(s.split()):
            continue
        label = "1" if len(rows) % 2 else "-1"
        rows.append((f"{rng.choice(CUES[label])} {s} .", label))
    rng.shuffle(rows)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


@pytest.fixture(scope="module")
def presets(tiny_data, tmp_path_factory):
    """A 1×32 teacher on the teacher vocabulary, two 1×16 students on the student vocabulary.

    One layer each: the benchmark reads depth and width from the presets and never depends on them, and
    every fine-tuning run's cost is mostly tracing the training step, which grows with the depth.
    """
    import keras

    from mobile_bert_distill.distill.student import build_student
    from mobile_bert_distill.text import load_vocab

    d = tmp_path_factory.mktemp("ftkd_presets")
    out = {}
    for i, (name, vocab, width) in enumerate((("teacher", "teacher_vocab", 32), ("student", "student_vocab", 16),
                                              ("nokd_student", "student_vocab", 16))):
        keras.utils.set_random_seed(i)
        mlm = build_student(load_vocab(tiny_data[vocab]), hidden_dim=width, num_layers=1, num_heads=2, seq_len=32)
        out[name] = str(d / name)
        mlm.save_to_preset(out[name])
    data = d / "data"
    data.mkdir()
    _labelled_csv(data / "train.csv", 160, 0)
    _labelled_csv(data / "eval.csv", 60, 1)
    out["data"] = str(data)
    return out


def test_missing_demo_artifacts_is_one_line_exit_2(tmp_path, capsys):
    code = _bench().main(["--teacher", str(tmp_path / "nowhere"), "--work", str(tmp_path / "w"),
                          "--out-json", str(tmp_path / "r.json"), "--out-md", str(tmp_path / "r.md")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("finetune_kd: error: teacher not found") and "make demo" in err[0]
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_benchmark_runs_end_to_end_and_reuses_runs(presets, tmp_path, capsys):
    bench = _bench()
    out_json, out_md = tmp_path / "finetune_kd.json", tmp_path / "finetune_kd.md"
    argv = ["--teacher", presets["teacher"], "--student", presets["student"],
            "--nokd-student", presets["nokd_student"], "--data-dir", presets["data"], "--quick",
            "--epochs", "1", "--teacher-epochs", "1", "--seq-len", "32", "--batch-size", "16",
            "--learning-rate", "5e-3", "--teacher-learning-rate", "5e-3", "--num-calibration", "16",
            "--work", str(tmp_path / "work"), "--out-json", str(out_json), "--out-md", str(out_md)]
    assert bench.main(argv) == 0
    stdout = capsys.readouterr().out
    res = json.loads(out_json.read_text(encoding="utf-8"))
    assert [r["variant"] for r in res["rows"]] == ["teacher", "student", "student_kd", "nokd_student"]
    for row in res["rows"]:
        assert row["seeds"] == [0]
        assert 0.0 <= row["accuracy"]["mean"] <= 1.0 and 0.0 <= row["macro_f1"]["mean"] <= 1.0
    assert res["rows"][2]["kd"] and not res["rows"][1]["kd"]
    assert res["data"]["train_examples"] == 160 and res["data"]["eval_examples"] == 60
    q = res["int8"]
    assert q["variant"] in ("student", "student_kd", "nokd_student") and q["variant"] == res["best_student"]
    assert 0.0 <= q["int8_accuracy"]["mean"] <= 1.0 and isinstance(q["met"], bool)
    assert q["drop_points"] == pytest.approx(100 * (q["float_accuracy"]["mean"] - q["int8_accuracy"]["mean"]))
    assert os.path.isfile(q["per_seed"][0]["tflite"]) and q["per_seed"][0]["eval_examples"] == 60
    assert res["paper"]["teacher_bert_base"] == 93.5 and res["paper"]["student_48d_nokd"] == 79.5
    assert res["paper"]["student_48d_shared_projections"] == 82.2
    table = out_md.read_text(encoding="utf-8")
    assert table.count("\n| ") >= 7 and "int8 LiteRT" in table and "paper, SST-2" in table
    assert "target ≤ 0.5 points" in table and table.strip().splitlines()[-1] in stdout
    for stage in ("teacher seed 0: accuracy", "student_kd seed 0: accuracy", "int8 "):
        assert stage in stdout

    # a second run with the same inputs reuses every fine-tuned classifier and the export
    assert bench.main(argv) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("(cached)") == 4 and "(export cached)" in stdout
    again = json.loads(out_json.read_text(encoding="utf-8"))
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in res["rows"]]
