import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import tiny_config_dict

MODES = ["nokd", "dual", "dual+down", "dual+up", "soft", "dual+up+soft", "tinybert"]


def build_run(cfg):
    import tensorflow as tf

    from mobile_bert_distill.distill.run import Run

    run = Run(cfg, strategy=tf.distribute.get_strategy(), log=lambda m: None).build()
    run.make_makers()
    return run


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_loss_falls(tiny_config, mode):
    run = build_run(tiny_config(mode, steps=40, learning_rate=2e-2, batch_size=16))
    losses = []
    for step in range(40):
        logs = run.distiller.train_on_batch(run.maker(step), return_dict=True)
        losses.append(logs["loss"])
        run.distiller.reset_metrics()
    assert np.isfinite(losses).all()
    assert np.mean(losses[-8:]) < 0.95 * np.mean(losses[:8]), losses
    keys = set(logs)
    assert {"loss", "l_ce_student", "student_acc"} <= keys
    if mode == "nokd":
        assert run.teacher is None and not any("dual_teacher" in v.path for v in run.distiller.variables)
    elif mode not in ("soft", "tinybert"):
        assert {"l_ce_teacher", "teacher_acc_tvocab", "teacher_acc_svocab"} <= keys
    assert ("l_p" in keys) == (mode in ("dual+down", "dual+up", "dual+up+soft"))
    assert ("l_kd" in keys) == (mode.endswith("soft") or mode == "tinybert")
    assert ("l_ce_teacher" in keys) == ("dual" in mode) and ("l_attn" in keys) == (mode == "tinybert")


def test_nokd_never_builds_the_teacher(tiny_config, monkeypatch):
    import mobile_bert_distill.distill.teacher as teacher_mod

    def boom(*a, **k):
        raise AssertionError("teacher built in nokd")

    monkeypatch.setattr(teacher_mod, "random_teacher", boom)
    monkeypatch.setattr(teacher_mod, "load_teacher_backbone", boom)
    monkeypatch.setattr(teacher_mod.DualVocabTeacher, "__init__", boom)
    cfg = tiny_config("nokd")
    cfg["teacher"]["source"] = "/definitely/not/here"  # never looked at: the depth is given
    cfg["student"]["num_layers"] = 2
    run = build_run(cfg)
    assert run.maker.teacher is None and "t_token_ids" not in run.maker(0)


def test_loss_equals_the_formula(tiny_config):
    """L = L_p + eps * (L_ce_student + L_ce_teacher), term by term."""
    run = build_run(tiny_config("dual+up", overrides=["loss.epsilon=0.3"]))
    logs = run.distiller.test_on_batch(run.maker(0), return_dict=True)
    expect = logs["l_p"] + 0.3 * (logs["l_ce_student"] + logs["l_ce_teacher"])
    assert logs["loss"] == pytest.approx(expect, rel=1e-5)


def test_teacher_head_losses_combine(tiny_config):
    run = build_run(tiny_config("dual"))
    b = run.maker(0)
    logs = run.distiller.test_on_batch(b, return_dict=True)
    w = b["t_mask_weights"]
    n_s = (w * b["t_mask_is_student"]).sum()
    n_t = w.sum() - n_s
    combined = (logs["l_ce_teacher_tvocab"] * n_t + logs["l_ce_teacher_svocab"] * n_s) / w.sum()
    assert logs["l_ce_teacher"] == pytest.approx(combined, rel=1e-4)
    assert logs["teacher_svocab_share"] == pytest.approx(n_s / w.sum(), rel=1e-5)


def test_student_vocab_head_is_the_projected_tied_formula(tiny_config):
    """logits = LN(gelu(W h + c)) · (E_s U_up)ᵀ + b at the masked positions, whatever order computes it."""
    import keras

    run = build_run(tiny_config("dual"))
    head = run.teacher.student_head
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, run.teacher.backbone.hidden_dim)).astype("float32")
    positions = np.array([[1, 5, 0], [7, 2, 3]], "int32")
    head.output_bias.assign(rng.normal(size=head.output_bias.shape).astype("float32"))
    got = np.asarray(head(x, mask_positions=positions))

    f64 = lambda v: np.asarray(v, "float64")  # noqa: E731
    rows = np.take_along_axis(f64(x), positions[..., None], axis=1)
    h = f64(keras.activations.gelu(
        (rows @ f64(head.intermediate_dense.kernel) + f64(head.intermediate_dense.bias)).astype("float32"),
        approximate=True))
    ln = head.layer_norm
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + ln.epsilon) * f64(ln.gamma) + f64(ln.beta)
    table = f64(head.student_embedding.embeddings) @ f64(run.teacher.up_projection.kernel)
    want = h @ table.T + f64(head.output_bias)
    assert got.shape == (2, 3, head.student_embedding.input_dim)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _write_cfg(tmp_path, cfg_dict, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg_dict), encoding="utf-8")
    return str(p)


