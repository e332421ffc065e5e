"""Shared projections: a loss that ties student weights to teacher weights.

For every weight of transformer layer ``i`` of the student and the weight of
the same role in its paired teacher layer (layer ``i`` by default), seen as a
matrix ``θ`` (``a × b``); a layer shared across depth (ALBERT-style) is layer
``i`` at every depth ``i`` it runs:

* **Down**: ``‖U θ_t V − θ_s‖²`` with ``U: a_s × a_t``, ``V: b_t × b_s``;
* **Up**:   ``‖θ_t − V θ_s U‖²`` with ``V: a_t × a_s``, ``U: b_s × b_t``.

One ``(U, V)`` pair exists per distinct (teacher shape, student shape) and is
shared by all layers. Kernels of the attention projections (``d × heads ×
head_dim``) are seen as ``d × d`` matrices; vectors (biases, LayerNorm γ/β) as
``1 × n`` rows, so their ``U`` is ``1 × 1`` and ``V`` projects their one axis.
Embedding tables are not paired (the two vocabularies differ), nor is an ALBERT-style
student's embedding projection (the teacher has none).

**Normalisation.** Each pair contributes the *mean* squared error over the
elements of its target (``θ_s`` for Down, ``θ_t`` for Up), and ``L_p`` is the
mean over pairs. Both means are independent of the widths, so the same ``ε``
weighs ``L_p`` against the cross-entropies alike for a 48-d and a 192-d
student. ``U`` and ``V`` start with variance ``1/fan_in``, which keeps a
projected weight at the scale of the weight it is projected from.

U and V exist only for training: they are not part of the saved student.

Example:
>>> import numpy as np, keras
>>> t = [keras.Variable(np.ones((4, 6), "float32"), name="kernel")]
>>> s = [keras.Variable(np.zeros((2, 3), "float32"), name="kernel")]
>>> proj = SharedProjections("down", [(t[0], s[0], "l0/kernel")])
>>> float(proj.loss()) > 0
True
"""

import keras
import numpy as np
from keras import ops

from mobile_bert_distill.architectures import encoder_layers
from mobile_bert_distill.errors import UserError

DIRECTIONS = ("down", "up")


def _is_vector(path):
    leaf = path.split("/")[-1]
    return leaf in ("bias", "gamma", "beta")


def as_matrix(value, path):
    """View a transformer weight as a matrix (``1 × n`` for vectors)."""
    shape = tuple(value.shape)
    if _is_vector(path) or len(shape) == 1:
        return ops.reshape(value, (1, int(np.prod(shape))))
    if len(shape) == 2:
        return value
    if len(shape) == 3:
        if path.endswith("attention_output/kernel"):  # (heads, head_dim, d)
            return ops.reshape(value, (shape[0] * shape[1], shape[2]))
        return ops.reshape(value, (shape[0], shape[1] * shape[2]))  # (d, heads, head_dim)
    raise ValueError(f"cannot view {path} of shape {shape} as a matrix")


def matrix_shape(var):
    shape = tuple(int(d) for d in var.shape)
    path = var.path
    if _is_vector(path) or len(shape) == 1:
        return (1, int(np.prod(shape)))
    if len(shape) == 2:
        return shape
    if path.endswith("attention_output/kernel"):
        return (shape[0] * shape[1], shape[2])
    return (shape[0], shape[1] * shape[2])


def chain_matmul(a, b, c):
    """``a @ b @ c`` multiplied in the order with fewer multiply-adds (the shapes are static).

    ``(ab)c`` costs ``m·k·n + m·n·p`` and ``a(bc)`` costs ``k·n·p + m·k·p`` for ``a: m × k``,
    ``b: k × n``, ``c: n × p``. For the demo's feed-forward kernels (384 × 1536 against 48 × 192)
    the better order needs 42 M instead of 117 M multiply-adds; the product is the same.

    Example:
    >>> import numpy as np
    >>> a, b, c = np.ones((2, 3), "float32"), np.ones((3, 4), "float32"), np.ones((4, 5), "float32")
    >>> np.asarray(chain_matmul(a, b, c)).tolist()[0]
    [12.0, 12.0, 12.0, 12.0, 12.0]
    """
    (m, k), (n, p) = tuple(a.shape), tuple(c.shape)
    if k * n * p + m * k * p < m * k * n + m * n * p:
        return ops.matmul(a, ops.matmul(b, c))
    return ops.matmul(ops.matmul(a, b), c)


