"""`mbd export --task classifier`, `LiteRTModel.classify`, `mbd predict` on a classifier, Android assets."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from _classifier_fixtures import CLASSES, SEQ_LEN, classifier_artifacts, write_csv

from mobile_bert_distill.cli import main
from mobile_bert_distill.errors import UserError


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return classifier_artifacts(tmp_path_factory)


@pytest.fixture(scope="module")
def keras_clf(art):
    import keras_hub

    return keras_hub.models.BertTextClassifier.from_preset(art["classifier"])


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------ the model
@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_named_io_and_report(art, mode):
    from mobile_bert_distill.litert.tools import load_interpreter, signature_io

    io = signature_io(load_interpreter(art["models"][mode])[0])
    assert sorted(io["inputs"]) == ["input_ids", "padding_mask", "segment_ids"]
    for spec in io["inputs"].values():
        assert spec["shape"] == [1, SEQ_LEN] and spec["dtype"] == "int32"
    assert list(io["outputs"]) == ["probabilities"]
    assert io["outputs"]["probabilities"]["shape"] == [1, len(CLASSES)] == [1, 2]
    assert io["outputs"]["probabilities"]["dtype"] == "float32"
    rep = art["reports"][mode]
    assert rep["task"] == "classifier" and rep["labels"] == CLASSES and rep["num_classes"] == 2
    assert rep["seq_len"] == SEQ_LEN  # taken from the classifier's preprocessor (no --seq-len given)
    assert rep["parity_data"]["source"] == "labelled csv"
    assert rep["finetune_metrics"]["classes"] == CLASSES
    assert rep["parity"]["examples"] == len(art["eval_rows"])


def test_float32_matches_the_keras_classifier(art, keras_clf):
    """Raw text through keras-hub's preprocessor vs our WordPiece + the .tflite: same probabilities."""
    from mobile_bert_distill.litert.inference import LiteRTModel

    texts = [t for t, _ in art["eval_rows"][:40]] + ["a gorgeous, witty film", "Dull, TEDIOUS; worse!"]
    ref = _softmax(keras_clf.predict(texts, verbose=0))
    got = LiteRTModel(art["models"]["float32"], art["vocab"]).probabilities(texts)
    assert got.shape == ref.shape == (len(texts), 2)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    par = art["reports"]["float32"]["parity"]
    assert par["label_agreement"] == 1.0 and par["max_abs_prob_diff"] < 1e-4
    # the classifier really learned the task, so parity numbers below mean something
    assert par["float_accuracy"] >= 0.8 and par["tflite_accuracy"] == par["float_accuracy"]


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_probabilities_sum_to_one(art, mode):
    from mobile_bert_distill.litert.inference import LiteRTModel

    m = LiteRTModel(art["models"][mode], art["vocab"])
    p = m.probabilities([t for t, _ in art["eval_rows"][:30]])
    assert p.dtype == np.float32 and p.shape == (30, 2)
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert art["reports"][mode]["parity"]["max_prob_sum_error"] < 1e-5


def test_int8_classifier_is_integer_and_faithful(art):
    rep = art["reports"]["int8"]
    g = rep["graph_ops"]
    assert rep["recipe"] == "matmul" and rep["graph"] == "friendly"
    # the same int8-friendly graph as mlm/encoder: every matmul (pooler and head included) in int8
    assert g["float_compute_ops"] == {} and g["hybrid_compute_ops"] == {}
    assert g["int8_compute_ops"]["FULLY_CONNECTED"] == g["ops"]["FULLY_CONNECTED"]
    assert g["int8_compute_ops"]["BATCH_MATMUL"] == g["ops"]["BATCH_MATMUL"]
    assert rep["xnnpack"]["delegate_partitions"] == 1
    assert rep["size_bytes"] < 0.7 * art["reports"]["float32"]["size_bytes"]
    par = rep["parity"]
    assert par["examples"] == len(art["eval_rows"]) and par["source"] == "given"
    assert par["label_agreement"] >= 0.95, par
    assert par["max_abs_prob_diff"] < 0.05 and par["mean_abs_prob_diff"] < 0.01, par
    assert par["accuracy_drop_points"] <= 3.0, par


