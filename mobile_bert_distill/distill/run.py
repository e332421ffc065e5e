"""``mbd distill``: build everything from a config, train with ``fit()``, write the run.

Output directory (written as ``OUT.partial`` and renamed to ``OUT`` at the end):

* ``student/``  — keras-hub preset (backbone + tokenizer + MLM task);
* ``teacher/``  — teacher encoder preset + both MLM heads + up-projection
  (absent for ``nokd``); it can be a later run's ``teacher.source``;
* ``checkpoints/`` — the newest full training states;
* ``history.json``, ``logs/`` (TensorBoard; TensorFlow backend only), ``config.yaml``, ``summary.json``.

It trains on the Keras backend of the process (``KERAS_BACKEND``: TensorFlow
or JAX; :mod:`mobile_bert_distill.distill.backends`); the student it writes is the
same keras-hub preset either way.

A run that is killed leaves ``OUT.partial``; the same command resumes from
its newest checkpoint and ends with the same weights as an uninterrupted run.
"""

import json
import os
import shutil
import signal
import time

from mobile_bert_distill.distill import backends
from mobile_bert_distill.distill import config as config_lib
from mobile_bert_distill import text
from mobile_bert_distill.distill.checkpoints import Checkpointer
from mobile_bert_distill.distill.optimizer import make_optimizer
from mobile_bert_distill.architectures import architecture_summary
from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text, locked_output, replace_dir
from mobile_bert_distill.errors import UserError

KILL_ENV = "MBD_TEST_KILL_AFTER_STEP"  # tests: SIGKILL the process after this step's checkpoint


def _log(msg):
    print(msg, flush=True)


