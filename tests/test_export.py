"""LiteRT export: every mode converts, loads, has the named I/O, and is faithful."""

import contextlib
import json
import os

import numpy as np
import pytest

from _export_fixtures import SEQ_LEN, export_artifacts

from mobile_bert_distill.errors import UserError


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return export_artifacts(tmp_path_factory)


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8"])
def test_each_mode_loads_with_named_io(art, mode):
    from mobile_bert_distill.litert.tools import load_interpreter, signature_io

    interp, runtime = load_interpreter(art["models"][mode])
    assert runtime == "ai_edge_litert"
    io = signature_io(interp)
    assert sorted(io["inputs"]) == ["input_ids", "padding_mask", "segment_ids"]
    for spec in io["inputs"].values():
        assert spec["shape"] == [1, SEQ_LEN] and spec["dtype"] == "int32"
    assert list(io["outputs"]) == ["logits"]
    assert io["outputs"]["logits"]["shape"] == [1, SEQ_LEN, len(art["vocab_list"])]
    report = art["reports"][mode]
    assert report["size_bytes"] == os.path.getsize(art["models"][mode])
    with open(art["models"][mode][: -len(".tflite")] + ".report.json") as f:
        on_disk = json.load(f)
    assert on_disk["quantization"] == mode and on_disk["parity"]["sequences"] == 64


def _weight_bytes(path):
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model(path)
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def test_sizes_shrink_with_quantization(art):
    size = {m: art["reports"][m]["size_bytes"] for m in ("float32", "float16", "dynamic", "int8")}
    # in a 16-d model the graph itself is much of the file: compare the files
    # loosely and the stored weights tightly
    for mode in ("float16", "dynamic", "int8"):
        assert size[mode] < size["float32"], mode
    weights = {m: _weight_bytes(art["models"][m]) for m in ("float32", "float16", "int8")}
    assert weights["float16"] <= 0.55 * weights["float32"]
    # int8 weights (the tied embedding stored once) but int32/float32 biases,
    # which are a large share of a 16-d model's 16.7k parameters
    assert weights["int8"] <= 0.4 * weights["float32"]


def test_float16_logits_projection_runs_in_xnnpack_with_one_table(art):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    rep = art["reports"]["float16"]
    assert rep["xnnpack"]["delegate_partitions"] == 1
    assert "FULLY_CONNECTED" not in rep["xnnpack"]["ops_outside_delegate"]  # the tied logits projection
    model = fu.read_model(art["models"]["float16"])
    table = (len(art["vocab_list"]), 16)
    tables = {int(t.buffer) for t in model.subgraphs[0].tensors
              if t.type == schema.TensorType.FLOAT16 and tuple(t.shape) == table}
    assert len(tables) == 1  # stored once, read by the GATHER's and the FC's DEQUANTIZE
    # the tiny student's predictions are all near-ties, so compare logits, not top-1
    assert rep["parity"]["max_abs_logit_diff"] < 1e-3


def test_float32_matches_keras_logits(art):
    from mobile_bert_distill.export import keras_outputs, random_sequences
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches

    feeds = random_sequences(8, SEQ_LEN, len(art["vocab_list"]), seed=5)
    ref = keras_outputs(art["keras_model"], "mlm", feeds)["logits"]
    interp, _ = load_interpreter(art["models"]["float32"])
    got = run_batches(interp, feeds)["logits"]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    par = art["reports"]["float32"]["parity"]
    assert par["top1_agreement"] == 1.0 and par["max_abs_logit_diff"] < 1e-4