def _mbd(args, env=None, timeout=600):
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "mobile_bert_distill", *args], capture_output=True, text=True,
                          env=e, timeout=timeout)


@pytest.mark.slow
def test_student_preset_loads_with_plain_keras_hub(tiny_data, tmp_path):
    from mobile_bert_distill.distill import config
    from mobile_bert_distill.distill.run import distill

    cfg = config.resolve(tiny_config_dict(tiny_data, "dual+up", steps=10, log_every=10))
    out = tmp_path / "run"
    distill(cfg, out_dir=str(out), progress=False, log=lambda m: None)
    for name in ("student", "teacher", "history.json", "config.yaml", "logs", "summary.json"):
        assert (out / name).exists(), name
    assert not (tmp_path / "run.partial").exists()
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["step"] == 10 and "l_p" in history[-1]

    import keras_hub

    mlm = keras_hub.models.BertMaskedLM.from_preset(str(out / "student"))
    ids = np.array([[2, 10, 11, 4, 12, 3, 0, 0]], "int32")
    feed = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": (ids > 0).astype("int32"),
            "mask_positions": np.array([[3]], "int32")}
    here = np.asarray(mlm(feed, training=False))
    script = f"""
import sys, json, numpy as np, keras_hub
ids = np.array({ids.tolist()}, "int32")
feed = {{"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": (ids > 0).astype("int32"),
        "mask_positions": np.array([[3]], "int32")}}
mlm = keras_hub.models.BertMaskedLM.from_preset(sys.argv[1])
clf = keras_hub.models.BertTextClassifier.from_preset(sys.argv[1], num_classes=2)
probs = clf.predict(["the cat sat"], verbose=0)
assert not any(m.startswith("mobile_bert_distill") for m in sys.modules)
print(json.dumps({{"logits": np.asarray(mlm(feed, training=False)).tolist(), "clf_shape": list(probs.shape)}}))
"""
    r = subprocess.run([sys.executable, "-c", script, str(out / "student")], capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(res["logits"]), here, atol=1e-5)
    assert res["clf_shape"] == [1, 2]


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_student(tiny_data, tmp_path):
    cfg = tiny_config_dict(tiny_data, "dual+up", steps=30, log_every=10, checkpoint_every=10, deterministic=True)
    cfg["student"]["dropout"] = 0.1  # dropout RNG state must resume too
    # one layer (teacher and so student): checkpoint and resume treat every variable alike, and each of
    # the three processes below spends most of its time tracing the training step, which grows with depth
    cfg["teacher"]["random"]["num_layers"] = 1
    path = _write_cfg(tmp_path, cfg)
    a, b = tmp_path / "a", tmp_path / "b"
    r = _mbd(["distill", "--config", path, "--out", str(a), "--no-progress"])
    assert r.returncode == 0, r.stderr[-2000:]
    r = _mbd(["distill", "--config", path, "--out", str(b), "--no-progress"],
             env={"MBD_TEST_KILL_AFTER_STEP": "20"})
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    ckpts = tmp_path / "b.partial" / "checkpoints"
    assert not b.exists() and sorted(os.listdir(ckpts)) == ["step-0000010.npz", "step-0000020.npz"]
    newest = ckpts / "step-0000020.npz"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short: the older intact one must be used
    r = _mbd(["distill", "--config", path, "--out", str(b), "--no-progress"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"checkpoint {newest} cannot be read" in r.stdout
    assert "resuming from the checkpoint at step 10" in r.stdout
    import h5py

    def weights(d):
        with h5py.File(d / "student" / "model.weights.h5") as f:
            out = {}
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out

    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and len(wa) > 10
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], atol=1e-6, err_msg=k)
    ha = json.loads((a / "history.json").read_text())
    hb = json.loads((b / "history.json").read_text())
    assert [r["step"] for r in hb] == [10, 20, 30]
    assert ha[-1]["loss"] == pytest.approx(hb[-1]["loss"], rel=1e-5)


