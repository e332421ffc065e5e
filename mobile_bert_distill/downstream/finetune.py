"""Downstream: fine-tune a student (or teacher) as a text classifier, optionally with task-level KD.

Task-level knowledge distillation (Hinton et al. 2015): the student learns
from the hard labels and from the teacher classifier's softened outputs,

``L = α · CE(y, s) + (1 − α) · T² · KL(softmax(t/T) ‖ softmax(s/T))``

or, with ``kd_loss="mse"``, ``α · CE + (1 − α) · mean((s − t)²)`` on logits (as
in BERT→BiLSTM distillation). Teacher and student read the same raw text,
each through its *own* tokenizer: the soft targets are per example, so
cross-vocabulary task KD needs no token alignment.

Example:
>>> import numpy as np
>>> loss = SoftTargetKD(num_classes=2, alpha=0.5, temperature=2.0)
>>> y = np.array([[1, 2.0, -1.0]], "float32")  # label 1, teacher logits (2, -1)
>>> round(float(loss(y, np.array([[0.5, 0.5]], "float32"))), 4)
0.7828
"""

import csv
import io
import json
import os

import numpy as np

from mobile_bert_distill.architectures import load_preset
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export import LABELS_FILE

try:  # keras is imported lazily by callers that only read CSVs
    import keras
except ImportError:  # pragma: no cover
    keras = None


# ------------------------------------------------------------------ data
def read_labelled_csv(path, text_column="text", label_column="label", log=print):
    """Read ``(texts, labels)`` from a CSV (UTF-8, BOM allowed, quoted commas, blank lines).

    Rows with empty text are skipped and counted; labels are kept as strings.
    """
    if not os.path.isfile(path):
        raise UserError(f"data file not found: {path}")
    raw = open(path, "rb").read()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 at byte offset {e.start}") from None
    try:
        return _labelled_rows(csv.DictReader(io.StringIO(content, newline="")), path, text_column,
                              label_column, log)
    except csv.Error as e:  # e.g. a field longer than the csv module's limit, or a broken quote
        raise UserError(f"{path}: not a readable CSV ({e})") from None


def _labelled_rows(reader, path, text_column, label_column, log):
    fields = reader.fieldnames or []
    missing = [c for c in (text_column, label_column) if c not in fields]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(fields) or 'none'})")
    texts, labels, empty = [], [], 0
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        text = (row.get(text_column) or "").strip()
        label = (row.get(label_column) or "").strip()
        if not text:
            empty += 1
            continue
        if not label:
            raise UserError(f"{path}: a row has text but no {label_column}")
        texts.append(text)
        labels.append(label)
    if empty and log:
        log(f"{path}: skipped {empty} row(s) with empty text")
    if not texts:
        raise UserError(f"{path}: no labelled rows")
    return texts, labels


def label_mapping(train_labels):
    classes = sorted(set(train_labels), key=lambda x: (not _is_number(x), _num(x), x))
    if len(classes) < 2:
        raise UserError(f"training data has {len(classes)} class(es); a classifier needs at least 2")
    return classes


def _is_number(x):
    try:
        float(x)
        return True
    except ValueError:
        return False


def _num(x):
    return float(x) if _is_number(x) else 0.0


def encode_labels(labels, classes, source):
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise UserError(f"{source}: label(s) {', '.join(map(repr, unknown[:5]))} not seen in the training data "
                        f"(known: {', '.join(classes)})")
    return np.array([index[x] for x in labels], "int32")