def test_int8_graph_is_integer_and_faithful(art):
    rep = art["reports"]["int8"]
    g = rep["graph_ops"]
    assert rep["recipe"] == "matmul" and rep["graph_options"]["score_margin"] == 10.0
    # every FULLY_CONNECTED / BATCH_MATMUL computes in int8; the logits
    # projection runs on int8 weights with float output (hybrid)
    assert g["float_compute_ops"] == {}
    assert g["hybrid_compute_ops"] == {"FULLY_CONNECTED": 1} and rep["float_logits"] is True
    assert g["int8_compute_ops"]["FULLY_CONNECTED"] == g["ops"]["FULLY_CONNECTED"] - 1
    assert g["int8_compute_ops"]["BATCH_MATMUL"] == g["ops"]["BATCH_MATMUL"]
    # only the documented float islands remain and XNNPACK takes the whole graph
    assert set(g["float_ops"]) <= set(rep["float_islands"]["ops"])
    assert "FULLY_CONNECTED" not in g["float_ops"] and "BATCH_MATMUL" not in g["float_ops"]
    assert rep["xnnpack"]["delegate_partitions"] == 1
    # outside it: the embedding lookups and their int32 index arithmetic (segment ids and
    # the padding mask are reshaped as int32 before their CAST)
    assert set(rep["xnnpack"]["ops_outside_delegate"]) <= {"CAST", "GATHER", "ADD", "MUL", "RESHAPE"}
    assert rep["xnnpack"]["ops_outside_delegate"].get("GATHER") == 2
    par = rep["parity"]
    assert par["source"] == "given" and par["masked_tokens"] > 50
    assert par["top1_agreement"] >= 0.9, par
    assert par["accuracy_drop_points"] <= 5.0, par


