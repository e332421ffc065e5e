"""FastBERT-style early exit: self-distilled exits (`mbd finetune --early-exit`), the staged export,
`LiteRTModel.classify(speed=...)` and `mbd predict --speed`."""

import json
import os

import numpy as np
import pytest

from _classifier_fixtures import SEQ_LEN, labelled_rows, write_csv
from _export_fixtures import build_student, learn_vocab, make_sentences, save_student

from mobile_bert_distill.cli import main
from mobile_bert_distill.errors import UserError

LAYERS = 3


@pytest.fixture(scope="module")
def ee(tmp_path_factory):
    """A 3-layer tiny student fine-tuned with early exits through the CLI, its staged int8 export and
    the plain (full-depth) int8 export of the same classifier."""
    root = tmp_path_factory.mktemp("early_exit")
    train_rows, eval_rows = labelled_rows(500, 10), labelled_rows(100, 11)
    vocab = learn_vocab([t for t, _ in train_rows] + make_sentences(300, seed=3), 200)
    student = save_student(build_student(vocab, num_layers=LAYERS, seq_len=SEQ_LEN), str(root / "student"))
    train_csv, eval_csv = write_csv(root / "train.csv", train_rows), write_csv(root / "eval.csv", eval_rows)
    corpus = root / "extra.txt"
    corpus.write_text("\n".join(t for t, _ in labelled_rows(300, 12)) + "\n", encoding="utf-8")
    clf = root / "clf"
    assert main(["finetune", "--student", student, "--data", train_csv, "--eval", eval_csv, "--out", str(clf),
                 "--epochs", "4", "--learning-rate", "1e-2", "--seq-len", str(SEQ_LEN), "--early-exit",
                 "--exit-corpus", str(corpus), "--exit-epochs", "8", "--exit-augment", "2"]) == 0
    common = ["export", "--student", str(clf), "--task", "classifier", "--quantization", "int8",
              "--calibration-corpus", str(corpus), "--num-calibration", "48", "--parity-csv", eval_csv,
              "--min-agreement", "0.5"]
    assert main(common + ["--out", str(root / "staged.tflite")]) == 0
    assert main(common + ["--out", str(root / "plain.tflite"), "--full-depth"]) == 0
    return {"root": root, "clf": str(clf), "corpus": str(corpus), "eval_rows": eval_rows, "student": student,
            "train_csv": train_csv, "eval_csv": eval_csv, "staged": str(root / "staged.tflite"),
            "plain": str(root / "plain.tflite"), "vocab": str(clf / "assets" / "tokenizer" / "vocabulary.txt")}


def _texts(ee):
    return [t for t, _ in ee["eval_rows"]]


def _model(ee, which):
    from mobile_bert_distill.litert.inference import LiteRTModel

    return LiteRTModel(ee[which], ee["vocab"])


# ------------------------------------------------------------------ the loss and the training
def test_self_distillation_kl_equals_numpy():
    from mobile_bert_distill.downstream.early_exit import SelfDistillKL

    rng = np.random.default_rng(0)
    main_logits, branch_logits = rng.normal(size=(5, 3)) * 2, rng.normal(size=(5, 4, 3)) * 2
    p = np.exp(main_logits) / np.exp(main_logits).sum(-1, keepdims=True)
    q = np.exp(branch_logits) / np.exp(branch_logits).sum(-1, keepdims=True)
    want = (p[:, None] * (np.log(p[:, None]) - np.log(q))).sum(-1).sum(-1)  # sum over exits, per text
    loss = SelfDistillKL(reduction=None)
    got = np.asarray(loss(p.astype("float32"), branch_logits.astype("float32")))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(SelfDistillKL()(p.astype("float32"), branch_logits.astype("float32"))),
                               want.mean(), rtol=1e-5)
    same = np.log(p)[:, None].repeat(4, axis=1)  # branches that equal the main classifier: zero loss
    assert float(SelfDistillKL()(p.astype("float32"), same.astype("float32"))) == pytest.approx(0.0, abs=1e-6)