def test_classify_api_and_labels(art):
    from mobile_bert_distill.litert.inference import LiteRTModel

    m = LiteRTModel(art["models"]["int8"], art["vocab"])  # labels from clf_int8.report.json
    assert m.task == "classifier" and m.labels == CLASSES and m.num_classes == 2
    res = m.classify(["a gorgeous , witty and charming film", "a dull and tedious plot"], top_k=2)
    assert [r["label"] for r in res] == ["positive", "negative"]
    for r in res:
        assert r["probability"] == max(r["probabilities"]) and CLASSES[r["index"]] == r["label"]
        assert len(r["top"]) == 2 and r["top"][0]["label"] == r["label"]
        assert r["top"][0]["probability"] >= r["top"][1]["probability"]
    custom = LiteRTModel(art["models"]["int8"], art["vocab"], labels=["n", "p"])
    assert custom.classify("a dull film")[0]["label"] == "n"
    with pytest.raises(UserError, match="3 class names but .* outputs 2"):
        LiteRTModel(art["models"]["int8"], art["vocab"], labels=["a", "b", "c"])
    with pytest.raises(UserError, match="is an 'classifier' export"):
        m.fill_mask("the [MASK] film")


def test_classify_without_tensorflow(art):
    code = (
        "import sys, json\n"
        "from mobile_bert_distill.litert.inference import LiteRTModel\n"
        f"m = LiteRTModel({art['models']['int8']!r}, {art['vocab']!r})\n"
        "r = m.classify(['a gorgeous and witty film'])[0]\n"
        "bad = [k for k in sys.modules if k == 'tensorflow' or k.startswith('tensorflow.') or k.startswith('keras')]\n"
        "print(json.dumps({'label': r['label'], 'bad': bad}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc == {"label": "positive", "bad": []}


# ------------------------------------------------------------------ android assets
def test_android_assets_labels_and_golden(art):
    from mobile_bert_distill.litert.inference import LiteRTModel

    d = art["android"]
    assert sorted(os.listdir(d)) == ["labels.txt", "model.tflite", "model_info.json", "vocab.txt"]
    assert open(os.path.join(d, "labels.txt"), encoding="utf-8").read().splitlines() == CLASSES
    info = json.load(open(os.path.join(d, "model_info.json"), encoding="utf-8"))
    assert info["task"] == "classifier" and info["labels"] == CLASSES and info["num_classes"] == 2
    assert info["labels_file"] == "labels.txt" and info["quantization"] == "int8"
    assert info["seq_len"] == SEQ_LEN and info["lowercase"] is True
    assert sorted(info["inputs"]) == ["input_ids", "padding_mask", "segment_ids"]
    assert info["outputs"]["probabilities"]["shape"] == [1, 2]
    assert info["special_tokens"]["[CLS]"] == 2 and info["special_tokens"]["[SEP]"] == 3
    assert len(info["golden"]) == 3
    # a fresh model from the assets alone (labels.txt beside it) reproduces the golden vectors
    m = LiteRTModel(os.path.join(d, "model.tflite"), os.path.join(d, "vocab.txt"))
    assert m.labels == CLASSES
    for g in info["golden"]:
        feeds, lengths = m.encode(g["text"])
        assert [int(x) for x in feeds["input_ids"][0, : lengths[0]]] == g["input_ids"]
        r = m.classify(g["text"])[0]
        np.testing.assert_allclose(r["probabilities"], g["probabilities"], atol=2e-6)
        assert abs(sum(g["probabilities"]) - 1) < 1e-4
        assert r["label"] == g["label"] == CLASSES[g["label_index"]]
    report = art["reports"]["int8"]
    assert report["android_assets"]["files"] == ["model.tflite", "vocab.txt", "labels.txt", "model_info.json"]
    # the asset is the exported int8 model plus TFLite metadata, nothing else
    from mobile_bert_distill.export.metadata import add_classifier_metadata

    exported = open(art["models"]["int8"], "rb").read()
    asset = open(os.path.join(d, "model.tflite"), "rb").read()
    assert asset == add_classifier_metadata(exported, art["vocab"], CLASSES) and len(asset) > len(exported)
    assert info["tflite_metadata"]["embedded"] is True
    assert info["tflite_metadata"]["associated_files"] == ["vocab.txt", "labels.txt"]


def test_tflite_metadata_for_mediapipe(art):
    """The metadata MediaPipe's TextClassifier reads: BERT tokenizer + vocab, labelled probability output."""
    import io
    import zipfile

    from mobile_bert_distill.export.metadata import _input_order, add_classifier_metadata, read_classifier_metadata
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches

    plain = open(art["models"]["float32"], "rb").read()
    assert read_classifier_metadata(plain) is None
    data = add_classifier_metadata(plain, art["vocab"], CLASSES)
    meta = read_classifier_metadata(data)
    # metadata tensor names follow the model's own input order (MediaPipe matches them by name)
    expected_inputs = [{"input_ids": "ids", "padding_mask": "mask", "segment_ids": "segment_ids"}[n]
                       for n in _input_order(plain)]
    assert meta["inputs"] == expected_inputs and sorted(expected_inputs) == ["ids", "mask", "segment_ids"]
    assert meta["tokenizer"] == "BertTokenizerOptions" and meta["vocab_file"] == "vocab.txt"
    assert meta["output"] == "probability" and meta["labels_file"] == "labels.txt"
    assert meta["labels_file_type"] == 2 and meta["min_parser_version"] == "1.1.0"
    assert meta["labels"] == CLASSES and meta["files_stored_uncompressed"] is True
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.read("vocab.txt") == open(art["vocab"], "rb").read()
    # still a model LiteRT runs, with the same outputs
    feeds = _feeds(art)
    a = run_batches(load_interpreter(model_content=plain)[0], feeds)["probabilities"]
    b = run_batches(load_interpreter(model_content=data)[0], feeds)["probabilities"]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="already has TFLite metadata"):
        add_classifier_metadata(data, art["vocab"], CLASSES)
    with pytest.raises(ValueError, match="one-line class names"):
        add_classifier_metadata(plain, art["vocab"], ["a", "b\nc"])


