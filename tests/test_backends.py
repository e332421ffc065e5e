"""One Distiller on every training backend: TensorFlow and JAX give the same step, the same data,
the same students; the JAX path runs with TensorFlow unimportable; checkpoints cross backends.

Each backend runs in its own process (``KERAS_BACKEND`` is fixed at Keras's import):
``tests/_backend_worker.py`` for the parity runs, ``python -m mobile_bert_distill`` for the CLI.
This process is TensorFlow's (conftest).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _no_tensorflow import BLOCK, NONE_IMPORTED
from conftest import tiny_config_dict

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("nokd", "dual", "dual+down", "dual+up", "soft", "dual+up+soft", "tinybert", "teacher")

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("jax") is None, reason='JAX is not installed (pip install -e ".[jax]")')

# Runs the CLI with `import tensorflow` and `import tensorflow_text` raising ImportError.
_NO_TENSORFLOW = BLOCK + r"""
from mobile_bert_distill.cli import main
code = main(sys.argv[1:])
""" + NONE_IMPORTED + "sys.exit(code)\n"


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def _mbd(args, backend=None, blocked=False, env=None, timeout=600):
    e = _env(**(env or {}))
    if backend:
        e["KERAS_BACKEND"] = backend
    cmd = [sys.executable, "-c", _NO_TENSORFLOW] if blocked else [sys.executable, "-m", "mobile_bert_distill"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=e, timeout=timeout)


def _json_out(result):
    return json.loads(result.stdout[result.stdout.index("{"):])


def _worker(backend, task, configs, tmp_path, init):
    cfg_path = tmp_path / f"{task}.json"
    cfg_path.write_text(json.dumps(configs), encoding="utf-8")
    out = tmp_path / f"{task}-{backend}.npz"
    r = subprocess.run([sys.executable, os.path.join(HERE, "_backend_worker.py"), backend, task, str(cfg_path),
                        str(init), str(out)], capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(out))


def _resolved(tiny_data, mode, **train):
    from mobile_bert_distill.distill import config

    d = tiny_config_dict(tiny_data, mode, jit_compile="auto", **train)
    return config.resolve(d)


# ----------------------------------------------------------------- parity of one step
@pytest.mark.slow
def test_one_step_of_every_mode_gives_the_same_terms_and_gradients(tiny_data, tmp_path):
    """Same weights, same batch: every loss term and every variable's gradient agree.

    Tolerance: float32 reduction order differs between TensorFlow's kernels and XLA's, so a
    gradient element may differ by a few float32 roundings of the largest one; measured
    |g_tf - g_jax| <= 3e-7 * max|g| over all variables of all modes. Allowed: 1e-5 * max|g|
    + 1e-4 relative. Variables the loss cannot reach get no gradient on TensorFlow and an exact
    zero on JAX.
    """
    configs = {m: _resolved(tiny_data, "dual+up" if m not in ("nokd", "teacher") else m) for m in MODES}
    for m, cfg in configs.items():
        cfg["mode"] = m
        if m.endswith("soft"):
            cfg["soft"]["cosine_weight"] = 0.5  # every soft term, the learned map included
    init = tmp_path / "init.npz"
    tf_out = _worker("tensorflow", "step", configs, tmp_path, init)
    jax_out = _worker("jax", "step", configs, tmp_path, init)

    for mode in MODES:
        values = [k for k in tf_out if k.startswith(f"{mode}/value/")]
        assert len(values) >= 3, values
        for k in values + [f"{mode}/loss_for_gradients"]:
            np.testing.assert_allclose(jax_out[k], tf_out[k], rtol=1e-5, atol=1e-6, err_msg=k)
        grads = [k for k in tf_out if k.startswith(f"{mode}/grad/")]
        assert len(grads) > 10, mode
        gmax = max(np.abs(tf_out[k]).max() for k in grads)
        for k in grads:
            np.testing.assert_allclose(jax_out[k], tf_out[k], rtol=1e-4, atol=1e-5 * gmax, err_msg=k)
        for k in (k for k in jax_out if k.startswith(f"{mode}/grad/") and k not in tf_out):
            assert not np.any(jax_out[k]), f"{k}: TensorFlow gives no gradient, JAX a nonzero one"
    # each mode compared what it trains: dual+up adds the shared projections to dual
    assert len([k for k in tf_out if k.startswith("dual/grad/")]) < len([k for k in tf_out
                                                                          if k.startswith("dual+up/grad/")])

    # the same batches: tf-text + tf.data on TensorFlow, pure Python + the NumPy loader on JAX
    batches = sorted(k for k in tf_out if k.startswith("batch/"))
    assert {k.split("/")[1] for k in batches} == {"0", "1", "2"}
    assert batches == sorted(k for k in jax_out if k.startswith("batch/"))
    for k in batches:
        assert tf_out[k].dtype == jax_out[k].dtype and tf_out[k].tobytes() == jax_out[k].tobytes(), k


# ------------------------------------------------------------------- 30 steps
@pytest.mark.slow
def test_thirty_steps_of_dual_up_follow_the_same_curve(tiny_data, tmp_path):
    """AdamW from the same weights on the same batches: the loss curves agree step by step.

    Why 5e-3 relative: the optimizer itself is identical (the same gradients applied on both
    backends give bit-identical weights), but Adam divides each gradient element by its own
    running magnitude, so the float32 rounding differences of the step (<= 3e-7 * max|g|, see
    the test above) are amplified on elements whose gradient is near zero: perturbing the
    gradients by that much moves the weights by ~8e-5 after four updates at this learning rate.
    Measured over 30 steps: at most 1.3e-3 relative on each term. A wrong term, schedule or
    decay moves the curve by far more (asserted: the loss falls by > 20x the tolerance).
    """
    cfg = _resolved(tiny_data, "dual+up", steps=30, log_every=1, checkpoint_every=30, learning_rate=5e-3,
                    clipnorm=1.0, warmup_steps=3)
    init = tmp_path / "init.npz"
    tf_out = _worker("tensorflow", "curve", {"dual+up": cfg}, tmp_path, init)
    jax_out = _worker("jax", "curve", {"dual+up": cfg}, tmp_path, init)
    a, b = tf_out["losses"], jax_out["losses"]  # [step, (loss, l_ce_student, l_ce_teacher, l_p)]
    assert a.shape == b.shape == (30, 4)
    np.testing.assert_allclose(b, a, rtol=5e-3)
    assert a[:3, 0].mean() - a[-3:, 0].mean() > 20 * 5e-3 * a[0, 0]
    for k in (k for k in tf_out if k.startswith("weight/")):
        np.testing.assert_allclose(jax_out[k], tf_out[k], atol=2e-2, err_msg=k)


@pytest.mark.slow
def test_data_parallel_on_two_cpu_devices_gives_the_one_device_step(tiny_data, tmp_path):
    cfg = _resolved(tiny_data, "dual+up", clipnorm=1.0)
    out = _worker("jax", "data_parallel", {"dual+up": cfg}, tmp_path, tmp_path / "init.npz")
    assert int(out["default/replicas"]) == 1 and int(out["data_parallel/replicas"]) == 2
    np.testing.assert_allclose(out["data_parallel/losses"], out["default/losses"], rtol=1e-5)
    weights = [k for k in out if k.startswith("default/weight/")]
    assert weights
    for k in weights:
        np.testing.assert_allclose(out[k.replace("default/", "data_parallel/", 1)], out[k], atol=1e-5, err_msg=k)


# ------------------------------------------------------- the JAX path without TensorFlow
@pytest.fixture(scope="module")
def jax_run(tiny_data, tmp_path_factory):
    """A tiny dual+up run trained and scored on JAX in a process where TensorFlow cannot be imported."""
    import yaml

    d = tmp_path_factory.mktemp("jax_run")
    cfg = tiny_config_dict(tiny_data, "dual+up", steps=30, log_every=10, checkpoint_every=10, deterministic=True,
                           jit_compile="auto")
    cfg["student"]["dropout"] = 0.1  # dropout RNG state must resume too
    cfg["teacher"]["random"]["num_layers"] = 1
    cfg["data"]["heldout"] = tiny_data["heldout"]
    path = d / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    train = _mbd(["distill", "--config", str(path), "--out", str(d / "a"), "--no-progress", "--backend", "jax"],
                 blocked=True)
    score = _mbd(["eval", "--student", str(d / "a" / "student"), "--corpus", tiny_data["heldout"], "--json",
                  "--backend", "jax"], blocked=True) if train.returncode == 0 else None
    return {"dir": d, "config": str(path), "train": train, "eval": score}


@pytest.mark.slow
def test_distill_and_eval_on_jax_need_no_tensorflow(jax_run, tiny_data):
    train, score = jax_run["train"], jax_run["eval"]
    assert train.returncode == 0, train.stderr[-3000:]
    assert "backend jax" in train.stdout
    out = jax_run["dir"] / "a"
    assert (out / "student" / "model.weights.h5").exists() and not (out / "logs").exists()
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history] == [10, 20, 30] and history[-1]["loss"] < history[0]["loss"]
    assert score.returncode == 0, score.stderr[-3000:]
    on_jax = _json_out(score)
    assert on_jax["masked_tokens"] > 50

    # the same student scored on TensorFlow: the same masked positions, the same answers
    r = _mbd(["eval", "--student", str(out / "student"), "--corpus", tiny_data["heldout"], "--json"])
    assert r.returncode == 0, r.stderr[-3000:]
    on_tf = _json_out(r)
    assert on_tf["masked_tokens"] == on_jax["masked_tokens"]
    # at most one near-tie answered differently
    assert abs(on_tf["student_accuracy"] - on_jax["student_accuracy"]) * on_tf["masked_tokens"] <= 1 + 1e-9


@pytest.mark.slow
def test_sigkill_and_resume_on_jax_gives_the_same_student(jax_run, tmp_path):
    assert jax_run["train"].returncode == 0
    b = tmp_path / "b"
    args = ["distill", "--config", jax_run["config"], "--out", str(b), "--no-progress", "--backend", "jax"]
    r = _mbd(args, env={"MBD_TEST_KILL_AFTER_STEP": "10"})
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    assert not b.exists() and (tmp_path / "b.partial" / "checkpoints" / "step-0000010.npz").exists()
    r = _mbd(args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from the checkpoint at step 10\n" in r.stdout
    wa, wb = h5_weights(jax_run["dir"] / "a" / "student"), h5_weights(b / "student")
    assert wa.keys() == wb.keys() and len(wa) > 10
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_a_tensorflow_checkpoint_resumes_on_jax(jax_run, tmp_path):
    c = tmp_path / "c"
    args = ["distill", "--config", jax_run["config"], "--out", str(c), "--no-progress"]
    r = _mbd(args + ["--backend", "tensorflow"], env={"MBD_TEST_KILL_AFTER_STEP": "10"})
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    r = _mbd(args + ["--backend", "jax"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from the checkpoint at step 10 (written on tensorflow, continuing on jax)" in r.stdout
    history = json.loads((c / "history.json").read_text())
    assert [h["step"] for h in history] == [10, 20, 30]
    # the first 10 steps are TensorFlow's, the rest JAX's: the run goes on learning from where it was
    assert history[-1]["loss"] < history[0]["loss"]


def h5_weights(preset):
    import h5py

    out = {}
    with h5py.File(preset / "model.weights.h5") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_a_jax_student_loads_on_tensorflow_and_exports_int8(jax_run, tiny_data, tmp_path):
    assert jax_run["train"].returncode == 0
    student = jax_run["dir"] / "a" / "student"
    ids = [[2, 10, 11, 4, 12, 3, 0, 0]]
    script = f"""
