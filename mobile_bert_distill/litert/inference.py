"""Run an exported student with LiteRT, tokenizing exactly as training did.

No TensorFlow is imported when ``ai_edge_litert`` is installed: the runtime
is ``ai_edge_litert`` (else ``tflite_runtime``, else ``tf.lite``, with a
message saying which), and the tokenizer is the pure-Python
:class:`~mobile_bert_distill.text.wordpiece.WordPiece`.

Example::

    from mobile_bert_distill.litert.inference import LiteRTModel
    model = LiteRTModel("model.tflite", "vocab.txt")
    for mask in model.fill_mask("the capital of [MASK] is paris .", top_k=3)[0]:
        print(mask["position"], [(c["token"], round(c["probability"], 3)) for c in mask["candidates"]])
    vectors = model.embeddings(["a sentence", "another one"])   # encoder exports
    clf = LiteRTModel("clf.tflite", "vocab.txt")                  # classifier exports
    clf.classify("a gorgeous, witty film")[0]["label"]            # e.g. 'positive'
    ee = LiteRTModel("clf_ee.tflite", "vocab.txt")                # a staged early-exit export
    ee.classify("a gorgeous, witty film", speed=0.3)[0]["layers"] # e.g. 2 (of 6)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings

import numpy as np

from mobile_bert_distill import text
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.litert.early_exit import EMBED_SIGNATURE, StagedRunner, check_speed, is_staged
from mobile_bert_distill.litert.tools import load_interpreter, run_batches, signature_runner
from mobile_bert_distill.text.rows import SPECIAL_TOKENS
from mobile_bert_distill.text.wordpiece import WordPiece

log = logging.getLogger(__name__)
MASK = "[MASK]"


class TruncationWarning(UserWarning):
    """A text had more tokens than the model's static sequence length."""


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class LiteRTModel:
    """A ``.tflite`` export of the student plus its vocabulary.

    Args:
        model_path: the ``.tflite`` file (``mbd export`` output).
        vocab_path: ``vocab.txt`` (one token per line, ``[PAD] [UNK] [CLS]
            [SEP] [MASK]`` first). Default: ``vocab.txt`` beside the model.
        num_threads: interpreter threads.
        lowercase: must match training (the student is uncased).
        labels: class names of a classifier export (output ``probabilities``):
            a list, or a file (``labels.txt``, one name per line, or a JSON
            file with ``labels``/``classes``). Default: the ``labels`` of the
            ``<model>.report.json`` beside the model, else ``labels.txt`` in
            the model's folder, else none (classes are then shown by index).
    """

    def __init__(self, model_path, vocab_path=None, *, num_threads=1, lowercase=True, labels=None):
        model_path = str(model_path)
        if vocab_path is None:
            vocab_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "vocab.txt")
        text.load_vocab(vocab_path)  # missing, not UTF-8, duplicate tokens (ids would shift), no specials
        self.interpreter, self.runtime = load_interpreter(model_path, num_threads=num_threads)
        if self.runtime != "ai_edge_litert":
            print(f"mobile_bert_distill: ai_edge_litert not installed, using {self.runtime}", file=sys.stderr)
        self.model_path = model_path
        try:
            self.tokenizer = WordPiece(vocab_path, lowercase=lowercase, strip_accents=True)
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{vocab_path} is not a WordPiece vocabulary: {e}") from e
        # a staged early-exit classifier runs through its stage loop (litert/early_exit.py)
        self.stages = StagedRunner(self.interpreter) if is_staged(self.interpreter) else None
        runner = signature_runner(self.interpreter, EMBED_SIGNATURE if self.stages else "serving_default")
        inputs = runner.get_input_details()
        outputs = runner.get_output_details()
        if self.stages is not None:  # token ids enter `embed`, the mask every stage; the last one classifies
            last = self.stages.stages[-1]
            inputs = dict(inputs, padding_mask=last.get_input_details()["padding_mask"])
            outputs = last.get_output_details()
        missing = {"input_ids", "segment_ids", "padding_mask"} - set(inputs)
        if missing:
            raise UserError(f"{model_path} lacks the inputs {sorted(missing)}; export it with `mbd export`")
        self.batch_size, self.seq_len = (int(s) for s in inputs["input_ids"]["shape"])
        self.output_names = sorted(outputs)
        self.task = "mlm" if "logits" in outputs else "classifier" if "probabilities" in outputs else "encoder"
        self.num_classes = int(outputs["probabilities"]["shape"][-1]) if self.task == "classifier" else None
        self.labels = self._resolve_labels(labels)
        rows = self._embedding_rows()
        if rows is not None and rows != len(self.tokenizer):
            raise UserError(
                f"vocabulary {vocab_path} has {len(self.tokenizer)} tokens but {model_path} "
                f"has {rows} embedding rows: wrong vocab.txt for this model"
            )
        for special in SPECIAL_TOKENS:
            if special not in self.tokenizer.token_to_id:
                raise UserError(f"{vocab_path} has no {special} token")
        self.ids = {t: self.tokenizer.special_id(t) for t in SPECIAL_TOKENS}

    # ------------------------------------------------------------------
    def _resolve_labels(self, labels):
        """Class names for a classifier (see the class docstring); ``None`` when there are none."""
        if labels is not None and self.task != "classifier":
            raise UserError(f"{self.model_path} is an {self.task!r} export; class labels apply to classifiers only")
        if self.task != "classifier":
            return None
        source = "labels"
        if labels is None:
            root = os.path.splitext(self.model_path)[0]
            beside = os.path.join(os.path.dirname(os.path.abspath(self.model_path)), "labels.txt")
            report = root + ".report.json"
            if os.path.isfile(report):
                with open(report, encoding="utf-8") as f:
                    try:
                        labels = json.load(f).get("labels")
                    except (ValueError, AttributeError):
                        labels = None
                source = report
            if labels is None and os.path.isfile(beside):
                labels = source = beside
            if labels is None:
                return None
        if isinstance(labels, (str, os.PathLike)):
            source = str(labels)
            labels = read_labels(source)
        labels = [str(x) for x in labels]
        if len(labels) != self.num_classes:
            raise UserError(f"{source} has {len(labels)} class names but {self.model_path} outputs "
                            f"{self.num_classes} probabilities")
        return labels

    def _embedding_rows(self):
        """Rows of the token-embedding table (the GATHER fed by ``input_ids``)."""
        if self.task == "mlm":
            return int(signature_runner(self.interpreter).get_output_details()["logits"]["shape"][-1])
        runner = signature_runner(self.interpreter, EMBED_SIGNATURE if self.stages else "serving_default")
        ids_tensor = runner.get_input_details()["input_ids"]["index"]
        tensors = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        for op in self.interpreter._get_ops_details():
            if op["op_name"] == "GATHER" and len(op["inputs"]) > 1 and op["inputs"][1] == ids_tensor:
                return int(tensors[op["inputs"][0]]["shape"][0])
        return None

    def encode(self, texts, *, keep_masks=False):
        """Tokenize ``texts`` into the model's static ``[N, S]`` inputs.

        Text longer than the static length is truncated (a
        :class:`TruncationWarning`, never an error). Returns ``(feeds,
        lengths)`` where ``lengths`` counts tokens including ``[CLS]``/``[SEP]``.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise UserError("no input text given")
        S = self.seq_len
        bodies = []
        specials = (MASK,) if keep_masks else ()
        for i, sentence in enumerate(texts):
            if not isinstance(sentence, str) or not sentence.strip():
                raise UserError(f"input text {i + 1} is empty")
            body = self.tokenizer.encode(sentence, specials=specials)
            if not body:
                raise UserError(f"input text {i + 1} produced no tokens: {sentence[:40]!r}")
            if len(body) > S - 2:
                warnings.warn(
                    f"text {i + 1} has {len(body)} tokens; truncated to the model's static length "
                    f"{S} ({S - 2} plus [CLS]/[SEP])",
                    TruncationWarning, stacklevel=2,
                )
                body = body[: S - 2]
            bodies.append(body)
        feeds = text.pack_rows(bodies, S, self.ids["[CLS]"], self.ids["[SEP]"])
        return feeds, [len(body) + 2 for body in bodies]

    def run(self, feeds):
        """Run the model on ``[N, S]`` feeds (any N); returns float32 outputs by name (a staged
        early-exit model: its full-depth ``probabilities``)."""
        if self.stages is not None:
            return {"probabilities": self.stages.run(feeds, speed=0.0)[0]}
        return run_batches(self.interpreter, feeds)

    def logits(self, texts):
        """MLM logits ``[N, S, V]`` (``[MASK]`` in the text kept as the mask token)."""
        self._need("mlm")
        feeds, _ = self.encode(texts, keep_masks=True)
        return self.run(feeds)["logits"]

    def fill_mask(self, texts, top_k=5):
        """Top-``k`` fillers for every ``[MASK]`` of every text.

        Returns one list per text, one dict per mask:
        ``{"position", "candidates": [{"token", "id", "probability"}, ...]}``.
        """
        self._need("mlm")
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise UserError("no input text given")
        for i, t in enumerate(texts):
            if isinstance(t, str) and t.strip() and MASK not in t:
                raise UserError(f"text {i + 1} has no {MASK} token to fill: {t[:60]!r}")
        if top_k < 1:
            raise UserError("top_k must be >= 1")
        feeds, _ = self.encode(texts, keep_masks=True)
        logits = self.run(feeds)["logits"]
        results = []
        for i, t in enumerate(texts):
            positions = np.flatnonzero(feeds["input_ids"][i] == self.ids[MASK])
            if positions.size == 0:
                raise UserError(f"every {MASK} of text {i + 1} lies beyond the static length {self.seq_len}")
            masks = []
            for pos in positions:
                probs = _softmax(logits[i, pos].astype(np.float64))
                top = np.argsort(-probs, kind="stable")[:top_k]
                masks.append({
                    "position": int(pos),
                    "candidates": [
                        {"token": self.tokenizer.vocab[j], "id": int(j), "probability": float(probs[j])}
                        for j in top
                    ],
                })
            results.append(masks)
        return results

    def embeddings(self, texts, pooling="cls"):
        """Sentence vectors from an encoder export: ``pooled`` output, ``cls``
        token or ``mean`` of the token vectors (``[N, H]``)."""
        self._need("encoder")
        feeds, _ = self.encode(texts)
        out = self.run(feeds)
        if pooling == "pooled":
            return out["pooled_output"]
        seq = out["sequence_output"]
        if pooling == "cls":
            return seq[:, 0]
        if pooling == "mean":
            m = feeds["padding_mask"][..., None].astype(np.float32)
            return (seq * m).sum(1) / m.sum(1)
        raise UserError(f"pooling must be 'pooled', 'cls' or 'mean', not {pooling!r}")

    def probabilities(self, texts):
        """Class probabilities ``[N, K]`` of a classifier export (softmax, rows sum to 1)."""
        self._need("classifier")
        feeds, _ = self.encode(texts)
        return self.run(feeds)["probabilities"]

    def classify(self, texts, top_k=None, speed=None):
        """Label every text with a classifier export.

        Returns one dict per text: ``label`` (the class name, or its index
        when the model has no labels), ``index``, ``probability`` (of that
        class), ``probabilities`` (all ``K``, in output order) and ``top``
        (the ``top_k`` most probable classes as ``{"label", "index",
        "probability"}``, all of them when ``top_k`` is ``None``).

        A staged early-exit export also gives ``layers`` (how many layers ran):
        each text stops at the first exit whose normalised entropy is below
        ``speed`` (0, the default: every layer, the full model's probabilities;
        1: the first exit). ``speed`` needs a staged export.
        """
        if top_k is not None and top_k < 1:
            raise UserError("top_k must be >= 1")
        if speed is not None:
            speed = check_speed(speed)
            if self.stages is None:
                raise UserError(f"{self.model_path} has no early-exit stages: a speed needs the staged export "
                                "of a classifier fine-tuned with early exits")
        layers = None
        if self.stages is not None:
            self._need("classifier")
            feeds, _ = self.encode(texts)
            probs, layers = self.stages.run(feeds, speed=speed or 0.0)
        else:
            probs = self.probabilities(texts)
        names = self.labels or list(range(self.num_classes))
        results = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[: top_k or len(row)]
            best = int(order[0])
            results.append({
                "label": names[best], "index": best, "probability": float(row[best]),
                "probabilities": [float(p) for p in row],
                "top": [{"label": names[j], "index": int(j), "probability": float(row[j])} for j in order],
            })
            if layers is not None:
                results[-1]["layers"] = int(layers[len(results) - 1])
        return results

    def _need(self, task):
        if self.task != task:
            raise UserError(f"{self.model_path} is an {self.task!r} export; this needs one exported for the task {task!r}")


def read_labels(path):
    """Class names from ``labels.txt`` (one per line) or a JSON file (``labels`` or ``classes``)."""
    if not os.path.isfile(path):
        raise UserError(f"labels file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read labels file {path}: {e}") from None
    if path.endswith(".json"):
        try:
            doc = json.loads(text)
            names = doc.get("labels") or doc.get("classes") if isinstance(doc, dict) else doc
        except ValueError as e:
            raise UserError(f"{path} is not JSON: {e}") from None
        if not isinstance(names, list) or not names:
            raise UserError(f"{path} has no 'labels' or 'classes' list")
        return [str(x) for x in names]
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UserError(f"labels file {path} is empty")
    return names
