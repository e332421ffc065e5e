"""Training with an ALBERT-style student (factorised embedding, one transformer layer shared across depth).

The student is a keras-hub ``AlbertMaskedLM`` with the kit's WordPiece tokenizer; the teacher is a BERT.
``mbd distill`` runs once on JAX (in a process where TensorFlow cannot be imported) and once on
TensorFlow (in this process, as conftest sets it); the other modes run one step here.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from _no_tensorflow import BLOCK, NONE_IMPORTED
from conftest import tiny_config_dict
from test_training import build_run

# the factorised embedding is narrower than the 16-d hidden states; the teacher has 2 layers, so the
# student runs its one shared layer at 2 depths
ALBERT = {"embedding_dim": 8, "share_layers": True}
ALBERT_OVERRIDES = [f"student.{k}={str(v).lower()}" for k, v in ALBERT.items()]
ARCHITECTURE = "2 layers, 16-d, 8-d factorised embedding, 1 distinct layer shared across depth"

# distill (then eval), on JAX, with `import tensorflow` and `import tensorflow_text` raising ImportError
_JAX_DISTILL = BLOCK + r"""
from mobile_bert_distill.cli import main
config, out = sys.argv[1:3]
assert main(["distill", "--config", config, "--out", out, "--no-progress", "--backend", "jax"]) == 0
""" + NONE_IMPORTED

_JAX_DISTILL_AND_EVAL = BLOCK + r"""
from mobile_bert_distill.cli import main
config, out, heldout = sys.argv[1:4]
assert main(["distill", "--config", config, "--out", out, "--no-progress", "--backend", "jax"]) == 0
assert main(["eval", "--student", out + "/student", "--corpus", heldout, "--json", "--backend", "jax"]) == 0
""" + NONE_IMPORTED


def _albert_config(tiny_data, mode="dual+up", **train):
    cfg = tiny_config_dict(tiny_data, mode, **train)
    cfg["student"].update(ALBERT)
    return cfg


def _json_of(stdout):
    return json.loads(stdout[stdout.index("{"):])


def _check_albert_student(preset):
    """The preset loads with keras-hub's ``MaskedLM`` as an AlbertMaskedLM with one distinct layer."""
    import keras_hub

    from mobile_bert_distill.architectures import encoder_layers

    mlm = keras_hub.models.MaskedLM.from_preset(str(preset))
    assert type(mlm).__name__ == "AlbertMaskedLM"
    bb = mlm.backbone
    assert (bb.num_layers, bb.hidden_dim, bb.embedding_dim) == (2, 16, 8)
    assert len({id(layer) for layer in encoder_layers(bb)}) == 1
    with pytest.raises(Exception):
        keras_hub.models.BertMaskedLM.from_preset(str(preset))
    return mlm


def _history(out):
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [10, 20] and history[-1]["loss"] < history[0]["loss"], history
    assert "l_p" in history[-1]
    return history


# --------------------------------------------------------------- shared projections
def _shared_student_under_bert(layers=3):
    import keras_hub

    from mobile_bert_distill.distill.student import build_student

    teacher = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=layers, num_heads=2, hidden_dim=16,
                                            intermediate_dim=32, max_sequence_length=16)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefgh")
    student = build_student(vocab, hidden_dim=8, num_layers=layers, num_heads=2, intermediate_dim=16,
                            embedding_dim=4, share_layers=True, max_sequence_length=16, seq_len=8)
    return teacher, student.backbone