def test_int8_keeps_segment_ids_and_padding_mask(art):
    """Calibration text has one segment: the int8 graph must not quantize the
    segment term (or the mask bias) with a range calibrated on segment 0 alone."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from mobile_bert_distill.export import keras_outputs, random_sequences
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches

    model = fu.read_model(art["models"]["int8"])
    g = model.subgraphs[0]
    # int8 activations (no stored data): a degenerate scale means calibration saw a constant
    scales = [float(s) for t in g.tensors
              if t.type == 9 and model.buffers[t.buffer].data is None and t.quantization is not None
              and t.quantization.scale is not None for s in t.quantization.scale]
    assert len(scales) > 20 and min(scales) > 1e-6
    assert art["reports"]["int8"]["graph_ops"]["ops"].get("STRIDED_SLICE", 0) == 0

    feeds = random_sequences(16, SEQ_LEN, len(art["vocab_list"]), seed=7)
    pair = dict(feeds, segment_ids=np.zeros_like(feeds["segment_ids"]))
    for row, n in enumerate(feeds["padding_mask"].sum(1)):
        pair["segment_ids"][row, n // 2 : n] = 1
    interp, _ = load_interpreter(art["models"]["int8"])
    out0, out1 = (run_batches(interp, f)["logits"] for f in (feeds, pair))
    ref0, ref1 = (keras_outputs(art["keras_model"], "mlm", f)["logits"] for f in (feeds, pair))
    keep = feeds["padding_mask"].astype(bool)
    # what segment 1 changes in the float model, the int8 model changes too
    d_ref, d_int8 = (ref1 - ref0)[keep].ravel(), (out1 - out0)[keep].ravel()
    cos = float(d_ref @ d_int8 / (np.linalg.norm(d_ref) * np.linalg.norm(d_int8) + 1e-12))
    assert np.abs(d_ref).mean() > 0.02 and cos > 0.9, (np.abs(d_ref).mean(), cos)
    assert np.abs(out1 - ref1)[keep].mean() < 2.0 * np.abs(out0 - ref0)[keep].mean() + 0.02


def test_int8_xnnpack_recipe_keeps_only_softmax_and_rsqrt_float(art, tmp_path):
    from mobile_bert_distill.export import export_student

    rep = export_student(art["student"], str(tmp_path / "x.tflite"), quantization="int8",
                         recipe="xnnpack", seq_len=SEQ_LEN, calibration_corpus=art["corpus"],
                         num_calibration=32, num_parity=32)
    assert set(rep["graph_ops"]["float_ops"]) <= {"SOFTMAX", "RSQRT"}
    assert rep["xnnpack"]["delegate_partitions"] <= 2


def test_int8_fc_recipe_keeps_attention_matmuls_float(art, tmp_path):
    from mobile_bert_distill.export import export_student

    rep = export_student(art["student"], str(tmp_path / "fc.tflite"), quantization="int8",
                         recipe="fc", seq_len=SEQ_LEN, calibration_corpus=art["corpus"],
                         num_calibration=32, num_parity=32)
    g = rep["graph_ops"]
    assert rep["recipe"] == "fc"
    assert g["float_compute_ops"].get("BATCH_MATMUL") == g["ops"]["BATCH_MATMUL"]
    assert g["int8_compute_ops"]["FULLY_CONNECTED"] == g["ops"]["FULLY_CONNECTED"] - 1
    assert rep["xnnpack"]["delegate_partitions"] == 1


def test_int8_strict_recipe_has_no_float_ops(art, tmp_path):
    from mobile_bert_distill.export import export_student

    rep = export_student(art["student"], str(tmp_path / "strict.tflite"), quantization="int8",
                         recipe="strict", seq_len=SEQ_LEN, calibration_corpus=art["corpus"],
                         num_calibration=32, num_parity=32)
    g = rep["graph_ops"]
    assert g["float_ops"] == {}
    assert g["quantize_ops"] == 1 and g["dequantize_ops"] == 1  # only at the graph boundaries


def test_xnnpack_fixups_make_matmul_operands_symmetric(art):
    from mobile_bert_distill.litert.tools import load_interpreter

    interp, _ = load_interpreter(art["models"]["int8"], xnnpack=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    bmms = [op for op in interp._get_ops_details() if op["op_name"] == "BATCH_MATMUL"]
    assert bmms
    for op in bmms:
        assert tensors[op["inputs"][1]]["quantization"][1] == 0


def test_encoder_export(art):
    rep = art["reports"]["encoder"]
    assert sorted(rep["signature"]["outputs"]) == ["pooled_output", "sequence_output"]
    assert rep["signature"]["outputs"]["sequence_output"]["shape"] == [1, SEQ_LEN, 16]
    assert rep["parity"]["sequence_output_cosine_min"] > 0.9999
    assert rep["parity"]["pooled_output_cosine_mean"] > 0.9999


def test_export_keras_model_in_memory_backbone_random_calibration(tmp_path):
    import keras_hub

    from mobile_bert_distill.export import export_keras_model

    backbone = keras_hub.models.BertBackbone(vocabulary_size=300, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=64)
    out = tmp_path / "enc.tflite"
    rep = export_keras_model(backbone, str(out), task="encoder", quantization="int8", seq_len=16,
                             batch_size=2, num_calibration=16, num_parity=8)
    assert out.exists() and rep["calibration"]["source"] == "random_ids"
    assert rep["signature"]["inputs"]["input_ids"]["shape"] == [2, 16]
    assert rep["parity"]["sequence_output_cosine_mean"] > 0.95
    with pytest.raises(UserError, match="needs a BertMaskedLM"):
        export_keras_model(backbone, str(tmp_path / "x.tflite"), task="mlm")


def test_graph_options_reproduce_keras_forward(art):
    """The re-expressed graph is the same function (before any conversion)."""
    from mobile_bert_distill.export.graph import ExportBert, GraphOptions
    from mobile_bert_distill.export import keras_outputs, random_sequences

    feeds = random_sequences(2, SEQ_LEN, len(art["vocab_list"]), seed=9)
    ref = keras_outputs(art["keras_model"], "mlm", feeds)["logits"]
    for opts in (GraphOptions(), GraphOptions(attention="per_head", gelu="tanh"), GraphOptions(fuse_qkv=True)):
        m = ExportBert.from_keras(art["keras_model"], task="mlm", seq_len=SEQ_LEN, batch_size=2, options=opts)
        got = m.module.serve(**feeds)["logits"].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_graph_rewrites_are_exact_with_nonzero_biases(art):
    """Dropping the key bias, folding the value bias into the output bias and the
    joint position+segment table leave the function unchanged (random biases,
    both segments, padding)."""
    from mobile_bert_distill.export.graph import ExportBert, GraphOptions
    from mobile_bert_distill.export import keras_outputs, random_sequences

    model = art["keras_model"]
    saved = [w.numpy().copy() for w in model.weights]
    rng = np.random.default_rng(3)
    try:
        for w in model.weights:
            if w.path.endswith("bias") or w.path.endswith("beta"):
                w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
        feeds = random_sequences(3, SEQ_LEN, len(art["vocab_list"]), seed=4)
        feeds["segment_ids"][:, SEQ_LEN // 2:] = 1
        feeds["padding_mask"][0, SEQ_LEN - 3:] = 0
        ref = keras_outputs(model, "mlm", feeds)["logits"]
        for opts in (GraphOptions(), GraphOptions(position_segment_table=True, fuse_qkv=True),
                     GraphOptions(attention="per_head", position_segment_table=True)):
            m = ExportBert.from_keras(model, task="mlm", seq_len=SEQ_LEN, batch_size=3, options=opts)
            got = m.module.serve(**feeds)["logits"].numpy()
            np.testing.assert_allclose(got, ref, atol=2e-4, rtol=0)
            assert not any("_k_b" in v.name or "_v_b" in v.name for v in m.module.variables)
        enc_ref = keras_outputs(model, "encoder", feeds)
        enc = ExportBert.from_keras(model, task="encoder", seq_len=SEQ_LEN, batch_size=3,
                                    options=GraphOptions(position_segment_table=True)).module.serve(**feeds)
        for key in ("sequence_output", "pooled_output"):
            np.testing.assert_allclose(enc[key].numpy(), enc_ref[key], atol=2e-4, rtol=0)
    finally:
        for w, value in zip(model.weights, saved):
            w.assign(value)


def test_too_large_fails_and_writes_nothing(art, tmp_path):
    from mobile_bert_distill.export import export_keras_model

    out = tmp_path / "big.tflite"
    with pytest.raises(UserError, match="over the limit of"):
        export_keras_model(art["keras_model"], str(out), quantization="float32", seq_len=SEQ_LEN,
                           max_size_mb=0.001)
    assert not out.exists() and not (tmp_path / "big.report.json").exists()
    assert os.listdir(tmp_path) == []


def test_low_parity_fails_and_writes_nothing(art, tmp_path):
    from mobile_bert_distill.export import export_keras_model

    out = tmp_path / "p.tflite"
    with pytest.raises(UserError, match="below the minimum agreement"):
        export_keras_model(art["keras_model"], str(out), quantization="float16", seq_len=SEQ_LEN,
                           num_parity=16, min_agreement=1.01)
    assert os.listdir(tmp_path) == []


def test_bad_student_dirs(tmp_path):
    from mobile_bert_distill.export import export_student

    with pytest.raises(UserError, match="not found"):
        export_student(str(tmp_path / "missing"), str(tmp_path / "m.tflite"), quantization="float32")
    (tmp_path / "notapreset").mkdir()
    (tmp_path / "notapreset" / "weights.h5").write_bytes(b"x")
    with pytest.raises(UserError, match="not a keras-hub preset"):
        export_student(str(tmp_path / "notapreset"), str(tmp_path / "m.tflite"), quantization="float32")
    assert not (tmp_path / "m.tflite").exists()


def test_vocab_that_does_not_match_the_model(art, tmp_path):
    import shutil

    from mobile_bert_distill.export import export_student

    broken = tmp_path / "student"
    shutil.copytree(art["student"], broken)
    vocab = broken / "assets" / "tokenizer" / "vocabulary.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8") + "extra1\nextra2\n", encoding="utf-8")
    with pytest.raises(UserError, match="embedding rows"):
        export_student(str(broken), str(tmp_path / "m.tflite"), quantization="float32", seq_len=SEQ_LEN)


def test_int8_requires_a_corpus_and_rejects_bad_options(art, tmp_path):
    from mobile_bert_distill.export import export_student

    with pytest.raises(UserError, match="int8 needs a calibration corpus"):
        export_student(art["student"], str(tmp_path / "m.tflite"), quantization="int8", seq_len=SEQ_LEN)
    with pytest.raises(UserError, match="corpus file not found"):
        export_student(art["student"], str(tmp_path / "m.tflite"), quantization="int8", seq_len=SEQ_LEN,
                       calibration_corpus=str(tmp_path / "nope.txt"))
    with pytest.raises(UserError, match="quantization"):
        export_student(art["student"], str(tmp_path / "m.tflite"), quantization="int4")
    binary = tmp_path / "calib.bin"
    binary.write_bytes(bytes(range(256)) * 4)  # not text: refused, never calibrated on
    with pytest.raises(UserError, match="not UTF-8"):
        export_student(art["student"], str(tmp_path / "m.tflite"), quantization="int8", seq_len=SEQ_LEN,
                       calibration_corpus=str(binary))
    binary.unlink()
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_parity_scores_the_models_own_mask_id(tmp_path):
    """A vocabulary whose special tokens are not first (bert-base-uncased has [MASK] = 103):
    parity scores exactly the [MASK] positions, with the model's id, and random parity
    sequences use the model's [CLS]/[SEP]/[MASK]."""
    from _export_fixtures import build_student, learn_vocab, make_sentences

    from mobile_bert_distill.export import corpus_sequences, export_keras_model
    from mobile_bert_distill.text.wordpiece import WordPiece

    sentences = make_sentences(120, seed=4)
    learned = learn_vocab(sentences, size=150)
    vocab = ["[PAD]", *learned[5:40], "[UNK]", "[CLS]", "[SEP]", "[MASK]", *learned[40:]]
    mask_id = vocab.index("[MASK]")
    model = build_student(vocab, num_layers=1, hidden=16, heads=2, intermediate=32, seq_len=16)
    feeds, labels = corpus_sequences(sentences, WordPiece(vocab), 16, 12, seed=1)
    rep = export_keras_model(model, str(tmp_path / "m.tflite"), task="mlm", quantization="float32", seq_len=16,
                             parity_sequences=feeds, parity_labels=labels, write_report=False)
    assert mask_id == 39 and rep["parity"]["masked_tokens"] == int((feeds["input_ids"] == mask_id).sum())
    assert rep["parity"]["masked_tokens"] < int(feeds["padding_mask"].sum()) / 3
    rep = export_keras_model(model, str(tmp_path / "r.tflite"), task="mlm", quantization="float32", seq_len=16,
                             num_parity=8, write_report=False)
    assert 0 < rep["parity"]["masked_tokens"] < 8 * 14 / 3  # the random rows' masks, not every position


