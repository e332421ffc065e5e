"""FastBERT-style early exits for a fine-tuned classifier: self-distilled branch classifiers.

FastBERT (Liu et al. 2020): after the classifier is fine-tuned, its backbone and
main head are frozen and a *branch* classifier after each layer ``k < L``
learns the main classifier's distribution on unlabelled text,

``L_k = KL(p_main ‖ p_k) = Σ_c p_main,c (log p_main,c − log p_k,c)``,  summed over the branches,

and at inference a text stops at the first exit whose normalised entropy is
below the speed (:mod:`mobile_bert_distill.litert.early_exit`); layer ``L``'s exit
is the main classifier itself.

Branches (simpler than FastBERT's, which adds a 128-d self-attention per
branch): branch ``k`` reads layer ``k``'s ``[CLS]`` vector and the mean of its
real (unpadded) token vectors, ``f = [h_cls ; mean(h)]`` (``2H``), and computes
``softmax(W2 tanh(W1 f + b1) + b2)`` with a hidden width of ``H``. It starts as the
main head (pooler + output dense) on layer ``k``'s ``[CLS]``: ``W1``'s mean half is 0.
The frozen backbone makes the branch inputs fixed, so they are computed once
(by the export graph rebuild, :class:`~mobile_bert_distill.export.graph.ExportBert`,
in float: the function the staged export runs) and only the branches train.

The unlabelled texts are the training texts, any extra corpus and, if asked,
augmented copies of the training texts (Tang et al.'s word masking and n-gram
sampling, :mod:`~mobile_bert_distill.downstream.bilstm_augment`).

The branches are saved beside the classifier preset (which stays a plain keras-hub
preset) as ``early_exit.npz`` (weights) and ``early_exit.json`` (shapes, settings).

Example:
>>> import numpy as np
>>> kl = SelfDistillKL()
>>> p_main = np.array([[0.8, 0.2]], "float32")
>>> z = np.log(np.array([[[0.5, 0.5], [0.8, 0.2]]], "float32"))  # two branches
>>> round(float(kl(p_main, z)), 4)  # 0.8 log 1.6 + 0.2 log 0.4, and 0
0.1927
"""

from __future__ import annotations

import json
import os

import numpy as np

from mobile_bert_distill.errors import UserError

try:  # keras is imported lazily by callers that only read the files
    import keras
except ImportError:  # pragma: no cover
    keras = None

EXITS_WEIGHTS = "early_exit.npz"
EXITS_INFO = "early_exit.json"
#: At most this many lines of the extra (unlabelled) text are read for the self-distillation.
MAX_EXTRA_TEXTS = 20_000
#: The exits' Adam passes over their texts: the training texts alone, or with augmented copies.
EPOCHS_PLAIN, EPOCHS_AUGMENTED = 60, 10
_WEIGHT_NAMES = ("w1", "b1", "w2", "b2")