@pytest.mark.parametrize("direction", ["down", "up"])
def test_a_shared_layer_is_paired_with_every_teacher_layer_and_gets_their_gradients(direction):
    import tensorflow as tf

    from mobile_bert_distill.distill.projections import SharedProjections, transformer_weight_pairs

    teacher, student = _shared_student_under_bert(3)
    pairs = transformer_weight_pairs(teacher, student)
    shared = student.transformer_layers[0][0].trainable_weights  # the one layer (group 0, inner layer 0)
    assert len(shared) == 16 and len(pairs) == 3 * 16
    by_role = {}
    for t_var, s_var, name in pairs:
        by_role.setdefault(name.split("/", 1)[1], []).append((t_var, s_var))
    assert len(by_role) == 16
    for role, group in by_role.items():
        assert len(group) == 3, role
        assert all(s is group[0][1] for _, s in group), role  # the same student variable at every depth
        expected = [next(w for w in layer.trainable_weights if w.path.split("/", 1)[1] == role)
                    for layer in teacher.transformer_layers]
        assert [id(t) for t, _ in group] == [id(w) for w in expected], role  # teacher layers 0, 1, 2

    rng = np.random.default_rng(0)
    for var in {id(v): v for p in pairs for v in p[:2]}.values():  # biases and betas start at zero
        var.assign(rng.normal(size=var.shape).astype("float32"))
    proj = SharedProjections(direction, pairs)
    assert proj.num_shapes == 5  # as for a BERT student of the same width: shared by the three depths
    teacher_vars = [t for t, _, _ in pairs]
    with tf.GradientTape() as tape:
        loss = proj.loss()
    grads = tape.gradient(loss, list(shared) + teacher_vars + proj.trainable_weights)
    n = len(shared)
    for group, gs in (("shared student", grads[:n]), ("teacher", grads[n:n + len(teacher_vars)]),
                      ("U/V", grads[n + len(teacher_vars):])):
        assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in gs), group
    # each shared weight's gradient is the sum of its three pairs' (L_p is the mean over all pairs)
    with tf.GradientTape(persistent=True) as tape:
        per_pair = proj.pair_losses()
    kernel = shared[0]
    summed = sum(tape.gradient(per_pair[i], kernel) for i, p in enumerate(pairs) if p[1] is kernel)
    np.testing.assert_allclose(grads[0].numpy(), summed.numpy() / len(pairs), rtol=1e-5, atol=1e-7)


def test_tinybert_walks_an_albert_student_as_its_own_graph_does():
    """The embedding output (after ALBERT's E -> H projection) through the shared layer at every depth
    ends where the backbone's own forward pass ends."""
    from mobile_bert_distill.distill import tinybert

    _, student = _shared_student_under_bert(3)
    ids = np.array([[2, 5, 6, 7, 3, 0, 0, 0]], "int32")
    mask = (ids > 0).astype("int32")
    embeddings = tinybert.bert_embeddings(student, ids)
    assert tuple(embeddings.shape) == (1, 8, 8)  # hidden_dim wide, not embedding_dim
    layers = tinybert.bert_layer_outputs(student, embeddings, mask)
    assert len(layers) == 3 and tuple(layers[0][1].shape) == (1, 2, 8, 8)
    expected = student({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask})
    np.testing.assert_allclose(np.asarray(layers[-1][0]), np.asarray(expected["sequence_output"]), atol=1e-5)


# --------------------------------------------------------------- mbd distill on TensorFlow and JAX
@pytest.fixture(scope="module")
def tf_albert_run(tiny_data, tmp_path_factory):
    """A tiny dual+up run of an ALBERT-style student through the CLI, in this (TensorFlow) process."""
    import io
    from contextlib import redirect_stdout

    from mobile_bert_distill.cli import main

    d = tmp_path_factory.mktemp("albert_tf")
    cfg = _albert_config(tiny_data, "dual+up", steps=20, log_every=10, checkpoint_every=10, learning_rate=1e-2)
    cfg["data"]["heldout"] = tiny_data["heldout"]
    path = d / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    logged = io.StringIO()
    with redirect_stdout(logged):
        code = main(["distill", "--config", str(path), "--out", str(d / "a"), "--no-progress",
                     "--backend", "tensorflow"])
    return {"dir": d, "code": code, "stdout": logged.getvalue()}


