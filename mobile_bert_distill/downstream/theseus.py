"""BERT-of-Theseus (Xu et al. 2020): compress a fine-tuned BERT classifier to ``K`` layers by module replacing.

The predecessor is a classifier written by ``mbd finetune``. Its ``n``
layers are split into ``K`` modules of ``n / K`` consecutive layers, and each
module gets a one-layer successor, initialised as in the paper's released
code from the predecessor's first ``K`` layers (successor ``i`` starts as a
copy of layer ``i``). Two phases, both with the task's cross-entropy alone:

1. **Compression.** For every batch, each module is replaced by its successor
   with probability ``p_t = min(1, θ·t + b)`` (one draw per module per batch;
   :mod:`~mobile_bert_distill.downstream.module_replacing`). By default ``θ``
   makes ``p`` reach 1 as the phase ends.
2. **Successor fine-tuning.** The ``K`` successor layers alone, with the
   embeddings and the head, for a few more epochs, so that successors trained
   among predecessor modules learn to work with each other.

What trains: the successor layers only, in both phases. The predecessor's
layers are frozen, so each successor learns to imitate its module inside an
unchanged network (the gradient reaches it only through the task loss, as in
the paper). The embeddings, the pooler and the output layer are the
predecessor's, shared by both models (the successor classifier holds copies)
and frozen as in the paper: they were already fine-tuned for the task, and a
successor trained against a moving head would not stand in for its module.

The result is a plain ``K``-layer keras-hub ``BertTextClassifier`` preset with
``labels.json`` and ``metrics.json``: ``mbd export --task classifier`` and
``mbd predict`` read it as they read ``mbd finetune``'s.

Example (``teacher_clf/`` from ``mbd finetune``, a 6-layer teacher):
>>> theseus("teacher_clf", "train.csv", "eval.csv", "clf3", layers=3)  # doctest: +SKIP
{'accuracy': ..., 'macro_f1': ..., ...}
"""

import numpy as np

from mobile_bert_distill.downstream.finetune import (accuracy_and_macro_f1, classifier_preprocessor, encode_labels,
                                                     label_mapping, load_classifier, predict_logits,
                                                     preset_backbone_class, read_labelled_csv, save_classifier,
                                                     warmup_cosine)
from mobile_bert_distill.errors import UserError

SUCCESSOR_INIT = "predecessor layers 0..K-1 (successor i copies layer i)"


def check_depth(num_layers, layers):
    """Refuse a successor depth ``layers`` that does not split ``num_layers`` into modules of >= 2 layers."""
    if layers < 1 or layers >= num_layers or num_layers % layers:
        raise UserError(f"the successor depth must divide the teacher's {num_layers} layers and be smaller "
                        f"(1 <= K < {num_layers}, {num_layers} % K == 0; got K = {layers})")


def predecessor_modules(classifier, layers):
    """The predecessor's transformer layers in ``layers`` modules of consecutive layers."""
    stack = list(classifier.backbone.transformer_layers)
    size = len(stack) // layers
    return [stack[i * size:(i + 1) * size] for i in range(layers)]


def successor_classifier(predecessor, layers, preprocessor):
    """A ``layers``-deep ``BertTextClassifier`` shaped like ``predecessor`` (a ``BertTextClassifier``).

    Its embeddings, pooler and output layer are copies of the predecessor's;
    successor layer ``i`` is a copy of predecessor layer ``i`` (:data:`SUCCESSOR_INIT`).
    """
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_config({**predecessor.backbone.get_config(), "num_layers": layers})
    successor = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=predecessor.output_dense.units, preprocessor=preprocessor,
        activation=predecessor.activation, dropout=predecessor.dropout)
    pairs = list(zip(shared_layers(successor), shared_layers(predecessor)))
    pairs += list(zip(backbone.transformer_layers, predecessor.backbone.transformer_layers))
    for mine, theirs in pairs:
        mine.set_weights(theirs.get_weights())
    return successor


def shared_layers(classifier):
    """The layers predecessor and successor share: the embeddings, the pooler and the output layer."""
    b = classifier.backbone
    return [b.token_embedding, b.position_embedding, b.segment_embedding, b.embeddings_layer_norm,
            b.pooled_dense, classifier.output_dense]


def tokenize(preprocessor, texts):
    """Preprocessed model inputs (``token_ids``, ``segment_ids``, ``padding_mask``) as arrays."""
    return {name: np.asarray(value) for name, value in preprocessor(list(texts)).items()}


