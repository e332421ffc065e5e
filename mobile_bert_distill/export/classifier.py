"""Fine-tuned classifiers (the text-classifier preset + ``labels.json`` that ``mbd finetune`` writes).

The classifier is a keras-hub ``BertTextClassifier``, or an ``AlbertTextClassifier``
for an ALBERT-style student (:data:`~mobile_bert_distill.architectures.CLASSIFIER_CLASSES`).

:func:`read_classifier_labels` / :func:`load_classifier_preset` read one,
:func:`check_classifier_model` checks an in-memory one can be exported, and
:func:`export_classifier` is the classifier half of
:func:`~mobile_bert_distill.export.student.export_student`.
"""

from __future__ import annotations

import contextlib
import json
import os

from mobile_bert_distill.architectures import CLASSIFIER_CLASSES
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export.conversion import export_keras_model
from mobile_bert_distill.export.presets import check_student_dir, find_preset_vocab, load_preset, preset_task_class
from mobile_bert_distill.export.sequences import read_calibration_text, text_sequences
from mobile_bert_distill.text.corpus import split_corpus

LABELS_FILE = "labels.json"  # the class names beside a classifier preset (`mbd finetune` writes it)
_CLASSES = " or ".join(CLASSIFIER_CLASSES)


def read_classifier_labels(preset_dir):
    """``(classes, labels_json)`` of a classifier preset; a :class:`UserError` unless it is one."""
    preset_dir = str(preset_dir)
    check_student_dir(preset_dir)
    task_class = preset_task_class(preset_dir)
    needs = f"a classifier export needs the folder `mbd finetune` writes (a {_CLASSES} preset with labels.json)"
    if task_class not in (None, *CLASSIFIER_CLASSES):
        raise UserError(f"{preset_dir} is a {task_class} preset, not a classifier: {needs}")
    path = os.path.join(preset_dir, LABELS_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{preset_dir} has no {LABELS_FILE}: {needs}")
    if task_class is None:
        raise UserError(f"{preset_dir} has no task.json: not a {_CLASSES} preset")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        classes = meta["classes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a labels file with a 'classes' list ({type(e).__name__})") from None
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) and c.strip() and "\n" not in c for c in classes)
            or len(set(classes)) != len(classes)):
        raise UserError(f"{path}: 'classes' must list at least 2 distinct, non-empty, one-line class names")
    return list(classes), meta


def load_classifier_preset(preset_dir):
    """Load a fine-tuned classifier; return ``(model, vocab_path, classes, labels_json)``."""
    preset_dir = str(preset_dir)
    classes, meta = read_classifier_labels(preset_dir)
    vocab_path = find_preset_vocab(preset_dir)
    model = load_preset(preset_dir, "classifier", "classifier")
    if int(model.num_classes) != len(classes):
        raise UserError(f"{os.path.join(preset_dir, LABELS_FILE)} lists {len(classes)} classes but the "
                        f"classifier has {model.num_classes} outputs")
    check_classifier_model(model)
    return model, vocab_path, classes, meta


def check_classifier_model(model, *, share_embedding=None, float_logits=None):
    """A :class:`UserError` unless ``model`` is an exportable keras-hub text classifier
    (:data:`~mobile_bert_distill.architectures.CLASSIFIER_CLASSES`) and no MLM-only int8 pass is asked for."""
    from mobile_bert_distill.architectures import model_kind
    from mobile_bert_distill.export.graph import classifier_activation

    if model_kind(model) != "classifier":
        raise UserError(f"task 'classifier' needs a keras-hub {_CLASSES}, not a {type(model).__name__}")
    try:
        classifier_activation(model)
    except ValueError as e:
        raise UserError(str(e)) from None
    for name, value in (("share_embedding", share_embedding), ("float_logits", float_logits)):
        if value:
            raise UserError(f"{name} is an MLM-only int8 pass (the tied embedding / logits projection); "
                            "it does not apply to task 'classifier'")


def classifier_sequences(tokenizer, seq_len, classes, meta, *, calibration_corpus, parity_csv, text_column,
                         label_column, num_calibration, num_parity, seed):
    """The calibration and parity inputs of a classifier export, from its files.

    Calibration: ``num_calibration`` texts of the corpus's calibration lines (9 in 10,
    :func:`~mobile_bert_distill.text.corpus.split_corpus`); parity: the rows of ``parity_csv``
    with their labels (columns default to those ``mbd finetune`` recorded in ``meta``), else the
    first ``num_parity`` held-out lines, else none (the caller draws random ids).

    Returns:
        ``(calibration, parity_feeds, parity_labels, parity_data)``: feeds dicts or ``None``,
        class indices or ``None``, and what the report records about the parity source.
    """
    lines = read_calibration_text(calibration_corpus) if calibration_corpus is not None else None
    csv_rows = None
    if parity_csv is not None:
        from mobile_bert_distill.downstream.finetune import encode_labels, read_labelled_csv

        text_column = text_column or meta.get("text_column") or "text"
        label_column = label_column or meta.get("label_column") or "label"
        texts, raw_labels = read_labelled_csv(parity_csv, text_column, label_column, log=None)
        csv_rows = (texts, encode_labels(raw_labels, classes, parity_csv))
    elif text_column is not None or label_column is not None:
        raise UserError("text and label columns need a parity CSV")
    calib = parity_feeds = parity_labels = None
    parity_data = {"source": "random_ids"}
    if lines is not None:
        calib_lines, heldout = split_corpus(lines)
        calib, _, _ = text_sequences(calib_lines, tokenizer, seq_len, num_calibration, seed=seed)
        if csv_rows is None:
            parity_feeds, _, cut = text_sequences(heldout[:num_parity], tokenizer, seq_len)
            parity_data = {"source": "held-out corpus lines", "path": os.path.abspath(calibration_corpus),
                           "truncated": cut}
    if csv_rows is not None:
        texts, y = csv_rows
        parity_feeds, kept, cut = text_sequences(texts, tokenizer, seq_len)
        parity_labels = y[kept]
        parity_data = {"source": "labelled csv", "path": os.path.abspath(parity_csv),
                       "text_column": text_column, "label_column": label_column, "truncated": cut}
    return calib, parity_feeds, parity_labels, parity_data


