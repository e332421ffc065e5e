"""benchmarks/kd_vs_nokd.py on a tiny stand-in of a finished demo folder (configs, data, prepared teacher)."""

import json
import os

import pytest
import yaml

from _benchmark_scripts import load_benchmark
from conftest import tiny_config_dict


def _script():
    return load_benchmark("kd_vs_nokd")


def test_missing_demo_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "out"
    code = _script().main(["--demo", str(tmp_path / "no_demo"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "run `make demo` first" in err
    assert not out.exists()
    assert _script().main(["--teacher", "x"]) == 2  # --teacher without --corpus


@pytest.mark.slow
def test_grid_runs_from_the_demo_configs(tiny_data, tmp_path, capsys):
    import tensorflow as tf

    from mobile_bert_distill import config
    from mobile_bert_distill.training import Run

    demo = tmp_path / "demo_out"
    (demo / "configs").mkdir(parents=True)
    (demo / "data").mkdir()
    (demo / "data" / "heldout.txt").write_text(open(tiny_data["heldout"]).read())
    # the prepared teacher: a teacher checkpoint written the way `mbd teacher-prep` writes it
    # (DualVocabTeacher.save), left untrained: the grid only reads it, and teacher-prep's own
    # training and checkpoint are covered by tests/test_training.py and tests/test_notebook.py
    prep = Run(config.resolve(tiny_config_dict(tiny_data, "teacher")), strategy=tf.distribute.get_strategy(),
               log=lambda m: None).build()
    teacher = str(demo / "teacher_prep" / "teacher")
    prep.teacher_backbone.pooled_dense.trainable = True  # as distill() does before it saves the teacher
    prep.teacher.save(teacher, prep.teacher_tokenizer, prep.student_vocab)
    for name, mode in (("nokd", "nokd"), ("dual_up", "dual+up")):
        d = tiny_config_dict(tiny_data, mode, steps=10, checkpoint_every=10, learning_rate=5e-3)
        d["teacher"] = {"source": teacher, "dropout": 0.0}
        cfg = config.resolve(d)
        (demo / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))

    out = tmp_path / "grid"
    argv = ["--demo", str(demo), "--out", str(out), "--modes", "nokd", "dual+up", "--seeds", "1"]
    assert _script().main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["setting"] == "demo" and len(res["runs"]) == 2
    assert {r["mode"] for r in res["runs"]} == {"nokd", "dual+up"}
    # same masked positions for every run, and a curve per run
    assert len({r["masked_tokens"] for r in res["runs"]}) == 1 and res["runs"][0]["masked_tokens"] > 0
    assert all(r["curve"] and 0.0 <= r["heldout_accuracy"] <= 1.0 for r in res["runs"])
    # each run is the demo's config with only mode, seed, eval cadence and held-out set changed
    demo_kd = yaml.safe_load((demo / "configs" / "dual_up.yaml").read_text())
    run = yaml.safe_load((out / "runs" / "dual_up_seed1" / "config.yaml").read_text())
    assert run["seed"] == 1 and run["train"]["steps"] == demo_kd["train"]["steps"]
    assert run["data"]["corpus"] == demo_kd["data"]["corpus"] and run["student"] == demo_kd["student"]
    assert run["teacher"]["source"] == teacher and run["loss"] == demo_kd["loss"]
    nokd = yaml.safe_load((out / "runs" / "nokd_seed1" / "config.yaml").read_text())
    assert nokd["mode"] == "nokd" and nokd["train"] == run["train"]
    table = (out / "table.md").read_text()
    assert "| nokd |" in table and "| dual+up |" in table and "+0.00" in table
    assert (out / "accuracy_vs_step.png").stat().st_size > 0
    # a second run reuses every finished run
    capsys.readouterr()
    assert _script().main(argv) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == 2