def test_layer_sensitivity_ranks_quantized_ops(art):
    from mobile_bert_distill.export import corpus_sequences, read_calibration_text
    from mobile_bert_distill.export.experimental import layer_sensitivity
    from mobile_bert_distill.text.wordpiece import WordPiece

    feeds, _ = corpus_sequences(read_calibration_text(art["corpus"]), WordPiece(art["vocab"]), SEQ_LEN, 16)
    rows = layer_sensitivity(art["keras_model"], seq_len=SEQ_LEN, calibration_feeds=feeds, num_samples=4)
    assert len(rows) > 20
    errors = [r["rmse_over_scale"] for r in rows]
    assert errors == sorted(errors, reverse=True) and errors[-1] >= 0
    ops = {r["op"] for r in rows}
    assert "FULLY_CONNECTED" in ops and "SOFTMAX" not in ops  # SOFTMAX is float in the recipe


def _tiny_mlm_with_random_norms(seed=0):
    """A 2-layer 16-d BertMaskedLM with random biases, betas and uneven gammas
    (one loud channel), so that smoothing scales are far from 1."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=64, dropout=0.0)
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.endswith("bias") or w.path.endswith("beta"):
            w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))
        elif w.path.endswith("gamma"):
            g = rng.uniform(0.5, 1.5, w.shape)
            g[..., 3] = 6.0
            w.assign(g.astype("float32"))
    return model


def test_smoothing_and_qk_balancing_are_exact_in_float():
    """SmoothQuant rescaling (LayerNorm gamma / s, kernel rows * s, residual * s,
    value columns / s into the output rows) and query/key balancing leave the
    function unchanged, in every attention layout and for the encoder."""
    from mobile_bert_distill.export.graph import ExportBert, GraphOptions
    from mobile_bert_distill.export import keras_outputs, random_sequences

    model = _tiny_mlm_with_random_norms()
    seq = 12
    calib = random_sequences(8, seq, 100, seed=1)
    feeds = random_sequences(3, seq, 100, seed=2)
    feeds["segment_ids"][:, seq // 2:] = 1
    feeds["padding_mask"][0, seq - 3:] = 0
    keep = feeds["padding_mask"].astype(bool)  # padded positions are never compared
    ref = keras_outputs(model, "mlm", feeds)["logits"]
    plain = ExportBert.from_keras(model, task="mlm", seq_len=seq, batch_size=3)
    for opts in (GraphOptions(smooth_alpha=0.5), GraphOptions(smooth_alpha=0.85, balance_qk=True),
                 GraphOptions(smooth_alpha=0.5, balance_qk=True, fuse_qkv=True, position_segment_table=True),
                 GraphOptions(balance_qk=True, attention="per_head")):
        m = ExportBert.from_keras(model, task="mlm", seq_len=seq, batch_size=3, options=opts,
                                  calibration_feeds=calib)
        got = m.module.serve(**feeds)["logits"].numpy()
        np.testing.assert_allclose(got[keep], ref[keep], atol=1e-4, rtol=0)
    # the rewrite did move the ranges: the loud gamma channel is divided down
    m = ExportBert.from_keras(model, task="mlm", seq_len=seq, batch_size=3,
                              options=GraphOptions(smooth_alpha=0.5, balance_qk=True), calibration_feeds=calib)
    assert np.abs(m.module.l0_res_in.numpy() - 1).max() > 0.1
    assert np.abs(m.module.l0_q_k.numpy() - plain.module.l0_q_k.numpy()).max() > 1e-3
    assert np.abs(m.module.l1_v_k.numpy() - plain.module.l1_v_k.numpy()).max() > 1e-3
    enc_ref = keras_outputs(model, "encoder", feeds)
    enc = ExportBert.from_keras(model, task="encoder", seq_len=seq, batch_size=3,
                                options=GraphOptions(smooth_alpha=0.5, balance_qk=True),
                                calibration_feeds=calib).module.serve(**feeds)
    np.testing.assert_allclose(enc["sequence_output"].numpy()[keep], enc_ref["sequence_output"][keep], atol=1e-4)
    with pytest.raises(ValueError, match="calibration_feeds"):
        ExportBert.from_keras(model, task="mlm", seq_len=seq, options=GraphOptions(smooth_alpha=0.5))


def test_gptq_round_is_on_the_converter_grid_and_beats_round_to_nearest():
    from mobile_bert_distill.export.experimental import gptq_round

    rng = np.random.default_rng(0)
    n_in, n_out, tokens = 32, 24, 600
    # correlated, uneven inputs: where error compensation has something to use
    x = rng.normal(size=(tokens, n_in)) @ (rng.normal(size=(n_in, n_in)) * rng.uniform(0.1, 2, n_in))
    w = rng.normal(size=(n_in, n_out)).astype(np.float32)
    scale = np.abs(w).max(0) / 127
    rtn = np.round(w / scale) * scale
    got = gptq_round(w, x.T @ x)
    q = got / scale
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)  # integers on the RTN grid ...
    assert np.abs(np.round(q)).max() <= 127
    np.testing.assert_array_equal(np.abs(np.round(q)).max(0), 127)  # ... whose max|w| (= scale) is unchanged
    err_gptq = np.linalg.norm(x @ got - x @ w)
    err_rtn = np.linalg.norm(x @ rtn - x @ w)
    assert err_gptq < 0.8 * err_rtn, (err_gptq, err_rtn)


def test_gptq_int8_file_stores_the_gptq_integers():
    """The converter's per-channel scales reproduce the GPTQ grid: the int8
    kernels in the file dequantize to the exported float kernels."""
    from mobile_bert_distill.export.graph import ExportBert
    from mobile_bert_distill.export import convert, random_sequences
    from mobile_bert_distill.litert.tools import load_interpreter

    model = _tiny_mlm_with_random_norms(seed=1)
    seq = 12
    calib = random_sequences(8, seq, 100, seed=1)
    # with smoothing the projections read the LayerNorm output as is; without,
    # the converter folds gamma into them and GPTQ rounds diag(gamma) W
    for opts in (_matmul_options(gptq=True, smooth_alpha=0.5), _matmul_options(gptq=True)):
        module = ExportBert.from_keras(model, task="mlm", seq_len=seq, options=opts, calibration_feeds=calib).module
        named = {v.name.split(":")[0]: v.numpy() for v in module.variables}
        kernels = [v for n, v in named.items() if n.endswith(("_q_k", "_k_k", "_v_k", "_o_k", "_ff1_k", "_ff2_k",
                                                               "dense_k"))]
        assert len(kernels) == 13
        gammas = [np.ones(16)] + [v for n, v in named.items() if n.endswith("ln_g") and v.shape == (16,)]
        flat = convert(model, task="mlm", quantization="int8", seq_len=seq, calibration_feeds=calib,
                       graph_options=opts, float_ops=("SOFTMAX", "RSQRT", "ADD", "MEAN", "SUB", "MUL", "GELU"),
                       float_logits=True)
        interp, _ = load_interpreter(model_content=flat, xnnpack=False)
        stored = []
        for t in interp.get_tensor_details():
            scales = t["quantization_parameters"]["scales"]
            if t["dtype"] == np.int8 and len(t["shape"]) == 2 and len(scales) > 1:
                with contextlib.suppress(ValueError):
                    stored.append(interp.get_tensor(t["index"]).astype(np.float64) * scales[:, None])
        for k in kernels:
            match = [s for s in stored for g in gammas if s.shape == k.T.shape and k.shape[0] == len(g)
                     and np.abs(s - (k * g[:, None]).T).max() < 1e-4 * np.abs(k * g[:, None]).max()]
            match += [s for s in stored if s.shape == k.T.shape and np.abs(s - k.T).max() < 1e-4 * np.abs(k).max()]
            assert match, f"no int8 tensor in the file dequantizes to a GPTQ kernel of shape {k.shape} ({opts})"


def test_attention_score_ranges_narrow_the_score_step(tmp_path):
    """score_margin sets each score matmul's output range from the float row maxima."""
    from mobile_bert_distill.export.graph import ExportBert
    from mobile_bert_distill.export import convert, random_sequences
    from mobile_bert_distill.litert.tools import load_interpreter

    model = _tiny_mlm_with_random_norms(seed=2)
    seq = 12
    calib = random_sequences(8, seq, 100, seed=1)
    opts = _matmul_options(score_margin=4.0)
    ranges = ExportBert.from_keras(model, task="mlm", seq_len=seq, options=opts,
                                   calibration_feeds=calib).score_ranges
    assert len(ranges) == 2 and all(lo < hi for lo, hi in ranges)
    kw = dict(task="mlm", quantization="int8", seq_len=seq, calibration_feeds=calib,
              float_ops=("SOFTMAX", "RSQRT", "ADD", "MEAN", "SUB", "MUL", "GELU"), float_logits=True)

    def score_outputs(flat):
        interp, _ = load_interpreter(model_content=flat, xnnpack=False)
        td = {t["index"]: t for t in interp.get_tensor_details()}
        ops = [op for op in interp._get_ops_details() if op["op_name"] == "BATCH_MATMUL"]
        return [td[op["outputs"][0]]["quantization"] for op in ops[::2]]  # score, context, score, ...

    plain = score_outputs(convert(model, graph_options=_matmul_options(), **kw))
    narrowed = score_outputs(convert(model, graph_options=opts, **kw))
    for (lo, hi), (scale, zero), (old_scale, _) in zip(ranges, narrowed, plain):
        assert scale == pytest.approx((max(hi, 0) - min(lo, 0)) / 255, rel=1e-5)
        assert (-128 - zero) * scale == pytest.approx(min(lo, 0), abs=scale)
        assert scale < old_scale


