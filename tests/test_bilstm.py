"""The distilled BiLSTM student (`mbd finetune --arch bilstm`): augmentation, loss, training, LiteRT export."""

import json
import os
import random

import numpy as np
import pytest

from _classifier_fixtures import CLASSES, labelled_rows, write_csv
from mobile_bert_distill.cli import main
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.downstream.bilstm_augment import (
    MASK_TOKEN, MAX_NGRAM, Augmentation, augment_texts, augment_words, ngram_window)

SEQ_LEN = 32


# ------------------------------------------------------------------ augmentation
def test_masking_rate_over_many_draws():
    words = [f"w{i}" for i in range(50)]
    rng = random.Random(0)
    draws = [augment_words(words, rng, p_mask=0.3, p_ng=0.0) for _ in range(2000)]
    assert all(len(d) == len(words) for d in draws)  # no n-gram cut at p_ng = 0
    masked = np.mean([[w == MASK_TOKEN for w in d] for d in draws])
    assert abs(masked - 0.3) < 0.01  # 100,000 Bernoulli(0.3) draws: std 0.0015
    kept = [w for d in draws for i, w in enumerate(d) if w != MASK_TOKEN and w != words[i]]
    assert not kept  # an unmasked word stays in its place
    assert augment_words(words, rng, p_mask=0.0, p_ng=0.0) == words


@pytest.mark.parametrize("length", [1, 3, 20])
def test_ngram_windows_lie_inside_and_have_length_1_to_5(length):
    words = [f"w{i}" for i in range(length)]
    rng = random.Random(1)
    sizes = set()
    for _ in range(500):
        start, n = ngram_window(length, rng)
        assert 0 <= start and start + n <= length and 1 <= n <= MAX_NGRAM
        draw = augment_words(words, rng, p_mask=0.0, p_ng=1.0)
        first = int(draw[0][1:])
        assert 1 <= len(draw) <= min(MAX_NGRAM, length) and draw == words[first:first + len(draw)]
        sizes.add(len(draw))
    assert sizes == set(range(1, min(MAX_NGRAM, length) + 1))  # every window length occurs


def test_augmentation_is_seeded_keeps_originals_first_and_drops_duplicates():
    texts = ["A gorgeous, witty film!", "the plot is dull and the acting worse", "ok"]
    aug = Augmentation(p_mask=0.3, p_ng=0.5, n_iter=8)
    out, source = augment_texts(texts, aug, seed=7)
    assert (out, source) == augment_texts(texts, aug, seed=7)
    assert out != augment_texts(texts, aug, seed=8)[0]
    assert out[:3] == texts and source[:3] == [0, 1, 2] and len(out) == len(source)
    for i, text in enumerate(texts):
        new = [t for t, s in zip(out[3:], source[3:]) if s == i]
        assert len(new) == len(set(new)) <= 8 and text not in new
    assert any(MASK_TOKEN in t for t in out[3:]) and len(out) > 3
    assert augment_texts(texts, Augmentation(n_iter=0), seed=7) == (texts, [0, 1, 2])
    with pytest.raises(Exception, match="p_mask"):
        Augmentation(p_mask=1.5)


def test_logit_mse_equals_numpy_on_hand_made_logits():
    from mobile_bert_distill.downstream.bilstm import logit_mse

    t = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], "float32")
    s = np.array([[0.3, 0.9, -0.2], [1.0, 0.0, 0.5]], "float32")
    expect = ((s - t) ** 2).mean(-1)
    assert np.allclose(np.asarray(logit_mse(t, s)), expect, rtol=1e-6)
    assert np.allclose(np.asarray(logit_mse(t, t)), 0.0)


# ------------------------------------------------------------------ CLI refusals
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from _export_fixtures import build_student, learn_vocab, make_sentences, save_student

    root = tmp_path_factory.mktemp("bilstm")
    train_rows, eval_rows = labelled_rows(600, 0), labelled_rows(120, 1)
    vocab = learn_vocab([t for t, _ in train_rows] + make_sentences(400, seed=3), 200)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in labelled_rows(400, 2)) + "\n", encoding="utf-8")
    return {"root": root, "student": save_student(build_student(vocab, seq_len=SEQ_LEN), str(root / "student")),
            "train": write_csv(root / "train.csv", train_rows), "eval": write_csv(root / "eval.csv", eval_rows),
            "eval_rows": eval_rows, "corpus": str(corpus)}