_MIRRORED = r"""
import sys, json, numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from mobile_bert_distill.distill import config
from mobile_bert_distill.distill.run import Run
cfg = config.resolve(json.loads(sys.argv[1]))
results = {}
weights = None
for name, strategy in (("default", tf.distribute.get_strategy()),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    run = Run(cfg, strategy=strategy, log=lambda m: None).build()
    run.make_makers()
    with strategy.scope():
        run.distiller.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    if weights is None:
        weights = [v.numpy() for v in run.distiller.trainable_variables]
    else:
        for v, w in zip(run.distiller.trainable_variables, weights):
            v.assign(w)
    logs = run.distiller.train_on_batch(run.maker(0), return_dict=True)
    deltas = [w - v.numpy() for v, w in zip(run.distiller.trainable_variables, weights)]
    results[name] = {"logs": {k: float(v) for k, v in logs.items()},
                     "replicas": strategy.num_replicas_in_sync,
                     "grads": [d.ravel().tolist() for d in deltas]}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_mirrored_strategy_step_equals_default(tiny_data):
    cfg = tiny_config_dict(tiny_data, "dual+up")
    cfg["teacher"]["random"]["num_layers"] = 1  # the replica arithmetic is the same at any depth; tracing is not
    r = subprocess.run([sys.executable, "-c", _MIRRORED, json.dumps(cfg)], capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    d, m = res["default"], res["mirrored"]
    assert d["replicas"] == 1 and m["replicas"] == 2
    for k in ("loss", "l_ce_student", "l_ce_teacher", "l_p", "student_acc"):
        assert m["logs"][k] == pytest.approx(d["logs"][k], rel=1e-4, abs=1e-6), k
    assert len(d["grads"]) == len(m["grads"])
    for gd, gm in zip(d["grads"], m["grads"]):
        np.testing.assert_allclose(np.array(gm), np.array(gd), rtol=1e-3, atol=1e-6)
    assert max(np.abs(np.array(g)).max() for g in d["grads"]) > 0


def test_mixed_precision_step_runs(tiny_config):
    import keras

    old = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_float16")
        run = build_run(tiny_config("dual+up", overrides=["train.mixed_precision=mixed_float16"]))
        assert isinstance(run.optimizer, keras.optimizers.LossScaleOptimizer)
        assert run.student.backbone.token_embedding.compute_dtype == "float16"
        logs = run.distiller.train_on_batch(run.maker(0), return_dict=True)
        assert np.isfinite(logs["loss"])
    finally:
        keras.config.set_dtype_policy(old)


def test_teacher_prep_mode_trains_teacher_only(tiny_config):
    run = build_run(tiny_config("teacher", steps=40, learning_rate=2e-2, batch_size=16))
    assert run.distiller.use_student_loss is False and run.distiller.projections is None
    losses = []
    for step in range(40):
        logs = run.distiller.train_on_batch(run.maker(step), return_dict=True)
        losses.append(logs["loss"])
        run.distiller.reset_metrics()
    assert "l_ce_student" not in logs and "teacher_acc_tvocab" in logs
    assert logs["loss"] == pytest.approx(logs["l_ce_teacher"], rel=1e-5)
    assert np.mean(losses[-8:]) < 0.95 * np.mean(losses[:8]), losses


def test_teacher_from_preset_dir_and_from_teacher_checkpoint(tiny_config, tiny_data, tmp_path):
    """teacher.source may be a keras-hub preset directory or a teacher checkpoint of an earlier run."""
    from mobile_bert_distill.distill.teacher import random_teacher
    from mobile_bert_distill.text import load_vocab

    vocab = load_vocab(tiny_data["teacher_vocab"])
    backbone, tokenizer = random_teacher(vocab, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64)
    preset = tmp_path / "preset"
    backbone.save_to_preset(str(preset))
    tokenizer.save_to_preset(str(preset))
    cfg = tiny_config("dual+down")
    cfg["teacher"] = dict(cfg["teacher"], random=None, source=str(preset))
    run = build_run(cfg)
    assert run.teacher_vocab == vocab
    np.testing.assert_allclose(run.teacher_backbone.token_embedding.embeddings.numpy(),
                               backbone.token_embedding.embeddings.numpy())
    before = run.teacher.up_projection.kernel.numpy().copy()
    run.distiller.train_on_batch(run.maker(0))
    assert not np.allclose(before, run.teacher.up_projection.kernel.numpy())  # the step moved it
    ckpt = tmp_path / "teacher"
    run.teacher.save(str(ckpt), run.teacher_tokenizer, run.student_vocab)

    cfg2 = tiny_config("dual")
    cfg2["teacher"] = dict(cfg2["teacher"], random=None, source=str(ckpt))
    run2 = build_run(cfg2)
    for a, b in ((run.teacher.teacher_head, run2.teacher.teacher_head),
                 (run.teacher.student_head, run2.teacher.student_head),
                 (run.teacher.up_projection, run2.teacher.up_projection)):
        for wa, wb in zip(a.weights, b.weights):
            if wa.path.endswith("token_embedding/embeddings") or "student" in wa.path and "embeddings" in wa.path:
                continue
            np.testing.assert_allclose(wa.numpy(), wb.numpy(), err_msg=wa.path)

    # soft: the teacher is a fixed target; its student-vocabulary path reads the table it was saved with,
    # a frozen copy of its own, while the student starts from fresh embeddings
    cfg3 = tiny_config("soft")
    cfg3["teacher"] = dict(cfg3["teacher"], random=None, source=str(ckpt))
    run3 = build_run(cfg3)
    saved = run.student.backbone.token_embedding.embeddings.numpy()
    np.testing.assert_allclose(run3.teacher.student_embedding.embeddings.numpy(), saved)
    assert run3.teacher.student_embedding is not run3.student.backbone.token_embedding
    assert not np.allclose(run3.student.backbone.token_embedding.embeddings.numpy(), saved)
    np.testing.assert_allclose(run3.teacher.up_projection.kernel.numpy(), run.teacher.up_projection.kernel.numpy())
    assert run2.teacher.up_projection.kernel.trainable and not run3.teacher.up_projection.kernel.trainable
    from mobile_bert_distill.errors import UserError

    # a student of another width distils from the same fixed teacher (its 16-d table stays 16-d) ...
    cfg4 = tiny_config("soft", overrides=["student.hidden_dim=32"])
    cfg4["teacher"] = dict(cfg4["teacher"], random=None, source=str(ckpt))
    run4 = build_run(cfg4)
    assert run4.teacher.student_embedding.output_dim == saved.shape[1] != 32
    np.testing.assert_allclose(run4.teacher.up_projection.kernel.numpy(), run.teacher.up_projection.kernel.numpy())
    # ... but not a student of another vocabulary: the soft targets are over the vocabulary it was prepared for
    vocab = load_vocab(tiny_data["student_vocab"])
    short = tmp_path / "short_vocab.txt"
    short.write_text("\n".join(vocab[:-3]) + "\n", encoding="utf-8")
    cfg5 = tiny_config("soft")
    cfg5["teacher"] = dict(cfg5["teacher"], random=None, source=str(ckpt))
    cfg5["data"] = dict(cfg5["data"], student_vocab=str(short))
    with pytest.raises(UserError, match=f"prepared for a student vocabulary of {len(vocab)} pieces, "
                                        f"this student's has {len(vocab) - 3}"):
        build_run(cfg5)


def test_teacher_saved_frozen_still_pairs_for_projections(tiny_config, tiny_data, tmp_path):
    """teacher-prep with teacher.trainable=false saves a frozen encoder; dual+up from it must still
    find the teacher's transformer weights (and teacher.trainable decides whether they train)."""
    from mobile_bert_distill.distill.teacher import random_teacher
    from mobile_bert_distill.text import load_vocab

    backbone, tokenizer = random_teacher(load_vocab(tiny_data["teacher_vocab"]), num_layers=2, hidden_dim=32,
                                         num_heads=2, intermediate_dim=64)
    backbone.trainable = False
    backbone.save_to_preset(str(tmp_path / "frozen"))
    tokenizer.save_to_preset(str(tmp_path / "frozen"))
    for trainable in (True, False):
        cfg = tiny_config("dual+up", overrides=[f"teacher.trainable={str(trainable).lower()}"])
        cfg["teacher"] = dict(cfg["teacher"], random=None, source=str(tmp_path / "frozen"))
        run = build_run(cfg)
        assert len(run.distiller.projections.pairs) == 2 * 16  # 16 weights per BERT layer, 2 layers
        assert bool(run.teacher_backbone.transformer_layers[0].trainable_weights) == trainable


