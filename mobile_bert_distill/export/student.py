"""``export_student``: what ``mbd export`` runs, from a preset folder to the ``.tflite``, report and assets."""

from __future__ import annotations

import os

from mobile_bert_distill.architectures import CLASSIFIER_CLASSES
from mobile_bert_distill.atomic import atomic_write_json, locked_output, staged_files
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export.classifier import export_classifier
from mobile_bert_distill.export.conversion import export_keras_model, report_path
from mobile_bert_distill.export.mixed import check_mixed
from mobile_bert_distill.export.graph import TASKS
from mobile_bert_distill.export.presets import check_student_dir, load_student, preset_task_class
from mobile_bert_distill.export.recipes import MIN_SEQ_LEN, MIXED, MLM_QUANTIZATIONS
from mobile_bert_distill.export.sequences import corpus_sequences, read_calibration_text
from mobile_bert_distill.text.corpus import split_corpus


def export_student(student_dir, out_path, *, task="mlm", quantization="int8", seq_len=None,
                   batch_size=1, calibration_corpus=None, num_calibration=200, num_parity=200,
                   max_size_mb=None, min_agreement=None, android_assets=None, overwrite=False, seed=0,
                   parity_csv=None, text_column=None, label_column=None, early_exit=None, **kw):
    """Export the student preset at ``student_dir``; what ``mbd export`` runs.

    Calibration (int8) and parity sequences come from ``calibration_corpus``
    (a text file, one sentence or paragraph per line): every 10th line is
    held out for parity, the rest calibrates. Without a corpus, int8 refuses
    (random ids are not a calibration set) and parity uses random valid ids.
    ``seq_len`` defaults to 128 (a classifier: its preprocessor's length).
    ``android_assets`` (a directory) additionally receives ``model.tflite``,
    ``vocab.txt`` and ``model_info.json``. ``task="classifier"`` hands over
    to the classifier export (``student_dir`` is then the classifier
    folder ``mbd finetune`` writes); ``parity_csv``, ``text_column``,
    ``label_column`` and ``early_exit`` (false: a folder with early exits
    exports as the plain full-depth classifier) apply to it alone.

    The outputs (``out_path``, its report unless ``write_report=False``, and the
    Android asset files) appear together when everything succeeded, or not at all.
    An existing one is refused (:class:`~mobile_bert_distill.errors.OutputExists`)
    unless ``overwrite``; other files in ``android_assets`` are left alone.
    """
    from mobile_bert_distill.export.android import ASSET_FILES, CLASSIFIER_ASSET_FILES

    if quantization not in MLM_QUANTIZATIONS:
        raise UserError(f"quantization must be one of {', '.join(MLM_QUANTIZATIONS)}, not {quantization!r}")
    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    classifier_only = {"a parity CSV": parity_csv, "a text column": text_column, "a label column": label_column,
                       "the early-exit choice": early_exit}
    if task == "classifier":
        kw.update(parity_csv=parity_csv, text_column=text_column, label_column=label_column,
                  early_exit=early_exit is not False)
    else:
        given = [name for name, value in classifier_only.items() if value is not None]
        if given:
            raise UserError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} only to task "
                            f"classifier, not {task}")
        seq_len = 128 if seq_len is None else seq_len
    if seq_len is not None and seq_len < MIN_SEQ_LEN:
        raise UserError(f"the sequence length must be at least {MIN_SEQ_LEN}, not {seq_len}")
    check_mixed(quantization, task, kw.get("target_size_mb"), calibration_corpus)
    write_report = kw.pop("write_report", True)
    out_path = str(out_path)
    outputs = [out_path] + ([report_path(out_path)] if write_report else [])
    if android_assets is not None:
        if task == "encoder":
            raise UserError("Android assets need the task mlm (the demo fills masks) or classifier")
        names = CLASSIFIER_ASSET_FILES if task == "classifier" else ASSET_FILES
        outputs += [os.path.join(android_assets, name) for name in names]
    common = dict(quantization=quantization, seq_len=seq_len, batch_size=batch_size,
                  calibration_corpus=calibration_corpus, num_calibration=num_calibration, num_parity=num_parity,
                  max_size_mb=max_size_mb, min_agreement=min_agreement, seed=seed, **kw)
    with locked_output(out_path, overwrite, "export output"), staged_files(outputs, overwrite, "export output") as stage:
        assets = os.path.dirname(stage[outputs[-1]]) if android_assets is not None else None
        if task == "classifier":
            report = export_classifier(student_dir, stage[out_path], android_assets=assets, **common)
        else:
            report = _export_student_model(student_dir, stage[out_path], task=task, android_assets=assets, **common)
        if android_assets is not None:
            report["android_assets"]["folder"] = os.path.abspath(android_assets)
        if write_report:
            atomic_write_json(stage[report_path(out_path)], report)
    return report


