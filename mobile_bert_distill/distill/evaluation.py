"""Held-out masked-token accuracy with a fixed masking seed.

Windows tile the held-out text in order and every selected piece is replaced
by ``[MASK]`` (no random/kept noise), with a fixed seed: two students with
the same vocabulary are scored on exactly the same masked positions.

Example (command line):
    mbd eval --student out/student --corpus heldout.txt
    mbd eval --student out/student --litert student.tflite --corpus heldout.txt
    mbd eval --teacher out/teacher --corpus heldout.txt
"""

import os

import numpy as np

from mobile_bert_distill import text
from mobile_bert_distill.architectures import load_preset
from mobile_bert_distill.errors import UserError

EVAL_SEED = 12345


def _check_preset(path, what):
    if not os.path.isdir(path):
        raise UserError(f"{what} directory does not exist: {path}")
    if not os.path.exists(os.path.join(path, "config.json")):
        raise UserError(f"{path} is not a keras-hub preset (no config.json)")


def _batches(maker, limit=None):
    n_windows = maker.num_windows
    steps = maker.steps_per_pass()
    if limit:
        steps = min(steps, limit)
    for step in range(steps):
        batch = maker(step)
        valid = min(maker.batch_size, n_windows - step * maker.batch_size)
        yield batch, valid


def _accuracy_loop(maker, predict, weight_key, label_key, limit=None, desc="eval", extra=None, progress=True):
    from tqdm.auto import tqdm

    hits = total = 0.0
    hits_by = {}
    steps = min(maker.steps_per_pass(), limit) if limit else maker.steps_per_pass()
    for batch, valid in tqdm(_batches(maker, limit), total=steps, desc=desc, disable=not progress, leave=False):
        w = batch[weight_key].copy()
        w[valid:] = 0.0
        pred = predict(batch)
        ok = (pred == batch[label_key]).astype(np.float64) * w
        hits += ok.sum()
        total += w.sum()
        if extra is not None:
            for name, sel in extra(batch).items():
                hits_by.setdefault(name, [0.0, 0.0])
                hits_by[name][0] += (ok * sel).sum()
                hits_by[name][1] += (w * sel).sum()
    return hits / max(total, 1.0), int(total), {k: (h / max(t, 1.0), int(t)) for k, (h, t) in hits_by.items()}


def _top1(layer, scores):
    """``batch -> top-1 ids`` of ``scores(layer, batch)``, compiled by Keras on any backend."""
    import keras

    class Top1(keras.Model):
        def __init__(self):
            super().__init__()
            self.scored = layer

        def build(self, input_shape=None):
            self.built = True  # wraps a built model

        def call(self, batch):
            return keras.tree.map_structure(lambda x: keras.ops.argmax(x, -1), scores(self.scored, batch))

    model = Top1()
    return lambda batch: keras.tree.map_structure(np.asarray, model.predict_on_batch(batch))


def _check_seq_len(seq_len, max_positions, model_dir):
    if not 1 <= seq_len <= max_positions:
        raise UserError(f"sequence length {seq_len} is outside 1..{max_positions}, the positions "
                        f"the model in {model_dir} has")


def evaluate_student(student_dir, corpus, seq_len=None, batch_size=32, max_batches=None, seed=EVAL_SEED,
                     progress=True):
    """Masked-token top-1 accuracy of a student preset (BERT or ALBERT-style) over its vocabulary."""
    maker, predict = _student_scoring(student_dir, corpus, seq_len, batch_size, seed)
    acc, n, _ = _accuracy_loop(maker, predict, "s_mask_weights", "s_mask_ids", max_batches, "eval student",
                               progress=progress)
    return {"student_accuracy": acc, "masked_tokens": n, "sequences": maker.num_windows,
            "seq_len": maker.seq_len, "seed": seed, "vocabulary_size": len(maker.student.vocab)}


def _student_scoring(student_dir, corpus, seq_len, batch_size, seed):
    """The held-out batch maker of a student preset and its ``batch -> top-1 ids``."""
    _check_preset(student_dir, "student")
    from mobile_bert_distill.architectures import CLASSIFIER_CLASSES
    from mobile_bert_distill.export import preset_task_class
    from mobile_bert_distill.distill.teacher import is_teacher_checkpoint

    if is_teacher_checkpoint(student_dir):
        raise UserError(f"{student_dir} is a teacher checkpoint, not a student preset: evaluate it as a teacher")
    task_class = preset_task_class(student_dir)
    if task_class in CLASSIFIER_CLASSES:
        raise UserError(f"{student_dir} is a fine-tuned classifier ({task_class}), which has no masked-LM "
                        "head to score: evaluate the student preset it was fine-tuned from")

    from mobile_bert_distill.distill.data import PieceTable, TokenizedCorpus
    from mobile_bert_distill.distill.mixing import DualBatchMaker

    lines = text.read_corpus(corpus)
    mlm = load_preset(student_dir, "masked_lm", "student")
    vocab = list(mlm.preprocessor.tokenizer.get_vocabulary())
    seq_len = seq_len or mlm.preprocessor.sequence_length
    _check_seq_len(seq_len, mlm.backbone.max_sequence_length, student_dir)
    corpus_ = TokenizedCorpus.from_lines(lines)
    maker = DualBatchMaker(corpus_, PieceTable(vocab, corpus_.words), None, seq_len=seq_len,
                           batch_size=batch_size, max_predictions=max(1, round(seq_len * 0.15)),
                           seed=seed, eval_masking=True, sequential=True)
    top1 = _top1(mlm, lambda m, b: m(b, training=False))

    def predict(b):
        ids = b["s_token_ids"]
        return top1({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": b["s_padding_mask"],
                     "mask_positions": b["s_mask_positions"]})

    return maker, predict