def test_adamw_reads_the_schedule_once_and_updates_like_keras():
    import keras
    import tensorflow as tf

    from mobile_bert_distill.distill.backends.tensorflow_backend import adamw_class

    def trained(cls):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(2)])
        schedule = keras.optimizers.schedules.CosineDecay(0.0, 8, warmup_target=0.05, warmup_steps=3)
        opt = cls(schedule, weight_decay=0.1)
        opt.exclude_from_weight_decay(var_names=["bias"])
        model.compile(optimizer=opt, loss="mse")
        x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
        model.fit(x, x[:, :2] * 2.0, batch_size=8, epochs=3, verbose=0, shuffle=False)
        vars_ = model.trainable_variables
        grads = [tf.ones_like(v) for v in vars_]
        graph = tf.function(lambda: opt.apply(grads, vars_)).get_concrete_function().graph
        return [v.numpy() for v in model.weights], len(graph.get_operations())

    stock, stock_ops = trained(keras.optimizers.AdamW)
    ours, our_ops = trained(adamw_class())
    for a, b in zip(stock, ours):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert our_ops < stock_ops  # the schedule is traced once, not once per decayed kernel


def test_no_readable_checkpoint_asks_for_restart(tmp_path):
    import keras

    from mobile_bert_distill.distill.checkpoints import Checkpointer
    from mobile_bert_distill.errors import UserError

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    opt = keras.optimizers.Adam()
    opt.build(model.trainable_variables)
    ck = Checkpointer(str(tmp_path), model, opt, keep=2)
    assert ck.restore_latest(log=lambda m: None) == (0, None)
    w = [v.numpy().copy() for v in model.variables]
    ck.save(10)
    model.variables[0].assign(model.variables[0] + 1.0)
    ck.save(20)
    with open(ck.path(20), "r+b") as f:
        f.truncate(100)
    said = []
    assert ck.restore_latest(log=said.append)[0] == 10 and "cannot be read" in said[0]
    np.testing.assert_array_equal(model.variables[0].numpy(), w[0])
    with open(ck.path(10), "r+b") as f:
        f.truncate(100)
    with pytest.raises(UserError, match="no checkpoint .* can be read") as e:
        ck.restore_latest(log=lambda m: None)
    assert e.value.option == "restart"  # the CLI adds: (pass --restart to start over)


