"""Tiny .tflite BERTs for the benchmark tests, converted once per test session.

``tiny_tflite(root, name)`` builds (or reuses, from ``root``) one of the
models in :data:`SPECS`: ``kit`` files go through the kit's exporter
(:func:`mobile_bert_distill.export.export_keras_model`), ``stock`` files
through the plain Keras ``ExportArchive`` path with no help from the kit.
"""

import os

SPECS = {
    # name: (how, task, quantization, seq_len, hidden, layers, heads, intermediate, vocab)
    "kit_enc_f32": ("kit", "encoder", "float32", 32, 16, 2, 2, 64, 120),
    "kit_enc_dyn": ("kit", "encoder", "dynamic", 32, 16, 2, 2, 64, 120),
    "kit_mlm_f32": ("kit", "mlm", "float32", 16, 16, 2, 2, 64, 120),
    "stock_enc_f32": ("stock", "encoder", "float32", 32, 24, 2, 2, 48, 150),
}


def config_of(name):
    from mobile_bert_distill.bench.params import BertConfig

    _, _, _, _, h, layers, heads, inter, vocab = SPECS[name]
    return BertConfig(vocab_size=vocab, hidden_dim=h, num_layers=layers, num_heads=heads,
                      intermediate_dim=inter, max_positions=64)


def build_keras(name, seed=0):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import keras_hub
    import numpy as np

    from mobile_bert_distill.bench import perturb_constant_weights

    how, task, _, _, h, layers, heads, inter, vocab = SPECS[name]
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocab, num_layers=layers, num_heads=heads, hidden_dim=h,
        intermediate_dim=inter, max_sequence_length=64, dropout=0.0)
    model = keras_hub.models.BertMaskedLM(backbone=backbone) if task == "mlm" else backbone
    perturb_constant_weights(model, np.random.default_rng(seed))
    return model


def _stock_convert(model, seq_len, path):
    import tempfile

    import keras
    import tensorflow as tf

    names = ("input_ids", "segment_ids", "padding_mask")

    def fn(input_ids, segment_ids, padding_mask):
        out = model({"token_ids": input_ids, "segment_ids": segment_ids, "padding_mask": padding_mask})
        return {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"]}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", fn,
                         input_signature=[tf.TensorSpec([1, seq_len], tf.int32, name=n) for n in names])
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        data = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    with open(path, "wb") as f:
        f.write(data)


def tiny_tflite(root, name):
    """Path of the tiny model ``name`` under ``root`` (converted on first use)."""
    path = os.path.join(str(root), name + ".tflite")
    if os.path.exists(path):
        return path
    os.makedirs(str(root), exist_ok=True)
    how, task, quant, seq_len = SPECS[name][:4]
    model = build_keras(name)
    if how == "kit":
        from mobile_bert_distill.export import export_keras_model

        export_keras_model(model, path, task=task, quantization=quant, seq_len=seq_len, write_report=False,
                           num_parity=2, num_calibration=4)
    else:
        _stock_convert(model, seq_len, path)
    return path
