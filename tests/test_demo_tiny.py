"""The tiny built-in demo (`make demo-tiny`, `python -m mobile_bert_distill.demo --tiny`) end to end, and its stage caching."""

import os
import subprocess
import sys

import pytest

from mobile_bert_distill import CONFIGS_DIR
from mobile_bert_distill.distill import config



def test_tiny_config_validates():
    data, base = config.load_yaml(os.path.join(CONFIGS_DIR, "tiny.yaml"))
    cfg = config.resolve(data, ["data.corpus=[a.txt]", "data.student_vocab=v.txt",
                                "teacher.random.vocabulary=t.txt"], base_dir=base)
    assert cfg["teacher"]["random"]["num_layers"] == 2 and cfg["teacher"]["random"]["vocabulary"] == "t.txt"
    assert cfg["train"]["steps"] % cfg["train"]["log_every"] == 0


@pytest.mark.slow
def test_tiny_demo_runs_and_caches_stages(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--tiny", "--out", str(out), "--steps", "20"]
    cmd = [sys.executable, "-m", "mobile_bert_distill.demo", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = (out / "REPORT.md").read_text()
    assert "Held-out masked-token accuracy" in report and "student, dual+up" in report
    assert r.stdout.strip().splitlines()[-1].startswith("demo report:")
    # the rerun (same arguments, same entry point's main) finds every stage's output on disk; it runs
    # in this process, which spares a second TensorFlow start-up
    from mobile_bert_distill.demo import __main__ as demo

    capsys.readouterr()
    assert demo.main(args) == 0
    stdout = capsys.readouterr().out
    assert stdout.count(": cached") == 5, stdout
    assert stdout.strip().splitlines()[-1].startswith("demo report:")