def test_arch_rules_refuse_the_other_architectures_options():
    from mobile_bert_distill.downstream.arch import check_options

    assert check_options("bert", {"alpha": 0.3, "lstm_units": None, "early_exit": False}) == {"alpha": 0.3}
    assert check_options("bilstm", {"n_iter": 0, "alpha": None}) == {"n_iter": 0}  # 0 is given, None is not
    for arch, options, fragment in (("gru", {}, "unknown architecture 'gru'"),
                                    ("bilstm", {"alpha": 0.3, "kd_loss": "mse"},
                                     "alpha, kd_loss apply only to arch bert"),
                                    ("bert", {"p_ng": 0.5}, "p_ng applies only to arch bilstm"),
                                    ("bert", {"exit_epochs": 5}, "exit_epochs applies only with early exits")):
        with pytest.raises(UserError, match=fragment):
            check_options(arch, options)


@pytest.mark.parametrize("extra, fragment", [
    (["--arch", "unknown"], "argument --arch: invalid choice: 'unknown'"),
    (["--arch", "bilstm"], "a BiLSTM student learns the logits of a teacher classifier; none was given "
                           "(pass --teacher-classifier"),
    (["--arch", "bilstm", "--teacher-classifier", "t", "--alpha", "0.3"], "alpha applies only to arch bert"),
    (["--lstm-units", "8"], "lstm_units applies only to arch bilstm"),
])
def test_bad_arch_options_one_line_exit_2_nothing_written(data, tmp_path, capsys, extra, fragment):
    out = tmp_path / "clf"
    argv = ["finetune", "--student", data["student"], "--data", data["train"], "--eval", data["eval"],
            "--out", str(out), *extra]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refusals
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mbd: error:") and fragment in err[0], err
    assert not out.exists() and not os.path.exists(str(out) + ".lock")


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained(data):
    """A tiny teacher (fine-tuned BERT student), the BiLSTM distilled from it, and its exports."""
    from mobile_bert_distill.downstream.finetune import finetune

    root = data["root"]
    teacher = str(root / "teacher")
    finetune(data["student"], data["train"], data["eval"], teacher, epochs=6, batch_size=32, learning_rate=1e-2,
             seq_len=SEQ_LEN, log=lambda *a: None)
    out = root / "bilstm"
    code = main(["finetune", "--arch", "bilstm", "--student", data["student"], "--teacher-classifier", teacher,
                 "--data", data["train"], "--eval", data["eval"], "--out", str(out), "--epochs", "5",
                 "--learning-rate", "1e-2", "--seq-len", str(SEQ_LEN), "--lstm-units", "16", "--dense-units", "16",
                 "--n-iter", "4"])
    assert code == 0
    models = {}
    for mode in ("float32", "int8"):
        models[mode] = str(root / f"bilstm_{mode}.tflite")
        assert main(["export", "--student", str(out), "--task", "classifier", "--out", models[mode],
                     "--quantization", mode, "--calibration-corpus", data["corpus"], "--num-calibration", "64",
                     "--parity-csv", data["eval"], "--min-agreement", "0.5"]) == 0
    return dict(data, teacher=teacher, out=out, models=models)


