"""`mbd theseus`: the replacement schedule, the mixed model at p = 0 / 1 / between, the command end to end.

The teacher is the classifier of ``_classifier_fixtures`` (the same generated cue-word CSVs, vocabulary
and 16-d student, fine-tuned the same way) made 4 layers deep, so that K = 2 modules of 2 layers can be
compressed: the session's shared classifier has 2 layers, which leaves K = 1 only.
"""

import json

import numpy as np
import pytest

from _classifier_fixtures import CLASSES, CUES, SEQ_LEN, labelled_rows, write_csv
from _export_fixtures import build_student, learn_vocab, make_sentences, save_student
from mobile_bert_distill.cli import main
from mobile_bert_distill.downstream.module_replacing import ModuleReplacing, ReplacementSchedule
from mobile_bert_distill.errors import UserError

TEACHER_LAYERS = 4


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from mobile_bert_distill.downstream.finetune import finetune

    root = tmp_path_factory.mktemp("theseus")
    train_rows, eval_rows = labelled_rows(600, 0), labelled_rows(120, 1)
    vocab = learn_vocab([t for t, _ in train_rows] + make_sentences(400, seed=3), 200)
    student = save_student(build_student(vocab, num_layers=TEACHER_LAYERS, seq_len=SEQ_LEN), str(root / "student"))
    art = {"root": root, "vocab": vocab, "student": student, "train_csv": write_csv(root / "train.csv", train_rows),
           "eval_csv": write_csv(root / "eval.csv", eval_rows), "classifier": str(root / "classifier")}
    art["metrics"] = finetune(student, art["train_csv"], art["eval_csv"], art["classifier"], epochs=6,
                              batch_size=32, learning_rate=1e-2, seq_len=SEQ_LEN, log=lambda *a: None)
    assert art["metrics"]["accuracy"] > 0.9  # a teacher worth compressing
    return art


# ------------------------------------------------------------------ the schedule
def test_the_schedule_is_min_of_one_and_the_linear_ramp():
    b, theta = 0.3, 0.002
    s = ReplacementSchedule(b, theta)
    assert s(0) == b  # start
    assert s(100) == pytest.approx(theta * 100 + b) == pytest.approx(0.5)  # middle
    assert s(349) == pytest.approx(0.998) and s(350) == pytest.approx(1.0)
    assert s(351) == 1.0 and s(10_000) == 1.0  # clamped
    ramp = ReplacementSchedule.reaching_one_at(0.25, steps=300)
    assert ramp.slope == pytest.approx(0.75 / 300)
    assert ramp(150) == pytest.approx(0.625) and ramp(300) == pytest.approx(1.0) and ramp(301) == 1.0
    assert ReplacementSchedule(0.4, 0.0)(10_000) == 0.4  # slope 0: the paper's constant rate
    for start, slope in ((1.5, 0.1), (-0.1, 0.1), (0.5, -1e-3), (0.5, float("nan"))):
        with pytest.raises(UserError):
            ReplacementSchedule(start, slope)


# ------------------------------------------------------------------ the replacement
def _encoder(seed):
    import keras
    import keras_hub

    return keras_hub.layers.TransformerEncoder(intermediate_dim=16, num_heads=2, dropout=0.0,
                                               kernel_initializer=keras.initializers.RandomNormal(stddev=0.5,
                                                                                                  seed=seed))