def _matmul_options(**change):
    import dataclasses

    from mobile_bert_distill.export.recipes import recipe_table as _recipes

    return dataclasses.replace(_recipes()["matmul"]["graph_options"], **change)


def test_parity_splits_agreement_at_near_ties():
    from mobile_bert_distill.export import NEAR_TIE_GAP, parity

    ids = np.array([[2, 4, 4, 4, 4, 3]], np.int32)  # four [MASK] positions
    feeds = {"input_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    ref = np.zeros((1, 6, 5), np.float32)
    ref[0, 1, :2] = [3.0, 0.0]                        # clear: gap 3
    ref[0, 2, :2] = [2.0, 0.0]                        # clear: gap 2
    ref[0, 3, :2] = [1.0, 1.0 - NEAR_TIE_GAP / 2]     # near-tie
    ref[0, 4, :2] = [1.0, 1.0 - NEAR_TIE_GAP / 4]     # near-tie
    cand = ref.copy()
    cand[0, 2, 1] = 5.0  # flips a clear token
    cand[0, 3, 1] = 2.0  # flips a near-tie
    res = parity("mlm", {"logits": ref}, {"logits": cand}, feeds)
    assert res["masked_tokens"] == 4 and res["top1_agreement"] == 0.5
    assert res["near_tie_fraction"] == 0.5
    assert res["top1_agreement_clear"] == 0.5 and res["top1_agreement_near_ties"] == 0.5
    cand[0, 2, 1] = 0.0  # restore the clear token
    res = parity("mlm", {"logits": ref}, {"logits": cand}, feeds)
    assert res["top1_agreement_clear"] == 1.0 and res["top1_agreement_near_ties"] == 0.5
