"""The dual-vocabulary teacher: a BERT encoder with two MLM softmax heads.

Teacher inputs mix the two vocabularies per word (see
:mod:`mobile_bert_distill.distill.mixing`). Teacher-vocabulary pieces are embedded by
the teacher's own table; student-vocabulary pieces by the **student's**
token embedding table followed by a learned up-projection ``d_s -> d_t`` (``d_s``
the width of that table: the student's hidden width for a BERT student, its
factorised embedding width ``E`` for an ALBERT-style one). Position
and segment embeddings, the embedding LayerNorm and all transformer layers are
the teacher's. Each masked piece is scored by the head of the vocabulary that
produced it: the teacher head is tied to the teacher embeddings, the student
head to the up-projected student embeddings.

Example:
>>> import keras_hub
>>> t = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2,
...                                   hidden_dim=8, intermediate_dim=16)
>>> s = keras_hub.models.BertBackbone(vocabulary_size=12, num_layers=1, num_heads=1,
...                                   hidden_dim=4, intermediate_dim=8)
>>> teacher = DualVocabTeacher(t, s.token_embedding)
>>> import numpy as np
>>> ids = np.array([[2, 5, 7, 3]]); flags = np.array([[0, 1, 0, 0]])
>>> x = teacher.encode(ids, flags, np.ones_like(ids))
>>> tuple(x.shape)
(1, 4, 8)
>>> logits_t, logits_s = teacher.heads(x, np.array([[1, 2]]))
>>> tuple(logits_t.shape), tuple(logits_s.shape)
((1, 2, 30), (1, 2, 12))
"""

import json
import os

import keras
import numpy as np
from keras import ops

from mobile_bert_distill.errors import UserError

HEADS_FILE = "dual_heads.npz"
HEADS_CONFIG = "dual_heads.json"


def _gelu(x):
    return keras.activations.gelu(x, approximate=True)


class ProjectedTiedMaskedLMHead(keras.layers.Layer):
    """Teacher-side MLM head over the student vocabulary.

    ``logits = LN(gelu(W h)) · (E_s U_up)^T + b``: the output matrix is the
    student embedding table ``E_s`` mapped into the teacher's space by the same
    up-projection that embeds student pieces on the input side.
    """

    def __init__(self, student_embedding, up_projection, hidden_dim, layer_norm_epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.student_embedding = student_embedding
        self.up_projection = up_projection
        self.hidden_dim = hidden_dim
        self.layer_norm_epsilon = layer_norm_epsilon
        self.intermediate_dense = keras.layers.Dense(
            hidden_dim, activation=_gelu, dtype=self.dtype_policy, name="intermediate_dense",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="intermediate_layer_norm")

    def build(self, inputs_shape, mask_positions_shape=None):
        self.intermediate_dense.build(inputs_shape)
        self.layer_norm.build(tuple(inputs_shape[:-1]) + (self.hidden_dim,))
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.student_embedding.input_dim,), initializer="zeros")
        self.built = True

    def call(self, inputs, mask_positions):
        x = ops.take_along_axis(inputs, ops.expand_dims(mask_positions, -1), axis=1)
        x = self.layer_norm(self.intermediate_dense(x))
        # x · (E_s U_up)ᵀ computed as (x U_upᵀ) · E_sᵀ, through the student width, without mapping
        # the whole table up: at the demo's 80 masked pieces per batch (4,928 pieces, 48 -> 384)
        # 20 M instead of 242 M multiply-adds; the same product
        x = ops.matmul(x, ops.transpose(ops.cast(self.up_projection.kernel, self.compute_dtype)))
        logits = ops.matmul(x, ops.transpose(ops.cast(self.student_embedding.embeddings, self.compute_dtype)))
        return logits + ops.cast(self.output_bias, logits.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, layer_norm_epsilon=self.layer_norm_epsilon)
        return config


