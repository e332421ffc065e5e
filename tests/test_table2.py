"""benchmarks/table2.py: the step plan, bad input, and a tiny grid sized by a time budget."""

import json
import os
import tarfile

import pytest
import yaml

from _benchmark_scripts import load_benchmark
from conftest import tiny_config_dict


def _script():
    return load_benchmark("table2")


def test_plan_fits_the_budget():
    plan_steps = _script().plan_steps
    runs = [(0.1, 10.0), (0.2, 20.0)]
    steps = plan_steps(100.0, runs)
    assert steps % 10 == 0 and steps == 230
    assert sum(f + steps * s for s, f in runs) <= 100.0 < sum(f + (steps + 10) * s for s, f in runs)
    assert plan_steps(5.0, runs) == 10  # never fewer than 10 steps


def test_schedule_stretches_the_reference(tiny_config):
    ref = tiny_config("teacher", overrides=["train.warmup_steps=4", "dual.ramp_steps=10", "dual.p_dt_start=0.0"])
    over = dict(o.split("=") for o in _script().schedule(200, ref))
    assert over["train.steps"] == "200" and over["train.log_every"] == "20" and over["train.eval_every"] == "40"
    assert over["train.warmup_steps"] == "40" and over["dual.ramp_steps"] == "100"


def test_bad_input_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    for argv, words in ((["--demo", str(tmp_path / "none")], "run `make demo` first"),
                        (["--steps", "15"], "multiple of 10"),
                        (["--corpus", "x.txt"], "go together"),
                        (["--prep-share", "1.5"], "between 0 and 1")):
        assert _script().main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("table2: error:") and words in err
    assert not out.exists()


@pytest.fixture
def tiny_setup(tiny_data, tmp_path):
    """A demo config with tiny knobs, and a raw teacher (an untrained teacher checkpoint)."""
    import tensorflow as tf

    from mobile_bert_distill.distill import config
    from mobile_bert_distill.distill.run import Run

    base = tiny_config_dict(tiny_data, "dual+up", steps=20, log_every=10, checkpoint_every=10, warmup_steps=2)
    base.pop("teacher")
    base["data"].pop("corpus")
    base["data"].pop("student_vocab")
    base["teacher"] = {"trainable": False, "dropout": 0.0}
    base["demo"] = {"teacher_prep": {"teacher": {"trainable": True}, "dual": {"p_dt_start": 0.0, "ramp_steps": 10},
                                     "train": {"steps": 20, "warmup_steps": 2}}}
    cfg_path = tmp_path / "tiny_demo.yaml"
    cfg_path.write_text(yaml.safe_dump(base))
    run = Run(config.resolve(tiny_config_dict(tiny_data, "teacher")), strategy=tf.distribute.get_strategy(),
              log=lambda m: None).build()
    teacher = str(tmp_path / "raw_teacher")
    run.teacher_backbone.pooled_dense.trainable = True  # as distill() does before it saves the teacher
    run.teacher.save(teacher, run.teacher_tokenizer, run.student_vocab)
    return ["--config", str(cfg_path), "--corpus", tiny_data["train"], "--heldout", tiny_data["heldout"],
            "--student-vocab", tiny_data["student_vocab"], "--teacher", teacher]


