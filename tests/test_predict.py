"""`mbd predict` and `mbd export` on the command line (in-process)."""

import json
import os

import pytest

from _export_fixtures import SEQ_LEN, export_artifacts

from mobile_bert_distill.cli import main


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return export_artifacts(tmp_path_factory)


def test_predict_text_output(art, capsys):
    from mobile_bert_distill.litert.inference import LiteRTModel

    rc = main(["predict", "--model", art["models"]["float32"], "--vocab", art["vocab"], "--top-k", "3",
               "the capital of [MASK] is paris .", "a [MASK] and a [MASK]"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0] == "the capital of [MASK] is paris ."
    assert out[1].startswith("  [MASK] 1 (position ")
    assert out[2] == "a [MASK] and a [MASK]"
    assert out[3].startswith("  [MASK] 1") and out[4].startswith("  [MASK] 2") and len(out) == 5
    expected = LiteRTModel(art["models"]["float32"], art["vocab"]).fill_mask("the capital of [MASK] is paris .", 3)
    tokens = [c["token"] for c in expected[0][0]["candidates"]]
    shown = out[1].split(": ", 1)[1].split("  ")
    assert [s.rsplit(" ", 1)[0] for s in shown] == tokens
    assert all(0 <= float(s.rsplit(" ", 1)[1]) <= 1 for s in shown)


def test_predict_json_and_input_file(art, capsys, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("[MASK] city\n\nthe [MASK]\n", encoding="utf-8")
    rc = main(["predict", "--model", art["models"]["int8"], "--vocab", art["vocab"], "--json", "--input", str(f)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["seq_len"] == SEQ_LEN and doc["runtime"] == "ai_edge_litert"
    assert [r["text"] for r in doc["results"]] == ["[MASK] city", "the [MASK]"]
    cands = doc["results"][0]["masks"][0]["candidates"]
    assert len(cands) == 5 and set(cands[0]) == {"token", "id", "probability"}


def test_predict_truncation_warns(art, capsys):
    rc = main(["predict", "--model", art["models"]["float32"], "--vocab", art["vocab"],
               "[MASK] " + "library " * 100])
    err = capsys.readouterr().err
    assert rc == 0 and "truncated" in err


@pytest.mark.parametrize("argv, message", [
    (["no mask in this text"], "no [MASK]"),
    ([""], "empty"),
    ([], "no input text"),
])
def test_predict_bad_text(art, capsys, argv, message):
    rc = main(["predict", "--model", art["models"]["float32"], "--vocab", art["vocab"], *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mbd: error: ") and message in err and err.count("\n") == 1


def test_predict_bad_files(art, capsys, tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert main(["predict", "--model", str(junk), "--vocab", art["vocab"], "[MASK]"]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err
    data = open(art["models"]["float32"], "rb").read()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:1000])
    assert main(["predict", "--model", str(cut), "--vocab", art["vocab"], "[MASK]"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    wrong = tmp_path / "vocab.txt"
    wrong.write_text("\n".join(art["vocab_list"] + ["extra"]) + "\n", encoding="utf-8")
    assert main(["predict", "--model", art["models"]["float32"], "--vocab", str(wrong), "[MASK]"]) == 2
    assert "embedding rows" in capsys.readouterr().err
    dup = art["vocab_list"][:]
    dup[-1] = dup[-2]  # same size as the model's table, but one id can never be produced
    wrong.write_text("\n".join(dup) + "\n", encoding="utf-8")
    assert main(["predict", "--model", art["models"]["float32"], "--vocab", str(wrong), "[MASK]"]) == 2
    assert "1 duplicate token(s)" in capsys.readouterr().err


def test_export_cli_bad_inputs(art, capsys, tmp_path):
    out = tmp_path / "m.tflite"
    assert main(["export", "--student", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "student directory not found" in capsys.readouterr().err
    assert main(["export", "--student", str(tmp_path), "--out", str(out), "--quantization", "float32"]) == 2
    assert "not a keras-hub preset" in capsys.readouterr().err
    assert main(["export", "--student", art["student"], "--out", str(out), "--quantization", "float32",
                 "--seq-len", str(SEQ_LEN), "--max-size-mb", "0.001"]) == 2
    assert "over the limit of 0.001 MB; nothing written (pass --max-size-mb with a larger limit to accept it)" \
        in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_export_cli_end_to_end_with_android_assets(art, capsys, tmp_path):
    out = tmp_path / "model.tflite"
    assets = tmp_path / "android"
    rc = main(["export", "--student", art["student"], "--out", str(out), "--quantization", "int8",
               "--seq-len", str(SEQ_LEN), "--calibration-corpus", art["corpus"], "--num-calibration", "32",
               "--num-parity", "32", "--min-agreement", "0.5", "--android-assets", str(assets)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "int8" in text and "parity on" in text
    assert out.exists() and (tmp_path / "model.report.json").exists()
    assert sorted(os.listdir(assets)) == ["model.tflite", "model_info.json", "vocab.txt"]
    report = json.loads((tmp_path / "model.report.json").read_text())
    assert report["android_assets"]["files"] == ["model.tflite", "vocab.txt", "model_info.json"]
    par = report["parity"]
    assert 0.0 <= par["near_tie_fraction"] <= 1.0 and par["near_tie_gap"] == 0.5
    if 0.0 < par["near_tie_fraction"] < 1.0:
        assert "where float's top-2 gap >= 0.5" in text


def _export_argv(art, out, *extra):
    return ["export", "--student", art["student"], "--out", str(out), "--quantization", "float32",
            "--seq-len", str(SEQ_LEN), "--num-parity", "4", *extra]


def test_export_refuses_existing_outputs_and_overwrite_replaces_them(art, capsys, tmp_path):
    out, assets = tmp_path / "model.tflite", tmp_path / "android"
    assets.mkdir()
    (assets / "README.md").write_text("the app's own file")
    assert main(_export_argv(art, out, "--android-assets", str(assets))) == 0
    capsys.readouterr()
    first = {p: os.path.getmtime(p) for p in (out, tmp_path / "model.report.json", assets / "model_info.json")}
    for extra in ([], ["--android-assets", str(assets)]):  # the model first; then only an asset file is in the way
        if extra:
            os.rename(out, tmp_path / "moved.tflite")
            os.rename(tmp_path / "model.report.json", tmp_path / "moved.report.json")
        assert main(_export_argv(art, out, *extra)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mbd: error: the export output ") and \
            err[0].endswith("already exists (pass --overwrite to replace it)"), err
    assert str(assets / "model.tflite") in err[0]
    assert not out.exists() and os.path.getmtime(assets / "model_info.json") == first[assets / "model_info.json"]
    os.rename(tmp_path / "moved.tflite", out)
    os.rename(tmp_path / "moved.report.json", tmp_path / "model.report.json")
    assert main(_export_argv(art, out, "--android-assets", str(assets), "--overwrite")) == 0
    assert all(os.path.getmtime(p) > t for p, t in first.items())
    assert sorted(os.listdir(tmp_path)) == ["android", "model.report.json", "model.tflite"]  # nothing beside
    assert sorted(os.listdir(assets)) == ["README.md", "model.tflite", "model_info.json", "vocab.txt"]
    assert (assets / "README.md").read_text() == "the app's own file"


def test_export_failing_in_the_android_assets_leaves_nothing(art, capsys, tmp_path, monkeypatch):
    from mobile_bert_distill.export import android
    from mobile_bert_distill.errors import UserError

    def broken(*args, **kwargs):
        raise UserError("golden vectors failed")

    monkeypatch.setattr(android, "golden_vectors", broken)
    out, assets = tmp_path / "new" / "model.tflite", tmp_path / "android"
    assets.mkdir()
    (assets / "README.md").write_text("the app's own file")
    assert main(_export_argv(art, out, "--android-assets", str(assets))) == 2
    assert capsys.readouterr().err.strip() == "mbd: error: golden vectors failed"
    assert sorted(os.listdir(tmp_path)) == ["android"]  # no model, no report, not even the folder "new"
    assert os.listdir(assets) == ["README.md"]