@pytest.mark.slow
def test_distill_and_eval_an_albert_student_on_tensorflow(tf_albert_run, tiny_data, capsys):
    from mobile_bert_distill.cli import main

    assert tf_albert_run["code"] == 0, tf_albert_run["stdout"][-2000:]
    assert ARCHITECTURE in tf_albert_run["stdout"] and "backend tensorflow" in tf_albert_run["stdout"]
    out = tf_albert_run["dir"] / "a"
    history = _history(out)
    assert "val_student_acc" in history[-1]
    _check_albert_student(out / "student")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shared_projection_shapes"] == 5
    assert main(["eval", "--student", str(out / "student"), "--corpus", tiny_data["heldout"], "--json"]) == 0
    assert _json_of(capsys.readouterr().out)["masked_tokens"] > 50
    assert main(["eval", "--teacher", str(out / "teacher"), "--corpus", tiny_data["heldout"], "--json",
                 "--seq-len", "16"]) == 0
    assert _json_of(capsys.readouterr().out)["student_vocab_head_masked_tokens"] > 0


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None,
                    reason='JAX is not installed (pip install -e ".[jax]")')
def test_distill_and_eval_an_albert_student_on_jax(tiny_data, tmp_path, capsys):
    """Trained and scored on JAX without TensorFlow, killed after a checkpoint and resumed to the same
    student, and scored the same on TensorFlow."""
    from test_backends import h5_weights

    from mobile_bert_distill.cli import main

    cfg = _albert_config(tiny_data, "dual+up", steps=20, log_every=10, checkpoint_every=10, jit_compile="auto",
                         learning_rate=1e-2)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp_path / "a"
    r = subprocess.run([sys.executable, "-c", _JAX_DISTILL_AND_EVAL, str(path), str(out), tiny_data["heldout"]],
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="jax"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert ARCHITECTURE in r.stdout and "backend jax" in r.stdout
    _history(out)
    on_jax = _json_of(r.stdout[r.stdout.index("wrote "):])
    assert on_jax["masked_tokens"] > 50
    _check_albert_student(out / "student")

    # SIGKILL after the step-10 checkpoint, then the same command resumes to the same student
    b = tmp_path / "b"
    jax_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="jax")
    distill = [sys.executable, "-c", _JAX_DISTILL, str(path), str(b)]
    r = subprocess.run(distill, capture_output=True, text=True, timeout=600,
                       env=dict(jax_env, MBD_TEST_KILL_AFTER_STEP="10"))
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    r = subprocess.run(distill, capture_output=True, text=True, timeout=600, env=jax_env)
    assert r.returncode == 0 and "resuming from the checkpoint at step 10\n" in r.stdout, r.stderr[-3000:]
    wa, wb = h5_weights(out / "student"), h5_weights(b / "student")
    assert wa.keys() == wb.keys() and len(wa) > 10
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], atol=1e-6, err_msg=k)

    # the JAX student scored here on TensorFlow: the same masked positions, the same answers
    assert main(["eval", "--student", str(out / "student"), "--corpus", tiny_data["heldout"], "--json"]) == 0
    on_tf = _json_of(capsys.readouterr().out)
    assert on_tf["masked_tokens"] == on_jax["masked_tokens"]
    assert abs(on_tf["student_accuracy"] - on_jax["student_accuracy"]) * on_tf["masked_tokens"] <= 1 + 1e-9


# --------------------------------------------------------------- the other modes, one step each
@pytest.mark.parametrize("mode", ["tinybert", "dual+down+soft", "teacher", "nokd"])
def test_one_step_of_each_mode_on_an_albert_student(tiny_config, mode):
    cosine = ["soft.cosine_weight=0.5"] if mode.endswith("+soft") else []
    run = build_run(tiny_config(mode, overrides=ALBERT_OVERRIDES + cosine + ["student.num_layers=2"]))
    bb = run.student.backbone
    assert type(run.student).__name__ == "AlbertMaskedLM" and bb.embedding_dim == 8
    batch = run.maker(0)
    loss, values, _, grads = run.distiller.gradients(batch)
    assert np.isfinite(float(loss))
    grad_of = {id(v): g for v, g in zip(run.distiller.trainable_variables, grads)}
    reached = [v.path for v in bb.transformer_layers[0][0].trainable_weights + bb.embeddings_projection.weights
               if grad_of.get(id(v)) is not None and np.any(np.asarray(grad_of[id(v)]))]
    if mode == "teacher":
        # teacher preparation trains the teacher alone; its student-vocabulary path reads the student's
        # E-wide embedding table
        assert not reached and run.teacher.up_projection.kernel.shape == (8, 32)
    else:
        assert len(reached) == 18, reached  # the shared layer's 16 weights and the E -> H projection
    if mode == "tinybert":
        assert run.distiller.layer_pairs == [(0, 0), (1, 1)]  # the shared layer at both depths
        assert run.distiller.embedding_up.kernel.shape == (16, 32)  # after ALBERT's projection: H wide
        assert {"l_emb", "l_hidn", "l_attn", "l_kd"} <= set(values)
    if mode == "dual+down+soft":
        assert {"l_p", "l_kd", "l_cos", "l_ce_teacher"} <= set(values)
    logs = run.distiller.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])