def theseus(teacher_classifier, train_csv, eval_csv, out_dir, *, layers, text_column="text", label_column="label",
            compress_epochs=3, finetune_epochs=2, start_rate=0.3, slope=None, batch_size=32, learning_rate=1e-4,
            seq_len=64, seed=0, overwrite=False, log=print):
    """Compress the fine-tuned BERT classifier ``teacher_classifier`` to ``layers`` layers; write it to ``out_dir``.

    Args:
        teacher_classifier: the predecessor, a ``BertTextClassifier`` folder written by ``mbd finetune``.
        train_csv, eval_csv: labelled CSVs; their classes must be the teacher's.
        out_dir: the output classifier folder (written atomically).
        layers: ``K``, the successor's depth; it divides the teacher's depth ``n`` and ``K < n``.
        compress_epochs: epochs of the compression phase (module replacing).
        finetune_epochs: epochs of successor fine-tuning afterwards (0 skips it).
        start_rate: ``b``, the replacement rate at the first step, in [0, 1].
        slope: ``θ``, its growth per step; ``None`` reaches 1 at the end of the compression phase.
        batch_size, learning_rate, seq_len, seed: as in :func:`~mobile_bert_distill.downstream.finetune.finetune`
            (each phase has its own warm-up + cosine schedule to ``learning_rate``).
        overwrite: replace an existing ``out_dir``.
        log: where progress lines go.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from mobile_bert_distill.atomic import locked_output
    from mobile_bert_distill.downstream.module_replacing import ReplacementSchedule

    if layers < 1:
        raise UserError(f"the successor depth must be at least 1 (got {layers})")
    if compress_epochs < 1 or finetune_epochs < 0:
        raise UserError(f"need at least 1 compression epoch and 0 or more fine-tuning epochs (got "
                        f"{compress_epochs} and {finetune_epochs})")
    ReplacementSchedule(start_rate, 0.0 if slope is None else slope)  # checks both before anything is read
    with locked_output(out_dir, overwrite, "classifier folder"):
        return _locked_theseus(teacher_classifier, train_csv, eval_csv, out_dir, layers=layers,
                               text_column=text_column, label_column=label_column, compress_epochs=compress_epochs,
                               finetune_epochs=finetune_epochs, start_rate=start_rate, slope=slope,
                               batch_size=batch_size, learning_rate=learning_rate, seq_len=seq_len, seed=seed, log=log)


def _locked_theseus(teacher_dir, train_csv, eval_csv, out_dir, *, layers, text_column, label_column, compress_epochs,
                    finetune_epochs, start_rate, slope, batch_size, learning_rate, seq_len, seed, log):
    import keras

    from mobile_bert_distill.downstream.module_replacing import ReplacementSchedule

    tr_texts, tr_labels = read_labelled_csv(train_csv, text_column, label_column, log=log)
    ev_texts, ev_labels = read_labelled_csv(eval_csv, text_column, label_column, log=log)
    if preset_backbone_class(teacher_dir) == "AlbertBackbone":
        raise UserError(f"{teacher_dir} is an ALBERT-style classifier (its layers may be one layer shared across "
                        "depth): module replacing needs a BERT classifier, with weights of its own at every layer")
    teacher, classes = load_classifier(teacher_dir)
    check_depth(teacher.backbone.num_layers, layers)
    if label_mapping(tr_labels) != list(classes):
        raise UserError(f"{train_csv}: classes {label_mapping(tr_labels)} differ from the teacher "
                        f"classifier's {list(classes)}")
    y_train = encode_labels(tr_labels, classes, train_csv)
    y_eval = encode_labels(ev_labels, classes, eval_csv)

    keras.utils.set_random_seed(seed)
    t_acc, t_f1 = accuracy_and_macro_f1(y_eval, predict_logits(teacher, ev_texts).argmax(-1), len(classes))
    log(f"teacher ({teacher.backbone.num_layers} layers): eval accuracy {t_acc:.4f}, macro-F1 {t_f1:.4f}")
    preprocessor = classifier_preprocessor(teacher_dir, seq_len)
    x_train = tokenize(preprocessor, tr_texts)
    successor = successor_classifier(teacher, layers, preprocessor)

    steps_per_epoch = -(-len(tr_texts) // batch_size)
    compress_steps = compress_epochs * steps_per_epoch
    schedule = (ReplacementSchedule.reaching_one_at(start_rate, compress_steps) if slope is None
                else ReplacementSchedule(start_rate, slope))
    log(f"compression: {teacher.backbone.num_layers} layers in {layers} modules, {compress_steps} steps, "
        f"p_t = min(1, {schedule.slope:.3g}·t + {schedule.start_rate:g})")
    compress(teacher, successor, layers, x_train, y_train, schedule, epochs=compress_epochs, batch_size=batch_size,
             learning_rate=learning_rate, seed=seed, log=log)
    if finetune_epochs:
        log(f"successor fine-tuning: {layers} layers, {finetune_epochs * steps_per_epoch} steps")
        finetune_successor(successor, x_train, y_train, epochs=finetune_epochs, batch_size=batch_size,
                           learning_rate=learning_rate, seed=seed)

    acc, f1 = accuracy_and_macro_f1(y_eval, predict_logits(successor, ev_texts).argmax(-1), len(classes))
    metrics = {
        "accuracy": acc, "macro_f1": f1, "eval_examples": len(ev_texts), "train_examples": len(tr_texts),
        "classes": list(classes),
        "teacher": {"classifier": teacher_dir, "num_layers": teacher.backbone.num_layers, "accuracy": t_acc,
                    "macro_f1": t_f1},
        "theseus": {"layers": layers, "module_size": teacher.backbone.num_layers // layers,
                    "successor_init": SUCCESSOR_INIT,
                    "trained": "successor layers (embeddings, pooler and output layer frozen, shared)",
                    "schedule": {**schedule.as_dict(), "compress_steps": compress_steps,
                                 "rate_at_last_step": schedule(compress_steps - 1)},
                    "compress_epochs": compress_epochs, "finetune_epochs": finetune_epochs,
                    "learning_rate": learning_rate, "batch_size": batch_size, "seq_len": seq_len, "seed": seed},
    }
    save_classifier(successor, out_dir, classes, metrics, text_column=text_column, label_column=label_column)
    log(f"eval accuracy {acc:.4f}, macro-F1 {f1:.4f} on {len(ev_texts)} examples "
        f"(teacher {t_acc:.4f}, {t_f1:.4f}); wrote {out_dir}")
    return metrics


def shuffled_batches(x, y, batch_size, seed):
    """``(inputs, label)`` batches, reshuffled every epoch (keras-hub's ``fit`` would not shuffle arrays)."""
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size))