# ------------------------------------------------------------------ the branches, as arrays
class ExitHeads:
    """The branch classifiers of layers ``1 .. L-1`` as NumPy arrays.

    Args:
        w1, b1, w2, b2: ``[E, 2H, D]``, ``[E, D]``, ``[E, D, K]``, ``[E, K]`` (``E = L - 1`` exits).
        info: what ``early_exit.json`` records (training settings, metrics).
    """

    def __init__(self, w1, b1, w2, b2, info=None):
        self.w1, self.b1, self.w2, self.b2 = (np.asarray(a, np.float32) for a in (w1, b1, w2, b2))
        self.num_exits, feature_dim, self.width = self.w1.shape
        self.hidden_dim = feature_dim // 2
        self.num_classes = self.w2.shape[-1]
        self.info = dict(info or {})

    @classmethod
    def from_classifier(cls, classifier):
        """Branches that start as the main head on each layer's ``[CLS]`` (``W1``'s mean half zero)."""
        pooler, out = classifier.backbone.pooled_dense, classifier.output_dense
        pool_k, pool_b, out_k, out_b = (np.asarray(w, np.float32)
                                        for w in (pooler.kernel, pooler.bias, out.kernel, out.bias))
        exits = int(classifier.backbone.num_layers) - 1
        if exits < 1:
            raise UserError("early exits need a model with at least 2 layers")
        w1 = np.concatenate([pool_k, np.zeros_like(pool_k)], axis=0)
        return cls(*(np.repeat(a[None], exits, axis=0) for a in (w1, pool_b, out_k, out_b)))

    def logits(self, features):
        """Branch logits ``[N, E, K]`` of features ``[N, E, 2H]``."""
        h = np.tanh(np.einsum("nef,efd->ned", features, self.w1) + self.b1)
        return np.einsum("ned,edk->nek", h, self.w2) + self.b2

    def probabilities(self, features):
        z = self.logits(features).astype(np.float64)
        e = np.exp(z - z.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)

    def num_params(self):
        return int(sum(a.size for a in (self.w1, self.b1, self.w2, self.b2)))

    def save(self, folder):
        """Write ``early_exit.npz`` and ``early_exit.json`` into ``folder`` (each atomically)."""
        import io

        from mobile_bert_distill.atomic import atomic_write_bytes, atomic_write_json

        buf = io.BytesIO()
        np.savez(buf, **{n: getattr(self, n) for n in _WEIGHT_NAMES})
        atomic_write_bytes(os.path.join(folder, EXITS_WEIGHTS), buf.getvalue())
        atomic_write_json(os.path.join(folder, EXITS_INFO), dict(
            self.info, format="mobile-bert-distill early exits v1", exits=self.num_exits,
            num_layers=self.num_exits + 1, hidden_dim=self.hidden_dim, width=self.width,
            num_classes=self.num_classes,
            branch="[CLS ; mean of real tokens] (2H) -> dense(H) tanh -> dense(K) softmax"))

    @classmethod
    def load(cls, folder):
        """The branches saved in ``folder``; a :class:`UserError` when they are missing or broken."""
        paths = [os.path.join(folder, n) for n in (EXITS_WEIGHTS, EXITS_INFO)]
        if not all(os.path.isfile(p) for p in paths):
            raise UserError(f"{folder} has no early exits ({EXITS_WEIGHTS} and {EXITS_INFO})")
        try:
            with open(paths[1], encoding="utf-8") as f:
                info = json.load(f)
            with np.load(paths[0]) as z:
                heads = cls(*(z[n] for n in _WEIGHT_NAMES), info=info)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{paths[0]} is not an early-exit file ({type(e).__name__}: {e})") from None
        if (heads.w1.ndim != 3 or heads.b1.shape != heads.w1.shape[::2] or heads.w1.shape[1] % 2
                or heads.w2.shape[:2] != (heads.num_exits, heads.width)
                or heads.b2.shape != (heads.num_exits, heads.num_classes)):
            raise UserError(f"{paths[0]}: the branch weights have inconsistent shapes")
        return heads

    def check_matches(self, classifier, where):
        """A :class:`UserError` unless the branches fit ``classifier`` (depth, width, classes)."""
        layers, hidden = int(classifier.backbone.num_layers), int(classifier.backbone.hidden_dim)
        if (self.num_exits + 1, self.hidden_dim, self.num_classes) != (layers, hidden, int(classifier.num_classes)):
            raise UserError(f"{where}: early exits for {self.num_exits + 1} layers x {self.hidden_dim}-d, "
                            f"{self.num_classes} classes do not fit the classifier ({layers} x {hidden}-d, "
                            f"{classifier.num_classes} classes)")


def has_exits(folder):
    """Whether ``folder`` holds early-exit branches."""
    return os.path.isfile(os.path.join(folder, EXITS_WEIGHTS))


def exit_inputs(built, x, padding_mask):
    """The two halves of a branch's input in TensorFlow: ``[CLS]`` and the mean over real tokens
    of the stream ``x`` ``[B, S, H]`` (beta added back), from an ``ExportBert`` ``built``."""
    import tensorflow as tf

    keep = tf.cast(tf.reshape(padding_mask, [built.batch_size, built.seq_len, 1]), tf.float32)
    # 1 / (share of real tokens) as rsqrt(share)²: RSQRT and MUL stay float inside XNNPACK in an
    # int8 model, where a DIV would be quantized and run outside the delegate
    inv_share = tf.math.rsqrt(tf.reduce_mean(keep, axis=1))
    mean = tf.reduce_mean(x * keep, axis=1) * inv_share * inv_share
    return built.first_token(x), mean


