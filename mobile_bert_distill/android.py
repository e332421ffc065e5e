"""Write the files an Android app needs to run the student with LiteRT.

``write_android_assets(folder, model, vocab, report)`` puts in ``folder``:

* ``model.tflite`` — the exported model;
* ``vocab.txt`` — its WordPiece vocabulary (id = line number, from 0);
* ``model_info.json`` — input/output names, shapes, dtypes and quantization
  (scale, zero point), the static sequence length, the special-token ids,
  the normalisation flags, and golden vectors: for three sample sentences the
  token ids the app's tokenizer must produce and the top-3 predictions per
  ``[MASK]`` it must reproduce (see ``android_demo_assets/README.md``).

Each file is written atomically; other files in the folder (the committed
README and Kotlin sample) are left alone.

Example::

    from mobile_bert_distill.android import write_android_assets
    info = write_android_assets("android_demo_assets", "model.tflite", "vocab.txt", report)
"""

from __future__ import annotations

import os
import shutil

from mobile_bert_distill.atomic import atomic_file, atomic_write_json

GOLDEN_SENTENCES = (
    "the capital of [MASK] is paris .",
    "this function returns the [MASK] of the list .",
    "a small [MASK] runs on the phone , and it is [MASK] .",
)
ASSET_FILES = ("model.tflite", "vocab.txt", "model_info.json")


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


def write_android_assets(folder, model_path, vocab_path, report=None):
    """Copy the model and vocab into ``folder`` and write ``model_info.json``; returns the info."""
    from mobile_bert_distill.inference import LiteRTModel
    from mobile_bert_distill.tflite_tools import signature_io

    os.makedirs(folder, exist_ok=True)
    targets = {name: os.path.join(folder, name) for name in ASSET_FILES}
    if os.path.abspath(model_path) != os.path.abspath(targets["model.tflite"]):
        with atomic_file(targets["model.tflite"]) as tmp:
            shutil.copyfile(model_path, tmp)
    with atomic_file(targets["vocab.txt"]) as tmp:
        shutil.copyfile(vocab_path, tmp)
    model = LiteRTModel(targets["model.tflite"], targets["vocab.txt"])
    io = signature_io(model.interpreter)
    info = {
        "format": "mobile-bert-distill android assets v1",
        "model_file": "model.tflite",
        "vocab_file": "vocab.txt",
        "signature": "serving_default",
        "task": model.task,
        "quantization": (report or {}).get("quantization"),
        "seq_len": model.seq_len,
        "batch_size": model.batch_size,
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "vocab_size": len(model.tokenizer),
        "special_tokens": dict(model.ids),
        "lowercase": True,
        "strip_accents": True,
        "max_bytes_per_word": 100,
        "wordpiece_suffix": "##",
        "golden": golden_vectors(model),
    }
    atomic_write_json(targets["model_info.json"], info)
    return {"folder": os.path.abspath(folder), "files": list(ASSET_FILES)}
