"""Export a keras-hub BERT or ALBERT-style model (the distilled student, or any masked LM,
backbone or text classifier of :mod:`~mobile_bert_distill.architectures`) to LiteRT.

Two entry points:

* :func:`export_keras_model` takes an in-memory model (e.g. ``BertMaskedLM``, ``AlbertBackbone``);
* :func:`export_student` takes the student preset directory that ``mbd distill``
  writes, calibrates/validates on text, and is what ``mbd export`` runs.

Both write the ``.tflite`` atomically, load it back in the LiteRT interpreter,
run it once, and return (and write beside it as ``<name>.report.json``) a
report: op histogram, QUANTIZE/DEQUANTIZE and float-op counts, size, params
and a parity block against the float Keras model.

The graph is not the Keras graph: :mod:`mobile_bert_distill.export.graph`
re-expresses the same weights with quantization-friendly ops (``graph="keras"``
keeps the stock Keras graph, for comparison). Quantization modes:

``float32``  no quantization.
``float16``  float16 weights (dequantized at load time).
``dynamic``  int8 weights, float activations (dynamic-range).
``int8``     full-integer post-training quantization calibrated on real
             sequences; ``float_ops`` may keep chosen op types in float.

Example::

    import keras_hub
    from mobile_bert_distill.export import export_keras_model
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64)
    report = export_keras_model(backbone, "enc.tflite", task="encoder",
                                quantization="dynamic", seq_len=32)
    print(report["size_bytes"], report["graph_ops"]["ops"])

Modules (one thing each):

:mod:`~mobile_bert_distill.export.recipes`      modes, int8 recipes, signature names
:mod:`~mobile_bert_distill.export.sequences`    calibration/parity sequences (random, corpus, text)
:mod:`~mobile_bert_distill.export.conversion`   SavedModel + TFLite converter; :func:`export_keras_model`
:mod:`~mobile_bert_distill.export.validation`   op inspection and parity with the float Keras model
:mod:`~mobile_bert_distill.export.presets`      loading keras-hub presets from disk
:mod:`~mobile_bert_distill.export.classifier`   fine-tuned classifier presets and their export
:mod:`~mobile_bert_distill.export.student`      :func:`export_student`, what ``mbd export`` runs
:mod:`~mobile_bert_distill.export.graph`        the quantization-friendly graph rebuild
:mod:`~mobile_bert_distill.export.flatbuffer`   passes over the converted flatbuffer
:mod:`~mobile_bert_distill.export.metadata`     TFLite metadata for classifiers
:mod:`~mobile_bert_distill.export.android`      the Android demo's asset files
:mod:`~mobile_bert_distill.export.staged`       the early-exit classifier: a signature per layer
:mod:`~mobile_bert_distill.export.bilstm`       the BiLSTM classifier with builtin LSTM ops
:mod:`~mobile_bert_distill.export.sensitivity`  Hessian sensitivity of each weight matrix (Q-BERT)
:mod:`~mobile_bert_distill.export.mixed`        float16/int8/int4 per matrix under a size budget (Q-BERT)
:mod:`~mobile_bert_distill.export.experimental` for the studies in ``research/``; not public API

TensorFlow, Keras, keras-hub and LiteRT are imported inside functions only, so
importing this package (as ``mbd --help`` does) stays light.
"""

from mobile_bert_distill.export.classifier import LABELS_FILE, load_classifier_preset, read_classifier_labels
from mobile_bert_distill.export.conversion import convert, export_keras_model, report_path
from mobile_bert_distill.export.validation import (
    NEAR_TIE_GAP, agreement_of, classifier_probabilities, count_params, inspect_tflite, keras_outputs, parity)
from mobile_bert_distill.export.presets import check_student_dir, find_preset_vocab, load_student, preset_task_class
from mobile_bert_distill.export.recipes import (
    DEFAULT_MIN_AGREEMENT, DEFAULT_QUANTIZATION, INPUT_NAMES, INT8_RECIPES, MIN_SEQ_LEN, MIXED, MLM_QUANTIZATIONS,
    OUTPUT_NAMES, QUANTIZATIONS, min_agreement_for)
from mobile_bert_distill.export.sequences import (
    corpus_sequences, random_sequences, read_calibration_text, text_sequences)
from mobile_bert_distill.export.student import export_student

__all__ = [
    # recipes
    "DEFAULT_MIN_AGREEMENT", "DEFAULT_QUANTIZATION", "INPUT_NAMES", "INT8_RECIPES", "MIN_SEQ_LEN", "MIXED",
    "MLM_QUANTIZATIONS", "OUTPUT_NAMES", "QUANTIZATIONS", "min_agreement_for",
    # sequences
    "corpus_sequences", "random_sequences", "read_calibration_text", "text_sequences",
    # conversion
    "convert", "export_keras_model", "report_path",
    # validation
    "NEAR_TIE_GAP", "agreement_of", "classifier_probabilities", "count_params", "inspect_tflite",
    "keras_outputs", "parity",
    # presets
    "check_student_dir", "find_preset_vocab", "load_student", "preset_task_class",
    # classifier
    "LABELS_FILE", "load_classifier_preset", "read_classifier_labels",
    # student
    "export_student",
]