def test_heldout_batches_mix_at_the_target_p_dt_not_the_ramp_start(tiny_config, tiny_data):
    cfg = tiny_config("teacher", overrides=[f"data.heldout={tiny_data['heldout']}", "dual.p_dt=1.0",
                                            "dual.p_dt_start=0.0", "dual.ramp_steps=1000"])
    run = build_run(cfg)
    assert not run.maker(0)["t_is_student"].any()  # training starts the ramp at p_dt 0
    held = run.eval_maker(0)
    masked = held["t_mask_is_student"][held["t_mask_weights"] > 0]
    assert masked.size and masked.all()  # p_dt 1: every word (so every masked piece) is a student piece


# ------------------------------------------------------------------ the soft modes (DistilBERT)
def _terms_of_first_batch(cfg):
    """``(run, batch, the batch as tensors, compute_terms(batch))`` of a freshly built run."""
    import keras

    run = build_run(cfg)
    batch = run.maker(0)
    tensors = {k: keras.ops.convert_to_tensor(v) for k, v in batch.items()}
    return run, batch, tensors, run.distiller.compute_terms(tensors)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_soft_terms_equal_their_formulas(tiny_config):
    """L_kd = Σ w·T²·KL(p_t‖p_s)/Σw and L_cos = Σ(1 − cos(h_s, W·h_t))/#valid, recomputed in NumPy
    from the models' own outputs; the loss is ε·L_ce_student + λ_kd·L_kd + λ_cos·L_cos."""
    import keras

    cfg = tiny_config("soft", overrides=["soft.temperature=3.0", "soft.kd_weight=0.7", "soft.cosine_weight=0.4",
                                         "loss.epsilon=0.5"])
    run, batch, tensors, (loss, values, _) = _terms_of_first_batch(cfg)
    d = run.distiller
    ids, mask, pos = (tensors[k] for k in ("s_token_ids", "s_padding_mask", "s_mask_positions"))
    w = batch["s_mask_weights"].astype("float64")
    h_t = run.teacher.encode(ids, keras.ops.ones_like(ids), mask)
    z_t = keras.ops.convert_to_numpy(run.teacher.heads(h_t, pos)[1]).astype("float64")
    h_s = keras.ops.convert_to_numpy(run.student.backbone(
        {"token_ids": ids, "segment_ids": keras.ops.zeros_like(ids), "padding_mask": mask})["sequence_output"])
    z_s = keras.ops.convert_to_numpy(d.call(tensors)).astype("float64")
    mask = batch["s_padding_mask"]
    T = 3.0
    lp_t, lp_s = _log_softmax(z_t / T), _log_softmax(z_s / T)
    kd = (w * (np.exp(lp_t) * (lp_t - lp_s)).sum(-1)).sum() * T * T / w.sum()
    mapped = keras.ops.convert_to_numpy(d.hidden_map(h_t)).astype("float64")
    cos = (h_s * mapped).sum(-1) / np.sqrt((h_s ** 2).sum(-1) * (mapped ** 2).sum(-1))
    l_cos = ((1 - cos) * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(values["l_kd"]), kd, rtol=1e-4)
    np.testing.assert_allclose(float(values["l_cos"]), l_cos, rtol=1e-4)
    ce = float(values["l_ce_student"])
    np.testing.assert_allclose(float(loss), 0.5 * ce + 0.7 * kd + 0.4 * l_cos, rtol=1e-4)
    assert kd > 0 and l_cos > 0 and "l_ce_teacher" not in values and "l_p" not in values