class DualVocabTeacher(keras.layers.Layer):
    """A keras-hub ``BertBackbone`` run on mixed-vocabulary input, with two MLM heads.

    Args:
        backbone: the teacher ``keras_hub.models.BertBackbone``.
        student_embedding: the student-vocabulary embedding layer: the student's own
            token embedding in dual training (shared, trained by both losses; ``E`` wide for an
            ALBERT-style student), a frozen copy (:func:`saved_student_table`) for a teacher
            that is a fixed target.
    """

    def __init__(self, backbone, student_embedding, **kwargs):
        kwargs.setdefault("dtype", backbone.dtype_policy)
        super().__init__(**kwargs)
        import keras_hub

        self.backbone = backbone
        self.student_embedding = student_embedding
        self.up_projection = keras.layers.Dense(
            backbone.hidden_dim, use_bias=False, dtype=self.dtype_policy, name="up_projection",
            # Keeps the scale of a student embedding row: var(out) = d_s·σ²·var(in).
            kernel_initializer=keras.initializers.RandomNormal(
                stddev=1.0 / float(np.sqrt(student_embedding.output_dim))))
        self.teacher_head = keras_hub.layers.MaskedLMHead(
            vocabulary_size=backbone.vocabulary_size,
            token_embedding=backbone.token_embedding,
            intermediate_activation=_gelu,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=self.dtype_policy,
            name="teacher_vocab_head",
        )
        self.student_head = ProjectedTiedMaskedLMHead(
            student_embedding, self.up_projection, backbone.hidden_dim,
            dtype=self.dtype_policy, name="student_vocab_head")
        d_t = backbone.hidden_dim
        self.up_projection.build((None, student_embedding.output_dim))
        self.teacher_head.build((None, None, d_t), (None, None))
        self.student_head.build((None, None, d_t), (None, None))

    @property
    def num_layers(self):
        return self.backbone.num_layers

    def embed(self, token_ids, is_student, training=False):
        bb = self.backbone
        is_student = ops.cast(is_student, "bool")
        t_ids = ops.where(is_student, 0, token_ids)
        s_ids = ops.where(is_student, token_ids, 0)
        t_emb = bb.token_embedding(t_ids)
        s_emb = self.up_projection(ops.cast(self.student_embedding(s_ids), self.compute_dtype))
        tokens = ops.where(ops.expand_dims(is_student, -1), ops.cast(s_emb, t_emb.dtype), t_emb)
        positions = bb.position_embedding(tokens)
        segments = bb.segment_embedding(ops.zeros_like(token_ids))
        x = bb.embeddings_add((tokens, positions, segments))
        x = bb.embeddings_layer_norm(x)
        return bb.embeddings_dropout(x, training=training)

    def encode(self, token_ids, is_student, padding_mask, training=False):
        x = self.embed(token_ids, is_student, training=training)
        for layer in self.backbone.transformer_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
        return x

    def heads(self, sequence_output, mask_positions):
        """Logits of both heads at ``mask_positions``: (teacher vocab, student vocab)."""
        return (self.teacher_head(sequence_output, mask_positions=mask_positions),
                self.student_head(sequence_output, mask_positions=mask_positions))

    def call(self, inputs, training=False):
        x = self.encode(inputs["token_ids"], inputs["is_student"], inputs["padding_mask"], training)
        return self.heads(x, inputs["mask_positions"])

    # ------------------------------------------------------------- save/load
    def _extra_layers(self):
        return {"up_projection": self.up_projection, "teacher_vocab_head": self.teacher_head,
                "student_vocab_head": self.student_head}

    def save(self, path, tokenizer, student_vocab):
        """Write the teacher checkpoint: backbone preset + heads + up-projection.

        ``path`` is a keras-hub preset directory (backbone + tokenizer), so the
        fine-tuned teacher encoder loads with ``BertBackbone.from_preset``; the
        heads, the up-projection and a copy of the student embedding table (the
        student-vocabulary head needs it) sit beside it in ``dual_heads.npz``.
        """
        os.makedirs(path, exist_ok=True)
        self.backbone.save_to_preset(path)
        tokenizer.save_to_preset(path)
        arrays = {"student_embedding": keras.ops.convert_to_numpy(self.student_embedding.embeddings)}
        for name, layer in self._extra_layers().items():
            for i, w in enumerate(layer.weights):
                if name != "up_projection" and w is self.student_embedding.embeddings:
                    continue
                if name == "teacher_vocab_head" and w is self.backbone.token_embedding.embeddings:
                    continue
                arrays[f"{name}/{i}/{w.path}"] = keras.ops.convert_to_numpy(w)
        np.savez(os.path.join(path, HEADS_FILE), **arrays)
        with open(os.path.join(path, HEADS_CONFIG), "w", encoding="utf-8") as f:
            json.dump({"student_vocabulary_size": int(self.student_embedding.input_dim),
                       "student_embedding_dim": int(self.student_embedding.output_dim)}, f, indent=2)
        with open(os.path.join(path, "student_vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(student_vocab) + "\n")

    def load_heads(self, path):
        """Restore heads and up-projection saved by :meth:`save`; returns the names left fresh.

        Shapes must match, with one exception: an up-projection saved for a student-vocabulary
        table of another width (the hidden width of a BERT student, ``E`` of an ALBERT-style
        one) is left as initialised (returned as ``["up_projection"]``). A dual distillation
        starts its student from fresh embeddings, so it re-learns the student-vocabulary path
        either way; the heads and the encoder are what a prepared teacher brings. The saved
        student-vocabulary table itself is :func:`saved_student_table`.
        """
        with np.load(os.path.join(path, HEADS_FILE)) as z:
            arrays = dict(z)
        fresh = []
        for name, layer in self._extra_layers().items():
            for i, w in enumerate(layer.weights):
                key = next((k for k in arrays if k.startswith(f"{name}/{i}/")), None)
                if key is None:
                    continue
                if w is self.up_projection.kernel and \
                        arrays[key].shape[1:] == tuple(w.shape)[1:] and arrays[key].shape != tuple(w.shape):
                    fresh = ["up_projection"]  # another student embedding width (the head shares the kernel)
                    continue
                if tuple(arrays[key].shape) != tuple(w.shape):
                    raise UserError(f"teacher checkpoint {path}: {key} has shape {arrays[key].shape}, "
                                    f"the model expects {tuple(w.shape)} (a different student size? this "
                                    f"student's token embedding is {self._student_table()})")
                w.assign(arrays[key])
        return fresh

    def _student_table(self):
        return f"{self.student_embedding.input_dim} x {self.student_embedding.output_dim}"


def saved_student_table(path):
    """The student-vocabulary table a teacher checkpoint was prepared with, as a frozen layer.

    A teacher that nothing trains (the ``soft`` and ``tinybert`` modes, evaluation) reads its
    student-vocabulary path through this copy of its own, never through the table a student is
    training: targets computed through a table the student moves would move with it, and a
    student can chase them away from the data.

    Example (``path`` a teacher checkpoint written by ``mbd distill``):
        table = saved_student_table(path)
        teacher = DualVocabTeacher(backbone, table); teacher.load_heads(path)
    """
    with np.load(os.path.join(path, HEADS_FILE)) as z:
        saved = z["student_embedding"]
    return frozen_table(saved)


def frozen_table(values, name="teacher_student_table"):
    """A non-trainable ``keras.layers.Embedding`` holding ``values`` (``[vocabulary, width]``)."""
    values = keras.ops.convert_to_numpy(values)
    layer = keras.layers.Embedding(values.shape[0], values.shape[1], trainable=False, name=name)
    layer.build((None, None))
    layer.embeddings.assign(values)
    return layer


def is_teacher_checkpoint(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, HEADS_FILE))


def load_teacher_backbone(source, dtype=None, dropout=None):
    """Load the teacher encoder and its vocabulary.

    ``source`` is a keras-hub preset name (e.g. ``bert_base_en_uncased``), a
    keras-hub preset directory, a local Hugging Face BERT folder
    (``config.json`` + ``vocab.txt`` + ``model.safetensors``), or a teacher
    checkpoint written by ``mbd distill``. Returns ``(backbone, tokenizer)``.
    """
    import keras_hub

    kwargs = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if dropout is not None:
        kwargs["dropout"] = dropout
    looks_like_path = os.sep in str(source) or str(source).startswith(".") or os.path.exists(str(source))
    if looks_like_path and not os.path.isdir(source):
        raise UserError(f"teacher preset path does not exist: {source}")
    try:
        backbone = keras_hub.models.BertBackbone.from_preset(source, **kwargs)
        tokenizer = keras_hub.models.BertTokenizer.from_preset(source)
    except UserError:
        raise
    except Exception as e:  # keras-hub raises many kinds for unknown presets / no network
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load teacher '{source}': {first[:300]}") from None
    # A teacher saved while frozen (teacher-prep with teacher.trainable=false) keeps trainable=false
    # in its preset config; the run's teacher.trainable decides instead (the Distiller freezes it
    # after pairing its weights with the student's for the shared projections).
    backbone.trainable = True
    return backbone, tokenizer


def random_teacher(vocab, *, num_layers, hidden_dim, num_heads, intermediate_dim=None, dropout=0.1,
                   max_sequence_length=512, dtype=None):
    """A randomly initialised teacher (tests, speed studies)."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim or 4 * hidden_dim, dropout=dropout,
        max_sequence_length=max_sequence_length, dtype=dtype)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=list(vocab), lowercase=True, strip_accents=True)
    return backbone, tokenizer
