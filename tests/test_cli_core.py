"""`mbd vocab`, `mbd distill`, `mbd eval` from the command line, bad input included."""

import argparse
import json
import os

import pytest
import yaml

from conftest import tiny_config_dict
from mobile_bert_distill.cli import main


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, fragment):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("mbd: error:")]
    assert len(lines) == 1 and fragment in lines[0], err


def test_help_lists_core_verbs(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for verb in ("vocab", "distill", "eval"):
        assert verb in out


def test_vocab_writes_exact_size_and_stats(tiny_data, tmp_path, capsys):
    out = tmp_path / "v"
    code, stdout, _ = run_cli(["vocab", "--corpus", tiny_data["train"], "--size", "90",
                               "--teacher-vocab", tiny_data["teacher_vocab"], "--out", str(out)], capsys)
    assert code == 0
    tokens = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(tokens) == 90 and tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    stats = json.loads((out / "vocab_stats.json").read_text())
    assert stats["size"] == 90
    teacher = set((open(tiny_data["teacher_vocab"], encoding="utf-8").read().split("\n")))
    shared = sum(t in teacher for t in tokens[5:]) / 85
    assert stats["overlap_with_teacher"] == pytest.approx(shared)
    assert stats["student_on_corpus"]["pieces_per_word"] >= stats["teacher_on_corpus"]["pieces_per_word"] >= 1.0
    assert 0.0 <= stats["student_on_corpus"]["unk_rate"] < 0.05
    assert "overlap with the teacher vocabulary" in stdout


def test_learned_vocab_is_the_same_on_every_run(tiny_data):
    # the WordPiece trainer numbers its alphabet in hash order; the kit's vocab.txt must not vary
    import subprocess
    import sys

    code = ("import sys; from mobile_bert_distill import text; from mobile_bert_distill.text.vocab import learn_vocab; "
            "print('\\n'.join(learn_vocab(text.read_corpus([sys.argv[1]]), size=120)))")
    runs = {subprocess.run([sys.executable, "-c", code, tiny_data["train"]], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}
    assert len(runs) == 1 and len(runs.pop().split()) == 120


@pytest.mark.parametrize("content,fragment", [(b"", "corpus is empty"), (b"  \n\t\n   \n", "corpus is empty")])
def test_vocab_empty_corpus(tmp_path, capsys, content, fragment):
    p = tmp_path / "c.txt"
    p.write_bytes(content)
    code, _, err = run_cli(["vocab", "--corpus", str(p), "--size", "50", "--out", str(tmp_path / "v")], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "v").exists()


def test_vocab_not_utf8_names_file_and_offset_then_skip(tiny_data, tmp_path, capsys):
    good = open(tiny_data["train"], "rb").read()
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello world\nsecond line\xff\xfe here\n" + good)
    code, _, err = run_cli(["vocab", "--corpus", str(p), "--size", "60", "--out", str(tmp_path / "v")], capsys)
    assert_one_line_error(code, err, f"{p}: not UTF-8 at byte offset 23")
    assert err.strip().endswith("fix the file or skip such lines (pass --skip-bad-lines to skip them with a warning)")
    assert not (tmp_path / "v").exists()
    code, out, _ = run_cli(["vocab", "--corpus", str(p), "--size", "60", "--out", str(tmp_path / "v"),
                            "--skip-bad-lines"], capsys)
    assert code == 0 and "skipped 1 line" in out


def test_vocab_missing_corpus_file(tmp_path, capsys):
    code, _, err = run_cli(["vocab", "--corpus", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "v")], capsys)
    assert_one_line_error(code, err, "corpus file not found")


def test_out_under_a_file_is_one_line_not_a_traceback(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(["vocab", "--corpus", tiny_data["train"], "--size", "120",
                            "--out", str(blocker / "v")], capsys)
    assert_one_line_error(code, err, str(blocker))
    assert "Traceback" not in err and blocker.read_text() == "x"


def test_unexpected_error_is_a_one_line_bug_report(monkeypatch, capsys):
    from mobile_bert_distill.bench import params

    def boom():
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(params, "paper_comparison", boom)
    monkeypatch.delenv("MBD_DEBUG", raising=False)
    code, _, err = run_cli(["params"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "mbd: internal error (a bug in mobile-bert-distill): RuntimeError: boom second line; "
        "rerun with --debug for the traceback"]
    code, _, err = run_cli(["--debug", "params"], capsys)
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].endswith("boom second line")
    monkeypatch.setenv("MBD_DEBUG", "1")
    code, _, err = run_cli(["params"], capsys)
    assert code == 1 and "Traceback" in err


@pytest.mark.parametrize("vocab,fragment", [
    ("[PAD]\n[UNK]\n[CLS]\na\nb\n", "lacks the special token(s) [SEP] [MASK]"),
    ("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\na\n", "1 duplicate token(s): 'a'"),
])
def test_distill_rejects_bad_vocab(tiny_data, tmp_path, capsys, vocab, fragment):
    v = tmp_path / "vocab.txt"
    v.write_text(vocab, encoding="utf-8")
    cfg = tiny_config_dict(tiny_data, "nokd")
    cfg["data"]["student_vocab"] = str(v)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["distill", "--config", str(path), "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


@pytest.mark.parametrize("override,fragment", [
    ("dual.p_dt=1.5", "dual.p_dt must be a number in [0, 1]"),
    ("dual.p_dt=-0.2", "dual.p_dt must be a number in [0, 1]"),
    ("train.stepz=3", "unknown config key 'train.stepz'"),
    ("mode=dual+sideways", "mode must be one of"),
    ("teacher.source=/no/such/preset", "teacher: set exactly one of"),
])
def test_distill_rejects_bad_config(tiny_data, tmp_path, capsys, override, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_data, "dual+up")))
    code, _, err = run_cli(["distill", "--config", str(path), "--override", override, "--out",
                            str(tmp_path / "o"), "--no-progress"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_distill_unknown_key_in_yaml_and_missing_config(tiny_data, tmp_path, capsys):
    cfg = tiny_config_dict(tiny_data, "nokd")
    cfg["student"]["hiden_dim"] = 8
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["distill", "--config", str(path), "--no-progress"], capsys)
    assert_one_line_error(code, err, "unknown config key 'student.hiden_dim'")
    code, _, err = run_cli(["distill", "--config", str(tmp_path / "none.yaml")], capsys)
    assert_one_line_error(code, err, "config file not found")


def test_distill_missing_teacher_preset_path(tiny_data, tmp_path, capsys):
    cfg = tiny_config_dict(tiny_data, "dual")
    cfg["teacher"] = {"source": str(tmp_path / "no_such_teacher")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["distill", "--config", str(path), "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert_one_line_error(code, err, "teacher preset path does not exist")
    assert not (tmp_path / "o.partial").exists()


def test_nokd_with_missing_teacher_path_does_not_guess_the_depth(tiny_data, tmp_path, capsys):
    # nokd reads the teacher only for the student's depth; a stale path must not silently give 12 layers
    cfg = tiny_config_dict(tiny_data, "nokd")
    cfg["teacher"] = {"source": str(tmp_path / "gone_teacher")}
    cfg["student"]["num_layers"] = None
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["distill", "--config", str(path), "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert_one_line_error(code, err, "cannot read the teacher's depth")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_distill_depth_mismatch_needs_layer_map(tiny_data, tmp_path, capsys):
    cfg = tiny_config_dict(tiny_data, "dual+down")
    cfg["student"]["num_layers"] = 1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["distill", "--config", str(path), "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert_one_line_error(code, err, "set projection.layer_map")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def _nokd_config_on(tiny_data, tmp_path, corpus_bytes):
    """A tiny nokd config (tmp_path/c.yaml) whose corpus is a file holding ``corpus_bytes``."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(corpus_bytes)
    cfg = tiny_config_dict(tiny_data, "nokd")
    cfg["data"]["corpus"] = [str(corpus)]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_distill_empty_corpus_and_existing_output(tiny_data, tmp_path, capsys):
    path = _nokd_config_on(tiny_data, tmp_path, b"\n   \n")
    code, _, err = run_cli(["distill", "--config", str(path), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "corpus is empty")
    os.makedirs(tmp_path / "exists")  # an empty folder counts as absent; one with a file is an output
    (tmp_path / "exists" / "keep.txt").write_text("mine")
    code, _, err = run_cli(["distill", "--config", str(path), "--out", str(tmp_path / "exists")], capsys)
    assert_one_line_error(code, err, "already exists (pass --overwrite to replace it)")
    assert (tmp_path / "exists" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_distill_then_eval_student_and_teacher(tiny_data, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    cfg = tiny_config_dict(tiny_data, "dual+up", steps=20)
    cfg["data"]["heldout"] = tiny_data["heldout"]
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "o"
    code, stdout, _ = run_cli(["distill", "--config", str(path), "--out", str(out), "--no-progress"], capsys)
    assert code == 0 and "done: 20 steps" in stdout
    history = json.loads((out / "history.json").read_text())
    assert "val_student_acc" in history[-1]  # held-out evaluated at the end
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["train"]["steps"] == 20 and resolved["dual"]["p_dt"] == 0.5

    args = ["eval", "--student", str(out / "student"), "--corpus", tiny_data["heldout"], "--json"]
    code, a, _ = run_cli(args, capsys)
    code2, b, _ = run_cli(args, capsys)
    ra, rb = json.loads(a), json.loads(b)
    assert code == code2 == 0 and ra == rb
    assert 0.0 <= ra["student_accuracy"] <= 1.0 and ra["masked_tokens"] > 50

    code, t, _ = run_cli(["eval", "--teacher", str(out / "teacher"), "--corpus", tiny_data["heldout"],
                          "--seq-len", "16", "--json"], capsys)
    rt = json.loads(t)
    assert code == 0
    assert rt["teacher_vocab_head_masked_tokens"] > 0 and rt["student_vocab_head_masked_tokens"] > 0
    assert 0.0 <= rt["teacher_vocab_head_accuracy"] <= 1.0

    code, _, err = run_cli(["eval", "--student", str(tmp_path), "--corpus", tiny_data["heldout"]], capsys)
    assert_one_line_error(code, err, "is not a keras-hub preset")
    code, _, err = run_cli(["eval", "--teacher", str(out / "student"), "--corpus", tiny_data["heldout"]], capsys)
    assert_one_line_error(code, err, "is not a teacher checkpoint")
    # the wrong kind of model folder is refused, not scored with a random MLM head
    code, _, err = run_cli(["eval", "--student", str(out / "teacher"), "--corpus", tiny_data["heldout"]], capsys)
    assert_one_line_error(code, err, "is a teacher checkpoint, not a student preset")
    code, _, err = run_cli(["export", "--student", str(out / "teacher"), "--out", str(tmp_path / "t.tflite"),
                            "--quantization", "float32"], capsys)
    assert_one_line_error(code, err, "is a teacher checkpoint (the teacher/ folder of a distillation)")
    assert not (tmp_path / "t.tflite").exists()
    for who in ("student", "teacher"):  # longer than the position table: refused before any batch
        code, _, err = run_cli(["eval", f"--{who}", str(out / who), "--corpus", tiny_data["heldout"],
                                "--seq-len", "100000"], capsys)
        assert_one_line_error(code, err, "sequence length 100000 is outside 1..512")
    _eval_an_export(out / "student", tiny_data, tmp_path, capsys)


def _eval_an_export(student, tiny_data, tmp_path, capsys):
    """`mbd eval --litert`: the file and its preset on the same positions, at the file's length."""
    import keras

    from mobile_bert_distill.distill.student import build_student
    from mobile_bert_distill.text import load_vocab

    heldout = tiny_data["heldout"]
    exported = tmp_path / "s.tflite"
    code, _, _ = run_cli(["export", "--student", str(student), "--out", str(exported), "--quantization", "float32",
                          "--seq-len", "24", "--calibration-corpus", heldout], capsys)
    assert code == 0
    code, out, _ = run_cli(["eval", "--student", str(student), "--litert", str(exported), "--corpus", heldout,
                            "--json"], capsys)
    res = json.loads(out)
    code2, alone, _ = run_cli(["eval", "--student", str(student), "--corpus", heldout, "--seq-len", "24", "--json"],
                              capsys)
    alone = json.loads(alone)
    assert code == code2 == 0 and res["seq_len"] == 24
    assert res["student_accuracy"] == alone["student_accuracy"] and res["masked_tokens"] == alone["masked_tokens"]
    # a float32 file gives the preset's answers: at most two near-ties flip
    assert abs(res["drop_points"]) <= 100 * 2 / res["masked_tokens"]
    assert res["drop_points"] == pytest.approx(100 * (res["student_accuracy"] - res["file_accuracy"]))
    # the file is what is scored: another model with the same vocabulary scores otherwise
    keras.utils.set_random_seed(3)
    other = build_student(load_vocab(tiny_data["student_vocab"]), hidden_dim=16, num_layers=1, num_heads=2,
                          seq_len=24)
    other.save_to_preset(str(tmp_path / "other"))
    code, _, _ = run_cli(["export", "--student", str(tmp_path / "other"), "--out", str(tmp_path / "o.tflite"),
                          "--quantization", "float32", "--seq-len", "24", "--calibration-corpus", heldout], capsys)
    code, out, _ = run_cli(["eval", "--student", str(student), "--litert", str(tmp_path / "o.tflite"),
                            "--corpus", heldout, "--json"], capsys)
    assert code == 0 and json.loads(out)["file_accuracy"] != res["file_accuracy"]
    code, out, _ = run_cli(["eval", "--student", str(student), "--litert", str(exported), "--corpus", heldout],
                           capsys)
    assert code == 0 and "points lost" in out and "sequences of 24" in out
    fewer = build_student(load_vocab(tiny_data["student_vocab"])[:-3], hidden_dim=16, num_layers=1, num_heads=2,
                          seq_len=24)
    fewer.save_to_preset(str(tmp_path / "fewer"))
    for folder, name, extra in ((tmp_path / "fewer", "f.tflite", []), (student, "e.tflite", ["--task", "encoder"])):
        code, _, _ = run_cli(["export", "--student", str(folder), "--out", str(tmp_path / name), "--quantization",
                              "float32", "--seq-len", "24", "--calibration-corpus", heldout, *extra], capsys)
        assert code == 0
    for args, words in ((["--teacher", str(student), "--litert", str(exported)], "--litert needs --student"),
                        (["--student", str(student), "--litert", str(exported), "--seq-len", "16"],
                         "--seq-len does not apply with --litert"),
                        (["--student", str(student), "--litert", str(tmp_path / "none.tflite")],
                         "model file not found"),
                        (["--student", str(student), "--litert", heldout], "is not a TFLite flatbuffer"),
                        (["--student", str(student), "--litert", str(tmp_path / "e.tflite")],
                         "is not a masked-LM export"),
                        (["--student", str(student), "--litert", str(tmp_path / "f.tflite")],
                         "it was exported from another student")):
        code, _, err = run_cli(["eval", *args, "--corpus", heldout], capsys)
        assert_one_line_error(code, err, words)


def test_eval_positions_identical_for_two_students_with_one_vocab(tiny_data):
    """The masked positions depend on text, vocabulary, length and seed only."""
    from mobile_bert_distill.distill.data import PieceTable, TokenizedCorpus
    from mobile_bert_distill.distill.mixing import DualBatchMaker
    from mobile_bert_distill.text import load_vocab, read_corpus

    corpus = TokenizedCorpus.from_lines(read_corpus([tiny_data["heldout"]]))
    table = PieceTable(load_vocab(tiny_data["student_vocab"]), corpus.words)
    a = DualBatchMaker(corpus, table, None, seq_len=16, batch_size=4, max_predictions=2, seed=12345,
                       eval_masking=True, sequential=True)
    b = DualBatchMaker(corpus, table, None, seq_len=16, batch_size=4, max_predictions=2, seed=12345,
                       eval_masking=True, sequential=True)
    for step in range(a.steps_per_pass()):
        for k in ("s_mask_positions", "s_mask_ids", "s_token_ids"):
            assert (a(step)[k] == b(step)[k]).all()


def _options(parser, name="mbd"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                yield from _options(sub, f"{name} {verb}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield name, action


def test_every_option_has_help_and_names_its_default():
    from mobile_bert_distill.cli import build_parser

    options = list(_options(build_parser()))
    assert len(options) > 100  # every verb's options were walked
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, a in options if not a.help]
    assert missing == []
    silent = [f"{name} {'/'.join(a.option_strings)}" for name, a in options
              if a.default not in (None, False, [], argparse.SUPPRESS) and "default" not in a.help.lower()]
    assert silent == []


def test_same_config_ignores_where_a_run_was_written(tmp_path, tiny_config):
    from mobile_bert_distill.distill import config

    cfg = tiny_config("nokd")
    path = tmp_path / "OUT.partial" / "config.yaml"
    path.parent.mkdir()
    path.write_text(config.dump(dict(cfg, output_dir=str(tmp_path / "OUT"))))  # as a run records it
    assert config.same_config(str(path), dict(cfg, output_dir=str(tmp_path / "OUT.partial")))
    assert not config.same_config(str(path), dict(cfg, seed=cfg["seed"] + 1))
    assert not config.same_config(str(tmp_path / "none.yaml"), cfg)


def test_same_config_reads_a_setting_the_record_predates_as_its_default(tmp_path, tiny_config):
    from mobile_bert_distill.distill import config

    cfg = tiny_config("nokd")
    older = json.loads(json.dumps(cfg))
    del older["soft"], older["student"]["share_layers"]  # recorded before these settings existed
    path = tmp_path / "config.yaml"
    path.write_text(config.dump(older))
    assert config.same_config(str(path), cfg)
    assert not config.same_config(str(path), dict(cfg, student=dict(cfg["student"], share_layers=True)))
    assert not config.same_config(str(path), dict(cfg, soft=dict(cfg["soft"], temperature=4.0)))


def test_the_cli_names_the_flag_that_resolves_an_error_only_where_the_verb_has_it(tiny_data, tmp_path, capsys):
    path = _nokd_config_on(tiny_data, tmp_path, b"fine\nnot \xff utf-8\n")
    code, _, err = run_cli(["distill", "--config", str(path), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "fix the file or skip such lines (set data.skip_bad_lines: true)")
    assert "--skip-bad-lines" not in err  # distill has no such flag: its config key is named instead
