"""LiteRTModel: TF-free inference, bad inputs, and the Android assets."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from _export_fixtures import SEQ_LEN, export_artifacts

from mobile_bert_distill.errors import UserError


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return export_artifacts(tmp_path_factory)


def test_fill_mask_matches_keras(art):
    from mobile_bert_distill.export import keras_outputs
    from mobile_bert_distill.litert.inference import LiteRTModel

    m = LiteRTModel(art["models"]["float32"], art["vocab"])
    assert m.runtime == "ai_edge_litert" and m.seq_len == SEQ_LEN and m.task == "mlm"
    text = "the capital of [MASK] is paris ."
    res = m.fill_mask(text, top_k=3)
    assert len(res) == 1 and len(res[0]) == 1
    feeds, _ = m.encode(text, keep_masks=True)
    ref = keras_outputs(art["keras_model"], "mlm", feeds)["logits"][0]
    pos = res[0][0]["position"]
    expected = list(np.argsort(-ref[pos])[:3])
    assert [c["id"] for c in res[0][0]["candidates"]] == expected
    probs = [c["probability"] for c in res[0][0]["candidates"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1


def test_batch_and_multiple_masks(art):
    from mobile_bert_distill.litert.inference import LiteRTModel

    m = LiteRTModel(art["models"]["int8"], art["vocab"])
    res = m.fill_mask(["a [MASK] b [MASK]", "[MASK] city"], top_k=2)
    assert [len(r) for r in res] == [2, 1]
    assert m.logits("x [MASK]").shape == (1, SEQ_LEN, len(art["vocab_list"]))


def test_long_text_truncates_with_warning(art):
    from mobile_bert_distill.litert.inference import LiteRTModel, TruncationWarning

    m = LiteRTModel(art["models"]["float32"], art["vocab"])
    long = "[MASK] " + " ".join(["library"] * 200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = m.fill_mask(long)
    assert any(issubclass(w.category, TruncationWarning) for w in caught)
    assert res[0][0]["position"] == 1
    # a mask that falls beyond the static length is a clear error, not a crash
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="beyond the static length"):
            m.fill_mask(" ".join(["library"] * 200) + " [MASK]")


def test_bad_text_inputs(art):
    from mobile_bert_distill.litert.inference import LiteRTModel

    m = LiteRTModel(art["models"]["float32"], art["vocab"])
    with pytest.raises(UserError, match=r"no \[MASK\]"):
        m.fill_mask("no mask here")
    with pytest.raises(UserError, match="empty"):
        m.fill_mask("")
    with pytest.raises(UserError, match="no input text"):
        m.fill_mask([])
    with pytest.raises(UserError, match="encoder"):
        m.embeddings("hello")


def test_bad_model_files(art, tmp_path):
    from mobile_bert_distill.litert.inference import LiteRTModel

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer at all" * 10)
    with pytest.raises(UserError, match="not a TFLite flatbuffer"):
        LiteRTModel(str(junk), art["vocab"])
    data = open(art["models"]["float32"], "rb").read()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        LiteRTModel(str(cut), art["vocab"])
    with pytest.raises(UserError, match="not found"):
        LiteRTModel(str(tmp_path / "missing.tflite"), art["vocab"])


def test_vocab_must_match_embedding_rows(art, tmp_path):
    from mobile_bert_distill.litert.inference import LiteRTModel

    short = tmp_path / "vocab.txt"
    short.write_text("\n".join(art["vocab_list"][:-3]) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="embedding rows"):
        LiteRTModel(art["models"]["float32"], str(short))
    with pytest.raises(UserError, match="embedding rows"):
        LiteRTModel(art["models"]["encoder"], str(short))


def test_encoder_embeddings(art):
    from mobile_bert_distill.litert.inference import LiteRTModel

    m = LiteRTModel(art["models"]["encoder"], art["vocab"])
    assert m.task == "encoder"
    for pooling in ("cls", "mean", "pooled"):
        v = m.embeddings(["one sentence", "another sentence here"], pooling=pooling)
        assert v.shape == (2, 16) and np.isfinite(v).all()


def test_no_tensorflow_import(art):
    code = (
        "import sys\n"
        "from mobile_bert_distill.litert.inference import LiteRTModel\n"
        f"m = LiteRTModel({art['models']['int8']!r}, {art['vocab']!r})\n"
        "r = m.fill_mask('the [MASK] city')\n"
        "assert r[0][0]['candidates']\n"
        "bad = [k for k in sys.modules if k == 'tensorflow' or k.startswith('tensorflow.') or k.startswith('keras')]\n"
        "assert not bad, bad[:5]\n"
        "print('ok', m.runtime)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok ai_edge_litert" in out.stdout


def test_android_assets_golden_vectors_reproduce(art, tmp_path):
    from mobile_bert_distill.export.android import ASSET_FILES, write_android_assets
    from mobile_bert_distill.litert.inference import LiteRTModel

    folder = tmp_path / "android"
    write_android_assets(str(folder), art["models"]["int8"], art["vocab"], art["reports"]["int8"])
    assert sorted(os.listdir(folder)) == sorted(ASSET_FILES)
    info = json.loads((folder / "model_info.json").read_text())
    assert sorted(info["inputs"]) == ["input_ids", "padding_mask", "segment_ids"]
    assert info["inputs"]["input_ids"]["shape"] == [1, SEQ_LEN]
    assert info["outputs"]["logits"]["dtype"] == "float32"
    assert info["special_tokens"] == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert info["lowercase"] is True and info["seq_len"] == SEQ_LEN
    assert len(info["golden"]) == 3
    m = LiteRTModel(str(folder / "model.tflite"), str(folder / "vocab.txt"))
    for g in info["golden"]:
        feeds, lengths = m.encode(g["text"], keep_masks=True)
        assert feeds["input_ids"][0, : lengths[0]].tolist() == g["input_ids"]
        got = m.fill_mask(g["text"], top_k=3)[0]
        assert [x["position"] for x in got] == [x["position"] for x in g["masks"]]
        assert [[c["id"] for c in x["candidates"]] for x in got] == [x["top_ids"] for x in g["masks"]]
