"""The BERT-base baseline of ``mbd bench``: built with keras-hub, exported like a student, cached on disk.

The cache key holds the export code's hash (:func:`export_fingerprint`), so a changed export
graph rebuilds the baseline.

Example::

    from mobile_bert_distill.bench.baseline import Baseline, default_cache_dir
    path = Baseline("bert-base").file("encoder", "int8", 128, default_cache_dir())
"""

from __future__ import annotations

import hashlib
import json
import os

from mobile_bert_distill.atomic import atomic_write_json
from mobile_bert_distill.bench.params import BERT_BASE, BertConfig
from mobile_bert_distill.errors import UserError

BASELINE_LABEL = "BERT-base"


def default_cache_dir():
    root = os.environ.get("MBD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mobile_bert_distill")
    return os.path.join(root, "baselines")


def check_quantization(quant):
    from mobile_bert_distill.export import QUANTIZATIONS

    if quant not in QUANTIZATIONS:
        raise UserError(f"unknown quantization {quant!r} (one of {', '.join(QUANTIZATIONS)})")


def default_quantization():
    """The mode ``mbd export`` writes by default (``export.DEFAULT_QUANTIZATION``)."""
    from mobile_bert_distill.export import DEFAULT_QUANTIZATION

    return DEFAULT_QUANTIZATION


class Baseline:
    """What ``--baseline`` names: ``bert-base`` (random init) or ``keras-hub-preset:NAME_OR_DIR``."""

    def __init__(self, spec, export_kwargs=None):
        self.spec = spec
        self.export_kwargs = dict(export_kwargs or {})
        if spec == "bert-base":
            self.kind, self.preset, self.config = "random", None, BERT_BASE
            self.label = BASELINE_LABEL
            self.note = ("BERT-base architecture (12 x 768, 30522 WordPieces) with random weights "
                         "(seeded; biases and LayerNorm weights perturbed so that no op folds away): "
                         "speed, size and FLOPs do not depend on training")
        elif spec.startswith("keras-hub-preset:") and spec.split(":", 1)[1]:
            self.kind, self.preset = "preset", spec.split(":", 1)[1]
            self.config = None
            self.label = os.path.basename(os.path.normpath(self.preset)) or self.preset
            self.note = f"keras-hub preset {self.preset}"
        else:
            raise UserError(f"a baseline is 'bert-base' or 'keras-hub-preset:NAME_OR_DIR', got {spec!r}")

    def _key(self):
        parts = [self.spec]
        if self.kind == "preset" and os.path.isdir(self.preset):
            parts.append(str(os.path.getmtime(self.preset)))
        parts.append(export_fingerprint())
        parts.append(repr(sorted((k, repr(v)) for k, v in self.export_kwargs.items())))
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]

    def slug(self):
        text = "bert-base" if self.kind == "random" else "preset-" + self.label
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)

    def build(self, task, seed=0):
        """The keras-hub model to export (``BertMaskedLM`` for ``mlm``, else the backbone)."""
        import keras
        import keras_hub
        import numpy as np

        if self.kind == "preset":
            try:
                if task == "mlm":
                    model = keras_hub.models.BertMaskedLM.from_preset(self.preset)
                    backbone = model.backbone
                else:
                    model = backbone = keras_hub.models.BertBackbone.from_preset(self.preset)
            except Exception as e:
                raise UserError(f"cannot load keras-hub preset {self.preset!r}: {' '.join(str(e).split())[:160]}")
            self.config = BertConfig(
                vocab_size=int(backbone.vocabulary_size), hidden_dim=int(backbone.hidden_dim),
                num_layers=int(backbone.num_layers), num_heads=int(backbone.num_heads),
                intermediate_dim=int(backbone.intermediate_dim),
                max_positions=int(backbone.max_sequence_length), num_segments=int(backbone.num_segments))
            return model
        keras.utils.set_random_seed(seed)
        c = self.config
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=c.vocab_size, num_layers=c.num_layers, num_heads=c.num_heads,
            hidden_dim=c.hidden_dim, intermediate_dim=c.intermediate_dim, dropout=0.0,
            max_sequence_length=c.max_positions, num_segments=c.num_segments)
        model = keras_hub.models.BertMaskedLM(backbone=backbone) if task == "mlm" else backbone
        perturb_constant_weights(model, np.random.default_rng(seed))
        return model

    def file(self, task, quantization, seq_len, cache_dir, log=print, any_version=False):
        """Path of the cached export, building it when missing.

        The cache key includes a hash of the export code, so an edited exporter
        rebuilds; ``any_version=True`` takes the newest cached file of this
        task/mode/length whatever exporter wrote it.
        """
        os.makedirs(cache_dir, exist_ok=True)
        stem = f"{self.slug()}-{task}-{quantization}-s{seq_len}-"
        name = f"{stem}{self._key()}.tflite"
        path = os.path.join(cache_dir, name)
        if os.path.isfile(path):
            return path
        if any_version:
            older = [os.path.join(cache_dir, f) for f in os.listdir(cache_dir)
                     if f.startswith(stem) and f.endswith(".tflite")]
            if older:
                return max(older, key=os.path.getmtime)
        from mobile_bert_distill.export import export_keras_model

        log(f"building the {self.label} baseline ({task}, {quantization}, seq {seq_len}) -> {path}")
        model = self.build(task)
        # a random-init baseline needs no big calibration/parity sets
        export_keras_model(model, path, task=task, quantization=quantization, seq_len=seq_len, num_calibration=16,
                           num_parity=4, **self.export_kwargs)
        if self.config is not None:
            atomic_write_json(path + ".architecture.json", self.config.to_dict())
        return path

    def architecture_of(self, path):
        side = path + ".architecture.json"
        if self.config is None and os.path.isfile(side):
            with open(side) as f:
                self.config = BertConfig(**json.load(f))
        return self.config


def perturb_constant_weights(model, rng, scale=0.02):
    """Add noise to weights that are all zeros or all ones (fresh biases, LayerNorm).

    An untrained model's zero biases and unit LayerNorm scales let the
    converter drop ``+0`` and ``*1`` ops, which a trained model keeps.
    """
    for w in model.weights:
        value = w.numpy()
        if value.size and (not value.any() or (value == 1).all()):
            w.assign(value + rng.normal(0.0, scale, value.shape).astype(value.dtype))


def export_fingerprint(*extra_modules):
    """Hash of the export code (and of ``extra_modules``' files), so a changed export graph
    invalidates cached baselines and exports.

    The modules are imported, not looked up by file name: one that moves fails here instead of
    silently leaving the key.
    """
    from mobile_bert_distill.export import conversion, experimental, flatbuffer, graph, recipes, sequences

    h = hashlib.sha1()
    for module in (conversion, recipes, sequences, graph, flatbuffer, experimental) + extra_modules:
        with open(module.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:10]
