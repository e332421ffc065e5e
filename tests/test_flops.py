"""FLOPs: analytic rows vs counted from the .tflite, and architecture inference."""

import pytest

from _bench_models import SPECS, config_of, tiny_tflite
from mobile_bert_distill.bench import flops
from mobile_bert_distill.litert import on_device_bench as lb
from mobile_bert_distill.bench.params import BERT_BASE, student_config


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "tiny_models"
    return {n: tiny_tflite(root, n) for n in SPECS}


@pytest.mark.parametrize("name", ["kit_enc_f32", "kit_enc_dyn", "stock_enc_f32"])
def test_encoder_analytic_and_counted_agree_within_1_percent(files, name):
    graph = lb.Graph.from_file(files[name])
    analytic = flops.analytic_flops(config_of(name), graph.static_seq_len(), "encoder")
    counted = graph.flops()
    cmp_ = flops.compare(analytic, counted)
    assert abs(cmp_["matmul_rel_diff"]) <= 0.01, cmp_
    assert cmp_["matmul_agrees"]
    assert abs(cmp_["total_rel_diff"]) <= 0.01, cmp_
    # every matmul FLOP comes from FULLY_CONNECTED / BATCH_MATMUL
    assert counted["by_op"]["FULLY_CONNECTED"] + counted["by_op"]["BATCH_MATMUL"] >= counted["matmul"]
    assert counted["total"] == counted["matmul"] + counted["other"]


def test_mlm_head_is_counted(files):
    graph = lb.Graph.from_file(files["kit_mlm_f32"])
    cfg = config_of("kit_mlm_f32")
    analytic = flops.analytic_flops(cfg, graph.static_seq_len(), "mlm")
    counted = graph.flops()
    assert abs(flops.compare(analytic, counted)["matmul_rel_diff"]) <= 0.01
    head = next(r for r in analytic["rows"] if r["name"] == "MLM head")
    s, h, v = graph.static_seq_len(), cfg.hidden_dim, cfg.vocab_size
    assert head["matmul"] == 2 * s * h * h + 2 * s * h * v


def test_disagreement_is_detected(files):
    graph = lb.Graph.from_file(files["kit_enc_f32"])
    wrong = config_of("kit_enc_f32")
    import dataclasses

    wrong = dataclasses.replace(wrong, intermediate_dim=wrong.intermediate_dim * 2)
    cmp_ = flops.compare(flops.analytic_flops(wrong, graph.static_seq_len()), graph.flops())
    assert not cmp_["matmul_agrees"]


def test_quantization_does_not_change_counted_flops(files):
    f32 = lb.Graph.from_file(files["kit_enc_f32"])
    dyn = lb.Graph.from_file(files["kit_enc_dyn"])
    assert f32.quantization() == "float32" and dyn.quantization() == "dynamic"
    assert f32.flops()["matmul"] == dyn.flops()["matmul"]


@pytest.mark.parametrize("name", list(SPECS))
def test_architecture_is_inferred_from_the_graph(files, name):
    graph = lb.Graph.from_file(files[name])
    got = flops.infer_architecture(graph)
    want = config_of(name)
    assert (got.vocab_size, got.hidden_dim, got.num_layers, got.num_heads, got.intermediate_dim) == (
        want.vocab_size, want.hidden_dim, want.num_layers, want.num_heads, want.intermediate_dim)
    assert graph.task() == SPECS[name][1]


def test_reference_mac_counts():
    # REFERENCE: layers x (4 S H^2 + 2 S H I + 2 S^2 H) MACs at seq 128
    base = flops.analytic_flops(BERT_BASE, 128, "encoder")
    pooler = 2 * 768 * 768
    assert (base["matmul"] - pooler) / 2 == 12 * (4 * 128 * 768**2 + 2 * 128 * 768 * 3072 + 2 * 128**2 * 768)
    assert round((base["matmul"] - pooler) / 2 / 1e9, 2) == 11.17
    small = flops.analytic_flops(student_config(48), 128, "encoder")
    assert round((small["matmul"] - 2 * 48 * 48) / 2 / 1e6, 1) == 61.3
    assert 180 < base["matmul"] / small["matmul"] < 185


def test_params_in_file_match_the_model(files):
    from mobile_bert_distill.bench.params import param_counts

    graph = lb.Graph.from_file(files["kit_enc_f32"])
    cfg = config_of("kit_enc_f32")
    want = param_counts(cfg)["backbone_with_pooler"]
    # the file keeps only the first `seq` rows of the position table
    sliced = (cfg.max_positions - graph.static_seq_len()) * cfg.hidden_dim
    # the exporter's exact rewrites drop per layer the key bias, the value bias (folded into the
    # output bias) and the two LayerNorm betas (folded into the next biases), plus the embedding
    # LayerNorm's beta, and add back one final beta for the encoder output: 4 * layers * hidden
    folded = 4 * cfg.num_layers * cfg.hidden_dim
    assert abs(graph.params_in_file() - (want - sliced - folded)) <= 8  # a few scalar constants