def test_soft_trains_the_student_and_the_map_and_leaves_the_teacher_fixed(tiny_config):
    run = build_run(tiny_config("soft", overrides=["soft.cosine_weight=1.0"]))
    d = run.distiller
    trainable = {id(v) for v in d.trainable_variables}
    student = {id(v) for v in run.student.trainable_variables}
    teacher_only = [v for v in run.teacher.weights if id(v) not in {id(s) for s in run.student.weights}]
    assert teacher_only and not any(id(v) in trainable for v in teacher_only)
    assert student <= trainable and all(id(v) in trainable for v in d.hidden_map.trainable_variables)
    before = [np.array(v) for v in teacher_only]
    _, _, _, grads = d.gradients(run.maker(0))
    by_id = {id(v): g for v, g in zip(d.trainable_variables, grads)}
    assert all(by_id[id(v)] is not None and np.any(np.asarray(by_id[id(v)])) for v in d.hidden_map.trainable_variables)
    emb = run.student.backbone.token_embedding.embeddings
    assert np.any(np.asarray(by_id[id(emb)]))
    batch = run.maker(0)
    ids, mask = batch["s_token_ids"], batch["s_padding_mask"]

    def targets():
        return np.asarray(run.teacher.heads(run.teacher.encode(ids, np.ones_like(ids), mask),
                                            batch["s_mask_positions"])[1])

    start = targets()
    for step in range(3):
        d.train_on_batch(run.maker(step))
    assert all(np.array_equal(b, np.array(v)) for b, v in zip(before, teacher_only))
    # the soft targets stay where they were while the student's own embeddings move
    assert not np.allclose(np.asarray(emb), np.asarray(run.teacher.student_embedding.embeddings))
    np.testing.assert_array_equal(targets(), start)


def test_dual_up_soft_still_trains_the_teacher(tiny_config):
    run = build_run(tiny_config("dual+up+soft"))
    trainable = {id(v) for v in run.distiller.trainable_variables}
    assert any(id(v) in trainable for v in run.teacher.backbone.weights)
    assert run.distiller.hidden_map is None  # cosine_weight 0: no map


# override -> what the one line says
BAD_METHOD_SETTINGS = {"soft.temperature=0": "soft.temperature must be > 0", "soft.temperature=-1.5": "soft.temperature must be > 0",
            "soft.kd_weight=-1": "soft.kd_weight must be >= 0", "soft.cosine_weight=-0.1": "soft.cosine_weight must be >= 0",
            "soft.temperature=.nan": "soft.temperature must be a number", "mode=distil": "mode must be one of",
            "tinybert.layer_weight=-1": "tinybert.layer_weight must be a number >= 0"}