def _optimizer(learning_rate, steps):
    from mobile_bert_distill.distill.backends.tensorflow_backend import adamw_class

    return adamw_class()(warmup_cosine(learning_rate, steps), weight_decay=0.01)


def _train_successor_layers_only(successor, predecessor=None):
    """Freeze everything but the successor's transformer layers (see the module docstring)."""
    if predecessor is not None:
        predecessor.trainable = False
    successor.trainable = True
    for layer in shared_layers(successor):
        layer.trainable = False


def compress(predecessor, successor, layers, x, y, schedule, *, epochs, batch_size, learning_rate, seed, log=print):
    """Phase 1: train the successor layers inside the mixed model while ``schedule`` raises the replacement rate."""
    import keras

    from mobile_bert_distill.downstream.module_replacing import ReplacementCurriculum, TheseusClassifier

    _train_successor_layers_only(successor, predecessor)
    mixed = TheseusClassifier(successor, predecessor_modules(predecessor, layers), replace_rate=schedule(0),
                              seed=seed)
    mixed.compile(optimizer=_optimizer(learning_rate, epochs * -(-len(y) // batch_size)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    mixed.fit(shuffled_batches(x, y, batch_size, seed), epochs=epochs, verbose=2, shuffle=False,
              callbacks=[ReplacementCurriculum(schedule, mixed.encoder, log=log)])
    return mixed


def finetune_successor(successor, x, y, *, epochs, batch_size, learning_rate, seed):
    """Phase 2: train the successor's layers alone (with the shared, frozen embeddings and head)."""
    import keras

    _train_successor_layers_only(successor)
    preprocessor, successor.preprocessor = successor.preprocessor, None  # ``x`` is preprocessed already
    try:
        successor.compile(optimizer=_optimizer(learning_rate, epochs * -(-len(y) // batch_size)),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        successor.fit(shuffled_batches(x, y, batch_size, seed), epochs=epochs, verbose=2, shuffle=False)
    finally:
        successor.preprocessor = preprocessor

