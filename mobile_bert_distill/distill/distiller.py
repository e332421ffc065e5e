"""The distiller: one Keras model whose ``train_step`` is the paper's loss.

``L = L_p + ε · (L_ce_student + L_ce_teacher)``

* ``L_ce_student``: the student's MLM cross-entropy on its own segmentation;
* ``L_ce_teacher``: the teacher's MLM cross-entropy on the mixed segmentation,
  every masked piece scored by the head of the vocabulary that produced it
  (both heads' terms summed, divided by all masked teacher pieces);
* ``L_p``: the shared-projection loss (:mod:`mobile_bert_distill.distill.projections`).

Modes (one key apart): ``nokd`` (student alone: no teacher is built),
``dual`` (no ``L_p``), ``dual+down``, ``dual+up``; ``teacher`` trains the
teacher and its heads alone (``L = ε·L_ce_teacher``, the teacher-preparation stage).
A ``+soft`` mode (``soft``, ``dual+soft``, ``dual+down+soft``, ``dual+up+soft``) adds
DistilBERT's terms (:mod:`mobile_bert_distill.distill.soft`):
``+ λ_kd·L_kd + λ_cos·L_cos``; plain ``soft`` has no ``L_ce_teacher`` and no ``L_p``, and its
teacher is a fixed target (the run freezes it). ``tinybert`` (:mod:`mobile_bert_distill.distill.tinybert`)
adds ``λ_layer·(L_emb + L_hidn + L_attn)`` to ``ε·L_ce_student + λ_kd·L_kd``, with the same fixed teacher.

The loss is written once, in ``keras.ops``; the backend's mixin
(:mod:`mobile_bert_distill.distill.backends`) adds the thinnest ``train_step`` it needs
and ``global_sum``/``num_replicas``: under ``tf.distribute`` every replica
divides its summed cross-entropy by the *global* number of masked pieces and
``L_p`` by the number of replicas, so one step equals the single-device step on
the same global batch; on JAX the step sees the global batch and both are
trivial.

Example:
>>> import numpy as np, keras
>>> from mobile_bert_distill.distill.student import build_student
>>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefgh")
>>> student = build_student(vocab, hidden_dim=8, num_layers=1, num_heads=1, seq_len=6)
>>> d = Distiller(student, mode="nokd")
>>> d.compile(optimizer=keras.optimizers.Adam(1e-3))
>>> batch = {"s_token_ids": np.array([[2, 4, 6, 3, 0, 0]]), "s_padding_mask": np.array([[1, 1, 1, 1, 0, 0]]),
...          "s_mask_positions": np.array([[1]]), "s_mask_ids": np.array([[5]]),
...          "s_mask_weights": np.array([[1.0]], "float32")}
>>> logs = d.train_on_batch(batch, return_dict=True)
>>> sorted(logs)
['l_ce_student', 'loss', 'student_acc']
"""

import keras
from keras import ops

from mobile_bert_distill.distill import backends
from mobile_bert_distill.distill.config import MODES, mode_parts
from mobile_bert_distill.distill import tinybert
from mobile_bert_distill.distill.projections import SharedProjections, resolve_layer_map, transformer_weight_pairs
from mobile_bert_distill.distill.soft import cosine_sum, kd_sum
from mobile_bert_distill.errors import UserError


def _masked_ce(logits, labels, weights):
    """(sum of weighted CE, sum of weighted top-1 hits) over masked positions."""
    logits = ops.cast(logits, "float32")
    ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    hits = ops.cast(ops.equal(ops.cast(ops.argmax(logits, -1), labels.dtype), labels), "float32")
    return ops.sum(ce * weights), ops.sum(hits * weights)


