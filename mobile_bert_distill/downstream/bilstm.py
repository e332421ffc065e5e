"""A BiLSTM student distilled from a fine-tuned classifier (Tang et al. 2019).

"Distilling Task-Specific Knowledge from BERT into Simple Neural Networks":
a single-layer BiLSTM learns to reproduce the teacher classifier's *logits*,

``L = (1/N) Σ_n (1/K) Σ_k (z_S[n,k] − z_T[n,k])²``  (:func:`logit_mse`; the
paper writes the squared L2 norm, ``K`` times this),

on the training texts and on augmented copies of them
(:mod:`~mobile_bert_distill.downstream.bilstm_augment`: masking and n-gram
sampling; the paper's POS-guided replacement is left out, it needs a
part-of-speech tagger). The teacher labels every text through its own
tokenizer (it reads ``[MASK]`` as its mask token); the labels of the CSV are
used only to name the classes and to measure the student on the eval set.

The model (:func:`build_bilstm`) reads the *student preset's* WordPiece ids:
token embedding -> BiLSTM (the last state of the forward pass and of the
backward pass, concatenated) -> ReLU dense -> logits. ``[PAD]`` (id 0) is masked,
so padded positions do not count. The embedding starts as the student's token
embedding table (same vocabulary; its width is the student's embedding width)
and is fine-tuned with the rest.

The output folder (:func:`distill_bilstm`) holds ``model.keras`` (stock Keras
layers only), ``vocab.txt``, ``bilstm.json`` (shapes, tokenizer flags),
``labels.json`` (as ``mbd finetune`` writes it) and ``metrics.json``;
:func:`load_bilstm_classifier` reads it, and ``mbd export --task classifier``
turns it into a LiteRT model (:mod:`mobile_bert_distill.export.bilstm`).

Example:
>>> import numpy as np
>>> t = np.array([[2.0, -1.0]], "float32"); s = np.array([[1.0, 1.0]], "float32")
>>> float(logit_mse(t, s)[0])  # ((1 - 2)^2 + (1 + 1)^2) / 2
2.5
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.text.rows import KIT_SPECIAL_IDS, pack_rows

BILSTM_FILE = "bilstm.json"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.txt"
FORMAT = "mobile-bert-distill bilstm classifier v1"
#: The paper's sizes for single-sentence tasks: LSTM units per direction and the ReLU layer's width.
DEFAULT_LSTM_UNITS = 150
DEFAULT_LEARNING_RATE = 5e-4  # Adam's peak for the BiLSTM student
DEFAULT_EPOCHS = 3  # passes over the augmented set (about 18 copies of each training text)
DEFAULT_DENSE_UNITS = 200
PAD_ID = KIT_SPECIAL_IDS["[PAD]"]
_SPECIALS = ("[MASK]",)  # kept as one token when it appears in a text (the masking rule writes it)


# ------------------------------------------------------------------ the loss
def logit_mse(teacher_logits, student_logits):
    """Mean over classes of ``(z_S − z_T)²`` per example, a Keras loss (Keras averages over the batch)."""
    from keras import ops

    z_t = ops.cast(teacher_logits, "float32")
    z_s = ops.cast(student_logits, "float32")
    return ops.mean(ops.square(z_s - z_t), axis=-1)


# ------------------------------------------------------------------ the model
def build_bilstm(vocabulary_size, num_classes, *, embedding_dim, lstm_units=DEFAULT_LSTM_UNITS,
                 dense_units=DEFAULT_DENSE_UNITS, embedding=None):
    """The BiLSTM classifier: ``token_ids [N, S]`` (int32, ``[PAD]`` = 0) -> logits ``[N, K]``.

    Args:
        vocabulary_size, embedding_dim: the token embedding's shape.
        num_classes: ``K``.
        lstm_units: LSTM width per direction (the concatenated state is ``2 * lstm_units``).
        dense_units: the ReLU layer's width.
        embedding: optional ``[vocabulary_size, embedding_dim]`` initial table.

    Example:
    >>> m = build_bilstm(20, 2, embedding_dim=4, lstm_units=3, dense_units=5)
    >>> m(np.array([[2, 7, 3, 0]], "int32")).shape
    TensorShape([1, 2])
    """
    import keras

    layers = keras.layers
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name="token_embedding")(token_ids)
    h = layers.Bidirectional(layers.LSTM(lstm_units), merge_mode="concat", name="bilstm")(x)
    h = layers.Dense(dense_units, activation="relu", name="hidden")(h)
    logits = layers.Dense(num_classes, name="logits")(h)
    model = keras.Model(token_ids, logits, name="bilstm_classifier")
    if embedding is not None:
        model.get_layer("token_embedding").set_weights([np.asarray(embedding, "float32")])
    return model


# ------------------------------------------------------------------ text in
def read_preset_tokenizer(model_dir):
    """``(vocab_path, lowercase, strip_accents)`` of a keras-hub preset's WordPiece tokenizer."""
    from mobile_bert_distill.export.presets import find_preset_vocab

    vocab_path = find_preset_vocab(model_dir)
    config = {}
    path = os.path.join(model_dir, "tokenizer.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f).get("config", {})
        except (OSError, ValueError, AttributeError) as e:
            raise UserError(f"{path} is not a keras-hub tokenizer config ({type(e).__name__})") from None
    lowercase = bool(config.get("lowercase", True))
    return vocab_path, lowercase, bool(config.get("strip_accents", lowercase))


def student_vocabulary(model_dir):
    """The student preset's WordPiece tokenizer, vocabulary file and token embedding table.

    Returns ``(tokenizer, vocab_path, table)``: a
    :class:`~mobile_bert_distill.text.wordpiece.WordPiece` with the preset's
    case and accent rules, and the ``[V, E]`` embedding the BiLSTM starts from
    (``E`` is the student's embedding width).
    """
    import keras_hub

    from mobile_bert_distill.text.wordpiece import WordPiece

    if not os.path.isfile(os.path.join(str(model_dir), "config.json")):
        raise UserError(f"{model_dir} is not a keras-hub preset (no config.json): the BiLSTM reads the "
                        "student preset's vocabulary and token embedding")
    vocab_path, lowercase, accents = read_preset_tokenizer(model_dir)
    tokenizer = WordPiece(vocab_path, lowercase=lowercase, strip_accents=accents)
    if tokenizer.token_to_id.get("[PAD]") != PAD_ID or "[MASK]" not in tokenizer.token_to_id:
        raise UserError(f"{vocab_path}: the BiLSTM needs [PAD] at id {PAD_ID} and a [MASK] token")
    backbone = keras_hub.models.Backbone.from_preset(str(model_dir))
    table = np.asarray(backbone.token_embedding.embeddings, "float32")
    if table.shape[0] != len(tokenizer):
        raise UserError(f"{vocab_path} has {len(tokenizer)} tokens but {model_dir} has {table.shape[0]} "
                        "token embedding rows")
    return tokenizer, vocab_path, table


def encode_texts(texts, tokenizer, seq_len, *, keep_masks=False, progress=False):
    """``[CLS] pieces [SEP] [PAD]..`` ids ``[N, seq_len]`` (int32) of ``texts``, as the LiteRT model is fed.

    ``keep_masks`` reads a literal ``[MASK]`` as the mask token (the augmented
    texts); without it, it is plain text, as ``LiteRTModel.classify`` reads it.
    Returns ``(ids, truncated)``: the ids and how many texts were cut to fit.
    """
    cls_id, sep_id = tokenizer.special_id("[CLS]"), tokenizer.special_id("[SEP]")
    rows = texts
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(texts, desc="tokenizing", unit="text", leave=False)
    bodies, truncated = [], 0
    for t in rows:
        body = tokenizer.encode(t, specials=_SPECIALS if keep_masks else ())
        truncated += len(body) > seq_len - 2
        bodies.append(body[: seq_len - 2])
    return pack_rows(bodies, seq_len, cls_id, sep_id)["input_ids"], int(truncated)


def teacher_logits(teacher, texts, *, chunk=4096, progress=False):
    """The teacher classifier's logits ``[N, K]`` on raw ``texts``, through its own preprocessor.

    Its tokenizer is told to read the literal ``[MASK]`` the masking rule writes as its mask token.
    """
    from mobile_bert_distill.downstream.finetune import predict_logits

    teacher.preprocessor.tokenizer.special_tokens_in_strings = True
    texts = list(texts)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="teacher logits", unit="text", leave=False)
    out = []
    for start in range(0, len(texts), chunk):
        out.append(predict_logits(teacher, texts[start:start + chunk]))
        if bar is not None:
            bar.update(len(out[-1]))
    if bar is not None:
        bar.close()
    return np.concatenate(out)