def evaluate_export(student_dir, model_path, corpus, batch_size=32, max_batches=None, seed=EVAL_SEED,
                    progress=True):
    """Masked-token top-1 accuracy of a masked-LM LiteRT file (``mbd export``) and of the student
    preset it was exported from, on the same masked positions at the file's sequence length: what
    the file's quantization costs on held-out text (``drop_points``, float minus file)."""
    from mobile_bert_distill.litert.tools import load_interpreter, run_batches, signature_io

    interpreter, _ = load_interpreter(model_path)
    io = signature_io(interpreter)
    if "logits" not in io["outputs"]:
        raise UserError(f"{model_path} is not a masked-LM export (its outputs are {sorted(io['outputs'])})")
    seq_len = io["inputs"]["input_ids"]["shape"][1]
    maker, predict_float = _student_scoring(student_dir, corpus, seq_len, batch_size, seed)
    rows = io["outputs"]["logits"]["shape"][-1]
    if rows != len(maker.student.vocab):
        raise UserError(f"{model_path} scores {rows} pieces but the student in {student_dir} has "
                        f"{len(maker.student.vocab)}: it was exported from another student")

    def predict_file(b):
        ids = b["s_token_ids"]
        logits = run_batches(interpreter, {"input_ids": ids, "segment_ids": np.zeros_like(ids),
                                           "padding_mask": b["s_padding_mask"]})["logits"]
        return np.take_along_axis(logits, b["s_mask_positions"][..., None].astype(np.int64), axis=1).argmax(-1)

    acc, n, _ = _accuracy_loop(maker, predict_float, "s_mask_weights", "s_mask_ids", max_batches, "eval student",
                               progress=progress)
    file_acc, _, _ = _accuracy_loop(maker, predict_file, "s_mask_weights", "s_mask_ids", max_batches,
                                    "eval file", progress=progress)
    return {"student_accuracy": acc, "file_accuracy": file_acc, "drop_points": 100.0 * (acc - file_acc),
            "masked_tokens": n, "sequences": maker.num_windows, "seq_len": seq_len, "seed": seed,
            "file": str(model_path)}


def load_teacher_checkpoint(teacher_dir):
    """Rebuild the dual-vocabulary teacher saved by ``mbd distill`` (``OUT/teacher``)."""
    _check_preset(teacher_dir, "teacher")
    from mobile_bert_distill.distill.teacher import (DualVocabTeacher, is_teacher_checkpoint, load_teacher_backbone,
                                                     saved_student_table)

    if not is_teacher_checkpoint(teacher_dir):
        raise UserError(f"{teacher_dir} is not a teacher checkpoint written by `mbd distill` (no dual_heads.npz)")
    student_vocab = text.load_vocab(os.path.join(teacher_dir, "student_vocab.txt"))
    backbone, tokenizer = load_teacher_backbone(teacher_dir)
    teacher = DualVocabTeacher(backbone, saved_student_table(teacher_dir))
    teacher.load_heads(teacher_dir)
    return teacher, list(tokenizer.get_vocabulary()), student_vocab


def evaluate_teacher(teacher_dir, corpus, seq_len=128, batch_size=32, max_batches=None, seed=EVAL_SEED,
                     progress=True):
    """Accuracy of both teacher heads: teacher-vocabulary head on teacher
    segmentation (``p_dt=0``) and student-vocabulary head on student
    segmentation (``p_dt=1``)."""
    from mobile_bert_distill.distill.data import PieceTable, TokenizedCorpus
    from mobile_bert_distill.distill.mixing import DualBatchMaker

    teacher, t_vocab, s_vocab = load_teacher_checkpoint(teacher_dir)
    _check_seq_len(seq_len, teacher.backbone.max_sequence_length, teacher_dir)
    lines = text.read_corpus(corpus)
    corpus_ = TokenizedCorpus.from_lines(lines)
    s_table, t_table = PieceTable(s_vocab, corpus_.words), PieceTable(t_vocab, corpus_.words)

    def scores(t, b):
        return t.heads(t.encode(b["ids"], b["flags"], b["padding"], training=False), b["positions"])

    top1 = _top1(teacher, scores)

    def predict(b):
        pt, ps = top1({"ids": b["t_token_ids"], "flags": b["t_is_student"], "padding": b["t_padding_mask"],
                       "positions": b["t_mask_positions"]})
        return np.where(b["t_mask_is_student"] > 0, ps, pt)

    out = {"seq_len": seq_len, "seed": seed}
    for name, p in (("teacher_vocab_head", 0.0), ("student_vocab_head", 1.0)):
        maker = DualBatchMaker(corpus_, s_table, t_table, seq_len=seq_len, batch_size=batch_size,
                               max_predictions=max(1, round(seq_len * 0.15)), p_dt=p, seed=seed,
                               eval_masking=True, sequential=True)
        acc, n, _ = _accuracy_loop(maker, predict, "t_mask_weights", "t_mask_ids", max_batches,
                                   f"eval {name}", progress=progress)
        out[f"{name}_accuracy"] = acc
        out[f"{name}_masked_tokens"] = n
    return out