class Run:
    """Everything one distillation needs, built from a resolved config."""

    def __init__(self, cfg, strategy=None, cache_dir=None, log=_log):
        self.cfg = cfg
        self.log = log
        self.cache_dir = cache_dir
        self.strategy = strategy or backends.module().make_strategy("default")
        self._load_inputs()

    # ----------------------------------------------------------- inputs
    def _load_inputs(self):
        cfg = self.cfg
        d = cfg["data"]
        self.student_vocab = text.load_vocab(d["student_vocab"])
        try:
            self.lines = text.read_corpus(d["corpus"], skip_bad_lines=d["skip_bad_lines"], warn=self.log)
            self.heldout_lines = (text.read_corpus([d["heldout"]], skip_bad_lines=d["skip_bad_lines"],
                                                   warn=self.log) if d["heldout"] else None)
        except UserError as e:
            if e.option != "skip_bad_lines":
                raise
            raise UserError(f"{e} (set data.skip_bad_lines: true)") from None
        t = cfg["teacher"]
        self.teacher_backbone = self.teacher_tokenizer = None
        self.teacher_vocab = None
        if cfg["mode"] != "nokd":
            if t["random"]:
                self.teacher_vocab = text.load_vocab(t["random"]["vocabulary"])
            elif not os.path.exists(str(t["source"])) and (os.sep in str(t["source"]) or str(t["source"]).startswith(".")):
                raise UserError(f"teacher preset path does not exist: {t['source']}")

    # ----------------------------------------------------------- models
    def build(self):
        import keras

        from mobile_bert_distill.distill.distiller import Distiller
        from mobile_bert_distill.distill.student import build_student
        from mobile_bert_distill.distill.teacher import (DualVocabTeacher, frozen_table, is_teacher_checkpoint,
                                                  load_teacher_backbone, random_teacher, saved_student_table)

        cfg, t, s, d = self.cfg, self.cfg["teacher"], self.cfg["student"], self.cfg["data"]
        precision = cfg["train"]["mixed_precision"]
        dtype = precision if precision not in (None, "float32") else None
        keras.utils.set_random_seed(cfg["seed"])
        with self.strategy.scope():
            teacher = None
            num_layers = s["num_layers"]
            if cfg["mode"] != "nokd":
                if t["random"]:
                    r = t["random"]
                    tb, ttok = random_teacher(
                        self.teacher_vocab, num_layers=r["num_layers"], hidden_dim=r["hidden_dim"],
                        num_heads=r["num_heads"], intermediate_dim=r.get("intermediate_dim"),
                        dropout=0.1 if t["dropout"] is None else t["dropout"],
                        max_sequence_length=r.get("max_sequence_length", 512), dtype=dtype)
                else:
                    tb, ttok = load_teacher_backbone(t["source"], dtype=dtype, dropout=t["dropout"])
                    self.teacher_vocab = text.validate_vocab(list(ttok.get_vocabulary()), source=f"teacher {t['source']} vocabulary")
                self.teacher_backbone, self.teacher_tokenizer = tb, ttok
                if num_layers is None:
                    num_layers = tb.num_layers
            if num_layers is None:
                num_layers = config_lib.teacher_depth(t)
                self.log(f"student depth: {num_layers} layers (the teacher's)")
            self.student = build_student(
                self.student_vocab, hidden_dim=s["hidden_dim"], num_layers=num_layers, num_heads=s["num_heads"],
                intermediate_dim=s["intermediate_dim"], embedding_dim=s["embedding_dim"],
                share_layers=s["share_layers"], dropout=s["dropout"],
                max_sequence_length=s["max_sequence_length"], seq_len=d["seq_len"], mask_rate=d["mask_rate"],
                max_predictions=d["max_predictions"], dtype=dtype)
            if self.teacher_backbone is not None:
                # soft, tinybert: nothing trains the teacher, and its targets must not move with the student
                fixed_target = not config_lib.mode_parts(cfg["mode"])["dual"]
                prepared = not t["random"] and is_teacher_checkpoint(t["source"])
                table = self.student.backbone.token_embedding
                if fixed_target:
                    table = saved_student_table(t["source"]) if prepared else frozen_table(table.embeddings)
                    if table.input_dim != len(self.student_vocab):
                        raise UserError(f"teacher checkpoint {t['source']} was prepared for a student vocabulary "
                                        f"of {table.input_dim} pieces, this student's has {len(self.student_vocab)}")
                teacher = DualVocabTeacher(self.teacher_backbone, table, name="dual_teacher")
                if prepared:
                    fresh = teacher.load_heads(t["source"])
                    what = "teacher heads" if fresh else "teacher heads and up-projection"
                    if fixed_target:
                        what += " (with the student-vocabulary table they were prepared with, kept fixed)"
                    self.log(f"{what} restored from {t['source']}" + (
                        " (its up-projection was learned for another student embedding width: this "
                        f"student's {table.output_dim}-d token embedding starts a fresh one)" if fresh else ""))
                if fixed_target:
                    for v in teacher.weights:
                        v.trainable = False
                self.teacher_backbone.pooled_dense.trainable = False
            self.student.backbone.pooled_dense.trainable = False
            self.teacher = teacher
            self.distiller = Distiller(self.student, teacher, mode=cfg["mode"], epsilon=cfg["loss"]["epsilon"],
                                       layer_map=cfg["projection"]["layer_map"],
                                       teacher_trainable=t["trainable"], **cfg["soft"], **cfg["tinybert"])
            self.optimizer = make_optimizer(cfg["train"], precision)
            self.distiller.compile(optimizer=self.optimizer, jit_compile=config_lib.jit_compile(cfg["train"]))
            self.optimizer.build(self.distiller.trainable_variables)
        return self

    # ----------------------------------------------------------- data
    def make_makers(self):
        from mobile_bert_distill.distill.data import PieceTable, load_or_build_corpus
        from mobile_bert_distill.distill.mixing import DualBatchMaker

        cfg, d, dual = self.cfg, self.cfg["data"], self.cfg["dual"]
        corpus = load_or_build_corpus(self.lines, self.cache_dir)
        s_table = PieceTable(self.student_vocab, corpus.words)
        dual_batches = self.teacher_vocab is not None and config_lib.mode_parts(cfg["mode"])["dual"]
        t_table = PieceTable(self.teacher_vocab, corpus.words) if dual_batches else None
        common = dict(seq_len=d["seq_len"], batch_size=cfg["train"]["batch_size"],
                      max_predictions=d["max_predictions"], mask_rate=d["mask_rate"],
                      p_dt=dual["p_dt"], p_dt_start=dual["p_dt_start"], ramp_steps=dual["ramp_steps"])
        self.maker = DualBatchMaker(corpus, s_table, t_table, seed=cfg["seed"], **common)
        self.eval_maker = None
        if self.heldout_lines:
            hcorpus = load_or_build_corpus(self.heldout_lines, self.cache_dir)
            hs = PieceTable(self.student_vocab, hcorpus.words)
            ht = PieceTable(self.teacher_vocab, hcorpus.words) if t_table is not None else None
            # held-out batches mix at the target p_dt: a ramp's start (often 0) would leave the
            # student-vocabulary head nothing to be scored on
            self.eval_maker = DualBatchMaker(hcorpus, hs, ht, seed=12345, eval_masking=True, sequential=True,
                                             **dict(common, p_dt_start=None, ramp_steps=0))
        return self.maker