def layer_features(classifier, texts, *, batch_size=32, progress=True):
    """Branch inputs ``[N, L-1, 2H]`` and the main classifier's probabilities ``[N, K]`` of ``texts``.

    The classifier's own preprocessor tokenizes (a literal ``[MASK]``, which the
    augmentation writes, is read as its mask token); the float export graph
    (:class:`~mobile_bert_distill.export.graph.ExportBert`) runs the layers.
    """
    tokenizer = classifier.preprocessor.tokenizer
    reads_specials = tokenizer.special_tokens_in_strings
    tokenizer.special_tokens_in_strings = True
    try:
        return _layer_features(classifier, list(texts), batch_size, progress)
    finally:  # the classifier is saved afterwards: leave its tokenizer as it was
        tokenizer.special_tokens_in_strings = reads_specials


def _layer_features(classifier, texts, batch_size, progress):
    import tensorflow as tf

    from mobile_bert_distill.downstream.finetune import length_batches
    from mobile_bert_distill.export.graph import ExportBert

    seq_len = int(classifier.preprocessor.sequence_length)
    graphs = {}  # one graph per padded width: the padding, which the model masks out, is not computed

    def graph(width):
        if width not in graphs:
            built = ExportBert.from_keras(classifier, task="classifier", seq_len=width, batch_size=batch_size)
            L = len(built.stream_betas)

            @tf.function(autograph=False)
            def run(ids, segments, mask):
                x, bias = built.embed(ids, segments), built.mask_bias(mask)
                feats = []
                for i in range(L):
                    x = built.encoder_layer(i, x, bias)
                    if i < L - 1:
                        feats.append(tf.concat(exit_inputs(built, x + built.stream_betas[i], mask), axis=-1))
                return tf.stack(feats, axis=1), built.classifier_probabilities(x + built.stream_betas[-1])

            graphs[width] = run
        return graphs[width]

    x = classifier.preprocessor(texts)
    x = {k: np.asarray(x[k], np.int32) for k in ("token_ids", "segment_ids", "padding_mask")}
    feats, probs = None, None
    batches = length_batches(x["padding_mask"].sum(axis=1), batch_size, seq_len)  # texts of similar length
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=-(-len(texts) // batch_size), desc="layer features", unit="batch", leave=False)
    for rows, width in batches:
        padded = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows))])
        f, p = graph(width)(*(tf.constant(x[k][padded, :width]) for k in ("token_ids", "segment_ids", "padding_mask")))
        if feats is None:
            feats = np.zeros((len(texts),) + tuple(f.shape[1:]), np.float32)
            probs = np.zeros((len(texts), p.shape[-1]), np.float32)
        feats[rows], probs[rows] = f.numpy()[: len(rows)], p.numpy()[: len(rows)]
    return feats, probs


# ------------------------------------------------------------------ training (Keras)
if keras is not None:

    @keras.saving.register_keras_serializable(package="mobile_bert_distill")
    class ExitBranches(keras.layers.Layer):
        """``E`` branch classifiers applied at once: features ``[B, E, F]`` -> logits ``[B, E, K]``."""

        def __init__(self, num_exits, feature_dim, width, num_classes, **kwargs):
            super().__init__(**kwargs)
            self.num_exits, self.feature_dim, self.width, self.num_classes = (
                num_exits, feature_dim, width, num_classes)
            E, F, D, K = num_exits, feature_dim, width, num_classes
            self.w1 = self.add_weight(shape=(E, F, D), name="w1", initializer="glorot_uniform")
            self.b1 = self.add_weight(shape=(E, D), name="b1", initializer="zeros")
            self.w2 = self.add_weight(shape=(E, D, K), name="w2", initializer="glorot_uniform")
            self.b2 = self.add_weight(shape=(E, K), name="b2", initializer="zeros")

        def call(self, features):
            ops = keras.ops
            h = ops.tanh(ops.einsum("bef,efd->bed", features, self.w1) + self.b1)
            return ops.einsum("bed,edk->bek", h, self.w2) + self.b2

        def get_config(self):
            config = super().get_config()
            config.update(num_exits=self.num_exits, feature_dim=self.feature_dim, width=self.width,
                          num_classes=self.num_classes)
            return config

    @keras.saving.register_keras_serializable(package="mobile_bert_distill")
    class SelfDistillKL(keras.losses.Loss):
        """``Σ_k KL(p_main ‖ softmax(z_k))`` over the branches; ``y_true`` is ``p_main`` ``[B, K]``,
        ``y_pred`` the branch logits ``[B, E, K]``."""

        def __init__(self, name="self_distill_kl", **kwargs):
            super().__init__(name=name, **kwargs)

        def call(self, y_true, y_pred):
            ops = keras.ops
            p_main = ops.expand_dims(ops.cast(y_true, "float32"), 1)                  # [B, 1, K]
            log_p_main = ops.log(ops.maximum(p_main, 1e-12))
            log_p_branch = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)    # [B, E, K]
            kl = ops.sum(p_main * (log_p_main - log_p_branch), axis=-1)             # [B, E]
            return ops.sum(kl, axis=-1)