def _report(path):
    with open(os.path.splitext(path)[0] + ".report.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.slow
def test_bilstm_learns_the_labelled_set_and_writes_its_folder(trained):
    out = trained["out"]
    assert sorted(os.listdir(out)) == ["bilstm.json", "labels.json", "metrics.json", "model.keras", "vocab.txt"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] > 0.85 and m["macro_f1"] > 0.85  # two balanced classes: chance is 0.5
    assert m["kd"]["loss"] == "mse" and m["kd"]["augmentation"]["n_iter"] == 4
    assert m["kd"]["trained_examples"] == 600 + m["kd"]["augmented_examples"] > 600
    labels = json.loads((out / "labels.json").read_text())
    assert labels == {"classes": CLASSES, "text_column": "text", "label_column": "label"}
    info = json.loads((out / "bilstm.json").read_text())
    assert (info["lstm_units"], info["dense_units"], info["sequence_length"]) == (16, 16, SEQ_LEN)
    student_vocab = os.path.join(trained["student"], "assets", "tokenizer", "vocabulary.txt")
    assert (out / "vocab.txt").read_text() == open(student_vocab, encoding="utf-8").read()


@pytest.mark.slow
def test_bilstm_embedding_starts_from_the_student_table(trained):
    import keras_hub

    from mobile_bert_distill.downstream.bilstm import build_bilstm, read_preset_tokenizer

    table = np.asarray(keras_hub.models.Backbone.from_preset(trained["student"]).token_embedding.embeddings)
    model = build_bilstm(table.shape[0], 2, embedding_dim=table.shape[1], embedding=table)
    assert np.array_equal(model.get_layer("token_embedding").get_weights()[0], table)
    assert read_preset_tokenizer(trained["student"])[1:] == (True, True)


@pytest.mark.slow
def test_export_has_builtin_lstm_ops_and_matches_keras(trained):
    from mobile_bert_distill.downstream.bilstm import encode_texts, load_bilstm_classifier, predict_bilstm
    from mobile_bert_distill.litert.inference import LiteRTModel
    from mobile_bert_distill.litert.tools import load_interpreter

    model, _, classes, _, vocab = load_bilstm_classifier(trained["out"])
    texts = [t for t, _ in trained["eval_rows"][:40]]
    lite = LiteRTModel(trained["models"]["float32"], vocab)
    ids, _ = encode_texts(texts, lite.tokenizer, SEQ_LEN)
    z = predict_bilstm(model, ids).astype(np.float64)
    expect = np.exp(z - z.max(-1, keepdims=True))
    expect /= expect.sum(-1, keepdims=True)
    results = lite.classify(texts)
    assert np.abs(np.array([r["probabilities"] for r in results]) - expect).max() < 1e-4
    assert [r["label"] for r in results] == [classes[i] for i in expect.argmax(-1)]
    # stateless: the fused op's state does not carry from one call to the next
    first = lite.probabilities(texts[:1])
    lite.probabilities(texts[1:2])
    assert np.array_equal(first, lite.probabilities(texts[:1]))
    int8 = LiteRTModel(trained["models"]["int8"], vocab)  # labels from its report
    got = int8.probabilities(texts)
    assert (got.argmax(-1) == expect.argmax(-1)).mean() >= 0.9 and np.abs(got - expect).max() < 0.25
    assert np.allclose(got.sum(-1), 1.0, atol=1e-5)
    for mode, path in trained["models"].items():
        interp, _ = load_interpreter(path, xnnpack=False)
        ops = {op["op_name"] for op in interp._get_ops_details()}
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "WHILE" not in ops, (mode, ops)
        assert not [op for op in ops if op.startswith("Flex") or "CUSTOM" in op], (mode, ops)
        report = _report(path)
        assert report["architecture"] == "bilstm" and report["labels"] == CLASSES
        assert report["graph_ops"]["ops"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 2
        assert report["parity"]["label_agreement"] >= 0.9 and report["parity"]["examples"] == 120
    assert _report(trained["models"]["int8"])["size_bytes"] < 0.6 * _report(trained["models"]["float32"])["size_bytes"]


@pytest.mark.slow
def test_int8_lstm_states_have_the_kernel_types_and_one_hidden_quantization(trained):
    from mobile_bert_distill.litert.tools import load_interpreter

    interp, _ = load_interpreter(trained["models"]["int8"], xnnpack=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    lstms = [op for op in interp._get_ops_details() if op["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert len(lstms) == 2
    for op in lstms:
        x, hidden, cell, out = (tensors[i] for i in (op["inputs"][0], op["inputs"][18], op["inputs"][19],
                                                     op["outputs"][0]))
        assert (x["dtype"], hidden["dtype"], cell["dtype"], out["dtype"]) == (np.int8, np.int8, np.int16, np.int8)
        assert hidden["quantization"] == out["quantization"]  # read back as the next step's input
        assert cell["quantization"] == (2.0 ** -11, 0)  # int16 over the op's cell clip, |c| <= 10


@pytest.mark.slow
def test_predict_runs_the_bilstm_export(trained, capsys):
    vocab = str(trained["out"] / "vocab.txt")
    code = main(["predict", "--model", trained["models"]["int8"], "--vocab", vocab, "--json",
                 "a gorgeous , witty film", "dull , tedious and clumsy"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["label"] for r in doc["results"]] == ["positive", "negative"]


@pytest.mark.parametrize("task", ["mlm", "encoder"])
def test_export_as_mlm_or_encoder_names_the_bilstm(trained, tmp_path, capsys, task):
    out = tmp_path / "x.tflite"
    code = main(["export", "--student", str(trained["out"]), "--task", task, "--out", str(out),
                 "--quantization", "float32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith(f"is a BiLSTM classifier, which has no {task} output: export it as a classifier")
    assert len(err.splitlines()) == 1 and not out.exists() and os.listdir(tmp_path) == []

