"""Write the files an Android app needs to run the student with LiteRT.

``write_android_assets(folder, model, vocab, report)`` puts in ``folder``:

* ``model.tflite`` — the exported model;
* ``vocab.txt`` — its WordPiece vocabulary (id = line number, from 0);
* ``model_info.json`` — input/output names, shapes, dtypes and quantization
  (scale, zero point), the static sequence length, the special-token ids,
  the normalisation flags, and golden vectors: for three sample sentences the
  token ids the app's tokenizer must produce and the top-3 predictions per
  ``[MASK]`` it must reproduce (see ``android_demo_assets/README.md``).

For a classifier export (output ``probabilities``) there is also
``labels.txt`` (one class name per line, in output order), ``model_info.json``
holds the class names and, as golden vectors, the token ids, probabilities and
label of three sample sentences, and ``model.tflite`` carries TFLite metadata
(BERT tokenizer with ``vocab.txt`` and ``labels.txt`` packed in; see
:mod:`mobile_bert_distill.export.metadata`) so that MediaPipe's
``TextClassifier`` can load it with no other file.

A staged early-exit classifier (:mod:`mobile_bert_distill.export.staged`: a
signature per layer) gets the same files without the metadata (MediaPipe runs
one signature); ``model_info.json`` then describes every signature and its
golden vectors add each exit's probabilities and the layers used at
:data:`GOLDEN_SPEEDS`, for the app's stage loop to reproduce.

Each file is written atomically; other files in the folder (the committed
README and Kotlin sample) are left alone.

Example::

    from mobile_bert_distill.export.android import write_android_assets
    info = write_android_assets("android_demo_assets", "model.tflite", "vocab.txt", report)
"""

from __future__ import annotations

import os
import shutil
import warnings

from mobile_bert_distill.atomic import atomic_file, atomic_write_bytes, atomic_write_json, atomic_write_text

GOLDEN_SENTENCES = (
    "the capital of [MASK] is paris .",
    "this function returns the [MASK] of the list .",
    "a small [MASK] runs on the phone , and it is [MASK] .",
)
ASSET_FILES = ("model.tflite", "vocab.txt", "model_info.json")
CLASSIFIER_GOLDEN_SENTENCES = (
    "a gorgeous, witty film",
    "the plot is thin and the acting is worse .",
    "It runs on the phone: fast, and mostly right!",
)
CLASSIFIER_ASSET_FILES = ("model.tflite", "vocab.txt", "labels.txt", "model_info.json")
#: Speeds at which the golden vectors of a staged early-exit classifier record the layers used and the label.
GOLDEN_SPEEDS = (0.0, 0.3, 0.5, 0.7, 1.0)


def golden_vectors(model, sentences=GOLDEN_SENTENCES, top_k=3):
    """Token ids and top-``k`` predictions for ``sentences`` with a :class:`LiteRTModel`."""
    feeds, lengths = model.encode(list(sentences), keep_masks=True)
    filled = model.fill_mask(list(sentences), top_k=top_k)
    out = []
    for i, text in enumerate(sentences):
        out.append({
            "text": text,
            "input_ids": [int(x) for x in feeds["input_ids"][i, : lengths[i]]],
            "length": int(lengths[i]),
            "masks": [
                {"position": m["position"],
                 "top_ids": [c["id"] for c in m["candidates"]],
                 "top_tokens": [c["token"] for c in m["candidates"]],
                 "top_probabilities": [round(c["probability"], 6) for c in m["candidates"]]}
                for m in filled[i]
            ],
        })
    return out


def classifier_golden(model, sentences=CLASSIFIER_GOLDEN_SENTENCES):
    """Token ids, probabilities and label of ``sentences`` with a classifier :class:`LiteRTModel`."""
    from mobile_bert_distill.litert.inference import TruncationWarning

    with warnings.catch_warnings():  # a short static length may cut a sentence: recorded below
        warnings.simplefilter("ignore", TruncationWarning)
        feeds, lengths = model.encode(list(sentences))
        results = model.classify(list(sentences))
        staged = model.stages is not None
        if staged:
            exits = model.stages.exit_probabilities(feeds)
            at_speed = {s: model.classify(list(sentences), speed=s) for s in GOLDEN_SPEEDS}
    golden = []
    for i, (text, res) in enumerate(zip(sentences, results)):
        golden.append({
            "text": text,
            "input_ids": [int(x) for x in feeds["input_ids"][i, : lengths[i]]],
            "length": int(lengths[i]),
            "truncated": len(model.tokenizer.encode(text)) > model.seq_len - 2,
            "probabilities": [round(p, 6) for p in res["probabilities"]],
            "label_index": res["index"],
            "label": res["label"]})
        if staged:
            golden[-1]["exit_probabilities"] = [[round(float(p), 6) for p in row] for row in exits[i]]
            golden[-1]["at_speed"] = [{"speed": s, "layers": at_speed[s][i]["layers"], "label": at_speed[s][i]["label"]}
                                      for s in GOLDEN_SPEEDS]
    return golden