def _export_student_model(student_dir, out_path, *, task, quantization, seq_len, batch_size, calibration_corpus,
                          num_calibration, num_parity, max_size_mb, min_agreement, android_assets, seed, **kw):
    """The mlm/encoder half of :func:`export_student`: write the model (and assets); return the report."""
    from mobile_bert_distill.downstream.bilstm import is_bilstm_folder

    if is_bilstm_folder(student_dir):
        raise UserError(f"{student_dir} is a BiLSTM classifier, which has no {task} output: export it as a "
                        "classifier")
    check_student_dir(student_dir)
    from mobile_bert_distill.distill.teacher import is_teacher_checkpoint

    if task == "mlm" and is_teacher_checkpoint(student_dir):  # its MLM heads are not a keras-hub masked LM
        raise UserError(f"{student_dir} is a teacher checkpoint (the teacher/ folder of a distillation), not a "
                        "student preset: export the student/ folder beside it")
    task_class = preset_task_class(student_dir)
    if task == "mlm" and task_class in CLASSIFIER_CLASSES:
        raise UserError(f"{student_dir} is a fine-tuned classifier ({task_class}), which has no MLM head: "
                        "export it as a classifier (or as an encoder)")
    if quantization == "int8" and calibration_corpus is None:
        raise UserError("int8 needs a calibration corpus (a text file): it calibrates on real sentences")
    from mobile_bert_distill.text.wordpiece import WordPiece

    lines = read_calibration_text(calibration_corpus) if calibration_corpus is not None else None
    model, vocab_path = load_student(student_dir)
    tokenizer = WordPiece(vocab_path)
    vocab_size = int(model.backbone.vocabulary_size)
    if len(tokenizer) != vocab_size:
        raise UserError(f"vocabulary has {len(tokenizer)} tokens but the model has {vocab_size} embedding rows")
    calib = calib_labels = parity_feeds = labels = None
    if lines is not None:
        calib_lines, heldout = split_corpus(lines)
        calib, calib_labels = corpus_sequences(calib_lines, tokenizer, seq_len, num_calibration, seed=seed)
        parity_feeds, labels = corpus_sequences(heldout, tokenizer, seq_len, num_parity, seed=seed + 1)
    if quantization == MIXED:
        kw["calibration_labels"] = calib_labels
    report = export_keras_model(
        model, out_path, task=task, quantization=quantization, seq_len=seq_len,
        batch_size=batch_size, calibration_sequences=calib, parity_sequences=parity_feeds,
        parity_labels=labels, num_parity=num_parity, max_size_mb=max_size_mb,
        min_agreement=min_agreement, seed=seed, write_report=False,
        extra_report={"student_dir": os.path.abspath(str(student_dir)),
                      "calibration_corpus": os.path.abspath(calibration_corpus) if calibration_corpus else None},
        **kw,
    )
    if android_assets is not None:
        from mobile_bert_distill.export.android import write_android_assets

        report["android_assets"] = write_android_assets(android_assets, out_path, vocab_path, report)
    return report