def train_exits(heads, features, p_main, *, epochs=EPOCHS_PLAIN, batch_size=64, learning_rate=1e-3, seed=0, verbose=2):
    """Fit ``heads`` (:class:`ExitHeads`) to ``p_main`` on ``features`` by :class:`SelfDistillKL`.

    Only the branches are variables here: the backbone and the main head are not
    in the graph at all (their outputs are the fixed ``features`` and ``p_main``).
    Returns the trained :class:`ExitHeads` and the per-epoch losses.
    """
    keras.utils.set_random_seed(seed)
    branches = ExitBranches(heads.num_exits, 2 * heads.hidden_dim, heads.width, heads.num_classes)
    inputs = keras.Input((heads.num_exits, 2 * heads.hidden_dim))
    model = keras.Model(inputs, branches(inputs))
    branches.set_weights([heads.w1, heads.b1, heads.w2, heads.b2])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=SelfDistillKL())
    history = model.fit(np.asarray(features, np.float32), np.asarray(p_main, np.float32), epochs=epochs,
                        batch_size=batch_size, shuffle=True, verbose=verbose)
    return ExitHeads(*(np.asarray(w) for w in branches.get_weights()), info=heads.info), history.history["loss"]


# ------------------------------------------------------------------ what `mbd finetune --early-exit` runs
#: The speeds at which the float branches are scored on the eval texts after training.
EVAL_SPEEDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