def write_android_assets(folder, model_path, vocab_path, report=None, labels=None):
    """Copy the model and vocab into ``folder`` and write ``model_info.json``; returns the info.

    ``labels`` (class names, in output order) is required for a classifier
    export and is also written as ``labels.txt``.
    """
    from mobile_bert_distill.errors import UserError
    from mobile_bert_distill.litert.early_exit import EMBED_SIGNATURE, is_staged, stage_signature
    from mobile_bert_distill.litert.inference import LiteRTModel
    from mobile_bert_distill.litert.tools import load_interpreter, signature_io

    files = ASSET_FILES if labels is None else CLASSIFIER_ASSET_FILES
    if labels is not None and any(not str(x).strip() or "\n" in str(x) for x in labels):
        raise UserError("class names for labels.txt must be non-empty and on one line")
    os.makedirs(folder, exist_ok=True)
    targets = {name: os.path.join(folder, name) for name in files}
    staged = is_staged(load_interpreter(model_path)[0])
    if labels is not None and not staged:  # MediaPipe's metadata describes one signature
        from mobile_bert_distill.export.metadata import add_classifier_metadata

        with open(model_path, "rb") as f:
            with_metadata = add_classifier_metadata(f.read(), vocab_path, labels)
        atomic_write_bytes(targets["model.tflite"], with_metadata)
    elif os.path.abspath(model_path) != os.path.abspath(targets["model.tflite"]):
        with atomic_file(targets["model.tflite"]) as tmp:
            shutil.copyfile(model_path, tmp)
    with atomic_file(targets["vocab.txt"]) as tmp:
        shutil.copyfile(vocab_path, tmp)
    if labels is not None:
        atomic_write_text(targets["labels.txt"], "".join(f"{x}\n" for x in labels))
    model = LiteRTModel(targets["model.tflite"], targets["vocab.txt"],
                        labels=None if labels is None else list(labels),
                        lowercase=bool((report or {}).get("lowercase", True)))
    if model.task == "classifier" and labels is None:
        raise UserError("a classifier export needs its class names (labels) for the android assets")
    info = {
        "format": "mobile-bert-distill android assets v1",
        "model_file": "model.tflite",
        "vocab_file": "vocab.txt",
        "task": model.task,
        "quantization": (report or {}).get("quantization"),
        "seq_len": model.seq_len,
        "batch_size": model.batch_size,
        "vocab_size": len(model.tokenizer),
        "special_tokens": dict(model.ids),
        "lowercase": bool((report or {}).get("lowercase", True)),
        "strip_accents": bool((report or {}).get("strip_accents", True)),
        "max_bytes_per_word": 100,
        "wordpiece_suffix": "##",
    }
    if staged:
        keys = [EMBED_SIGNATURE] + [stage_signature(k) for k in range(1, model.stages.num_layers + 1)]
        info["signatures"] = {key: signature_io(model.interpreter, key) for key in keys}
        info["early_exit"] = {
            "num_layers": model.stages.num_layers,
            "rule": "run embed, then stage_1, stage_2, ... passing hidden on; stop after stage_k when the "
                    "normalised entropy -sum(p ln p) / ln K of its probabilities is below the speed, or at "
                    f"{stage_signature(model.stages.num_layers)} (the full model)",
            "golden_speeds": list(GOLDEN_SPEEDS),
        }
    else:
        info["signature"] = "serving_default"
        info.update(signature_io(model.interpreter))
    if model.task == "classifier":
        info.update({
            "labels_file": "labels.txt",
            "labels": list(model.labels),
            "num_classes": model.num_classes,
            "output": "probabilities: float32 [batch, num_classes], softmax over the classes in labels order",
            "golden": classifier_golden(model),
        })
        if staged:
            info["tflite_metadata"] = {
                "embedded": False,
                "note": "a staged model has a signature per layer, which MediaPipe's TextClassifier cannot run: "
                        "run the stage loop (android_demo_assets/README.md, section 6)"}
        else:
            from mobile_bert_distill.export.metadata import read_classifier_metadata

            with open(targets["model.tflite"], "rb") as f:
                meta = read_classifier_metadata(f.read())
            info["tflite_metadata"] = {
                "embedded": True, "min_parser_version": meta["min_parser_version"],
                "input_tensor_names": meta["inputs"], "tokenizer": meta["tokenizer"],
                "output_tensor_name": meta["output"], "associated_files": meta["files"],
                "note": "vocab.txt and labels.txt are also packed inside model.tflite (MediaPipe TextClassifier)",
            }
    else:
        info["golden"] = golden_vectors(model)
    atomic_write_json(targets["model_info.json"], info)
    return {"folder": os.path.abspath(folder), "files": list(files)}