@pytest.mark.slow
def test_tiny_grid_within_budget(tiny_setup, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = tiny_setup + ["--out", str(out), "--budget-minutes", "0.75", "--widths", "16", "24",
                         "--modes", "nokd", "dual+up", "--seeds", "3"]
    assert _script().main(argv + ["--plan-only"]) == 0  # probes and the plan alone
    assert "probe kd 24" in capsys.readouterr().out and sorted(os.listdir(out)) == ["plan.json"]
    assert _script().main(argv) == 0  # trains to the stored plan: no second probe
    log = capsys.readouterr().out
    assert "probe" not in log
    res = json.loads((out / "results.json").read_text())
    plan = res["plan"]
    # sized by the probes: every kind of run was timed, steps are multiples of 10
    assert set(plan["probe"]) == {"teacher", "nokd 16", "kd 16", "nokd 24", "kd 24"}
    assert plan["prep_steps"] % 10 == 0 and all(s % 10 == 0 for s in plan["steps"].values())
    assert res["teacher"]["steps"] == plan["prep_steps"] and res["teacher"]["history"]
    assert any("val_teacher_acc_tvocab" in h for h in res["teacher"]["history"])
    assert 0.0 <= res["teacher"]["heldout"]["teacher_vocab_head_accuracy"] <= 1.0
    assert len(res["runs"]) == 4 and {(r["width"], r["mode"]) for r in res["runs"]} == \
        {(16, "nokd"), (16, "dual+up"), (24, "nokd"), (24, "dual+up")}
    # the same masked positions for every run; each run's config is the tiny demo config's
    assert len({r["masked_tokens"] for r in res["runs"]}) == 1 and res["runs"][0]["masked_tokens"] > 0
    run_cfg = yaml.safe_load((out / "runs" / "24d_dual_up_seed3" / "config.yaml").read_text())
    assert run_cfg["student"]["hidden_dim"] == 24 and run_cfg["seed"] == 3 and run_cfg["loss"]["epsilon"] == 1.0
    assert run_cfg["teacher"]["source"] == str(out / "teacher_prep" / "teacher")
    assert run_cfg["train"]["steps"] == plan["steps"]["24"] and run_cfg["teacher"]["trainable"] is False
    prep_cfg = yaml.safe_load((out / "teacher_prep" / "config.yaml").read_text())
    assert prep_cfg["mode"] == "teacher" and prep_cfg["teacher"]["trainable"] is True
    assert prep_cfg["dual"]["ramp_steps"] == plan["prep_steps"] // 2  # 10 of 20 in the demo config
    # tokens seen, time, a curve per run; the table and the targets
    assert all(r["tokens_seen"] == r["steps"] * 8 * 16 and r["curve"] for r in res["runs"])
    table = (out / "table.md").read_text()
    assert "| 16 | nokd |" in table and "| 24 | dual+up |" in table and "teacher-vocabulary head >= 40 %" in table
    assert res["targets"][0]["met"] is (res["teacher"]["heldout"]["teacher_vocab_head_accuracy"] >= 0.4)
    for w in (16, 24):
        with tarfile.open(out / "best" / f"student_{w}d.tar.gz") as tar:
            assert f"student_{w}d/config.json" in tar.getnames()
    assert (out / "curves.png").stat().st_size > 0
    assert "plan: teacher preparation" in log
    # the same command again reuses the plan and every finished run
    assert _script().main(argv) == 0
    log = capsys.readouterr().out
    assert "probe" not in log and log.count("reused") == 5
    assert json.loads((out / "results.json").read_text())["plan"] == plan
    # the methods table of the same grid: step costs relative to nokd, int8 sizes
    methods = load_benchmark("methods")
    assert methods.main(["--grid", str(out), "--steps", "2", "--repeats", "1"]) == 0
    doc = json.loads((out / "methods.json").read_text())
    rows = {(r["width"], r["mode"]): r for r in doc["rows"]}
    assert set(rows) == {(16, "nokd"), (16, "dual+up"), (24, "nokd"), (24, "dual+up")}
    for w in (16, 24):
        nokd, kd = rows[(w, "nokd")], rows[(w, "dual+up")]
        assert nokd["step_cost_vs_nokd"] == 1.0 and nokd["step_seconds"] > 0
        assert kd["step_cost_vs_nokd"] == pytest.approx(kd["step_seconds"] / nokd["step_seconds"])
        assert nokd["student"] == str(out / "runs" / f"{w}d_nokd_seed3")
    # the same student architecture within a width, a wider one is bigger
    assert abs(rows[(16, "nokd")]["int8_bytes"] - rows[(16, "dual+up")]["int8_bytes"]) < 0.01 * rows[(16, "nokd")]["int8_bytes"]
    assert rows[(24, "nokd")]["int8_bytes"] > rows[(16, "nokd")]["int8_bytes"]
    assert "| 24 | 2 layers, 24-d | dual+up |" in (out / "methods.md").read_text()
    assert rows[(24, "nokd")]["architecture"] == "2 layers, 24-d"
    # rescoring with the costs of an earlier table: its rows are taken, the others measured
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"rows": [dict(rows[(16, "dual+up")], step_seconds=9.0, int8_bytes=123)]}))
    assert methods.main(["--grid", str(out), "--steps", "2", "--repeats", "1", "--costs-from", str(earlier)]) == 0
    again = {(r["width"], r["mode"]): r for r in json.loads((out / "methods.json").read_text())["rows"]}
    assert again[(16, "dual+up")]["step_seconds"] == 9.0 and again[(16, "dual+up")]["int8_bytes"] == 123
    assert again[(16, "dual+up")]["costs_from"] == str(earlier) and "costs_from" not in again[(24, "dual+up")]
    assert again[(16, "dual+up")]["step_cost_vs_nokd"] == pytest.approx(9.0 / again[(16, "nokd")]["step_seconds"])