def test_each_module_is_replaced_at_random_per_batch_and_per_module():
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    modules = [[_encoder(1), _encoder(2)], [_encoder(3), _encoder(4)]]
    successors = [_encoder(5), _encoder(6)]
    layer = ModuleReplacing(modules, successors, replace_rate=0.5, seed=7)
    layer(x)  # builds the layers

    def run(kinds):  # kinds[i]: 1 = module i replaced by its successor
        h = x
        for i, replaced in enumerate(kinds):
            for sub in [successors[i]] if replaced else modules[i]:
                h = sub(h)
        return np.asarray(h)

    combos = {kinds: run(kinds) for kinds in ((0, 0), (0, 1), (1, 0), (1, 1))}
    assert all(not np.allclose(combos[a], combos[b]) for a in combos for b in combos if a != b)

    def draws(layer, n):
        seen = []
        for _ in range(n):
            out = np.asarray(layer(x))
            match = [k for k, v in combos.items() if np.allclose(out, v, atol=1e-5)]
            assert len(match) == 1
            seen.append(match[0])
        return seen

    seen = draws(layer, 40)
    assert set(seen) == set(combos)  # both kinds of draws in each module, independently of the other
    assert 0.2 < np.mean(seen) < 0.8  # about p = 0.5 of the 80 module draws replace
    again = ModuleReplacing(modules, successors, replace_rate=0.5, seed=7)
    again(x)  # the first call of ``layer`` built it
    assert draws(again, 40) == seen  # seeded
    layer.replace_rate.assign(0.0)
    assert set(draws(layer, 5)) == {(0, 0)}
    layer.replace_rate.assign(1.0)
    assert set(draws(layer, 5)) == {(1, 1)}

    config = layer.get_config()
    assert config["replace_rate"] == 1.0 and config["seed"] == 7
    clone = ModuleReplacing.from_config(config)
    assert (clone.num_modules, clone.module_size) == (2, 2)
    with pytest.raises(UserError, match="one successor per module"):
        ModuleReplacing(modules, successors[:1])


def test_the_mixed_model_is_the_predecessor_at_p0_and_the_successor_at_p1(teacher):
    import keras

    from mobile_bert_distill.downstream.finetune import classifier_preprocessor, load_classifier
    from mobile_bert_distill.downstream.module_replacing import TheseusClassifier
    from mobile_bert_distill.downstream.theseus import predecessor_modules, successor_classifier, tokenize

    predecessor, _ = load_classifier(teacher["classifier"])
    preprocessor = classifier_preprocessor(teacher["classifier"], SEQ_LEN)
    x = tokenize(preprocessor, [t for t, _ in labelled_rows(8, 5)])
    successor = successor_classifier(predecessor, 2, preprocessor)
    # successor layer i starts as predecessor layer i; move them away so that p = 1 tests the successor
    rng = np.random.default_rng(0)
    for layer in successor.backbone.transformer_layers:
        layer.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(w.dtype) for w in layer.get_weights()])
    mixed = TheseusClassifier(successor, predecessor_modules(predecessor, 2), replace_rate=0.0, seed=0)

    want_p0 = keras.ops.convert_to_numpy(predecessor(x, training=False))
    want_p1 = keras.ops.convert_to_numpy(successor(x, training=False))
    assert not np.allclose(want_p0, want_p1, atol=1e-3)
    for rate, want in ((0.0, want_p0), (1.0, want_p1)):
        mixed.encoder.replace_rate.assign(rate)
        for _ in range(3):  # every draw
            got = keras.ops.convert_to_numpy(mixed(x, training=False))
            np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------------------------------ the command