def test_row_entropy_is_the_normalised_entropy_of_one_row():
    from mobile_bert_distill.litert.early_exit import normalized_entropy, row_entropy

    rng = np.random.default_rng(1)
    for k in (2, 3, 7):
        rows = rng.dirichlet(np.full(k, 0.3), size=20).astype(np.float32)
        rows[0] = 0.0
        rows[0, 1] = 1.0                                             # one-hot: 0 · log 0 counts as 0
        rows[1] = 1.0 / k                                            # uniform: 1
        want = normalized_entropy(rows)
        got = [row_entropy(r.tolist()) for r in rows]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        assert str(got[0]) == "0.0" and got[1] == pytest.approx(1.0)  # +0, as the array version


def test_training_moves_only_the_branches(ee):
    from mobile_bert_distill.downstream.early_exit import ExitHeads, ExitTraining
    from mobile_bert_distill.downstream.finetune import load_classifier

    clf, classes = load_classifier(ee["clf"])
    before = [np.array(w) for w in clf.weights]
    start = ExitHeads.from_classifier(clf)
    texts = _texts(ee)
    y = np.array([classes.index(lab) for _, lab in ee["eval_rows"]])
    heads, metrics = ExitTraining(epochs=3).fit(clf, texts[:60], texts, y, log=None)
    after = [np.array(w) for w in clf.weights]
    assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    assert heads.num_exits == LAYERS - 1
    assert all(not np.array_equal(getattr(heads, n), getattr(start, n)) for n in ("w1", "b1", "w2", "b2"))
    # the branches started as the main head on each layer's [CLS] (their mean half at zero)
    assert np.array_equal(start.w1[:, start.hidden_dim:], np.zeros_like(start.w1[:, start.hidden_dim:]))
    assert len(metrics["exit_accuracy"]) == LAYERS


