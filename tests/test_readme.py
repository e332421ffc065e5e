"""The README's examples as written: every `mbd` command parses, and the walk-through runs on tiny data.

The walk-through (the "Command line" block and the export/predict block) runs in a folder holding
the files the README names: corpus.txt and heldout.txt (generated text), teacher/vocab.txt (a small
vocabulary learned from them), my.yaml (mobile_bert_distill/configs/tiny.yaml pointed at those files) and train.csv /
eval.csv (generated labelled rows). SMALLER lists every change made to the README's text, and each
fragment must be in the README: only sizes and step counts shrink, and the int8 gate opens for a
student trained 20 steps (near-tied predictions everywhere).
"""

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from _classifier_fixtures import labelled_rows, write_csv

from mobile_bert_distill import CONFIGS_DIR
from mobile_bert_distill.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
WALK_THROUGH = ("Command line", "Export to LiteRT and run it")  # headings of the blocks that run

SMALLER = {
    "--size 4928": "--size 120",
    "train.steps=20000": "train.steps=20",
    "train.steps=500 train.log_every=50": "train.steps=20 train.log_every=10",
    "train.checkpoint_every=250": "train.checkpoint_every=10",
    "--min-agreement 0.99": "--min-agreement 0",
}


def bash_blocks(text):
    """``(heading, [argv, ...])`` for every ```bash block: its `mbd` commands, without the `mbd`.

    Continued lines are joined, comments dropped, and optional parts written ``[--flag value]``
    are kept (without the brackets).
    """
    heading, block, blocks = None, None, []
    for line in text.splitlines():
        if block is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif block is None and line.strip() == "```bash":
            block = []
        elif block is not None and line.strip() == "```":
            joined = re.sub(r"\\\n\s*", " ", "\n".join(block))
            commands = [shlex.split(re.sub(r"\[(--[^\]]*)\]", r"\1", cmd), comments=True)
                        for cmd in joined.splitlines()]
            blocks.append((heading, [argv[1:] for argv in commands if argv and argv[0] == "mbd"]))
            block = None
        elif block is not None:
            block.append(line)
    return blocks


def test_every_readme_command_parses():
    blocks = bash_blocks(README.read_text(encoding="utf-8"))
    commands = [argv for _, cmds in blocks for argv in cmds]
    assert len(commands) >= 15 and {argv[0] for argv in commands} >= {
        "vocab", "distill", "eval", "teacher-prep", "finetune", "pack-run", "export", "predict", "bench", "params"}
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # an unknown flag or a bad value exits here
        assert callable(args.func)


def test_smaller_changes_only_what_it_says():
    text = README.read_text(encoding="utf-8")
    for fragment in SMALLER:
        assert fragment in text, f"README no longer has {fragment!r}: update SMALLER"


@pytest.mark.slow
def test_the_walk_through_runs_as_written(tmp_path, monkeypatch, capsys):
    from mobile_bert_distill.demo import synthetic
    from mobile_bert_distill import text
    from mobile_bert_distill.text.vocab import learn_vocab

    monkeypatch.chdir(tmp_path)
    synthetic.write_corpus("corpus.txt", 600, seed=0)
    synthetic.write_corpus("heldout.txt", 60, seed=1)
    os.makedirs("teacher")
    lines = text.read_corpus(["corpus.txt"])
    Path("teacher/vocab.txt").write_text("\n".join(learn_vocab(lines, size=200)) + "\n", encoding="utf-8")
    cfg = yaml.safe_load((Path(CONFIGS_DIR) / "tiny.yaml").read_text(encoding="utf-8"))
    cfg["data"].update(corpus=["corpus.txt"], student_vocab="vocab/vocab.txt")
    cfg["teacher"]["random"]["vocabulary"] = "teacher/vocab.txt"
    cfg["train"].update(log_every=10, eval_every=10, checkpoint_every=10, warmup_steps=2, jit_compile=False)
    Path("my.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    write_csv("train.csv", labelled_rows(200, 0))
    write_csv("eval.csv", labelled_rows(40, 1))

    readme = README.read_text(encoding="utf-8")
    for fragment, small in SMALLER.items():
        readme = readme.replace(fragment, small)
    walk = [argv for heading, cmds in bash_blocks(readme) if heading.startswith(WALK_THROUGH) for argv in cmds]
    assert [argv[0] for argv in walk] == ["vocab", "distill", "eval", "eval", "teacher-prep", "finetune",
                                          "finetune", "export", "predict", "eval"]
    outputs = []
    for argv in walk:
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, f"mbd {shlex.join(argv)}: {captured.err[-2000:]}"
        outputs.append(captured.out)
    assert "[MASK]" in outputs[-2]  # predict printed its fills
    assert "points lost" in outputs[-1]  # eval scored the file beside its student
    for path in ("vocab/vocab.txt", "out/student/config.json", "out/teacher", "prep/teacher", "teacher_clf/labels.json",
                 "clf/labels.json", "model.tflite", "model.report.json", "android_demo_assets/model_info.json"):
        assert os.path.exists(path), path