# ---------------------------------------------------------------- callbacks
def _callbacks(run, staging, ckpt, start_step, total_steps, history, progress):
    import keras

    from mobile_bert_distill.distill.mixing import p_dt_schedule

    cfg_t = run.cfg["train"]
    log_every = cfg_t["log_every"]
    writer = backends.module().summary_writer(os.path.join(staging, "logs"))
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    dual = run.cfg["dual"]

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = None
            if progress:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total_steps, initial=start_step, desc=f"distill [{run.cfg['mode']}]",
                                unit="step", dynamic_ncols=True)

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is not None:
                self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            if self.bar is not None and logs:
                shown = {k: f"{float(v):.3f}" for k, v in logs.items()
                         if k in ("loss", "student_acc", "l_p", "val_student_acc")}
                self.bar.set_postfix(shown)

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            step = (epoch + 1) * log_every
            row = {"step": step}
            row.update({k: float(v) for k, v in (logs or {}).items()})
            row["learning_rate"] = float(keras.ops.convert_to_numpy(run.optimizer.learning_rate))
            if config_lib.mode_parts(run.cfg["mode"])["dual"]:
                row["p_dt"] = p_dt_schedule(step, dual["p_dt"], dual["p_dt_start"], dual["ramp_steps"])
            history.append(row)
            if writer is not None:
                writer.write(step, {k: v for k, v in row.items() if k != "step"})
            atomic_write_json(os.path.join(staging, "history.json"), history)
            if step % cfg_t["checkpoint_every"] == 0 or step == total_steps:
                ckpt.save(step)
                if kill_at and step >= kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

    return [Progress(), Record()]


# ---------------------------------------------------------------- the run
def distill(cfg, out_dir=None, overwrite=False, restart=False, progress=True, log=_log):
    """Run one distillation described by a resolved config; returns the summary dict."""
    out_dir = os.path.abspath(out_dir or cfg["output_dir"])
    cfg = dict(cfg, output_dir=out_dir)
    with locked_output(out_dir, overwrite, "run folder"):  # a second run on it is refused, naming this one's PID
        return _locked_distill(cfg, out_dir, restart, progress, log)


def _locked_distill(cfg, out_dir, restart, progress, log):
    import keras

    backend = backends.module()
    staging = out_dir + ".partial"
    if os.path.exists(staging):
        if restart or not config_lib.same_config(os.path.join(staging, "config.yaml"), cfg):
            if not restart:
                raise UserError(f"{staging} holds an interrupted run with a different config",
                                option="restart", purpose="to discard it")
            shutil.rmtree(staging)
    if cfg["train"]["deterministic"]:
        backend.enable_determinism()
    precision = cfg["train"]["mixed_precision"]
    backend.check_precision(precision)
    strategy = backend.make_strategy(cfg["train"]["strategy"])
    run = Run(cfg, strategy=strategy, cache_dir=os.path.join(staging, "cache"), log=log)  # validates inputs
    fresh = not os.path.exists(staging)
    os.makedirs(staging, exist_ok=True)
    atomic_write_text(os.path.join(staging, "config.yaml"), config_lib.dump(cfg))
    old_policy = keras.config.dtype_policy()
    try:
        with strategy.scope():
            return _distill(run, cfg, staging, out_dir, strategy, precision, progress, log)
    except BaseException:
        # A run that failed before its first checkpoint leaves nothing behind;
        # one with checkpoints keeps them so the same command can resume it.
        ckpt_dir = os.path.join(staging, "checkpoints")
        if fresh and not (os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir)):
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        keras.config.set_dtype_policy(old_policy)