@pytest.mark.parametrize("override", sorted(BAD_METHOD_SETTINGS))
def test_bad_method_settings_are_one_line(tiny_data, tmp_path, capsys, override):
    from mobile_bert_distill.cli import main

    fragment = BAD_METHOD_SETTINGS[override]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_data, "soft")), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["distill", "--config", str(path), "--override", override, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not out.exists()


def test_tinybert_refuses_a_cosine_weight(tiny_data, tmp_path, capsys):
    from mobile_bert_distill.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_data, "tinybert")), encoding="utf-8")
    code = main(["distill", "--config", str(path), "--override", "soft.cosine_weight=0.5", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "soft.cosine_weight is 0.5, but mode tinybert" in err[0], err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ tinybert
def test_tinybert_terms_equal_their_formulas(tiny_config):
    """L_emb, L_hidn, L_attn (teacher heads averaged onto the student's) recomputed in NumPy from the
    models' own internals; the student's hand-run forward gives its usual logits."""
    import keras

    from mobile_bert_distill.distill import tinybert as tb

    # one student head under the teacher's two: the teacher's heads are averaged in pairs
    cfg = tiny_config("tinybert", overrides=["tinybert.layer_weight=0.3", "soft.kd_weight=0.6", "loss.epsilon=0.5",
                                             "student.num_heads=1"])
    run, batch, tensors, (loss, values, _) = _terms_of_first_batch(cfg)
    d = run.distiller
    ids, mask = tensors["s_token_ids"], tensors["s_padding_mask"]
    m = batch["s_padding_mask"].astype("float64")
    e_s = tb.bert_embeddings(run.student.backbone, ids)
    s_layers = tb.bert_layer_outputs(run.student.backbone, e_s, mask)
    e_t = run.teacher.embed(ids, keras.ops.ones_like(ids))
    t_layers = tb.bert_layer_outputs(run.teacher.backbone, e_t, mask)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(run.student.masked_lm_head(
        s_layers[-1][0], mask_positions=tensors["s_mask_positions"])), keras.ops.convert_to_numpy(d.call(tensors)),
        atol=1e-5)
    npy = keras.ops.convert_to_numpy
    d_t = run.teacher.backbone.hidden_dim

    def states(a, b):
        return (((npy(a).astype("float64") - npy(b)) ** 2).sum(-1) * m).sum() / (m.sum() * d_t)

    l_emb = states(d.embedding_up(e_s), e_t)
    l_hidn = np.mean([states(d.hidden_up(s_layers[i][0]), t_layers[i][0]) for i in range(len(s_layers))])
    h_s = run.student.backbone.num_heads
    assert (h_s, run.teacher.backbone.num_heads) == (1, 2)
    attn = []
    for (_, a_s), (_, a_t) in zip(s_layers, t_layers):
        a_t = npy(a_t).astype("float64")
        avg = a_t.reshape(a_t.shape[0], h_s, -1, *a_t.shape[2:]).mean(2)  # consecutive groups of teacher heads
        pairs = m[:, None, :, None] * m[:, None, None, :]
        attn.append((((npy(a_s) - avg) ** 2) * pairs).sum() / (pairs.sum() * h_s))
    np.testing.assert_allclose(float(values["l_emb"]), l_emb, rtol=1e-4)
    np.testing.assert_allclose(float(values["l_hidn"]), l_hidn, rtol=1e-4)
    np.testing.assert_allclose(float(values["l_attn"]), np.mean(attn), rtol=1e-4)
    expected = (0.5 * float(values["l_ce_student"]) + 0.6 * float(values["l_kd"])
                + 0.3 * (l_emb + l_hidn + np.mean(attn)))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
    assert l_emb > 0 and l_hidn > 0 and np.mean(attn) > 0 and "l_ce_teacher" not in values


def test_tinybert_trains_the_student_and_maps_and_refuses_heads_that_do_not_divide(tiny_config):
    from mobile_bert_distill.errors import UserError

    run = build_run(tiny_config("tinybert"))
    d = run.distiller
    trainable = {id(v) for v in d.trainable_variables}
    assert not any(id(v) in trainable for v in run.teacher.backbone.weights)
    _, _, _, grads = d.gradients(run.maker(0))
    by_id = {id(v): g for v, g in zip(d.trainable_variables, grads)}
    for layer in (d.embedding_up, d.hidden_up, run.student.backbone.transformer_layers[0]):
        assert all(by_id[id(v)] is not None and np.any(np.asarray(by_id[id(v)])) for v in layer.trainable_variables)
    cfg = tiny_config("tinybert", overrides=["student.num_heads=4", "student.hidden_dim=12"])  # 4 does not divide 2
    with pytest.raises(UserError, match="4 attention heads do not divide the teacher's 2"):
        build_run(cfg)