@pytest.mark.slow
def test_a_prepared_teacher_hands_an_albert_student_its_embedding_width(tf_albert_run, tiny_config):
    """A teacher checkpoint records the student's token embedding (E wide): a fixed-target mode keeps
    it as the teacher's own student-vocabulary table, whatever E the new student has; a dual student
    of another E starts a fresh up-projection and says so in terms of the embedding width."""
    assert tf_albert_run["code"] == 0
    ckpt = str(tf_albert_run["dir"] / "a" / "teacher")
    with np.load(os.path.join(ckpt, "dual_heads.npz")) as z:
        saved = z["student_embedding"]
    assert saved.shape == (100, 8)

    def cfg(mode, *overrides):
        c = tiny_config(mode, overrides=ALBERT_OVERRIDES + list(overrides))
        c["teacher"] = dict(c["teacher"], random=None, source=ckpt)
        return c

    for e in (8, 12):
        run = build_run(cfg("soft", f"student.embedding_dim={e}"))
        np.testing.assert_allclose(run.teacher.student_embedding.embeddings.numpy(), saved)
        assert run.student.backbone.token_embedding.embeddings.shape == (100, e)

    from mobile_bert_distill.distill.run import Run

    logged = []
    Run(cfg("dual", "student.embedding_dim=12"), log=logged.append).build()
    assert any("another student embedding width: this student's 12-d token embedding starts a fresh one" in m
               for m in logged), logged


# --------------------------------------------------------------- bad settings
BAD_STUDENT_SETTINGS = {
    "student.embedding_dim=0": "student.embedding_dim must be null or a positive integer (got 0)",
    "student.embedding_dim=-8": "student.embedding_dim must be null or a positive integer (got -8)",
    "student.embedding_dim=2.5": "student.embedding_dim must be null or a positive integer (got 2.5)",
    "student.embedding_dim=true": "student.embedding_dim must be null or a positive integer (got True)",
    "student.embedding_dim=wide": "student.embedding_dim must be null or a positive integer (got 'wide')",
    "student.share_layers=1": "student.share_layers must be true or false (got 1)",
    "student.share_layers=sometimes": "student.share_layers must be true or false (got 'sometimes')",
}


@pytest.mark.parametrize("override", sorted(BAD_STUDENT_SETTINGS))
def test_bad_albert_settings_are_one_line(tiny_data, tmp_path, capsys, override):
    from mobile_bert_distill.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_albert_config(tiny_data)), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["distill", "--config", str(path), "--override", override, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and BAD_STUDENT_SETTINGS[override] in err[0], err
    assert not out.exists()


def test_eval_refuses_a_masked_lm_the_kit_does_not_train(tmp_path):
    import keras_hub

    from mobile_bert_distill.architectures import load_preset
    from mobile_bert_distill.errors import UserError

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=1,
                                                   hidden_dim=4, intermediate_dim=8, max_sequence_length=8)
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=vocab)
    preprocessor = keras_hub.models.DistilBertMaskedLMPreprocessor(tokenizer=tokenizer, sequence_length=8)
    keras_hub.models.DistilBertMaskedLM(backbone=backbone, preprocessor=preprocessor).save_to_preset(str(tmp_path / "p"))
    with pytest.raises(UserError, match="is a DistilBertMaskedLM preset; the student must be a BertMaskedLM or AlbertMaskedLM"):
        load_preset(str(tmp_path / "p"), "masked_lm", "student")
