"""The real demo (`make demo`): its config file, its stage cache and its no-apt message (no network)."""

import json
import os
import subprocess
import sys

import pytest

from mobile_bert_distill import CONFIGS_DIR, demo
from mobile_bert_distill.demo import pipeline

DEMO_YAML = os.path.join(CONFIGS_DIR, "demo.yaml")


def _runs(tmp_path, path=DEMO_YAML):
    settings, raw, base = demo.load_demo_config(path)
    return settings, demo.run_configs(settings, raw, base, train=str(tmp_path / "train.txt"),
                                      student_vocab=str(tmp_path / "v.txt"),
                                      teacher_source=str(tmp_path / "teacher"),
                                      prep_teacher=str(tmp_path / "prep" / "teacher"))


def test_demo_config_validates(tmp_path):
    settings, runs = _runs(tmp_path)
    assert set(runs) == {"teacher-prep", "nokd", "dual+up"}
    assert runs["teacher-prep"]["mode"] == "teacher" and runs["dual+up"]["mode"] == "dual+up"
    # the comparison is fair: same data, steps, batch, schedule and seed for both students
    for key in ("data", "train", "seed", "student"):
        assert runs["nokd"][key] == runs["dual+up"][key]
    assert runs["dual+up"]["teacher"]["source"] == str(tmp_path / "prep" / "teacher")
    assert runs["teacher-prep"]["teacher"]["source"] == str(tmp_path / "teacher")
    for cfg in runs.values():
        t = cfg["train"]
        assert t["steps"] % t["log_every"] == 0 and t["checkpoint_every"] % t["log_every"] == 0
    assert settings["vocab_size"] > 0 and settings["export"]["seq_len"] >= runs["dual+up"]["data"]["seq_len"]
    assert settings["bench"]["seq_len"] and settings["bench"]["threads"]


def test_demo_config_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(DEMO_YAML).read().replace("  train_mb:", "  train_mbb:"))
    with pytest.raises(demo.DemoError, match="demo.train_mbb"):
        demo.load_demo_config(str(bad))
    bad.write_text(open(DEMO_YAML).read().replace("    runs:", "    rounds:"))
    with pytest.raises(demo.DemoError, match="demo.bench.rounds"):
        demo.load_demo_config(str(bad))
    bad.write_text(open(DEMO_YAML).read().replace("      learning_rate: 0.", "      learning_rat: 0.", 1))
    with pytest.raises(demo.DemoError, match="learning_rat"):
        _runs(tmp_path, str(bad))


def test_stages_cache_by_key(tmp_path, capsys):
    state = str(tmp_path / "stages.json")
    calls = []
    st = demo.Stages(2, state_path=state)
    st.run("a", lambda: bool(calls), lambda: calls.append("a"), key={"x": 1})
    st = demo.Stages(2, state_path=state)
    st.run("a", lambda: True, lambda: calls.append("a2"), key={"x": 1})  # same key: cached
    st.run("b", lambda: True, lambda: calls.append("b"), key={"x": 1})  # never ran: runs
    st = demo.Stages(2, state_path=state)
    st.run("a", lambda: True, lambda: calls.append("a3"), key={"x": 2})  # key changed: reruns
    assert calls == ["a", "b", "a3"]
    out = capsys.readouterr().out
    assert "[1/2] a: cached" in out and "[2/2] b: done in" in out
    saved = json.load(open(state))
    assert saved["a"]["key"] == {"x": 2} and "seconds" in saved["a"] and "load_average_1m" in saved["a"]
    assert "cpu_seconds" in saved["a"]


def test_stage_key_callable_is_stored_after_the_run(tmp_path):
    # a stage whose key fingerprints a file the stage itself makes (the fetched corpus) must be cached next time
    state, made = str(tmp_path / "stages.json"), tmp_path / "made.txt"
    calls = []

    def key():
        return pipeline.fingerprint(str(made))

    def fn():
        calls.append(1)
        made.write_text("x")

    for _ in range(2):
        demo.Stages(1, state_path=state).run("make", made.exists, fn, key=key)
    assert calls == [1]


def test_own_corpus_split(tmp_path):
    src = tmp_path / "mine.txt"
    src.write_text("".join(f"line number {i} with a few words\n" for i in range(2000)))
    tr, ho = str(tmp_path / "tr.txt"), str(tmp_path / "ho.txt")
    pipeline.split_own_corpus(str(src), tr, ho, 0.05, max_bytes=10_000_000, max_lines=30)
    train_lines, held_lines = open(tr).read().splitlines(), open(ho).read().splitlines()
    assert len(held_lines) == 30 and not set(train_lines) & set(held_lines)
    assert 1800 < len(train_lines) < 2000


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX PATH")
def test_demo_without_apt_says_so_in_one_line(tmp_path):
    # a PATH without apt-get/dpkg-deb: the corpus stage stops at once with one line pointing to --corpus
    env = dict(os.environ, PATH=os.path.dirname(sys.executable), TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "mobile_bert_distill.demo", "--out", str(tmp_path / "out"),
                        "--cache", str(tmp_path / "cache")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("demo: error: cannot fetch the demo corpus"), r.stderr
    assert "--corpus YOUR.txt" in err[0]
    assert "[1/10] corpus ..." in r.stdout