# ------------------------------------------------------------------ mbd finetune --early-exit
def test_finetune_writes_exits_beside_a_plain_preset_and_they_learn(ee):
    from mobile_bert_distill.downstream.early_exit import ExitHeads
    from mobile_bert_distill.export import load_classifier_preset

    with open(os.path.join(ee["clf"], "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    ex = metrics["early_exit"]
    assert len(ex["exit_accuracy"]) == len(ex["exit_macro_f1"]) == LAYERS
    assert ex["exit_accuracy"][-1] == pytest.approx(metrics["accuracy"], abs=0.02)  # the last exit is the model
    assert ex["training"]["extra_texts"] == 300 and ex["training"]["texts"] == 500
    assert 500 < ex["training"]["augmented_copies"] <= 2 * 500 and ex["training"]["augmentation"]["n_iter"] == 2
    losses = ex["training"]["loss_per_epoch"]
    assert losses[-1] < losses[0]
    for k in range(LAYERS - 1):  # each branch got closer to the main classifier and agrees above chance
        assert ex["exit_kl"][k] < ex["initial_exit_kl"][k]
        assert ex["exit_agreement_with_main"][k] > 0.75
    layers = [row["mean_layers"] for row in ex["float_speeds"]]
    assert layers[0] == LAYERS and layers[-1] == 1.0 and layers == sorted(layers, reverse=True)
    heads = ExitHeads.load(ee["clf"])
    model, _, classes, _ = load_classifier_preset(ee["clf"])  # still a plain keras-hub classifier preset
    heads.check_matches(model, "test")
    assert type(model).__name__ == "BertTextClassifier" and classes == ["negative", "positive"]


def test_finetune_refuses_a_bad_exit_corpus_before_writing(ee, tmp_path, capsys):
    out = tmp_path / "clf"
    base = ["finetune", "--student", ee["student"], "--data", ee["train_csv"], "--eval", ee["eval_csv"],
            "--out", str(out)]
    for extra, words in ((["--early-exit", "--exit-corpus", str(tmp_path / "missing.txt")], "not found"),
                         (["--exit-corpus", ee["corpus"]], "--early-exit")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_layer_features_skip_the_padding_and_leave_the_tokenizer_as_it_was(ee):
    from mobile_bert_distill.downstream.early_exit import layer_features
    from mobile_bert_distill.downstream.finetune import load_classifier

    clf, _ = load_classifier(ee["clf"])
    short, long = "a witty film", " ".join(_texts(ee)[:6])  # cut to different widths in one batch
    f_alone, p_alone = layer_features(clf, [short], progress=False)
    f_mixed, p_mixed = layer_features(clf, [long, short, "a [MASK] film"], progress=False)
    np.testing.assert_allclose(f_mixed[1], f_alone[0], atol=1e-5)
    np.testing.assert_allclose(p_mixed[1], p_alone[0], atol=1e-6)
    assert not np.allclose(f_mixed[0], f_mixed[1], atol=1e-3)  # rows stay with their texts
    assert clf.preprocessor.tokenizer.special_tokens_in_strings is False  # "[MASK]" was read as the mask token only there
    tokens = clf.preprocessor(["a [MASK] film"])["token_ids"][0]
    mask_id = clf.preprocessor.tokenizer.token_to_id("[MASK]")
    assert mask_id not in np.asarray(tokens).tolist()


def test_exits_alone_for_a_fine_tuned_classifier(ee, tmp_path):
    from mobile_bert_distill.downstream.early_exit import ExitHeads
    from mobile_bert_distill.downstream.finetune import load_classifier

    out = tmp_path / "clf_exits"
    assert main(["finetune", "--classifier", ee["clf"], "--early-exit", "--data", ee["train_csv"], "--eval",
                 ee["eval_csv"], "--out", str(out), "--exit-epochs", "2", "--exit-augment", "1", "--seed", "3"]) == 0
    old, _ = load_classifier(ee["clf"])
    new, classes = load_classifier(str(out))
    assert classes == ["negative", "positive"]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(old.weights, new.weights))
    with open(out / "metrics.json", encoding="utf-8") as f:
        ex = json.load(f)["early_exit"]
    assert ex["added_to"] == os.path.abspath(ee["clf"]) and ex["training"]["epochs"] == 2
    assert 0 < ex["training"]["augmented_copies"] <= 500 and ex["training"]["seed"] == 3
    heads, before = ExitHeads.load(str(out)), ExitHeads.load(ee["clf"])
    heads.check_matches(new, "test")
    assert not np.array_equal(heads.w1, before.w1)  # new exits, from the main head again


def test_exits_alone_refuse_fine_tuning_options_and_their_own_folder(ee, tmp_path, capsys):
    out = tmp_path / "clf"
    base = ["finetune", "--classifier", ee["clf"], "--data", ee["train_csv"], "--eval", ee["eval_csv"]]
    for extra, words in ((["--out", str(out)], "only get early exits"),
                         (["--out", str(out), "--early-exit", "--epochs", "2"], "epochs applies only to fine-tuning"),
                         (["--out", str(out), "--early-exit", "--arch", "bilstm"], "arch applies only"),
                         (["--out", ee["clf"], "--early-exit", "--overwrite"], "is the classifier itself")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not out.exists() and os.path.isfile(os.path.join(ee["clf"], "early_exit.npz"))


# ------------------------------------------------------------------ the staged export and its runtime
def test_staged_export_has_a_signature_per_stage(ee):
    from mobile_bert_distill.litert.tools import load_interpreter

    sigs = load_interpreter(ee["staged"])[0].get_signature_list()
    assert sorted(sigs) == ["embed"] + [f"stage_{k}" for k in range(1, LAYERS + 1)]
    assert sorted(sigs["embed"]["inputs"]) == ["input_ids", "segment_ids"] and sigs["embed"]["outputs"] == ["hidden"]
    assert sorted(sigs["stage_1"]["outputs"]) == ["hidden", "probabilities"]
    assert sigs[f"stage_{LAYERS}"]["outputs"] == ["probabilities"]
    with open(os.path.splitext(ee["staged"])[0] + ".report.json", encoding="utf-8") as f:
        report = json.load(f)
    assert report["early_exit"]["num_layers"] == LAYERS and report["quantization"] == "int8"
    assert len(report["parity"]["exit_label_agreement"]) == LAYERS
    assert report["parity"]["label_agreement"] >= 0.95
    assert min(report["parity"]["exit_label_agreement"]) >= 0.9


def test_speed_zero_runs_every_layer_and_gives_the_full_model(ee):
    texts = _texts(ee)
    staged, plain = _model(ee, "staged"), _model(ee, "plain")
    got, want = staged.classify(texts, speed=0.0), plain.classify(texts)
    assert all(r["layers"] == LAYERS for r in got)
    p_staged = np.array([r["probabilities"] for r in got])
    p_plain = np.array([r["probabilities"] for r in want])
    # cut from one converted graph, its stages compute what the full-depth model does, bit for bit
    np.testing.assert_array_equal(p_staged, p_plain)
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert "layers" not in want[0]  # the plain export's results are unchanged
    np.testing.assert_allclose(staged.probabilities(texts), p_staged, atol=1e-7)  # no speed: full depth


def test_staged_export_with_an_int8_stream_is_cut_at_the_int8_tensor(ee, tmp_path):
    """With a recipe that quantizes the LayerNorms the stream between layers is int8: the stages pass
    that tensor on, and at speed 0 still compute the full-depth export of the same recipe exactly."""
    from mobile_bert_distill.litert.inference import LiteRTModel

    models = {}
    for name, extra in (("staged", []), ("plain", ["--full-depth"])):
        out = tmp_path / f"{name}.tflite"
        assert main(["export", "--student", ee["clf"], "--task", "classifier", "--quantization", "int8",
                     "--int8-recipe", "xnnpack", "--calibration-corpus", ee["corpus"], "--num-calibration", "48",
                     "--min-agreement", "0", "--out", str(out)] + extra) == 0
        models[name] = LiteRTModel(str(out), ee["vocab"])
    runner = models["staged"].stages
    assert runner.embed.get_output_details()["hidden"]["dtype"] == np.int8
    feeds, _ = models["plain"].encode(_texts(ee))
    np.testing.assert_array_equal(runner.run(feeds, 0.0)[0], models["plain"].run(feeds)["probabilities"])


def test_speed_one_stops_at_layer_one_and_between_follows_the_rule(ee):
    from mobile_bert_distill.litert.early_exit import normalized_entropy

    texts = _texts(ee)
    staged = _model(ee, "staged")
    assert all(r["layers"] == 1 for r in staged.classify(texts, speed=1.0))
    feeds, _ = staged.encode(texts)
    exits = staged.stages.exit_probabilities(feeds)                  # [N, L, K]
    u = normalized_entropy(exits)                                     # [N, L]
    speed = float(np.median(u[:, 0])) + 1e-9                          # about half stop at layer 1
    want = np.where((u[:, :-1] < speed).any(1), (u[:, :-1] < speed).argmax(1) + 1, LAYERS)
    got = staged.classify(texts, speed=speed)
    assert [r["layers"] for r in got] == want.tolist()
    assert 1 < np.mean(want) < LAYERS
    for r, k, p in zip(got, want, exits):
        np.testing.assert_allclose(r["probabilities"], p[k - 1], atol=1e-7)
    means = [np.mean([r["layers"] for r in staged.classify(texts, speed=s)]) for s in (0.0, speed, 1.0)]
    assert means == sorted(means, reverse=True)


def test_speed_out_of_range_or_without_stages_is_one_line(ee, capsys):
    base = ["predict", "--model", ee["staged"], "--vocab", ee["vocab"], "a witty film"]
    for bad in ("1.5", "-0.1"):  # refused while the command line is read
        with pytest.raises(SystemExit) as e:
            main(base + ["--speed", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--speed" in err[0], err
    assert main(["predict", "--model", ee["plain"], "--vocab", ee["vocab"], "--speed", "0.5", "a witty film"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no early-exit stages" in err[0], err
    with pytest.raises(UserError, match="no early-exit stages"):
        _model(ee, "plain").classify(["a witty film"], speed=0.5)
    with pytest.raises(UserError, match="speed"):
        _model(ee, "staged").classify(["a witty film"], speed=2)
    assert main(base + ["--speed", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["results"][0]["layers"] == 1


def test_staged_export_writes_android_assets_with_the_stage_loop_golden(ee, tmp_path):
    from mobile_bert_distill.export.android import GOLDEN_SPEEDS
    from mobile_bert_distill.litert.early_exit import normalized_entropy

    out, assets = tmp_path / "m.tflite", tmp_path / "assets"
    assert main(["export", "--student", ee["clf"], "--task", "classifier", "--quantization", "float32",
                 "--out", str(out), "--android-assets", str(assets)]) == 0
    assert sorted(os.listdir(assets)) == ["labels.txt", "model.tflite", "model_info.json", "vocab.txt"]
    assert (assets / "model.tflite").read_bytes() == out.read_bytes()  # no MediaPipe metadata: many signatures
    info = json.loads((assets / "model_info.json").read_text(encoding="utf-8"))
    assert "signature" not in info and info["tflite_metadata"]["embedded"] is False
    assert sorted(info["signatures"]) == ["embed"] + [f"stage_{k}" for k in range(1, LAYERS + 1)]
    assert sorted(info["signatures"]["stage_1"]["inputs"]) == ["hidden", "padding_mask"]
    assert info["early_exit"]["num_layers"] == LAYERS
    staged = _model(ee, "staged")
    for g in info["golden"]:
        exits = np.array(g["exit_probabilities"])
        assert exits.shape == (LAYERS, 2)
        np.testing.assert_allclose(exits[-1], g["probabilities"], atol=1e-6)
        assert [a["speed"] for a in g["at_speed"]] == list(GOLDEN_SPEEDS)
        for a in g["at_speed"]:  # the first exit below the speed, else the last layer
            below = np.flatnonzero(normalized_entropy(exits[:-1]) < a["speed"])
            assert a["layers"] == (below[0] + 1 if len(below) else LAYERS)
            assert a["label"] == info["labels"][int(np.argmax(exits[a["layers"] - 1]))]
        assert g["input_ids"] == staged.encode([g["text"]])[0]["input_ids"][0, : g["length"]].tolist()


def test_bench_times_a_staged_model_through_every_stage(ee, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--models", f"staged={ee['staged']}", f"plain={ee['plain']}", "--seq-len", str(SEQ_LEN),
                 "--runs", "5", "--warmup", "1", "--no-plots", "--no-isolate", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    models = {m["label"]: m for m in doc["models"]}
    staged, plain = models["staged"], models["plain"]
    assert staged["task"] == "classifier" and staged["early_exit"]["num_layers"] == LAYERS
    assert sorted(i["name"] for i in staged["inputs"]) == ["input_ids", "padding_mask", "segment_ids"]
    assert [o["name"] for o in staged["outputs"]] == ["probabilities"]
    # every layer is counted once, plus the exits' weights and work (not the embed subgraph alone)
    assert staged["params_in_file"] > plain["params_in_file"]
    assert staged["flops_counted"]["matmul"] > plain["flops_counted"]["matmul"]
    assert staged["op_histogram"]["FULLY_CONNECTED"] > plain["op_histogram"]["FULLY_CONNECTED"]
    result = next(r for r in doc["results"] if r["model"] == "staged")
    stages = result["stage_p50_ms"]
    assert list(stages) == ["embed"] + [f"stage_{k}" for k in range(1, LAYERS + 1)]
    assert result["latency_ms"]["p50"] > max(stages.values())
    with pytest.raises(UserError, match="staged early-exit"):
        from mobile_bert_distill.bench.adb import write_adb_script

        write_adb_script([ee["staged"]], [SEQ_LEN], [1], 5, 1, str(tmp_path / "adb"))
    assert not (tmp_path / "adb").exists()


# ------------------------------------------------------------------ the task-compression table
def test_task_compression_table_scores_times_and_counts_every_row(ee, tmp_path, monkeypatch):
    from _benchmark_scripts import load_benchmark

    bench = load_benchmark("task_compression")
    manifest = tmp_path / "runs.json"
    manifest.write_text(json.dumps({"rows": [
        {"name": "plain", "runs": [{"seed": 0, "dir": ee["clf"], "command": "mbd finetune ..."}]},
        {"name": "early exit", "speeds": [0.0, 1.0], "baseline": "plain", "runs": [{"seed": 0, "dir": ee["clf"]}]}]}))
    out_json, out_md = tmp_path / "t.json", tmp_path / "t.md"
    args = ["--manifest", str(manifest), "--train", ee["train_csv"], "--eval", ee["eval_csv"], "--work",
            str(tmp_path / "work"), "--latency-sentences", "4", "--rounds", "1", "--num-calibration", "32",
            "--out-json", str(out_json), "--out-md", str(out_md)]
    assert bench.main(args) == 0
    doc = json.loads(out_json.read_text())
    plain, s0, s1 = doc["table"]
    assert (plain["row"], plain["speed"], s0["speed"], s1["speed"]) == ("plain", None, 0.0, 1.0)
    assert s0["mean_layers"] == LAYERS and s1["mean_layers"] == 1.0
    metrics = json.loads(open(os.path.join(ee["clf"], "metrics.json")).read())
    assert plain["float_accuracy"]["values"] == [metrics["accuracy"]]
    # the staged model at speed 0 is the full model: the same int8 labels
    assert s0["int8_accuracy"]["mean"] == plain["int8_accuracy"]["mean"]
    assert s0["parameters"] > plain["parameters"] > 0  # the exits count
    for row in (plain, s0, s1):
        assert set(row["latency_ms"]) == {"own", "128"} and all(v > 0 for v in row["latency_ms"].values())
        assert 0.5 <= row["int8_accuracy"]["mean"] <= 1.0 and row["size_mb"] > 0
    assert s1["latency_ms"]["own"] < s0["latency_ms"]["own"]  # one stage instead of three
    assert "| early exit, speed 1 (1.00 layers on average) | 1 |" in out_md.read_text()
    checks = {c["speed"]: c for c in doc["early_exit_target"]}
    assert set(checks) == {0.0, 1.0} and checks[1.0]["speedup"] > checks[0.0]["speedup"]
    assert checks[0.0]["met"] is False  # every layer: no faster than the full-depth model
    # reused exports: a second run exports nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*.tflite")}
    assert len(before) == 4 and bench.main(args) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*.tflite")}
    # ... until the kit's export code changes: then every export is made again
    from mobile_bert_distill import bench as kit_bench

    monkeypatch.setattr(kit_bench, "export_fingerprint", lambda *modules: "changed")
    assert bench.main(args) == 0
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*.tflite")}
    assert all(after[p] != before[p] for p in before)


def test_task_compression_refuses_a_bad_manifest_in_one_line(tmp_path, capsys):
    from _benchmark_scripts import load_benchmark

    bench = load_benchmark("task_compression")
    manifest = tmp_path / "runs.json"
    manifest.write_text(json.dumps({"rows": [{"name": "x", "runs": [{"seed": 0, "dir": str(tmp_path / "nope")}]}]}))
    out = tmp_path / "t.json"
    rc = bench.main(["--manifest", str(manifest), "--train", "a.csv", "--eval", "b.csv", "--out-json", str(out),
                     "--out-md", str(tmp_path / "t.md"), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is not a folder" in err[0] and not out.exists()