def _batches(ids, targets, batch_size, seed):
    """A shuffled ``tf.data`` pipeline of ``(ids, targets)`` batches cut to their longest row."""
    import tensorflow as tf

    def trim(x, y):
        width = tf.reduce_max(tf.reduce_sum(tf.cast(tf.not_equal(x, PAD_ID), tf.int32), axis=1))
        return x[:, :width], y

    return (tf.data.Dataset.from_tensor_slices((ids, targets))
            .shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size).map(trim).prefetch(2))


def predict_bilstm(model, ids, batch_size=256):
    """Logits ``[N, K]`` (float32) of the BiLSTM on ``ids`` ``[N, S]``."""
    return np.asarray(model.predict(ids, batch_size=batch_size, verbose=0), "float32")


# ------------------------------------------------------------------ training
def distill_bilstm(model_dir, train_csv, eval_csv, out_dir, *, teacher_classifier=None, text_column="text",
                   label_column="label", epochs=None, batch_size=32, learning_rate=None, seq_len=64,
                   lstm_units=DEFAULT_LSTM_UNITS, dense_units=DEFAULT_DENSE_UNITS, augmentation=None, seed=0,
                   overwrite=False, log=print, progress=True):
    """Distil ``teacher_classifier`` into a BiLSTM over the vocabulary of ``model_dir``; what
    ``mbd finetune --arch bilstm`` runs.

    Args:
        model_dir: the student preset (its WordPiece vocabulary and token embedding table).
        train_csv, eval_csv: labelled CSVs (the teacher's classes; eval accuracy and macro-F1).
        out_dir: the output folder (written atomically; an existing one needs ``overwrite``).
        teacher_classifier: the folder ``mbd finetune`` wrote for the teacher.
        epochs, batch_size, learning_rate: Adam over the augmented set (defaults:
            :data:`DEFAULT_EPOCHS`, :data:`DEFAULT_LEARNING_RATE`).
        seq_len: tokens per text, ``[CLS]``/``[SEP]`` included.
        lstm_units, dense_units: see :func:`build_bilstm`.
        augmentation: an :class:`~mobile_bert_distill.downstream.bilstm_augment.Augmentation`
            (default: the paper's rates).
        progress: progress bars on the long loops.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from mobile_bert_distill.atomic import locked_output

    if not teacher_classifier:
        raise UserError("a BiLSTM student learns the logits of a teacher classifier; none was given",
                        option="teacher_classifier", purpose="with the folder `mbd finetune` wrote for the teacher")
    if seq_len < 3:
        raise UserError(f"the sequence length must be at least 3 ([CLS], a token, [SEP]), got {seq_len}")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE
    if epochs is None:
        epochs = DEFAULT_EPOCHS
    with locked_output(out_dir, overwrite, "classifier folder"):
        return _locked_distill(model_dir, train_csv, eval_csv, out_dir, teacher_classifier=teacher_classifier,
                               text_column=text_column, label_column=label_column, epochs=epochs,
                               batch_size=batch_size, learning_rate=learning_rate, seq_len=seq_len,
                               lstm_units=lstm_units, dense_units=dense_units, augmentation=augmentation,
                               seed=seed, log=log, progress=progress)


def _locked_distill(model_dir, train_csv, eval_csv, out_dir, *, teacher_classifier, text_column, label_column,
                    epochs, batch_size, learning_rate, seq_len, lstm_units, dense_units, augmentation, seed, log,
                    progress):
    import keras

    from mobile_bert_distill.atomic import atomic_dir, atomic_write_json
    from mobile_bert_distill.downstream.bilstm_augment import Augmentation, augment_texts
    from mobile_bert_distill.downstream.finetune import (
        accuracy_and_macro_f1, encode_labels, label_mapping, load_classifier, read_labelled_csv)
    from mobile_bert_distill.export import LABELS_FILE

    augmentation = augmentation or Augmentation()
    tokenizer, vocab_path, table = student_vocabulary(model_dir)
    tr_texts, tr_labels = read_labelled_csv(train_csv, text_column, label_column, log=log)
    ev_texts, ev_labels = read_labelled_csv(eval_csv, text_column, label_column, log=log)
    classes = label_mapping(tr_labels)
    y_eval = encode_labels(ev_labels, classes, eval_csv)
    K = len(classes)
    teacher, t_classes = load_classifier(teacher_classifier)
    if list(t_classes) != list(classes):
        raise UserError(f"teacher classifier classes {t_classes} differ from the data's {classes}")

    timings = {}
    t0 = time.perf_counter()
    texts, _ = augment_texts(tr_texts, augmentation, seed=seed, progress=progress)
    log(f"{len(tr_texts)} training texts + {len(texts) - len(tr_texts)} augmented copies "
        f"(p_mask {augmentation.p_mask}, p_ng {augmentation.p_ng}, n_iter {augmentation.n_iter})")
    z_teacher = teacher_logits(teacher, texts, progress=progress)
    t_eval = teacher_logits(teacher, ev_texts).argmax(-1)
    del teacher
    timings["augment_and_teacher_s"] = round(time.perf_counter() - t0, 1)
    ids, truncated = encode_texts(texts, tokenizer, seq_len, keep_masks=True, progress=progress)
    ev_ids, _ = encode_texts(ev_texts, tokenizer, seq_len)

    t0 = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = build_bilstm(len(tokenizer), K, embedding_dim=table.shape[1], lstm_units=lstm_units,
                         dense_units=dense_units, embedding=table)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=logit_mse, jit_compile=False)
    model.fit(_batches(ids, z_teacher, batch_size, seed), epochs=epochs, verbose=2 if progress else 0, shuffle=False)
    timings["train_s"] = round(time.perf_counter() - t0, 1)

    pred = predict_bilstm(model, ev_ids).argmax(-1)
    acc, f1 = accuracy_and_macro_f1(y_eval, pred, K)
    t_acc, t_f1 = accuracy_and_macro_f1(y_eval, t_eval, K)
    shape = {"vocabulary_size": len(tokenizer), "num_classes": K, "embedding_dim": int(table.shape[1]),
             "lstm_units": int(lstm_units), "dense_units": int(dense_units)}
    metrics = {
        "accuracy": acc, "macro_f1": f1, "eval_examples": len(ev_texts), "train_examples": len(tr_texts),
        "classes": classes, "arch": "bilstm",
        "kd": {"teacher": teacher_classifier, "loss": "mse", "augmentation": augmentation.to_dict(),
               "augmented_examples": len(texts) - len(tr_texts), "trained_examples": len(texts),
               "truncated_texts": truncated, "teacher_accuracy": t_acc, "teacher_macro_f1": t_f1,
               "teacher_agreement": float((pred == t_eval).mean())},
        "model": dict(shape, params=int(model.count_params())),
        "training": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                     "optimizer": "adam", "seq_len": seq_len, "seed": seed, **timings},
    }
    info = {"format": FORMAT, "model_file": MODEL_FILE, "vocabulary_file": VOCAB_FILE, "sequence_length": seq_len,
            "lowercase": tokenizer.lowercase, "strip_accents": tokenizer.strip_accents, **shape,
            "embedding_init": f"the student's token embedding table ({os.path.abspath(str(model_dir))})"}
    with atomic_dir(out_dir, overwrite=True) as tmp:
        model.save(os.path.join(tmp, MODEL_FILE))
        shutil.copyfile(vocab_path, os.path.join(tmp, VOCAB_FILE))
        atomic_write_json(os.path.join(tmp, BILSTM_FILE), info)
        atomic_write_json(os.path.join(tmp, LABELS_FILE), {"classes": classes, "text_column": text_column,
                                                           "label_column": label_column})
        atomic_write_json(os.path.join(tmp, "metrics.json"), metrics)
    log(f"eval accuracy {acc:.4f}, macro-F1 {f1:.4f} on {len(ev_texts)} examples (teacher {t_acc:.4f}, "
        f"agreement {metrics['kd']['teacher_agreement']:.4f}); wrote {out_dir}")
    return metrics


# ------------------------------------------------------------------ reading the folder
def is_bilstm_folder(folder):
    """Whether ``folder`` is a BiLSTM classifier written by :func:`distill_bilstm`."""
    return os.path.isfile(os.path.join(str(folder), BILSTM_FILE))


def load_bilstm_classifier(folder):
    """Load a BiLSTM classifier folder: ``(model, info, classes, labels_json, vocab_path)``.

    ``info`` is ``bilstm.json`` (shapes, ``sequence_length``, ``lowercase``, ``strip_accents``).
    """
    import keras

    from mobile_bert_distill.export import LABELS_FILE
    from mobile_bert_distill.text.wordpiece import WordPiece

    folder = str(folder)
    try:
        with open(os.path.join(folder, BILSTM_FILE), encoding="utf-8") as f:
            info = json.load(f)
        with open(os.path.join(folder, LABELS_FILE), encoding="utf-8") as f:
            meta = json.load(f)
        classes = list(meta["classes"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{folder} is not a BiLSTM classifier folder ({type(e).__name__}: {e})") from None
    if info.get("format") != FORMAT:
        raise UserError(f"{os.path.join(folder, BILSTM_FILE)} is not a {FORMAT!r} file")
    vocab_path = os.path.join(folder, info["vocabulary_file"])
    try:
        model = keras.saving.load_model(os.path.join(folder, info["model_file"]), compile=False)
    except Exception as e:  # Keras raises many types for a broken file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the BiLSTM model of {folder}: {first}") from e
    rows, outputs = int(model.get_layer("token_embedding").input_dim), int(model.output.shape[-1])
    if len(WordPiece(vocab_path)) != rows:
        raise UserError(f"{vocab_path} does not match the model's {rows} embedding rows")
    if len(classes) != outputs or len(classes) < 2:
        raise UserError(f"{os.path.join(folder, LABELS_FILE)} lists {len(classes)} classes but the model "
                        f"has {outputs} outputs")
    return model, info, classes, meta, vocab_path
