import csv
import json
import random

import numpy as np
import pytest

from mobile_bert_distill.cli import main
from mobile_bert_distill.downstream.finetune import (SoftTargetKD, accuracy_and_macro_f1, encode_labels, label_mapping,
                                          read_labelled_csv)


def _write_csv(path, rows, header=("text", "label"), bom=False):
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def _labelled(n, seed):
    from mobile_bert_distill.demo import synthetic

    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        s = synthetic.sentence(rng).rstrip(".!?")
        if "happily" in s or "slowly" in s:
            continue
        label = rng.choice(["1", "-1"])
        rows.append((f"{'happily' if label == '1' else 'slowly'} {s} .", label))
    return rows


@pytest.fixture(scope="module")
def tiny_student(tiny_data, tmp_path_factory):
    """A 1-layer 16-d student preset: enough to learn the cue-word task; a fine-tuning run's cost is
    mostly tracing its training step, which grows with the depth."""
    from mobile_bert_distill.distill.student import build_student
    from mobile_bert_distill.text import load_vocab

    d = tmp_path_factory.mktemp("student") / "student"
    mlm = build_student(load_vocab(tiny_data["student_vocab"]), hidden_dim=16, num_layers=1, num_heads=2, seq_len=32)
    mlm.save_to_preset(str(d))
    return str(d)


def test_predict_logits_by_length_equals_padding_everything(tiny_student):
    """Batches cut to their longest text give the logits of the full-length predict, in input order."""
    from mobile_bert_distill.architectures import load_preset
    from mobile_bert_distill.downstream.finetune import LENGTH_STEP, classifier_preprocessor, predict_logits

    clf = load_preset(tiny_student, "classifier", "model", num_classes=3,
                      preprocessor=classifier_preprocessor(tiny_student, 32), dropout=0.0)
    rng = random.Random(0)
    words = "the cat sat on a mat while dogs ran far away from home".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(50)]
    want = np.asarray(clf.predict(texts, batch_size=8, verbose=0))
    got = predict_logits(clf, texts, batch_size=8)
    assert LENGTH_STEP < 32 and got.shape == (50, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert predict_logits(clf, []).shape == (0, 3)


def test_kd_loss_equals_the_formula_on_hand_made_logits():
    t = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], "float32")
    s = np.array([[0.3, 0.9, -0.2], [1.0, 0.0, 0.5]], "float32")
    y = np.array([0, 2])
    T, a = 3.0, 0.3

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    ce = -np.log(softmax(s)[np.arange(2), y])
    pt, ps = softmax(t / T), softmax(s / T)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(-1)
    expect = np.mean(a * ce + (1 - a) * T * T * kl)
    y_true = np.concatenate([y[:, None].astype("float32"), t], 1)
    got = float(SoftTargetKD(3, alpha=a, temperature=T)(y_true, s))
    assert got == pytest.approx(expect, rel=1e-5)
    mse = float(SoftTargetKD(3, alpha=a, kind="mse")(y_true, s))
    assert mse == pytest.approx(np.mean(a * ce + (1 - a) * ((s - t) ** 2).mean(-1)), rel=1e-5)