def read_finetune_metrics(folder):
    """The ``metrics.json`` ``mbd finetune`` wrote in ``folder``, or ``None`` (absent or unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(str(folder), "metrics.json"), encoding="utf-8") as f:
            return json.load(f)
    return None


def export_classifier(classifier_dir, out_path, *, quantization, seq_len, batch_size, calibration_corpus,
                       num_calibration, num_parity, max_size_mb, min_agreement, android_assets, seed,
                       parity_csv=None, text_column=None, label_column=None, early_exit=True, **kw):
    """The classifier half of :func:`~mobile_bert_distill.export.student.export_student`: write the model
    (and assets); return the report.

    Exports the classifier preset ``mbd finetune`` writes (a text classifier + ``labels.json``).

    The model outputs ``probabilities`` ``[batch, num_classes]`` (float32,
    softmax), in the order of ``labels.json``'s ``classes``. ``seq_len``
    defaults to the preset preprocessor's sequence length. Calibration (int8)
    uses one corpus line per sequence (9 lines in 10), tokenized with the
    classifier's own tokenizer. Parity against the float Keras classifier uses
    the rows of ``parity_csv`` when given (all of them, with accuracy of both
    models; columns default to those ``mbd finetune`` recorded in
    ``labels.json``), else the held-out corpus lines (every 10th, at most
    ``num_parity``), else ``num_parity`` random valid ids.
    ``android_assets`` also receives ``labels.txt``.

    A folder with early exits (``mbd finetune --early-exit``) exports as the staged
    model of :mod:`~mobile_bert_distill.export.staged` unless ``early_exit`` is false
    (then the plain full-depth classifier).
    """
    from mobile_bert_distill.downstream.bilstm import is_bilstm_folder
    from mobile_bert_distill.text.wordpiece import WordPiece

    if is_bilstm_folder(classifier_dir):  # `mbd finetune --arch bilstm`: its own graph (builtin LSTM ops)
        from mobile_bert_distill.export.bilstm import export_bilstm

        return export_bilstm(classifier_dir, out_path, quantization=quantization, seq_len=seq_len,
                             batch_size=batch_size, calibration_corpus=calibration_corpus,
                             num_calibration=num_calibration, num_parity=num_parity, max_size_mb=max_size_mb,
                             min_agreement=min_agreement, android_assets=android_assets, seed=seed,
                             parity_csv=parity_csv, text_column=text_column, label_column=label_column, **kw)
    classes, meta = read_classifier_labels(classifier_dir)
    heads = None
    if early_exit:
        from mobile_bert_distill.downstream.early_exit import ExitHeads, has_exits

        heads = ExitHeads.load(str(classifier_dir)) if has_exits(str(classifier_dir)) else None
    if quantization == "int8" and calibration_corpus is None:
        raise UserError("int8 needs a calibration corpus (a text file): it calibrates on real sentences")
    model, vocab_path, classes, meta = load_classifier_preset(classifier_dir)
    tok_cfg = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    lowercase = bool(getattr(tok_cfg, "lowercase", True))
    accents = bool(getattr(tok_cfg, "strip_accents", lowercase))
    if seq_len is None:
        seq_len = int(getattr(model.preprocessor, "sequence_length", None) or 128)
    tokenizer = WordPiece(vocab_path, lowercase=lowercase, strip_accents=accents)
    vocab_size = int(model.backbone.vocabulary_size)
    if len(tokenizer) != vocab_size:
        raise UserError(f"vocabulary has {len(tokenizer)} tokens but the model has {vocab_size} embedding rows")
    calib, parity_feeds, parity_labels, parity_data = classifier_sequences(
        tokenizer, seq_len, classes, meta, calibration_corpus=calibration_corpus, parity_csv=parity_csv,
        text_column=text_column, label_column=label_column, num_calibration=num_calibration,
        num_parity=num_parity, seed=seed)
    import functools

    if heads is not None:  # a signature per layer, each with its exit
        from mobile_bert_distill.export.staged import export_staged

        export = functools.partial(export_staged, heads=heads)
    else:
        export = functools.partial(export_keras_model, write_report=False)
    report = export(
        model, out_path, task="classifier", quantization=quantization, seq_len=seq_len,
        batch_size=batch_size, calibration_sequences=calib, parity_sequences=parity_feeds,
        parity_labels=parity_labels, num_calibration=num_calibration, num_parity=num_parity,
        max_size_mb=max_size_mb, min_agreement=min_agreement, seed=seed,
        extra_report={"student_dir": os.path.abspath(str(classifier_dir)),
                      "labels": classes, "lowercase": lowercase, "strip_accents": accents,
                      "calibration_corpus": os.path.abspath(calibration_corpus) if calibration_corpus else None,
                      "parity_data": parity_data,
                      "finetune_metrics": read_finetune_metrics(classifier_dir)},
        **kw,
    )
    if android_assets is not None:
        from mobile_bert_distill.export.android import write_android_assets

        report["android_assets"] = write_android_assets(android_assets, out_path, vocab_path, report,
                                                        labels=classes)
    return report
