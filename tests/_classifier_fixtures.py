"""A tiny fine-tuned classifier for the classifier export / predict tests.

``classifier_artifacts(tmp_path_factory)`` builds (once per session): a tiny
student (2 layers, 16-d, freshly initialised: no MLM steps, which the classifier
tests never look at and which cost a traced training step), fine-tuned with
``mbd finetune`` on a generated two-class CSV (cue words decide the label;
two classes because a 16-d student learns them reliably in a few epochs,
while a third class sometimes stalls), plus a float32 export and an
int8 export (with Android assets) of that classifier at ``SEQ_LEN``.
"""

from __future__ import annotations

import csv
import random

from _export_fixtures import build_student, learn_vocab, make_sentences, save_student

SEQ_LEN = 32
CLASSES = ["negative", "positive"]
CUES = {
    "positive": ["gorgeous", "witty", "charming", "brilliant"],
    "negative": ["dull", "worse", "tedious", "clumsy"],
}
FILLER = ("the a film movie story acting plot this that it is was with and of in on its "
          "cast scene music ending script director hour long short").split()
_CACHE = {}


def labelled_rows(n, seed):
    """``n`` (text, label) rows; each text carries one or two cue words of its class."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(CLASSES)
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), rng.choice(CUES[label]))
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text.capitalize() + rng.choice([".", "!", " ,", ""])
        rows.append((text, label))
    return rows


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def classifier_artifacts(tmp_path_factory):
    if "artifacts" in _CACHE:
        return _CACHE["artifacts"]
    from mobile_bert_distill.cli import main
    from mobile_bert_distill.export import export_student
    from mobile_bert_distill.downstream.finetune import finetune

    root = tmp_path_factory.mktemp("classifier_artifacts")
    train_rows, eval_rows = labelled_rows(600, 0), labelled_rows(120, 1)
    texts = [t for t, _ in train_rows] + make_sentences(400, seed=3)
    vocab = learn_vocab(texts, 200)
    student = build_student(vocab, seq_len=SEQ_LEN)
    student_dir = save_student(student, str(root / "student"))
    train_csv = write_csv(root / "train.csv", train_rows)
    eval_csv = write_csv(root / "eval.csv", eval_rows)
    clf_dir = str(root / "classifier")
    metrics = finetune(student_dir, train_csv, eval_csv, clf_dir, epochs=6, batch_size=32,
                       learning_rate=1e-2, seq_len=SEQ_LEN, log=lambda *a: None)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in labelled_rows(400, 2)) + "\n", encoding="utf-8")
    art = {"root": str(root), "student": student_dir, "classifier": clf_dir, "train_csv": train_csv,
           "eval_csv": eval_csv, "eval_rows": eval_rows, "corpus": str(corpus), "finetune_metrics": metrics,
           "vocab": str(root / "classifier" / "assets" / "tokenizer" / "vocabulary.txt"), "models": {},
           "reports": {}}
    out = str(root / "clf_float32.tflite")
    art["reports"]["float32"] = export_student(clf_dir, out, task="classifier", quantization="float32",
                                               seq_len=None, parity_csv=eval_csv)
    art["models"]["float32"] = out
    out = root / "clf_int8.tflite"
    assets = root / "android"
    rc = main(["export", "--student", clf_dir, "--task", "classifier", "--out", str(out),
               "--quantization", "int8", "--calibration-corpus", str(corpus), "--num-calibration", "64",
               "--parity-csv", eval_csv, "--min-agreement", "0.5", "--android-assets", str(assets)])
    assert rc == 0
    art["models"]["int8"] = str(out)
    art["android"] = str(assets)
    import json

    with open(root / "clf_int8.report.json", encoding="utf-8") as f:
        art["reports"]["int8"] = json.load(f)
    _CACHE["artifacts"] = art
    return art