def _feeds(art):
    from mobile_bert_distill.litert.inference import LiteRTModel

    feeds, _ = LiteRTModel(art["models"]["float32"], art["vocab"]).encode(["a gorgeous film", "a dull plot"])
    return feeds


# ------------------------------------------------------------------ mbd predict
def test_predict_prints_label_and_probabilities(art, capsys):
    from mobile_bert_distill.litert.inference import LiteRTModel

    texts = ["a gorgeous, witty film", "a dull and tedious plot"]
    rc = main(["predict", "--model", art["models"]["float32"], "--vocab", art["vocab"], *texts])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(out) == 6
    expected = LiteRTModel(art["models"]["float32"], art["vocab"]).classify(texts)
    for k, (text, exp) in enumerate(zip(texts, expected)):
        assert out[3 * k] == text
        assert out[3 * k + 1] == f"  label: {exp['label']} ({exp['probability']:.3f})"
        shown = out[3 * k + 2].removeprefix("  probabilities: ").split("  ")
        assert [s.split(" ")[0] for s in shown] == CLASSES
        assert [float(s.split(" ")[1]) for s in shown] == pytest.approx(exp["probabilities"], abs=6e-4)
    assert out[1].startswith("  label: positive") and out[4].startswith("  label: negative")


def test_predict_json_top_k_and_labels_file(art, capsys, tmp_path):
    labels = tmp_path / "names.txt"
    labels.write_text("bad\ngood\n", encoding="utf-8")
    rc = main(["predict", "--model", art["models"]["int8"], "--vocab", art["vocab"], "--json",
               "--labels", str(labels), "a witty and brilliant film"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["task"] == "classifier" and doc["labels"] == ["bad", "good"]
    r = doc["results"][0]
    assert r["label"] == "good" and r["index"] == 1 and len(r["probabilities"]) == 2
    assert abs(sum(r["probabilities"]) - 1) < 1e-5 and r["probability"] == max(r["probabilities"])
    rc = main(["predict", "--model", art["models"]["int8"], "--vocab", art["vocab"], "--top-k", "1",
               "a witty and brilliant film"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out[2].startswith("  probabilities: positive ") and out[2].count("  ") == 1


def test_predict_without_labels_prints_indices(art, capsys, tmp_path):
    bare = tmp_path / "clf.tflite"
    shutil.copyfile(art["models"]["float32"], bare)  # no report json, no labels.txt beside it
    rc = main(["predict", "--model", str(bare), "--vocab", art["vocab"], "--json", "a gorgeous film"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["labels"] is None and doc["results"][0]["label"] == 1
    rc = main(["predict", "--model", str(bare), "--vocab", art["vocab"], "a gorgeous film"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out[1].startswith("  label: 1 (") and out[2].startswith("  probabilities: 0 ")


@pytest.mark.parametrize("labels_text, message", [
    ("one\ntwo\nthree\n", "3 class names but"),
    ("", "is empty"),
])
def test_predict_bad_labels(art, capsys, tmp_path, labels_text, message):
    f = tmp_path / "labels.txt"
    f.write_text(labels_text, encoding="utf-8")
    rc = main(["predict", "--model", art["models"]["float32"], "--vocab", art["vocab"], "--labels", str(f),
               "a film"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mbd: error: ") and message in err and err.count("\n") == 1


# ------------------------------------------------------------------ bad inputs to mbd export
def _export(argv, capsys):
    rc = main(["export", *argv])
    captured = capsys.readouterr()
    return rc, captured.err


def _broken_copy(art, tmp_path, labels=None, task_class=None):
    broken = tmp_path / "clf_copy"
    shutil.copytree(art["classifier"], broken)
    if labels is not None:
        (broken / "labels.json").write_text(json.dumps({"classes": labels}), encoding="utf-8")
    if task_class is not None:
        cfg = json.loads((broken / "task.json").read_text(encoding="utf-8"))
        cfg["class_name"] = task_class
        (broken / "task.json").write_text(json.dumps(cfg), encoding="utf-8")
    return str(broken)


@pytest.mark.parametrize("case, message", [
    ("student_preset", "is a BertMaskedLM preset, not a classifier"),
    ("no_labels_json", "has no labels.json"),
    ("labels_count", "lists 3 classes but the classifier has 2 outputs"),
    ("duplicate_labels", "at least 2 distinct"),
    ("mlm_on_classifier", "export it as a classifier (or as an encoder)"),
    ("parity_csv_on_mlm", "a parity CSV applies only to task classifier, not mlm"),
    ("full_depth_on_encoder", "the early-exit choice applies only to task classifier, not encoder"),
    ("short_seq_len", "the sequence length must be at least 8, not 4"),
    ("csv_missing_column", "missing column(s) text"),
    ("csv_unknown_label", "label(s) 'great' not seen"),
    ("int8_without_corpus", "int8 needs a calibration corpus"),
    ("column_without_csv", "text and label columns need a parity CSV"),
    ("low_agreement", "below the minimum agreement"),
    ("encoder_assets", "Android assets need the task mlm"),
])
def test_export_classifier_bad_inputs(art, capsys, tmp_path, case, message):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "m.tflite"
    base = ["--out", str(out), "--quantization", "float32"]
    clf = art["classifier"]
    if case == "student_preset":
        argv = ["--student", art["student"], "--task", "classifier", *base]
    elif case == "no_labels_json":
        broken = _broken_copy(art, tmp_path)
        os.remove(os.path.join(broken, "labels.json"))
        argv = ["--student", broken, "--task", "classifier", *base]
    elif case == "labels_count":
        argv = ["--student", _broken_copy(art, tmp_path, labels=["a", "b", "c"]), "--task", "classifier", *base]
    elif case == "duplicate_labels":
        argv = ["--student", _broken_copy(art, tmp_path, labels=["a", "a"]), "--task", "classifier", *base]
    elif case == "mlm_on_classifier":
        argv = ["--student", clf, "--task", "mlm", *base]
    elif case == "parity_csv_on_mlm":
        argv = ["--student", art["student"], "--task", "mlm", "--parity-csv", art["eval_csv"], *base]
    elif case == "full_depth_on_encoder":
        argv = ["--student", art["student"], "--task", "encoder", "--full-depth", *base]
    elif case == "short_seq_len":
        argv = ["--student", clf, "--task", "classifier", "--seq-len", "4", *base]
    elif case == "csv_missing_column":
        csv_path = write_csv(tmp_path / "e.csv", [("a film", "positive")], header=("sentence", "label"))
        argv = ["--student", clf, "--task", "classifier", "--parity-csv", csv_path, *base]
    elif case == "csv_unknown_label":
        csv_path = write_csv(tmp_path / "e.csv", [("a film", "great")])
        argv = ["--student", clf, "--task", "classifier", "--parity-csv", csv_path, *base]
    elif case == "int8_without_corpus":
        argv = ["--student", clf, "--task", "classifier", "--out", str(out), "--quantization", "int8"]
    elif case == "column_without_csv":
        argv = ["--student", clf, "--task", "classifier", "--text-column", "sentence", *base]
    elif case == "low_agreement":  # no agreement reaches 1.01 (the CLI refuses it while parsing): the gate
        from mobile_bert_distill.errors import UserError  # fails after the export, which must leave nothing
        from mobile_bert_distill.export import export_student

        with pytest.raises(UserError, match=message):
            export_student(clf, str(out), task="classifier", quantization="float32", parity_csv=art["eval_csv"],
                           min_agreement=1.01, android_assets=str(work / "android"))
        assert os.listdir(work) == []
        return
    else:
        argv = ["--student", art["student"], "--task", "encoder", "--android-assets", str(work / "a"), *base]
    rc, err = _export(argv, capsys)
    errs = [line for line in err.splitlines() if line.startswith("mbd: error:")]
    assert rc == 2 and len(errs) == 1 and message in errs[0], err
    assert os.listdir(work) == []  # nothing written, not even the report or the assets folder


def test_classifier_only_api_checks(art, keras_clf, tmp_path):
    from mobile_bert_distill.export import export_keras_model

    with pytest.raises(UserError, match="MLM-only int8 pass"):
        export_keras_model(keras_clf, str(tmp_path / "x.tflite"), task="classifier", quantization="int8",
                           seq_len=SEQ_LEN, share_embedding=True, num_calibration=4)
    with pytest.raises(UserError, match="needs a BertMaskedLM"):
        export_keras_model(keras_clf, str(tmp_path / "x.tflite"), task="mlm", seq_len=SEQ_LEN)
    with pytest.raises(UserError, match="needs a keras-hub BertTextClassifier"):
        export_keras_model(keras_clf.backbone, str(tmp_path / "x.tflite"), task="classifier", seq_len=SEQ_LEN)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("verb", ["eval", "export"])
def test_a_classifier_is_refused_where_a_student_preset_is_expected(verb, art, tmp_path, capsys):
    from mobile_bert_distill.cli import main

    argv = {"eval": ["eval", "--student", art["classifier"], "--corpus", art["corpus"]],
            "export": ["export", "--student", art["classifier"], "--out", str(tmp_path / "m.tflite"),
                       "--quantization", "float32"]}[verb]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{art['classifier']} is a fine-tuned classifier (BertTextClassifier)" in err[0], err
    assert os.listdir(tmp_path) == []


def test_min_agreement_policy():
    from mobile_bert_distill.export import DEFAULT_MIN_AGREEMENT, min_agreement_for

    assert min_agreement_for("int8") == DEFAULT_MIN_AGREEMENT["int8"] == 0.99
    assert min_agreement_for("dynamic") == 0.95
    assert min_agreement_for("int8", real_text=False) is None  # random ids: reported, not enforced
    assert min_agreement_for("int8", 0.5, real_text=False) == 0.5
    assert min_agreement_for("float32", 0) is None and min_agreement_for("float32", -1) is None


def test_parity_gate_refuses_below_the_floor_with_a_hint_for_int8():
    from mobile_bert_distill.export.validation import check_agreement

    block = {"label_agreement": 0.95, "sequences": 320}
    check_agreement(block, None, "int8")   # no floor
    check_agreement(block, 0.95, "int8")   # at the floor
    with pytest.raises(UserError, match=r"parity 0\.9500 below the minimum agreement 0\.99 \(int8, 320 sequences\)"
                                        r".*quantization dynamic"):
        check_agreement(block, 0.99, "int8")
    with pytest.raises(UserError) as e:
        check_agreement(block, 0.99, "float16")
    assert "dynamic" not in str(e.value)