def _cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as e:  # refused while the command line is read
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_theseus_learns_and_its_classifier_exports_and_classifies(teacher, tmp_path, capsys):
    from mobile_bert_distill.litert.inference import LiteRTModel

    out = tmp_path / "clf2"
    code, stdout, err = _cli(["theseus", "--teacher-classifier", teacher["classifier"], "--layers", "2",
                              "--data", teacher["train_csv"], "--eval", teacher["eval_csv"], "--out", str(out),
                              "--compress-epochs", "3", "--finetune-epochs", "2", "--learning-rate", "5e-3",
                              "--seq-len", str(SEQ_LEN)], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert f"eval accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}" in stdout
    assert m["accuracy"] > 0.85 and m["macro_f1"] > 0.85, m  # two balanced classes: chance is 0.5
    assert m["teacher"]["accuracy"] == pytest.approx(teacher["metrics"]["accuracy"])
    sched = m["theseus"]["schedule"]
    assert sched["start_rate"] == 0.3 and sched["compress_steps"] == 3 * 19
    assert sched["slope"] == pytest.approx(0.7 / 57) and sched["rate_at_last_step"] < 1.0
    assert json.loads((out / "labels.json").read_text())["classes"] == CLASSES
    # the successor layers trained; the embeddings, pooler and head are the teacher's, frozen
    import keras_hub

    mine = keras_hub.models.BertTextClassifier.from_preset(str(out))
    theirs = keras_hub.models.BertTextClassifier.from_preset(teacher["classifier"])
    assert mine.backbone.num_layers == 2
    for a, b in [(mine.output_dense, theirs.output_dense), (mine.backbone.pooled_dense, theirs.backbone.pooled_dense),
                 (mine.backbone.token_embedding, theirs.backbone.token_embedding)]:
        assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights())), a.name
    for i in range(2):  # successor i started as teacher layer i
        a, b = mine.backbone.transformer_layers[i], theirs.backbone.transformer_layers[i]
        assert not all(np.allclose(u, v) for u, v in zip(a.get_weights(), b.get_weights())), i

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in labelled_rows(200, 2)) + "\n", encoding="utf-8")
    model = tmp_path / "clf2.tflite"
    code, _, err = _cli(["export", "--student", str(out), "--task", "classifier", "--out", str(model),
                         "--quantization", "int8", "--calibration-corpus", str(corpus),
                         "--num-calibration", "64"], capsys)
    assert code == 0, err
    lite = LiteRTModel(str(model), str(out / "assets" / "tokenizer" / "vocabulary.txt"))
    texts = [f"the film was {a} and {b}" for a, b in zip(CUES["positive"], CUES["positive"][1:])]
    texts += [f"the film was {a} and {b}" for a, b in zip(CUES["negative"], CUES["negative"][1:])]
    labels = [r["label"] for r in lite.classify(texts)]
    assert labels == ["positive"] * 3 + ["negative"] * 3


@pytest.fixture(scope="module")
def albert_classifier(teacher):
    import keras_hub

    from mobile_bert_distill.distill.student import build_student as build_albert

    mlm = build_albert(teacher["vocab"], hidden_dim=16, num_layers=4, num_heads=2, seq_len=SEQ_LEN, embedding_dim=8,
                       share_layers=True)
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer=mlm.preprocessor.tokenizer,
                                                          sequence_length=SEQ_LEN)
    path = teacher["root"] / "albert_classifier"
    keras_hub.models.AlbertTextClassifier(backbone=mlm.backbone, num_classes=2, preprocessor=pre).save_to_preset(
        str(path))
    (path / "labels.json").write_text(json.dumps({"classes": CLASSES}))
    return str(path)


@pytest.mark.parametrize("case, fragment", [
    ("k_not_dividing", "must divide the teacher's 4 layers"),
    ("k_equal_depth", "must divide the teacher's 4 layers"),
    ("k_zero", "argument --layers: must be an integer >= 1"),
    ("albert", "ALBERT-style classifier"),
    ("not_a_classifier", "no labels.json"),
    ("columns", "missing column(s) text"),
    ("classes", "differ from the teacher classifier's"),
    ("rate", "argument --start-rate: must be a number from 0 to 1"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, fragment, teacher, albert_classifier, tmp_path,
                                                         capsys):
    args = {"--teacher-classifier": teacher["classifier"], "--layers": "2", "--data": teacher["train_csv"],
            "--eval": teacher["eval_csv"]}
    if case == "k_not_dividing":
        args["--layers"] = "3"
    elif case == "k_equal_depth":
        args["--layers"] = str(TEACHER_LAYERS)
    elif case == "k_zero":
        args["--layers"] = "0"
    elif case == "albert":
        args["--teacher-classifier"] = albert_classifier
    elif case == "not_a_classifier":
        args["--teacher-classifier"] = teacher["student"]
    elif case == "columns":
        args["--data"] = write_csv(tmp_path / "t.csv", labelled_rows(20, 3), header=("sentence", "label"))
    elif case == "classes":
        args["--data"] = write_csv(tmp_path / "t.csv", labelled_rows(20, 3) + [("so so", "neutral")])
    else:
        args["--start-rate"] = "1.5"
    out = tmp_path / "out"
    code, _, err = _cli(["theseus", *[s for kv in args.items() for s in kv], "--out", str(out)], capsys)
    errs = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(errs) == 1 and errs[0].startswith("mbd: error:") and fragment in errs[0], err
    assert not out.exists() and not (tmp_path / "out.lock").exists()