# ------------------------------------------------------------------ metrics
def accuracy_and_macro_f1(y_true, y_pred, num_classes):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    acc = float((y_true == y_pred).mean()) if len(y_true) else 0.0
    f1s = []
    for c in range(num_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return acc, float(np.mean(f1s))


# ------------------------------------------------------------------ the KD loss
if keras is not None:

    @keras.saving.register_keras_serializable(package="mobile_bert_distill")
    class SoftTargetKD(keras.losses.Loss):
        """Hard-label CE plus soft-target KD; ``y_true`` is ``[label, teacher logits...]``."""

        def __init__(self, num_classes, alpha=0.5, temperature=2.0, kind="kl", name="soft_target_kd", **kwargs):
            super().__init__(name=name, **kwargs)
            if kind not in ("kl", "mse"):
                raise UserError(f"KD loss must be 'kl' or 'mse' (got {kind!r})")
            if not 0.0 <= alpha <= 1.0 or temperature <= 0:
                raise UserError("need 0 <= alpha <= 1 and temperature > 0")
            self.num_classes, self.alpha, self.temperature, self.kind = num_classes, alpha, temperature, kind

        def call(self, y_true, y_pred):
            ops = keras.ops
            y_pred = ops.cast(y_pred, "float32")
            labels = ops.cast(y_true[:, 0], "int32")
            t_logits = ops.cast(y_true[:, 1:], "float32")
            hard = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
            if self.kind == "mse":
                soft = ops.mean(ops.square(y_pred - t_logits), axis=-1)
            else:
                T = self.temperature
                p_t = ops.softmax(t_logits / T, axis=-1)
                log_p_t = ops.log_softmax(t_logits / T, axis=-1)
                log_p_s = ops.log_softmax(y_pred / T, axis=-1)
                soft = (T * T) * ops.sum(p_t * (log_p_t - log_p_s), axis=-1)
            return self.alpha * hard + (1.0 - self.alpha) * soft

        def get_config(self):
            config = super().get_config()
            config.update(num_classes=self.num_classes, alpha=self.alpha, temperature=self.temperature,
                          kind=self.kind)
            return config


# ------------------------------------------------------------------ training


def _check_model_dir(path, what):
    if not os.path.isdir(path):
        raise UserError(f"{what} directory does not exist: {path}")
    if not os.path.exists(os.path.join(path, "config.json")):
        raise UserError(f"{path} is not a keras-hub preset (no config.json)")


def preset_backbone_class(model_dir):
    """The backbone class named in a keras-hub preset's ``config.json`` (``"BertBackbone"``,
    ``"AlbertBackbone"``), read without loading the model."""
    _check_model_dir(model_dir, "model")
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f).get("class_name")


def classifier_preprocessor(model_dir, seq_len):
    """A ``BertTextClassifierPreprocessor`` over the WordPiece tokenizer of ``model_dir``.

    An ALBERT-style student keeps the kit's WordPiece tokenizer, which
    keras-hub's class lookup (ALBERT -> SentencePiece) would not pick: its
    saved ``tokenizer.json`` is read as it is.
    """
    import keras_hub

    if preset_backbone_class(model_dir) != "AlbertBackbone":
        return keras_hub.models.BertTextClassifierPreprocessor.from_preset(model_dir, sequence_length=seq_len)
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer = keras.saving.deserialize_keras_object(json.load(f))
    tokenizer.load_preset_assets(model_dir)
    return keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=seq_len)


def load_classifier(path):
    """A fine-tuned classifier preset and its class names."""
    _check_model_dir(path, "classifier")
    labels_path = os.path.join(path, LABELS_FILE)
    if not os.path.exists(labels_path):
        raise UserError(f"{path} has no {LABELS_FILE}: not a classifier written by `mbd finetune`")
    with open(labels_path, encoding="utf-8") as f:
        classes = json.load(f)["classes"]
    return load_preset(path, "classifier", "classifier"), classes