class Distiller(backends.training_steps(), keras.Model):
    """Trains a keras-hub masked-LM student with (optionally) a dual-vocabulary teacher.

    Args:
        student: a ``keras_hub.models.BertMaskedLM`` or an ALBERT-style ``AlbertMaskedLM``
            (:func:`~mobile_bert_distill.distill.student.build_student`).
        teacher: a :class:`~mobile_bert_distill.distill.teacher.DualVocabTeacher` whose
            student embedding is ``student.backbone.token_embedding``; ``None``
            for ``nokd``.
        mode: one of ``nokd``, ``dual``, ``dual+down``, ``dual+up``, or
            ``teacher`` (the teacher and its heads alone).
        epsilon: ``ε``, the weight of the cross-entropy terms.
        layer_map: student layer -> teacher layer for the projections (needed
            when depths differ).
        teacher_trainable: train the teacher (default) or freeze its encoder.
        use_student_loss: keep ``L_ce_student`` in the loss (default); off only
            for cost studies of the teacher's share of a step, and always off in
            ``teacher`` mode.
        temperature, kd_weight, cosine_weight: ``T``, ``λ_kd`` and ``λ_cos`` of a ``+soft``
            mode; ``cosine_weight > 0`` adds the learned map ``W`` (teacher width -> student
            width) of ``L_cos``.
        layer_weight: ``λ_layer`` of ``tinybert``.
    """

    def __init__(self, student, teacher=None, mode="dual+up", epsilon=1.0, layer_map=None,
                 teacher_trainable=True, use_student_loss=True, temperature=2.0, kd_weight=1.0,
                 cosine_weight=0.0, layer_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        if mode == "nokd" and teacher is not None:
            raise ValueError("nokd trains the student alone: pass teacher=None")
        if mode != "nokd" and teacher is None:
            raise ValueError(f"mode {mode} needs a teacher")
        if mode == "teacher":
            use_student_loss = False
        parts = mode_parts(mode)
        self.student = student
        self.teacher = teacher
        self.mode = mode
        self.epsilon = float(epsilon)
        self.use_student_loss = use_student_loss  # off only for cost studies (teacher-only step)
        self.dual = parts["dual"]
        self.soft = parts["soft"]
        self.temperature, self.kd_weight, self.cosine_weight = float(temperature), float(kd_weight), float(cosine_weight)
        self.projections = None
        if parts["projection"]:
            pairs = transformer_weight_pairs(teacher.backbone, student.backbone, layer_map)
            self.projections = SharedProjections(parts["projection"], pairs, name="shared_projections")
        self.layer_pairs = None
        self.layer_weight = float(layer_weight)
        if parts["tinybert"]:
            try:
                tinybert.check_heads(student.backbone.num_heads, teacher.backbone.num_heads)
            except ValueError as e:
                raise UserError(str(e)) from None
            mapping = resolve_layer_map(teacher.num_layers, student.backbone.num_layers, layer_map)
            self.layer_pairs = sorted(mapping.items())
            d_s, d_t = student.backbone.hidden_dim, teacher.backbone.hidden_dim
            self.embedding_up = keras.layers.Dense(d_t, use_bias=False, name="tinybert_embedding_map")
            self.hidden_up = keras.layers.Dense(d_t, use_bias=False, name="tinybert_hidden_map")
            self.embedding_up.build((None, None, d_s))
            self.hidden_up.build((None, None, d_s))
        self.hidden_map = None
        if self.soft and self.cosine_weight > 0:
            self.hidden_map = keras.layers.Dense(student.backbone.hidden_dim, use_bias=False, name="hidden_map")
            self.hidden_map.build((None, None, teacher.backbone.hidden_dim))
        if teacher is not None and not teacher_trainable:
            teacher.backbone.trainable = False
        names = ["loss"]
        if self.use_student_loss:
            names += ["l_ce_student", "student_acc"]
        if self.dual:
            names += ["l_ce_teacher", "l_ce_teacher_tvocab", "l_ce_teacher_svocab",
                      "teacher_acc_tvocab", "teacher_acc_svocab", "teacher_svocab_share"]
        if self.soft:
            names += ["l_kd"] + (["l_cos"] if self.hidden_map is not None else [])
        if self.layer_pairs is not None:
            names += ["l_emb", "l_hidn", "l_attn"]
        if self.projections is not None:
            names += ["l_p"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    def build(self, input_shape=None):
        """Nothing to create: the student, the teacher and the projections are built when passed in."""
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.student(self._student_inputs(inputs), training=training)

    @staticmethod
    def _student_inputs(batch):
        ids = batch["s_token_ids"]
        return {"token_ids": ids, "segment_ids": ops.zeros_like(ids),
                "padding_mask": batch["s_padding_mask"], "mask_positions": batch["s_mask_positions"]}

    # ------------------------------------------------------------- the loss
    def compute_terms(self, batch, training=False):
        """Every loss term of one (per-replica) batch: ``L = L_p + ε·(L_ce_student + L_ce_teacher)``.

        Returns ``(loss, values, weights)``: ``loss`` is this replica's share of ``L`` (the
        cross-entropy sums over the global number of masked pieces, ``L_p`` split over the
        replicas), the value to differentiate; ``values`` holds the global value of every term and
        accuracy, for metrics; ``weights`` the piece counts that weight some of them.
        """
        values, weights = {}, {}
        l_ce_student = l_ce_teacher = l_p = l_kd = l_cos = l_layers = 0.0
        student = self._student_outputs(batch, training) if (self.use_student_loss or self.soft) else None
        if self.use_student_loss:
            l_ce_student = self._student_ce(student["logits"], batch, values, weights)
        if self.dual:
            l_ce_teacher = self._teacher_ce(batch, training, values, weights)
        if self.layer_pairs is not None:
            l_layers, l_kd = self._tinybert_terms(student, batch, values)
        elif self.soft:
            l_kd, l_cos = self._soft_terms(student, batch, values)
        if self.projections is not None:
            l_p = self.projections.loss()
            values["l_p"] = ops.stop_gradient(l_p)
        loss = (self.epsilon * (l_ce_student + l_ce_teacher) + l_p / self.num_replicas()
                + self.kd_weight * l_kd + self.cosine_weight * l_cos + self.layer_weight * l_layers)
        values["loss"] = (self.epsilon * (values.get("l_ce_student", 0.0) + values.get("l_ce_teacher", 0.0))
                          + values.get("l_p", 0.0) + self.kd_weight * values.get("l_kd", 0.0)
                          + self.cosine_weight * values.get("l_cos", 0.0)
                          + self.layer_weight * sum(values.get(k, 0.0) for k in ("l_emb", "l_hidn", "l_attn")))
        return loss, values, weights

    def _student_outputs(self, batch, training):
        """The student's MLM logits at the masked positions (and its hidden states when ``L_cos`` needs them)."""
        if self.layer_pairs is not None:
            inputs = self._student_inputs(batch)
            embeddings = tinybert.bert_embeddings(self.student.backbone, inputs["token_ids"], training=training)
            layers = tinybert.bert_layer_outputs(self.student.backbone, embeddings, inputs["padding_mask"], training)
            return {"logits": self.student.masked_lm_head(layers[-1][0], mask_positions=inputs["mask_positions"]),
                    "embeddings": embeddings, "layers": layers}
        if self.hidden_map is None:
            return {"logits": self.call(batch, training=training)}
        inputs = self._student_inputs(batch)
        hidden = self.student.backbone({k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")},
                                       training=training)["sequence_output"]
        return {"logits": self.student.masked_lm_head(hidden, mask_positions=inputs["mask_positions"]),
                "hidden": hidden}

    def _student_ce(self, logits, batch, values, weights):
        """The student's masked-LM cross-entropy on student segmentation (this replica's share)."""
        w = ops.cast(batch["s_mask_weights"], "float32")
        ce_sum, hits = _masked_ce(logits, batch["s_mask_ids"], w)
        n = ops.maximum(self.global_sum(ops.sum(w)), 1.0)
        values["l_ce_student"] = self.global_sum(ops.stop_gradient(ce_sum)) / n
        values["student_acc"] = self.global_sum(hits) / n
        weights["student_acc"] = n
        return ce_sum / n

    def _teacher_ce(self, batch, training, values, weights):
        """The teacher's cross-entropy on mixed segmentation: each masked piece is scored by the head
        of its vocabulary (this replica's share)."""
        x = self.teacher.encode(batch["t_token_ids"], batch["t_is_student"], batch["t_padding_mask"],
                                training=training)
        logits_t, logits_s = self.teacher.heads(x, batch["t_mask_positions"])
        w = ops.cast(batch["t_mask_weights"], "float32")
        is_s = ops.cast(batch["t_mask_is_student"], "float32")
        labels = batch["t_mask_ids"]
        w_t, w_s = w * (1.0 - is_s), w * is_s
        ce_t, hits_t = _masked_ce(logits_t, ops.where(is_s > 0, 0, labels), w_t)
        ce_s, hits_s = _masked_ce(logits_s, ops.where(is_s > 0, labels, 0), w_s)
        n = ops.maximum(self.global_sum(ops.sum(w)), 1.0)
        n_t = self.global_sum(ops.sum(w_t))
        n_s = self.global_sum(ops.sum(w_s))
        g_ce_t = self.global_sum(ops.stop_gradient(ce_t))
        g_ce_s = self.global_sum(ops.stop_gradient(ce_s))
        values["l_ce_teacher"] = (g_ce_t + g_ce_s) / n
        values["l_ce_teacher_tvocab"] = g_ce_t / ops.maximum(n_t, 1.0)
        values["l_ce_teacher_svocab"] = g_ce_s / ops.maximum(n_s, 1.0)
        values["teacher_acc_tvocab"] = self.global_sum(hits_t) / ops.maximum(n_t, 1.0)
        values["teacher_acc_svocab"] = self.global_sum(hits_s) / ops.maximum(n_s, 1.0)
        values["teacher_svocab_share"] = n_s / n
        weights.update(l_ce_teacher_tvocab=n_t, l_ce_teacher_svocab=n_s,
                       teacher_acc_tvocab=n_t, teacher_acc_svocab=n_s)
        return (ce_t + ce_s) / n

    def _soft_terms(self, student, batch, values):
        """``(L_kd, L_cos)``, this replica's shares: the teacher reads the student's own segmentation
        (every piece through the student-vocabulary path) and is a fixed target."""
        ids, mask = batch["s_token_ids"], batch["s_padding_mask"]
        hidden_t = ops.stop_gradient(self.teacher.encode(ids, ops.ones_like(ids), mask, training=False))
        _, logits_t = self.teacher.heads(hidden_t, batch["s_mask_positions"])
        l_kd = self._kd_term(student["logits"], logits_t, batch, values)
        if self.hidden_map is None:
            return l_kd, 0.0
        valid = ops.cast(mask, "float32")
        n_valid = ops.maximum(self.global_sum(ops.sum(valid)), 1.0)
        cos = cosine_sum(student["hidden"], self.hidden_map(hidden_t), valid)
        values["l_cos"] = self.global_sum(ops.stop_gradient(cos)) / n_valid
        return l_kd, cos / n_valid

    def _kd_term(self, student_logits, teacher_logits, batch, values):
        """``L_kd`` over the student's masked positions (this replica's share)."""
        w = ops.cast(batch["s_mask_weights"], "float32")
        n = ops.maximum(self.global_sum(ops.sum(w)), 1.0)
        kd = kd_sum(student_logits, teacher_logits, w, self.temperature)
        values["l_kd"] = self.global_sum(ops.stop_gradient(kd)) / n
        return kd / n

    def _tinybert_terms(self, student, batch, values):
        """``(L_emb + L_hidn + L_attn, L_kd)``, this replica's shares, against the fixed teacher reading
        the student's own segmentation."""
        ids, mask = batch["s_token_ids"], batch["s_padding_mask"]
        e_t = ops.stop_gradient(self.teacher.embed(ids, ops.ones_like(ids), training=False))
        t_layers = [(ops.stop_gradient(h), ops.stop_gradient(a))
                    for h, a in tinybert.bert_layer_outputs(self.teacher.backbone, e_t, mask)]
        _, logits_t = self.teacher.heads(t_layers[-1][0], batch["s_mask_positions"])
        valid = ops.cast(mask, "float32")
        n_valid = self.global_sum(ops.sum(valid))
        n_states = ops.maximum(n_valid * self.teacher.backbone.hidden_dim, 1.0)
        n_attn = ops.maximum(self.global_sum(ops.sum(ops.square(ops.sum(valid, axis=1))))
                             * self.student.backbone.num_heads, 1.0)
        emb = tinybert.squared_error_sum(self.embedding_up(student["embeddings"]), e_t, valid)
        hidn = attn = 0.0
        for s, t in self.layer_pairs:
            (h_s, a_s), (h_t, a_t) = student["layers"][s], t_layers[t]
            hidn += tinybert.squared_error_sum(self.hidden_up(h_s), h_t, valid)
            attn += tinybert.attention_error_sum(a_s, tinybert.average_heads(a_t, self.student.backbone.num_heads),
                                                 valid)
        k = float(len(self.layer_pairs))
        for name, term, n in (("l_emb", emb, n_states), ("l_hidn", hidn / k, n_states), ("l_attn", attn / k, n_attn)):
            values[name] = self.global_sum(ops.stop_gradient(term)) / n
        l_kd = self._kd_term(student["logits"], logits_t, batch, values)
        return emb / n_states + hidn / k / n_states + attn / k / n_attn, l_kd

    def update_metrics(self, values, weights):
        for name, tracker in self.trackers.items():
            if name in values:
                w = weights.get(name)
                tracker.update_state(values[name], sample_weight=w)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    @staticmethod
    def unpack(batch):
        """The batch dict of a step's ``data`` (``fit()`` passes the dataset element,
        ``train_on_batch``/``evaluate`` wrap it as ``(x, y, w)``), as tensors."""
        while isinstance(batch, (tuple, list)):
            batch = batch[0]
        return keras.tree.map_structure(ops.convert_to_tensor, batch)
