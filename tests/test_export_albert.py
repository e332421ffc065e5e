"""LiteRT export of ALBERT-style students (factorised embedding, shared layers) and their classifiers.

The students are the kit's own (:func:`mobile_bert_distill.distill.student.build_student` with
``embedding_dim`` / ``share_layers``), with every bias, beta and gamma randomised so that the
graph's beta folding (the embedding LayerNorm's beta into the ``E -> H`` projection's bias) and
the shared layers' bias folding are exercised.
"""

import json
import os
import re

import numpy as np
import pytest

from _export_fixtures import learn_vocab, make_sentences

from mobile_bert_distill.cli import main
from mobile_bert_distill.errors import UserError

SEQ_LEN = 16
SHAPES = {  # name: (num_layers, hidden, embedding_dim, share_layers)
    "factorised": (2, 16, 8, False),
    "shared": (3, 16, 8, True),
}


def _albert(vocab, *, num_layers, hidden, embedding_dim, share, seed=0, seq_len=SEQ_LEN, randomise=True):
    import keras

    from mobile_bert_distill.distill.student import build_student

    keras.utils.set_random_seed(seed)
    model = build_student(vocab, hidden_dim=hidden, num_layers=num_layers, num_heads=2, embedding_dim=embedding_dim,
                          share_layers=share, dropout=0.0, max_sequence_length=64, seq_len=seq_len)
    if randomise:
        rng = np.random.default_rng(seed + 1)
        for w in model.weights:
            if w.path.endswith(("bias", "beta")):
                w.assign(rng.normal(0.0, 0.5, w.shape).astype("float32"))
            elif w.path.endswith("gamma"):
                w.assign(rng.normal(1.0, 0.3, w.shape).astype("float32"))
    return model


def _classifier(mlm, num_classes=3):
    import keras_hub

    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer=mlm.preprocessor.tokenizer,
                                                          sequence_length=SEQ_LEN)
    clf = keras_hub.models.AlbertTextClassifier(backbone=mlm.backbone, num_classes=num_classes, preprocessor=pre,
                                                dropout=0.0)
    rng = np.random.default_rng(7)
    clf.output_dense.bias.assign(rng.normal(0.0, 0.5, num_classes).astype("float32"))
    return clf