def warmup_cosine(learning_rate, steps):
    """The fine-tuning learning rate over ``steps``: linear warm-up from 0 for the first tenth,
    then cosine decay to 0 from the peak ``learning_rate``."""
    import keras

    return keras.optimizers.schedules.CosineDecay(0.0, max(steps - steps // 10, 1), warmup_target=learning_rate,
                                                  warmup_steps=steps // 10)


LENGTH_STEP = 16  # predict_logits cuts each batch to a multiple of this: few shapes to compile


def length_batches(lengths, batch_size, max_len):
    """``(rows, width)`` batches of texts of similar length: the row indices sorted by ``lengths``
    (real tokens per text), ``batch_size`` at a time, and the batch's longest length rounded up to a
    multiple of :data:`LENGTH_STEP` (at most ``max_len``), the width the batch is cut to."""
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield rows, int(min(max_len, -(-lengths[rows].max() // LENGTH_STEP) * LENGTH_STEP))


def predict_logits(classifier, texts, batch_size=64):
    """The logits ``[N, K]`` (float32) of a keras-hub classifier on raw ``texts``.

    The texts go through the classifier's own preprocessor, then run in batches of
    similar length, each cut to its longest text (rounded up to a multiple of
    :data:`LENGTH_STEP`): the padding, which the model masks out, is not computed.
    On sentence-length texts this is 2-3x faster than padding every text to the
    full length, and the logits agree to float rounding.
    """
    import keras

    texts = list(texts)
    net = keras.Model(classifier.inputs, classifier.outputs)  # the same layers, without the preprocessor
    out = np.zeros((len(texts), net.outputs[0].shape[-1]), "float32")
    if not texts:
        return out
    x, _, _ = keras.utils.unpack_x_y_sample_weight(classifier.preprocessor(texts))
    x = {k: np.asarray(v) for k, v in x.items()}
    for rows, width in length_batches(x["padding_mask"].sum(axis=1), batch_size, x["padding_mask"].shape[1]):
        out[rows] = np.asarray(net.predict_on_batch({k: v[rows, :width] for k, v in x.items()}), "float32")
    return out


def default_learning_rate(hidden_dim):
    """The peak learning rate :func:`finetune` uses when none is given, by model width: 5e-4 for the
    narrow students; 1e-4 from 192-d (on the Rotten Tomatoes split a 6×192 student stayed at chance at
    5e-4, with or without task KD, and reached 65.6 % at 1e-4); 5e-5, the BERT paper's range, from
    384-d (the 6×384 demo teacher diverged at 5e-4 and reached 82.1 % at 5e-5)."""
    return 5e-5 if hidden_dim >= 384 else 1e-4 if hidden_dim >= 192 else 5e-4


def finetune(model_dir, train_csv, eval_csv, out_dir, *, text_column="text", label_column="label",
             epochs=3, batch_size=32, learning_rate=None, seq_len=64, dropout=0.1,
             teacher_classifier=None, temperature=2.0, alpha=0.5, kd_loss="kl", seed=0,
             overwrite=False, log=print, early_exit=None):
    """Fine-tune ``model_dir`` (student preset, teacher checkpoint or HF folder) as a classifier.

    Returns the eval metrics; writes a keras-hub classifier preset plus
    ``labels.json`` and ``metrics.json`` to ``out_dir`` (atomically). With
    ``early_exit`` (an :class:`~mobile_bert_distill.downstream.early_exit.ExitTraining`),
    the fine-tuned model then gets self-distilled exits after every layer, saved
    beside the preset (metrics gain ``early_exit``: each exit's eval accuracy).
    """
    from mobile_bert_distill.atomic import locked_output

    with locked_output(out_dir, overwrite, "classifier folder"):
        return _locked_finetune(model_dir, train_csv, eval_csv, out_dir, text_column=text_column,
                                label_column=label_column, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, seq_len=seq_len, dropout=dropout,
                                teacher_classifier=teacher_classifier, temperature=temperature, alpha=alpha,
                                kd_loss=kd_loss, seed=seed, log=log, early_exit=early_exit)


def _locked_finetune(model_dir, train_csv, eval_csv, out_dir, *, text_column, label_column, epochs, batch_size,
                     learning_rate, seq_len, dropout, teacher_classifier, temperature, alpha, kd_loss, seed, log,
                     early_exit=None):
    import keras

    from mobile_bert_distill.distill.backends.tensorflow_backend import adamw_class

    _check_model_dir(model_dir, "model")
    tr_texts, tr_labels = read_labelled_csv(train_csv, text_column, label_column, log=log)
    ev_texts, ev_labels = read_labelled_csv(eval_csv, text_column, label_column, log=log)
    classes = label_mapping(tr_labels)
    y_train = encode_labels(tr_labels, classes, train_csv)
    y_eval = encode_labels(ev_labels, classes, eval_csv)
    K = len(classes)

    keras.utils.set_random_seed(seed)
    teacher_logits = None
    if teacher_classifier:
        teacher, t_classes = load_classifier(teacher_classifier)
        if list(t_classes) != list(classes):
            raise UserError(f"teacher classifier classes {t_classes} differ from the data's {classes}")
        log(f"computing the teacher's soft targets on {len(tr_texts)} training texts")
        teacher_logits = predict_logits(teacher, tr_texts)
        del teacher

    clf = load_preset(model_dir, "classifier", "model", num_classes=K,
                      preprocessor=classifier_preprocessor(model_dir, seq_len), dropout=dropout)
    if learning_rate is None:
        learning_rate = default_learning_rate(int(clf.backbone.hidden_dim))
        log(f"learning rate {learning_rate:g} (the default for a {clf.backbone.hidden_dim}-d model)")
    schedule = warmup_cosine(learning_rate, epochs * -(-len(tr_texts) // batch_size))
    if teacher_logits is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        y_fit = y_train
    else:
        loss = SoftTargetKD(K, alpha=alpha, temperature=temperature, kind=kd_loss)
        y_fit = np.concatenate([y_train[:, None].astype("float32"), teacher_logits], axis=1)
    # keras-hub's default metrics (sparse accuracy) cannot read the packed KD targets.
    clf.compile(optimizer=adamw_class()(schedule, weight_decay=0.01), loss=loss,
                metrics=[] if teacher_logits is not None else "auto")
    import tensorflow as tf

    # keras-hub turns lists into an unshuffled dataset: shuffle (every epoch) here.
    ds = (tf.data.Dataset.from_tensor_slices((list(tr_texts), y_fit))
          .shuffle(len(tr_texts), seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    clf.fit(ds, epochs=epochs, verbose=2, shuffle=False)
    pred = predict_logits(clf, ev_texts).argmax(-1)
    acc, f1 = accuracy_and_macro_f1(y_eval, pred, K)
    metrics = {"accuracy": acc, "macro_f1": f1, "eval_examples": len(ev_texts), "train_examples": len(tr_texts),
               "classes": classes, "learning_rate": learning_rate, "epochs": epochs,
               "kd": None if teacher_logits is None else
               {"teacher": teacher_classifier, "loss": kd_loss, "alpha": alpha, "temperature": temperature}}
    if early_exit is not None:  # backbone and main head frozen: only the exits train
        exits, metrics["early_exit"] = early_exit.fit(clf, tr_texts, ev_texts, y_eval, seed=seed, log=log)
    save_classifier(clf, out_dir, classes, metrics, text_column=text_column, label_column=label_column,
                    exits=exits if early_exit is not None else None)
    log(f"eval accuracy {acc:.4f}, macro-F1 {f1:.4f} on {len(ev_texts)} examples; wrote {out_dir}")
    return metrics


def add_exits(classifier_dir, train_csv, eval_csv, out_dir, *, early_exit, text_column=None, label_column=None,
              seed=0, overwrite=False, log=print):
    """Train early exits for a classifier that is already fine-tuned; returns the metrics.

    FastBERT's second step alone: the classifier folder ``classifier_dir`` (what
    ``mbd finetune`` or ``mbd theseus`` wrote) keeps its weights, and ``early_exit``
    (an :class:`~mobile_bert_distill.downstream.early_exit.ExitTraining`) trains its
    exits on the texts of ``train_csv`` (labels unused) and scores them on ``eval_csv``.
    ``out_dir`` gets the classifier with its new exits (any old ones are replaced) and
    its metrics plus ``early_exit``. The CSV columns default to the classifier's own.
    """
    from mobile_bert_distill.atomic import locked_output

    if os.path.abspath(out_dir) == os.path.abspath(classifier_dir):
        raise UserError(f"the output folder {out_dir} is the classifier itself: write the classifier with "
                        "exits to another folder")
    from mobile_bert_distill.export import read_classifier_labels

    _, columns = read_classifier_labels(classifier_dir)
    text_column, label_column = text_column or columns["text_column"], label_column or columns["label_column"]
    clf, classes = load_classifier(classifier_dir)
    with locked_output(out_dir, overwrite, "classifier folder"):
        tr_texts, _ = read_labelled_csv(train_csv, text_column, label_column, log=log)
        ev_texts, ev_labels = read_labelled_csv(eval_csv, text_column, label_column, log=log)
        y_eval = encode_labels(ev_labels, classes, eval_csv)
        metrics_path = os.path.join(classifier_dir, "metrics.json")
        metrics = {}
        if os.path.isfile(metrics_path):
            with open(metrics_path, encoding="utf-8") as f:
                metrics = json.load(f)
        exits, metrics["early_exit"] = early_exit.fit(clf, tr_texts, ev_texts, y_eval, seed=seed, log=log)
        metrics["early_exit"]["added_to"] = os.path.abspath(classifier_dir)
        save_classifier(clf, out_dir, classes, metrics, text_column=text_column, label_column=label_column,
                        exits=exits)
    log(f"eval accuracy per exit {', '.join(f'{a:.4f}' for a in metrics['early_exit']['exit_accuracy'])}; "
        f"wrote {out_dir}")
    return metrics


def save_classifier(classifier, out_dir, classes, metrics, *, text_column, label_column, exits=None):
    """Write a classifier folder (what ``mbd finetune`` and ``mbd theseus`` write), atomically: a
    keras-hub preset with ``labels.json`` (class names in output order, the CSV columns) and
    ``metrics.json``, plus the early-exit heads ``exits`` when given."""
    import keras

    from mobile_bert_distill.atomic import atomic_dir, atomic_write_json

    classifier.trainable = True  # the preset must not carry a run's frozen layers
    classifier.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with atomic_dir(out_dir, overwrite=True) as tmp:
        os.rmdir(tmp)
        classifier.save_to_preset(tmp)
        atomic_write_json(os.path.join(tmp, LABELS_FILE), {"classes": list(classes), "text_column": text_column,
                                                           "label_column": label_column})
        atomic_write_json(os.path.join(tmp, "metrics.json"), metrics)
        if exits is not None:
            exits.save(tmp)