def resolve_layer_map(num_teacher_layers, num_student_layers, layer_map=None):
    """Student layer index -> teacher layer index.

    Equal depths pair layer ``i`` with layer ``i``. Different depths need an
    explicit map, e.g. ``{0: 1, 1: 3, 2: 5}`` for a 3-layer student under a
    6-layer teacher; every student layer must be mapped.
    """
    if layer_map is None:
        if num_teacher_layers != num_student_layers:
            raise UserError(
                f"teacher has {num_teacher_layers} layers and the student {num_student_layers}: "
                "shared projections pair layers one to one; set projection.layer_map "
                "(student layer -> teacher layer, e.g. {0: 1, 1: 3}) or use equal depths")
        return {i: i for i in range(num_student_layers)}
    mapping = {int(k): int(v) for k, v in dict(layer_map).items()}
    missing = [i for i in range(num_student_layers) if i not in mapping]
    bad = [(k, v) for k, v in mapping.items()
           if not 0 <= k < num_student_layers or not 0 <= v < num_teacher_layers]
    if missing or bad:
        raise UserError(f"projection.layer_map must map every student layer 0..{num_student_layers - 1} "
                        f"to a teacher layer 0..{num_teacher_layers - 1} (missing {missing}, out of range {bad})")
    return mapping


def transformer_weight_pairs(teacher_backbone, student_backbone, layer_map=None):
    """``[(teacher_var, student_var, name)]`` for every paired transformer weight.

    Layers are paired depth by depth (:func:`~mobile_bert_distill.architectures.encoder_layers`):
    a student layer shared across depth (ALBERT-style) is paired at every depth it runs, so its
    weights are tied to each teacher layer they stand for, one pair per depth. A weight's role
    is its path after the layer's name (``self_attention_layer/query/kernel``), the same in
    BERT's and ALBERT's layers.
    """
    t_layers, s_layers = encoder_layers(teacher_backbone), encoder_layers(student_backbone)
    mapping = resolve_layer_map(len(t_layers), len(s_layers), layer_map)
    pairs = []
    for s_idx, t_idx in sorted(mapping.items()):
        t_w = t_layers[t_idx].trainable_weights
        s_w = s_layers[s_idx].trainable_weights
        t_by_role = {w.path.split("/", 1)[1]: w for w in t_w}
        for w in s_w:
            role = w.path.split("/", 1)[1]
            if role not in t_by_role:
                raise UserError(f"student weight {w.path} has no teacher counterpart")
            pairs.append((t_by_role[role], w, f"layer{s_idx}<-{t_idx}/{role}"))
    return pairs


class SharedProjections(keras.layers.Layer):
    """Holds the shared ``(U, V)`` matrices and computes ``L_p``.

    Args:
        direction: ``"down"`` (project the teacher onto the student) or ``"up"``.
        pairs: ``[(teacher_var, student_var, name)]`` from
            :func:`transformer_weight_pairs`.
    """

    def __init__(self, direction, pairs, **kwargs):
        super().__init__(**kwargs)
        if direction not in DIRECTIONS:
            raise UserError(f"projection direction must be one of {DIRECTIONS}, got {direction!r}")
        self.direction = direction
        self.pairs = list(pairs)
        self.projections = {}
        for t_var, s_var, _ in self.pairs:
            key = self._key(t_var, s_var)
            if key in self.projections:
                continue
            (a_t, b_t), (a_s, b_s) = matrix_shape(t_var), matrix_shape(s_var)
            if direction == "down":  # U θ_t V ≈ θ_s
                u_shape, v_shape = (a_s, a_t), (b_t, b_s)
            else:  # θ_t ≈ V θ_s U
                v_shape, u_shape = (a_t, a_s), (b_s, b_t)
            name = key.replace("x", "_").replace(">", "to")
            u = self.add_weight(name=f"U_{name}", shape=u_shape,
                                initializer=keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(u_shape[1] if direction == "down" else u_shape[0])))
            v = self.add_weight(name=f"V_{name}", shape=v_shape,
                                initializer=keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(v_shape[0] if direction == "down" else v_shape[1])))
            self.projections[key] = (u, v)
        self.built = True

    @staticmethod
    def _key(t_var, s_var):
        (a_t, b_t), (a_s, b_s) = matrix_shape(t_var), matrix_shape(s_var)
        return f"{a_t}x{b_t}>{a_s}x{b_s}"

    @property
    def num_shapes(self):
        return len(self.projections)

    def pair_projection(self, t_var, s_var):
        """The ``(U, V)`` shared by every pair with the shapes of ``t_var`` and ``s_var``."""
        return self.projections[self._key(t_var, s_var)]

    def pair_losses(self):
        """Mean squared error of every pair (a list of scalars)."""
        losses = []
        for t_var, s_var, _ in self.pairs:
            u, v = self.pair_projection(t_var, s_var)
            theta_t = as_matrix(ops.cast(t_var, "float32"), t_var.path)
            theta_s = as_matrix(ops.cast(s_var, "float32"), s_var.path)
            if self.direction == "down":
                diff = chain_matmul(u, theta_t, v) - theta_s
            else:
                diff = theta_t - chain_matmul(v, theta_s, u)
            losses.append(ops.mean(ops.square(diff)))
        return losses

    def loss(self):
        """``L_p``: the mean over pairs of each pair's mean squared error."""
        losses = self.pair_losses()
        return ops.mean(ops.stack(losses)) if losses else ops.zeros(())

    def get_config(self):
        config = super().get_config()
        config.update(direction=self.direction)
        return config