def _distill(run, cfg, staging, out_dir, strategy, precision, progress, log):
    import keras

    if precision not in (None, "float32"):
        keras.config.set_dtype_policy(precision)
    t0 = time.time()
    run.build()
    maker = run.make_makers()
    log(f"student: {run.student.backbone.count_params():,} parameters "
        f"({architecture_summary(run.student.backbone)}, "
        f"vocab {len(run.student_vocab)}); mode {cfg['mode']}; backend {backends.current()}, "
        f"replicas {strategy.num_replicas_in_sync}")
    total = cfg["train"]["steps"]
    log_every = cfg["train"]["log_every"]
    history_path = os.path.join(staging, "history.json")
    history = []
    ckpt = Checkpointer(os.path.join(staging, "checkpoints"), run.distiller, run.optimizer,
                        keep=cfg["train"]["keep_checkpoints"])
    with strategy.scope():
        start, written_on = ckpt.restore_latest(log)
    if start:
        if os.path.exists(history_path):
            with open(history_path, encoding="utf-8") as f:
                history.extend(r for r in json.load(f) if r["step"] <= start)
        switched = f" (written on {written_on}, continuing on {backends.current()})" \
            if written_on not in (None, backends.current()) else ""
        log(f"resuming from the checkpoint at step {start}{switched}")
    callbacks = _callbacks(run, staging, ckpt, start, total, history, progress)
    backend = backends.module()
    val = None
    if run.eval_maker is not None:
        n_val = min(cfg["data"]["heldout_batches"], run.eval_maker.steps_per_pass())
        val = backend.heldout_input(run.eval_maker, n_val)
    epochs = total // log_every
    freq = (cfg["train"]["eval_every"] // log_every) if cfg["train"]["eval_every"] else epochs
    if start < total:
        run.distiller.fit(backend.training_input(maker, start, total), epochs=epochs, initial_epoch=start // log_every,
                          steps_per_epoch=log_every, validation_data=val, validation_freq=max(freq, 1),
                          callbacks=callbacks, verbose=0, shuffle=False)
    train_seconds = time.time() - t0
    # ------------------------------------------------------- artifacts
    run.student.backbone.pooled_dense.trainable = True
    if cfg["mode"] != "teacher":  # teacher preparation writes the teacher alone
        run.student.save_to_preset(os.path.join(staging, "student.tmp"))
        replace_dir(os.path.join(staging, "student.tmp"), os.path.join(staging, "student"))
    if run.teacher is not None:
        run.teacher_backbone.pooled_dense.trainable = True
        run.teacher.save(os.path.join(staging, "teacher.tmp"), run.teacher_tokenizer, run.student_vocab)
        replace_dir(os.path.join(staging, "teacher.tmp"), os.path.join(staging, "teacher"))
    summary = {
        "mode": cfg["mode"],
        "steps": total,
        "resumed_from_step": start,
        "student_parameters": int(run.student.backbone.count_params()),
        "student_parameters_with_mlm_head": int(run.student.count_params()),
        "teacher_parameters": int(run.teacher_backbone.count_params()) if run.teacher_backbone is not None else None,
        "shared_projection_shapes": run.distiller.projections.num_shapes if run.distiller.projections else 0,
        "final": history[-1] if history else {},
        "seconds": round(train_seconds, 1),
    }
    atomic_write_json(os.path.join(staging, "summary.json"), summary)
    shutil.rmtree(os.path.join(staging, "cache"), ignore_errors=True)
    replace_dir(staging, out_dir)
    log(f"wrote {out_dir}")
    return summary
