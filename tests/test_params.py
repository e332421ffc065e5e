"""Parameter counts: the paper's Table 1, keras-hub agreement, configs and `mbd params`."""

import json
import os

import pytest

from mobile_bert_distill.cli import main
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.bench.params import (BERT_BASE, PAPER_TABLE1, BertConfig, load_config, param_counts,
                                        paper_comparison, student_config)


def test_table1_bert_base_exact():
    c = param_counts(BERT_BASE)
    assert c["backbone_with_pooler"] == 109_482_240
    assert c["mlm_head_tied"] == 622_650
    assert c["nsp_head"] == 1_538
    assert c["paper_total"] == 110_106_428 == PAPER_TABLE1["BERT-base"]


def test_students_standard_layout_and_the_paper_differ():
    ours = {h: param_counts(student_config(h))["backbone_with_pooler"] for h in (48, 96, 192)}
    assert ours == {48: 602_928, 96: 1_874_016, 192: 6_420_672}
    rows = {name: (paper, mine) for name, paper, mine in paper_comparison()}
    assert rows["BERT-base"][0] == rows["BERT-base"][1]
    assert rows["student 48-d"] == (1_775_910, 602_928)


def test_counts_equal_keras_hub():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras_hub

    cfg = BertConfig(vocab_size=97, hidden_dim=24, num_layers=2, num_heads=3, intermediate_dim=40,
                     max_positions=40, num_segments=3)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=97, num_layers=2, num_heads=3, hidden_dim=24, intermediate_dim=40,
        max_sequence_length=40, num_segments=3)
    mlm = keras_hub.models.BertMaskedLM(backbone=backbone)
    counts = param_counts(cfg)
    assert backbone.count_params() == counts["backbone_with_pooler"]
    assert mlm.count_params() == counts["masked_lm"]


def test_load_distill_yaml(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(321)) + "\n")
    (tmp_path / "distill.yaml").write_text(
        "data:\n  corpus: [a.txt]\n  student_vocab: vocab.txt\n"
        "teacher:\n  random: {vocabulary: v.txt, num_layers: 6, hidden_dim: 64}\n"
        "student:\n  hidden_dim: 48\n  num_layers: null\n  num_heads: 4\n  intermediate_dim: null\n")
    cfg = load_config(str(tmp_path / "distill.yaml"))
    assert (cfg.vocab_size, cfg.hidden_dim, cfg.num_layers, cfg.intermediate_dim) == (321, 48, 6, 192)


def test_load_keras_hub_preset_dir(tmp_path):
    d = tmp_path / "student"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"class_name": "BertBackbone", "config": {
        "vocabulary_size": 4928, "num_layers": 12, "num_heads": 4, "hidden_dim": 192,
        "intermediate_dim": 768, "max_sequence_length": 512, "num_segments": 2}}))
    assert param_counts(load_config(str(d)))["backbone_with_pooler"] == 6_420_672


def test_bad_configs(tmp_path):
    with pytest.raises(UserError):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("student: {hidden_dim: 50, num_heads: 4, num_layers: 2, vocab_size: 9}\n")
    with pytest.raises(UserError, match="divisible"):
        load_config(str(tmp_path / "bad.yaml"))


def test_cli_params(capsys, tmp_path):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "110,106,428" in out and "1,775,910" in out and "602,928" in out
    assert main(["params", "--hidden-dim", "192", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["backbone_with_pooler"] == 6_420_672
    assert main(["params", "--hidden-dim", "768", "--vocab-size", "30522", "--num-heads", "12"]) == 0
    assert "109,482,240" in capsys.readouterr().out
    for argv in (["params", "--hidden-dim", "0"], ["params", "--config", str(tmp_path / "nope.yaml")]):
        try:
            code = main(argv)
        except SystemExit as e:  # --hidden-dim 0 is refused while the command line is read
            code = e.code
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mbd: error: ") and len(err.splitlines()) == 1


def test_flags_fill_what_the_config_lacks(tmp_path, capsys):
    path = tmp_path / "my.yaml"
    path.write_text("student:\n  hidden_dim: 48\nteacher:\n  random: {num_layers: 12}\n")
    assert main(["params", "--config", str(path)]) == 2
    assert "lacks vocab_size" in capsys.readouterr().err
    assert main(["params", "--config", str(path), "--vocab-size", "4928", "--hidden-dim", "64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["vocab_size"] == 4928 and doc["config"]["hidden_dim"] == 64 and doc["config"]["num_layers"] == 12