import json, sys, numpy as np, keras_hub
ids = np.array({ids}, "int32")
feed = {{"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": (ids > 0).astype("int32"),
        "mask_positions": np.array([[3]], "int32")}}
mlm = keras_hub.models.BertMaskedLM.from_preset(sys.argv[1])
print(json.dumps(np.asarray(mlm(feed, training=False)).tolist()))
"""
    logits = {}
    for backend in ("jax", "tensorflow"):
        r = subprocess.run([sys.executable, "-c", script, str(student)], capture_output=True, text=True,
                           env=_env(KERAS_BACKEND=backend), timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        logits[backend] = np.array(json.loads(r.stdout.strip().splitlines()[-1]))
    assert logits["jax"].shape[-1] > 50
    np.testing.assert_allclose(logits["tensorflow"], logits["jax"], atol=1e-4)

    model = tmp_path / "student_int8.tflite"
    r = _mbd(["export", "--student", str(student), "--out", str(model), "--quantization", "int8",
              "--seq-len", "16", "--calibration-corpus", tiny_data["train"], "--num-calibration", "20",
              "--num-parity", "20", "--min-agreement", "0"])
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "student_int8.report.json").read_text())
    assert model.stat().st_size > 1000 and report["quantization"] == "int8"


@pytest.mark.slow
def test_soft_mode_on_jax_learns_resumes_and_exports_int8(tiny_data, tmp_path):
    """The DistilBERT mode end to end: trained on JAX without TensorFlow (loss falls), killed and resumed
    to the same student, and its student exports to int8 on TensorFlow."""
    import yaml

    cfg = tiny_config_dict(tiny_data, "soft", steps=30, log_every=10, checkpoint_every=10, deterministic=True,
                           jit_compile="auto", learning_rate=1e-2)
    cfg["teacher"]["random"]["num_layers"] = 1
    cfg["soft"] = {"temperature": 2.0, "kd_weight": 1.0, "cosine_weight": 0.5}
    path = tmp_path / "soft.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["distill", "--config", str(path), "--no-progress", "--backend", "jax"]
    r = _mbd(args + ["--out", str(a)], blocked=True)
    assert r.returncode == 0, r.stderr[-3000:]
    history = json.loads((a / "history.json").read_text())
    assert [h["step"] for h in history] == [10, 20, 30] and history[-1]["loss"] < history[0]["loss"]
    assert {"l_kd", "l_cos", "l_ce_student"} <= set(history[-1]) and "l_ce_teacher" not in history[-1]
    r = _mbd(args + ["--out", str(b)], env={"MBD_TEST_KILL_AFTER_STEP": "10"})
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    r = _mbd(args + ["--out", str(b)])
    assert r.returncode == 0 and "resuming from the checkpoint at step 10\n" in r.stdout, r.stderr[-2000:]
    wa, wb = h5_weights(a / "student"), h5_weights(b / "student")
    assert wa.keys() == wb.keys() and len(wa) > 10
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], atol=1e-6, err_msg=k)

    _exports_int8(a / "student", tiny_data, tmp_path)


def _exports_int8(student, tiny_data, tmp_path):
    model = tmp_path / "student_int8.tflite"
    r = _mbd(["export", "--student", str(student), "--out", str(model), "--quantization", "int8",
              "--seq-len", "16", "--calibration-corpus", tiny_data["train"], "--num-calibration", "20",
              "--num-parity", "20", "--min-agreement", "0"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "student_int8.report.json").read_text())["quantization"] == "int8"


@pytest.mark.slow
def test_tinybert_on_jax_learns_and_exports_int8(tiny_data, tmp_path):
    """TinyBERT's layer-wise terms trained on JAX without TensorFlow (loss falls); the student exports to
    int8 on TensorFlow. (Resume is the same checkpoint of every distiller variable as for soft.)"""
    import yaml

    cfg = tiny_config_dict(tiny_data, "tinybert", steps=30, log_every=10, checkpoint_every=10, jit_compile="auto",
                           learning_rate=1e-2)
    cfg["teacher"]["random"]["num_layers"] = 1
    cfg["student"]["num_heads"] = 1  # the teacher's two heads averaged onto one
    path = tmp_path / "tinybert.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp_path / "a"
    r = _mbd(["distill", "--config", str(path), "--no-progress", "--backend", "jax", "--out", str(out)], blocked=True)
    assert r.returncode == 0, r.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"] and {"l_emb", "l_hidn", "l_attn", "l_kd"} <= set(history[-1])
    _exports_int8(out / "student", tiny_data, tmp_path)


# ------------------------------------------------------------------- text without tf-text
_HARD_LINES = [
    "Héllo, World! It's 3.14 — naïve café déjà vu.",
    "東京は日本の首都です。漢字とかなが混ざる文",
    "ÀÉÎÕÜ ß straße İstanbul ΣΊΣΥΦΟΣ ǅemal ﬁnal ＦＵＬＬ－ＷＩＤＴＨ",
    "tabs\tand  spaces\u00a0nbsp\u200bzero-width\u3000ideographic",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 and symbols © ™ ½ ² → ∑",
    "e\u0301 combining marks, a\u0308\u0301 and Hangul 한국어 텍스트",
    "punctuation!!! (brackets) [square] {curly} <angle> \"quotes\" 'single' `tick` ~tilde~ @at #hash $",
    "x" * 150 + " averyveryveryveryverylongwordthatkeepsgoingandgoingandgoingandgoingandgoingandgoing",
    "Arabic: مرحبا بالعالم، Hebrew: שלום עולם, Thai: สวัสดีครับ, Devanagari: नमस्ते दुनिया",
    "control\x07chars\x1bhere and a replacement \ufffd char, soft\u00adhyphen",
    "",
    "   ",
    "MiXeD CaSe WoRdS with numbers 123abc abc123 1,000,000 3.5e-7",
]


def test_python_text_path_equals_tf_text(tiny_data):
    from mobile_bert_distill import text

    lines = _HARD_LINES + text.read_corpus([tiny_data["train"]])[:200]
    words_tf = text.pretokenize(lines, implementation="tf-text")
    words_py = text.pretokenize(lines, implementation="python")
    assert words_py == words_tf
    assert sum(len(w) for w in words_tf) > 1000

    unique = sorted({w for ws in words_tf for w in ws})
    for name in ("teacher_vocab", "student_vocab"):
        vocab = text.load_vocab(tiny_data[name])
        offsets_py, ids_py = text.wordpiece_ids(unique, vocab, implementation="python")
        offsets_tf, ids_tf = text.wordpiece_ids(unique, vocab, implementation="tf-text")
        assert np.array_equal(offsets_py, offsets_tf) and np.array_equal(ids_py, ids_tf), name
        unk = vocab.index("[UNK]")
        assert 0 < np.sum(ids_tf == unk) < len(ids_tf), name  # both known and unknown words


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("args,message", [
    (["--backend", "theano"], "unknown Keras backend 'theano'"),
    (["--backend", "torch"], "the torch backend is not supported for training"),
    (["--backend", "jax", "--strategy", "mirrored"], "train.strategy=mirrored is TensorFlow's; on jax use "
                                                     "data_parallel"),
    (["--backend", "jax", "--override", "train.mixed_precision=mixed_float16"],
     "mixed_float16 does not run on jax's CPU platform"),
])
def test_bad_backend_choices_fail_in_one_line(tiny_data, tmp_path, args, message):
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_data, "nokd", steps=2, log_every=1,
                                                    checkpoint_every=1)), encoding="utf-8")
    out = tmp_path / "out"
    r = _mbd(["distill", "--config", str(path), "--out", str(out), "--no-progress"] + args)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_a_missing_backend_names_the_extra_that_installs_it(monkeypatch):
    import importlib.util

    from mobile_bert_distill.distill import backends
    from mobile_bert_distill.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    with pytest.raises(UserError, match=r'not installed \(pip install "mobile-bert-distill\[jax\]"\)'):
        backends.check("jax")
    assert backends.check("tensorflow") == "tensorflow"