def _feeds(n, vocab_size, seed, seq_len=SEQ_LEN):
    from mobile_bert_distill.export import random_sequences

    feeds = random_sequences(n, seq_len, vocab_size, seed=seed)
    feeds["segment_ids"][:, seq_len // 2:] = 1  # both segments
    feeds["padding_mask"][0, seq_len - 4:] = 0  # and padding
    return feeds


@pytest.fixture(scope="module")
def vocab():
    return learn_vocab(make_sentences(300, seed=11), 120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("albert_corpus") / "corpus.txt"
    path.write_text("\n".join(make_sentences(200, seed=12)) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def students(vocab):
    return {name: _albert(vocab, num_layers=L, hidden=h, embedding_dim=e, share=s)
            for name, (L, h, e, s) in SHAPES.items()}


# ------------------------------------------------------------------ float parity
@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("task", ["mlm", "encoder", "classifier"])
def test_float_export_matches_keras(students, vocab, tmp_path, name, task):
    from mobile_bert_distill.export import export_keras_model, keras_outputs
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches

    model = students[name]
    assert type(model).__name__ == "AlbertMaskedLM" and model.backbone.embedding_dim < model.backbone.hidden_dim
    if task == "classifier":
        model = _classifier(model)
    feeds = _feeds(6, len(vocab), seed=3)
    out = tmp_path / "m.tflite"
    rep = export_keras_model(model, str(out), task=task, quantization="float32", seq_len=SEQ_LEN,
                             parity_sequences=feeds, write_report=False)
    ref = keras_outputs(model, task, feeds)
    got = run_batches(load_interpreter(str(out))[0], feeds)
    assert sorted(got) == sorted(ref)
    for key in ref:
        assert got[key].shape == ref[key].shape
        np.testing.assert_allclose(got[key], ref[key], atol=1e-4, rtol=0, err_msg=key)
    assert rep["params"] == model.count_params()


@pytest.mark.parametrize("name", list(SHAPES))
def test_graph_options_reproduce_the_albert_forward(students, vocab, name):
    """The re-expressed graph (before conversion) under the other graph options."""
    from mobile_bert_distill.export import keras_outputs
    from mobile_bert_distill.export.graph import ExportBert, GraphOptions

    model = students[name]
    feeds = _feeds(3, len(vocab), seed=4)
    ref = keras_outputs(model, "mlm", feeds)["logits"]
    for opts in (GraphOptions(attention="per_head", gelu="tanh", position_segment_table=True),
                 GraphOptions(fuse_qkv=True, tie_embedding=False)):
        built = ExportBert.from_keras(model, task="mlm", seq_len=SEQ_LEN, batch_size=3, options=opts)
        np.testing.assert_allclose(built.module.serve(**feeds)["logits"].numpy(), ref, atol=1e-4, rtol=0)


def test_shared_layers_are_one_set_of_variables(students):
    from mobile_bert_distill.export.graph import ExportBert, extract_weights

    _, config = extract_weights(students["shared"], "encoder")
    assert config["layer_sources"] == [0, 0, 0] and config["embedding_dim"] == 8
    _, config = extract_weights(students["factorised"], "encoder")
    assert config["layer_sources"] == [0, 1]
    built = ExportBert.from_keras(students["shared"], task="encoder", seq_len=SEQ_LEN)
    m = built.module
    for name in ("q_k", "k_k", "v_k", "o_k", "ff1_k", "ff2_k", "att_ln_g", "ff_ln_b"):
        assert getattr(m, f"l0_{name}") is getattr(m, f"l1_{name}") is getattr(m, f"l2_{name}"), name
    # depth 0 reads the projection's output (its beta folded there): its folded biases are its own
    assert getattr(m, "l1_q_b") is getattr(m, "l2_q_b") and getattr(m, "l0_q_b") is not getattr(m, "l1_q_b")


def test_studies_options_refuse_what_they_cannot_handle(students):
    from mobile_bert_distill.export.graph import ExportBert, GraphOptions

    cases = [("factorised", GraphOptions(smooth_alpha=0.5), "smooth_alpha"),
             ("factorised", GraphOptions(gptq=True), "gptq"),
             ("shared", GraphOptions(balance_qk=True), "balance_qk")]
    for name, opts, option in cases:
        with pytest.raises(ValueError, match=option):
            ExportBert.from_keras(students[name], task="encoder", seq_len=SEQ_LEN, options=opts)


def test_wrong_task_for_the_model(students, tmp_path):
    from mobile_bert_distill.export import export_keras_model

    with pytest.raises(UserError, match="needs a BertMaskedLM or AlbertMaskedLM"):
        export_keras_model(students["shared"].backbone, str(tmp_path / "x.tflite"), task="mlm", seq_len=SEQ_LEN)
    with pytest.raises(UserError, match="needs a keras-hub BertTextClassifier or AlbertTextClassifier"):
        export_keras_model(students["shared"], str(tmp_path / "x.tflite"), task="classifier", seq_len=SEQ_LEN)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ sharing in the file
def _layer_kernels(path):
    """``{shape: number of distinct weight tensors}`` of the FULLY_CONNECTED ops, and the weight bytes."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model(path)
    g = model.subgraphs[0]
    names = [fu.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
    kernels = {}
    for op in g.operators:
        if names[op.opcodeIndex] == "FULLY_CONNECTED":
            t = g.tensors[int(op.inputs[1])]
            kernels.setdefault(tuple(int(d) for d in t.shape), set()).add(int(t.buffer))
    weight_bytes = sum(len(b.data) for b in model.buffers if b.data is not None)
    return {shape: len(bufs) for shape, bufs in kernels.items()}, weight_bytes


def test_int8_shared_student_stores_its_layer_once(vocab, tmp_path):
    from mobile_bert_distill.export import export_keras_model

    L, h, e, inter = 4, 32, 16, 128
    files = {}
    for share in (False, True):
        model = _albert(vocab, num_layers=L, hidden=h, embedding_dim=e, share=share)
        path = str(tmp_path / f"shared_{share}.tflite")
        rep = export_keras_model(model, path, task="encoder", quantization="int8", seq_len=SEQ_LEN,
                                 num_calibration=16, num_parity=8, write_report=False)
        assert rep["parity"]["sequence_output_cosine_mean"] > 0.95, rep["parity"]
        files[share] = (rep["size_bytes"], *_layer_kernels(path))
    (size_u, kernels_u, bytes_u), (size_s, kernels_s, bytes_s) = files[False], files[True]
    # one feed-forward pair for the shared student, one per layer otherwise; q/k/v/o (+ the pooler)
    assert kernels_u[(inter, h)] == kernels_u[(h, inter)] == L and kernels_u[(h, h)] == 4 * L + 1
    assert kernels_s[(inter, h)] == kernels_s[(h, inter)] == 1 and kernels_s[(h, h)] == 4 + 1
    assert kernels_s[(h, e)] == kernels_u[(h, e)] == 1  # the embedding projection
    # the unshared file holds 3 more layers of int8 kernels (plus their small biases and LayerNorms)
    layer = 4 * h * h + 2 * h * inter
    assert 3 * layer <= bytes_u - bytes_s <= 1.25 * 3 * layer, (bytes_u, bytes_s, layer)
    assert size_s < 0.65 * size_u
    print(f"int8 encoder, {L} layers {h}-d, E={e}: unshared {size_u} B, shared {size_s} B "
          f"(weights {bytes_u} vs {bytes_s} B)")


# ------------------------------------------------------------------ `mbd export` of presets
def test_mbd_export_of_a_shared_student_preset_to_int8(vocab, corpus, tmp_path, capsys):
    from mobile_bert_distill.distill.student import save_student
    from mobile_bert_distill.litert.inference import LiteRTModel
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches

    student = str(tmp_path / "student")
    save_student(_albert(vocab, num_layers=3, hidden=16, embedding_dim=8, share=True, seq_len=32), student)
    out = tmp_path / "albert_int8.tflite"
    rc = main(["export", "--student", student, "--out", str(out), "--quantization", "int8", "--seq-len", "32",
               "--calibration-corpus", corpus, "--num-calibration", "32", "--num-parity", "32"])
    assert rc == 0, capsys.readouterr().err
    with open(tmp_path / "albert_int8.report.json", encoding="utf-8") as f:
        rep = json.load(f)
    assert rep["quantization"] == "int8" and rep["graph_ops"]["float_compute_ops"] == {}
    assert rep["parity"]["logit_cosine_mean"] > 0.9, rep["parity"]
    interp, _ = load_interpreter(str(out))
    got = run_batches(interp, _feeds(2, len(vocab), seed=5, seq_len=32))["logits"]
    assert got.shape == (2, 32, len(vocab)) and np.isfinite(got).all()
    vocab_path = os.path.join(student, "assets", "tokenizer", "vocabulary.txt")
    assert LiteRTModel(str(out), vocab_path).fill_mask("the [MASK] of paris")


def test_mbd_export_of_an_albert_classifier_preset(students, tmp_path, capsys):
    clf_dir = tmp_path / "classifier"
    _classifier(students["factorised"]).save_to_preset(str(clf_dir))
    (clf_dir / "labels.json").write_text(json.dumps({"classes": ["a", "b", "c"]}), encoding="utf-8")
    out = tmp_path / "clf.tflite"
    rc = main(["export", "--student", str(clf_dir), "--task", "classifier", "--out", str(out),
               "--quantization", "float32", "--num-parity", "8"])
    assert rc == 0, capsys.readouterr().err
    with open(tmp_path / "clf.report.json", encoding="utf-8") as f:
        rep = json.load(f)
    assert rep["labels"] == ["a", "b", "c"] and rep["parity"]["max_abs_prob_diff"] < 1e-4
    # an MLM export of it is refused (it has no MLM head), in one line
    assert main(["export", "--student", str(clf_dir), "--out", str(tmp_path / "m.tflite"),
                 "--quantization", "float32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a fine-tuned classifier (AlbertTextClassifier)" in err[0], err


def test_mbd_export_refuses_another_masked_lm_class(tmp_path, capsys):
    import keras_hub

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(20)]
    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2,
                                                   hidden_dim=8, intermediate_dim=16, max_sequence_length=32)
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=vocab)
    pre = keras_hub.models.DistilBertMaskedLMPreprocessor(tokenizer=tokenizer, sequence_length=16)
    preset = str(tmp_path / "distilbert")
    keras_hub.models.DistilBertMaskedLM(backbone=backbone, preprocessor=pre).save_to_preset(preset)
    work = tmp_path / "work"
    work.mkdir()
    rc = main(["export", "--student", preset, "--out", str(work / "m.tflite"), "--quantization", "float32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "DistilBertMaskedLM" in err[0] and "BertMaskedLM or AlbertMaskedLM" in err[0], err
    assert os.listdir(work) == []


# ------------------------------------------------------------------ FLOPs and parameters
@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("task", ["encoder", "mlm"])
def test_flops_count_the_embedding_projection(students, tmp_path, name, task):
    from mobile_bert_distill.bench import flops
    from mobile_bert_distill.bench.params import param_counts
    from mobile_bert_distill.export import export_keras_model
    from mobile_bert_distill.litert import on_device_bench as lb

    model = students[name]
    path = str(tmp_path / "m.tflite")
    export_keras_model(model, path, task=task, quantization="float32", seq_len=SEQ_LEN, num_parity=2,
                       write_report=False)
    graph = lb.Graph.from_file(path)
    cfg = flops.infer_architecture(graph)
    L, h, e, share = SHAPES[name]
    assert (cfg.hidden_dim, cfg.embedding_dim, cfg.num_layers, cfg.intermediate_dim, cfg.num_heads) == (
        h, e, L, 4 * h, 2)
    assert cfg.distinct_layers == (1 if share else None)
    analytic = flops.analytic_flops(cfg, SEQ_LEN, task)
    cmp_ = flops.compare(analytic, graph.flops())
    assert abs(cmp_["matmul_rel_diff"]) <= 0.01, cmp_
    projection = next(r for r in analytic["rows"] if r["name"] == "embedding projection")
    assert projection["matmul"] == 2 * SEQ_LEN * e * h
    counts = param_counts(cfg)
    assert counts["masked_lm"] - (cfg.max_positions - 64) * e == model.count_params()


@pytest.mark.parametrize("name", list(SHAPES))
def test_params_of_an_albert_layout_equal_keras_hub(students, tmp_path, capsys, name):
    from mobile_bert_distill.bench.params import load_config, param_counts

    model = students[name]
    preset = str(tmp_path / "student")
    model.save_to_preset(preset)
    cfg = load_config(preset)
    L, h, e, share = SHAPES[name]
    assert (cfg.embedding_dim, cfg.num_layers, cfg.distinct_layers) == (e, L, 1 if share else None)
    counts = param_counts(cfg)
    assert counts["backbone_with_pooler"] == model.backbone.count_params()
    assert counts["masked_lm"] == model.count_params()
    assert main(["params", "--config", preset]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ALBERT-style layout: {L} layers, hidden {h}, ") and f"{e}-d factorised embedding" in out
    assert re.search(r"\+ tied MLM head \(keras-hub AlbertMaskedLM\) +" + f"{counts['masked_lm']:,}\n", out), out