def test_csv_reader_handles_bom_quotes_blank_lines_and_empty_text(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('\ufefftext,label\n"a film, witty and warm",1\n\n"",-1\n  ,1\nbad,-1\n', encoding="utf-8")
    msgs = []
    texts, labels = read_labelled_csv(str(p), log=msgs.append)
    assert texts == ["a film, witty and warm", "bad"] and labels == ["1", "-1"]
    assert any("skipped 2 row(s) with empty text" in m for m in msgs)
    classes = label_mapping(labels)
    assert classes == ["-1", "1"]
    assert list(encode_labels(labels, classes, "x")) == [1, 0]


def test_default_learning_rate_by_width():
    from mobile_bert_distill.downstream.finetune import default_learning_rate

    assert [default_learning_rate(h) for h in (48, 191, 192, 383, 384, 768)] == [5e-4, 5e-4, 1e-4, 1e-4, 5e-5, 5e-5]


def test_metrics():
    acc, f1 = accuracy_and_macro_f1([0, 0, 1, 1], [0, 1, 1, 1], 2)
    assert acc == 0.75 and f1 == pytest.approx((2 / 3 + 0.8) / 2)


def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", ["columns", "one_class", "unseen_label", "not_utf8"])
def test_bad_input_one_line_exit_2(case, tmp_path, capsys, tiny_student):
    train = _write_csv(tmp_path / "train.csv", [("good film", "1"), ("bad film", "-1")])
    evalp = _write_csv(tmp_path / "eval.csv", [("fine film", "1")])
    frag = ""
    if case == "columns":
        train = _write_csv(tmp_path / "t2.csv", [("good", "1")], header=("sentence", "label"))
        frag = "missing column(s) text"
    elif case == "one_class":
        train = _write_csv(tmp_path / "t2.csv", [("good", "1"), ("great", "1")])
        frag = "needs at least 2"
    elif case == "unseen_label":
        evalp = _write_csv(tmp_path / "e2.csv", [("meh", "0")])
        frag = "label(s) '0' not seen in the training data"
    else:
        (tmp_path / "t2.csv").write_bytes(b"text,label\ngood \xff film,1\n")
        train = str(tmp_path / "t2.csv")
        frag = "not UTF-8 at byte offset 16"
    code, _, err = _cli(["finetune", "--student", tiny_student, "--data", train, "--eval", evalp,
                         "--out", str(tmp_path / "clf")], capsys)
    errs = [line for line in err.splitlines() if line.startswith("mbd: error:")]
    assert code == 2 and len(errs) == 1 and frag in errs[0], err
    assert not (tmp_path / "clf").exists()


@pytest.mark.slow
def test_finetune_learns_and_soft_target_kd_runs(tiny_student, tmp_path, capsys):
    train = _write_csv(tmp_path / "train.csv", _labelled(400, 0), bom=True)
    evalp = _write_csv(tmp_path / "eval.csv", _labelled(100, 1))
    teacher = tmp_path / "teacher_clf"
    code, _, _ = _cli(["finetune", "--student", tiny_student, "--data", train, "--eval", evalp, "--out",
                       str(teacher), "--epochs", "6", "--learning-rate", "5e-3", "--seq-len", "32"], capsys)
    assert code == 0
    m = json.loads((teacher / "metrics.json").read_text())
    assert m["accuracy"] > 0.8 and m["classes"] == ["-1", "1"] and m["learning_rate"] == 5e-3 and m["epochs"] == 6
    assert json.loads((teacher / "labels.json").read_text())["classes"] == ["-1", "1"]
    student = tmp_path / "student_clf"
    code, _, _ = _cli(["finetune", "--student", tiny_student, "--data", train, "--eval", evalp, "--out",
                       str(student), "--epochs", "6", "--learning-rate", "5e-3", "--seq-len", "32",
                       "--teacher-classifier", str(teacher), "--temperature", "2", "--alpha", "0.5"], capsys)
    assert code == 0
    m2 = json.loads((student / "metrics.json").read_text())
    assert m2["kd"]["temperature"] == 2.0 and m2["accuracy"] > 0.7
    import keras_hub

    clf = keras_hub.models.BertTextClassifier.from_preset(str(student))
    assert clf.predict(["the cat sat happily ."], verbose=0).shape == (1, 2)


@pytest.mark.slow
def test_an_albert_style_student_fine_tunes_with_its_wordpiece_tokenizer(tiny_data, tmp_path, capsys):
    import keras_hub

    from mobile_bert_distill.distill.student import build_student
    from mobile_bert_distill.text import load_vocab

    student = tmp_path / "albert"
    build_student(load_vocab(tiny_data["student_vocab"]), hidden_dim=16, num_layers=2, num_heads=2, seq_len=32,
                  embedding_dim=8, share_layers=True).save_to_preset(str(student))
    train = _write_csv(tmp_path / "train.csv", _labelled(400, 0))
    evalp = _write_csv(tmp_path / "eval.csv", _labelled(100, 1))
    out = tmp_path / "clf"
    code, _, err = _cli(["finetune", "--student", str(student), "--data", train, "--eval", evalp, "--out", str(out),
                         "--epochs", "6", "--learning-rate", "5e-3", "--seq-len", "32"], capsys)
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["accuracy"] > 0.7
    clf = keras_hub.models.TextClassifier.from_preset(str(out))
    assert type(clf).__name__ == "AlbertTextClassifier" and clf.backbone.embedding_dim == 8
    tokenizer = clf.preprocessor.tokenizer
    assert type(tokenizer).__name__ == "BertTokenizer"  # not ALBERT's SentencePiece
    assert tokenizer.get_vocabulary() == load_vocab(tiny_data["student_vocab"])