class ExitTraining:
    """The self-distillation settings; :meth:`fit` trains and scores the exits of a fine-tuned classifier.

    Args:
        corpus: extra unlabelled text (a file, one sentence per line; the first
            :data:`MAX_EXTRA_TEXTS` lines) besides the training texts, or ``None``.
        augmentation: an :class:`~mobile_bert_distill.downstream.bilstm_augment.Augmentation`
            (Tang et al.'s word masking and n-gram sampling) that adds up to ``n_iter``
            copies of each training text, for the main classifier to label like the rest;
            ``None`` (default) or ``n_iter = 0`` adds none. Measured on the Rotten Tomatoes
            6 x 384 teacher (``docs/results/early_exit.md``): 20 copies looked better on the
            dev split and were worse on the eval split (3 seeds), so they are not the default.
        epochs: passes over all the texts (default: :data:`EPOCHS_PLAIN` without copies: on
            that teacher the plain exits kept improving from 10 to 60-100 epochs and overfit at
            200; :data:`EPOCHS_AUGMENTED` with them).
        batch_size, learning_rate: the branches' Adam training.

    The corpus is read here, so a bad file is refused before any training.

    Example::

        finetune(student, "train.csv", "eval.csv", "clf/", early_exit=ExitTraining("extra.txt", epochs=10))
    """

    def __init__(self, corpus=None, *, augmentation=None, epochs=None, batch_size=64, learning_rate=1e-3):
        from mobile_bert_distill.downstream.bilstm_augment import Augmentation
        from mobile_bert_distill.export.sequences import read_calibration_text

        self.augmentation = augmentation or Augmentation(n_iter=0)
        if epochs is None:
            epochs = EPOCHS_AUGMENTED if self.augmentation.n_iter else EPOCHS_PLAIN
        if epochs < 1 or batch_size < 1 or not learning_rate > 0:
            raise UserError("the exits need epochs >= 1, batch size >= 1 and a learning rate > 0")
        self.corpus = corpus
        self.extra_texts = read_calibration_text(corpus, MAX_EXTRA_TEXTS) if corpus is not None else []
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate

    def fit(self, classifier, train_texts, eval_texts, y_eval, *, seed=0, log=print):
        """Train the branches of ``classifier`` on ``train_texts`` (no labels), their augmented
        copies and the extra text; returns ``(ExitHeads, metrics)`` with each exit's accuracy
        on the eval texts."""
        from mobile_bert_distill.downstream.bilstm_augment import augment_texts

        texts, _ = augment_texts(train_texts, self.augmentation, seed=seed)
        copies = len(texts) - len(train_texts)
        texts += self.extra_texts
        if log:
            log(f"early exits: layer features of {len(texts)} texts ({copies} augmented copies, "
                f"{len(self.extra_texts)} extra)")
        features, p_main = layer_features(classifier, texts, progress=log is not None)
        heads = ExitHeads.from_classifier(classifier)
        ev_features, ev_main = layer_features(classifier, eval_texts, progress=log is not None)
        before = exit_scores(heads, ev_features, ev_main, y_eval)
        heads, losses = train_exits(heads, features, p_main, epochs=self.epochs, batch_size=self.batch_size,
                                    learning_rate=self.learning_rate, seed=seed, verbose=2 if log else 0)
        after = exit_scores(heads, ev_features, ev_main, y_eval)
        heads.info = {"training": {"texts": len(train_texts), "augmented_copies": copies,
                                   "augmentation": self.augmentation.to_dict(),
                                   "extra_texts": len(self.extra_texts),
                                   "corpus": os.path.abspath(self.corpus) if self.corpus else None,
                                   "epochs": self.epochs, "batch_size": self.batch_size,
                                   "learning_rate": self.learning_rate, "seed": seed,
                                   "loss": "sum over exits of KL(p_main || p_exit)",
                                   "loss_per_epoch": [float(x) for x in losses]}}
        metrics = dict(after, initial_exit_kl=before["exit_kl"], training=heads.info["training"])
        if log:
            accs = ", ".join(f"{a:.3f}" for a in after["exit_accuracy"])
            log(f"early exits: eval accuracy per exit (layers 1..{heads.num_exits + 1}): {accs}")
        return heads, metrics


def exit_scores(heads, features, p_main, y_true):
    """Each exit's accuracy, macro-F1, agreement with the main classifier and mean KL to it on
    labelled texts, and (float) accuracy vs mean layers over :data:`EVAL_SPEEDS`."""
    from mobile_bert_distill.downstream.finetune import accuracy_and_macro_f1
    from mobile_bert_distill.litert.early_exit import exits_now

    K = heads.num_classes
    stack = np.concatenate([heads.probabilities(features), np.asarray(p_main, np.float32)[:, None]], axis=1)
    main_pred = stack[:, -1].argmax(-1)
    scores = [accuracy_and_macro_f1(y_true, stack[:, e].argmax(-1), K) for e in range(stack.shape[1])]
    p = np.clip(stack.astype(np.float64), 1e-12, 1.0)
    kl = (p[:, -1:] * (np.log(p[:, -1:]) - np.log(p))).sum(-1).mean(0)
    table = []
    for speed in EVAL_SPEEDS:
        stop = np.array([exits_now(stack[:, e], speed) for e in range(stack.shape[1])]).T
        stop[:, -1] = True
        first = stop.argmax(1)
        pred = stack[np.arange(len(stack)), first].argmax(-1)
        acc, f1 = accuracy_and_macro_f1(y_true, pred, K)
        table.append({"speed": speed, "accuracy": acc, "macro_f1": f1, "mean_layers": float(first.mean() + 1)})
    return {"exit_accuracy": [a for a, _ in scores], "exit_macro_f1": [f for _, f in scores],
            "exit_agreement_with_main": [float((stack[:, e].argmax(-1) == main_pred).mean())
                                         for e in range(stack.shape[1])],
            "exit_kl": [float(x) for x in kl[:-1]], "float_speeds": table}