def test_methods_needs_a_grid(tmp_path, capsys):
    assert load_benchmark("methods").main(["--grid", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.json not found" in err[0]


@pytest.mark.slow
def test_grid_from_a_prepared_teacher(tiny_setup, tmp_path, capsys):
    """A second grid reuses the first one's teacher preparation: an ALBERT-style student on the same teacher."""
    first = tmp_path / "first"
    assert _script().main(tiny_setup + ["--out", str(first), "--prep-steps", "20", "--steps", "10",
                                        "--widths", "16", "--modes", "nokd", "--seeds", "0"]) == 0
    capsys.readouterr()
    prep = first / "teacher_prep"
    stamp = (prep / "summary.json").stat().st_mtime_ns
    second = tmp_path / "second"
    argv = tiny_setup + ["--out", str(second), "--prepared-teacher", str(prep), "--steps", "10", "--widths", "24",
                         "--modes", "nokd", "dual+up", "--seeds", "1",
                         "--override", "student.embedding_dim=8", "student.share_layers=true"]
    assert _script().main(argv) == 0
    log = capsys.readouterr().out
    assert f"teacher (from {prep})" in log and "probe" not in log
    assert not (second / "teacher_prep").exists() and (prep / "summary.json").stat().st_mtime_ns == stamp
    res = json.loads((second / "results.json").read_text())
    assert res["teacher"]["prepared_by"] == str(prep) and res["plan"]["prep_steps"] == 20
    assert res["teacher"]["history"] == json.loads((prep / "history.json").read_text())
    assert res["teacher"]["heldout"] == json.loads((first / "results.json").read_text())["teacher"]["heldout"]
    run_cfg = yaml.safe_load((second / "runs" / "24d_dual_up_seed1" / "config.yaml").read_text())
    assert run_cfg["teacher"]["source"] == str(prep / "teacher")
    assert run_cfg["student"]["embedding_dim"] == 8 and run_cfg["student"]["share_layers"] is True
    student = json.loads((second / "runs" / "24d_nokd_seed1" / "student" / "config.json").read_text())
    assert student["config"]["embedding_dim"] == 8 and student["config"]["num_groups"] == 1
    methods = load_benchmark("methods")
    assert methods.main(["--grid", str(second), "--steps", "2", "--repeats", "1"]) == 0
    rows = json.loads((second / "methods.json").read_text())["rows"]
    shared = "2 layers, 24-d, 8-d factorised embedding, 1 distinct layer shared across depth"
    assert {r["architecture"] for r in rows} == {shared}
    assert f"| 24 | {shared} | dual+up |" in (second / "methods.md").read_text()


def test_a_prepared_teacher_must_be_one(tmp_path, capsys):
    out = tmp_path / "out"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("mode: nokd\n")
    (run / "summary.json").write_text("{}")
    (run / "history.json").write_text("[]")
    for argv, words in ((["--prepared-teacher", str(tmp_path / "none")], "no config.yaml"),
                        (["--prepared-teacher", str(run)], "a 'nokd' run, not a teacher preparation"),
                        (["--prepared-teacher", str(run), "--prep-steps", "10"], "exclude each other")):
        assert _script().main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("table2: error:") and words in err, err
    assert not out.exists()
