"""BERT-of-Theseus' progressive module replacing (Xu et al. 2020): the schedule and the mixed model.

The predecessor's ``n`` transformer layers are split into ``K`` modules of
``n / K`` consecutive layers; module ``i`` has a one-layer successor. For every
batch, each module is replaced by its successor independently with probability
``p`` (one Bernoulli draw per module per batch), so the successors learn to
stand in for their modules inside the rest of the fine-tuned predecessor, with
the task loss alone. ``p`` follows the paper's linear curriculum

``p_t = min(1, θ·t + b)``

(``b``: the start rate, ``θ``: the slope per training step, ``t``: the step).

* :class:`ReplacementSchedule` is that formula.
* :class:`ModuleReplacing` is the encoder that chooses per module per batch.
* :class:`TheseusClassifier` puts it between the embeddings and the classifier
  head that predecessor and successor share.
* :class:`ReplacementCurriculum` sets ``p`` before every training batch.

Example:
>>> schedule = ReplacementSchedule(start_rate=0.3, slope=0.01)
>>> [round(schedule(t), 2) for t in (0, 35, 70, 500)]
[0.3, 0.65, 1.0, 1.0]
"""

import dataclasses
import math

import keras

from mobile_bert_distill.errors import UserError


@dataclasses.dataclass(frozen=True)
class ReplacementSchedule:
    """The replacement rate ``p_t = min(1, θ·t + b)``.

    Args:
        start_rate: ``b``, the rate at step 0, in [0, 1].
        slope: ``θ``, the growth per training step (>= 0; 0 keeps ``b``).

    Example:
    >>> ReplacementSchedule.reaching_one_at(0.5, steps=100)(50)
    0.75
    """

    start_rate: float
    slope: float

    def __post_init__(self):
        if not 0.0 <= self.start_rate <= 1.0:
            raise UserError(f"the start replacement rate must be from 0 to 1 (got {self.start_rate})")
        if not (math.isfinite(self.slope) and self.slope >= 0.0):
            raise UserError(f"the replacement rate's slope must be a finite number >= 0 (got {self.slope})")

    @classmethod
    def reaching_one_at(cls, start_rate, steps):
        """The schedule from ``start_rate`` that reaches 1 at step ``steps``."""
        if steps < 1:
            raise UserError(f"the replacement curriculum needs at least 1 step (got {steps})")
        return cls(start_rate, (1.0 - start_rate) / steps)

    def __call__(self, step):
        return min(1.0, self.slope * step + self.start_rate)

    def as_dict(self):
        return {"formula": "p_t = min(1, slope * t + start_rate)", "start_rate": self.start_rate,
                "slope": self.slope}


@keras.saving.register_keras_serializable(package="mobile_bert_distill")
class ModuleReplacing(keras.layers.Layer):
    """``K`` modules in turn; each call runs module ``i`` as its successor with probability ``p``.

    Module ``i`` is ``predecessor_modules[i]`` (a list of transformer layers run
    in order) or ``successors[i]`` (one transformer layer); the draws are ``K``
    independent uniform numbers per call (per batch), ``u_i < p`` replacing.
    ``p = 0`` is the predecessor, ``p = 1`` the successor alone. The choice does
    not depend on ``training``: the rate decides, so a model can be checked at
    ``p = 0`` and ``p = 1``. Only the chosen branch runs.

    Args:
        predecessor_modules: ``K`` lists of layers called as ``layer(x, padding_mask=m)``.
        successors: ``K`` layers called the same way.
        replace_rate: the initial ``p`` (a non-trainable variable, :attr:`replace_rate`).
        seed: seed of the draws.

    Example:
    >>> import numpy as np, keras_hub
    >>> enc = lambda: keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=1)
    >>> layer = ModuleReplacing([[enc(), enc()]], [enc()], replace_rate=1.0, seed=0)
    >>> tuple(layer(np.zeros((1, 3, 4), "float32")).shape)
    (1, 3, 4)
    """

    def __init__(self, predecessor_modules, successors, replace_rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        predecessor_modules = [list(module) for module in predecessor_modules]
        if len(predecessor_modules) != len(successors) or not successors:
            raise UserError(f"need one successor per module (got {len(predecessor_modules)} modules and "
                            f"{len(successors)} successors)")
        sizes = {len(module) for module in predecessor_modules}
        if len(sizes) != 1 or 0 in sizes:
            raise UserError(f"the modules must have one size >= 1 (got sizes {sorted(sizes)})")
        self.module_size = sizes.pop()
        # one flat list: Keras tracks the layers of a list, not of nested lists
        self.predecessor_layers = [layer for module in predecessor_modules for layer in module]
        self.successors = list(successors)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.replace_rate = self.add_weight(shape=(), initializer=keras.initializers.Constant(replace_rate),
                                            trainable=False, name="replace_rate")

    @property
    def num_modules(self):
        return len(self.successors)

    def predecessor_module(self, i):
        return self.predecessor_layers[i * self.module_size:(i + 1) * self.module_size]

    def build(self, input_shape):
        for layer in [*self.predecessor_layers, *self.successors]:
            if not layer.built:
                layer.build(input_shape)

    def call(self, hidden, padding_mask=None, training=None):
        draws = keras.random.uniform((self.num_modules,), seed=self.seed_generator)
        for i in range(self.num_modules):
            def successor(x=hidden, i=i):
                return self.successors[i](x, padding_mask=padding_mask, training=training)

            def predecessor(x=hidden, i=i):
                for layer in self.predecessor_module(i):
                    x = layer(x, padding_mask=padding_mask, training=training)
                return x

            hidden = keras.ops.cond(draws[i] < self.replace_rate, successor, predecessor)
        return hidden

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            predecessor_modules=[[serialize(layer) for layer in self.predecessor_module(i)]
                                 for i in range(self.num_modules)],
            successors=[serialize(layer) for layer in self.successors],
            replace_rate=float(keras.ops.convert_to_numpy(self.replace_rate)),
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        config["predecessor_modules"] = [[deserialize(c) for c in module] for module in config["predecessor_modules"]]
        config["successors"] = [deserialize(c) for c in config["successors"]]
        return cls(**config)


class TheseusClassifier(keras.Model):
    """The mixed classifier of the compression phase: shared embeddings, :class:`ModuleReplacing`, shared head.

    The embeddings, the pooler and the output layer are the successor
    classifier's (copies of the predecessor's, see
    :func:`mobile_bert_distill.downstream.theseus.successor_classifier`), so at
    ``p = 0`` this is the predecessor and at ``p = 1`` the successor,
    numerically. It reads preprocessed inputs (``token_ids``, ``segment_ids``,
    ``padding_mask``) and returns logits.

    Args:
        successor: the ``K``-layer ``BertTextClassifier``.
        predecessor_modules: ``K`` lists of the predecessor's transformer layers.
        replace_rate: the initial ``p``.
        seed: seed of the replacement draws.
    """

    def __init__(self, successor, predecessor_modules, replace_rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        backbone = successor.backbone
        self.embeddings = keras.Model(backbone.input, backbone.embeddings_dropout.output, name="shared_embeddings")
        self.encoder = ModuleReplacing(predecessor_modules, backbone.transformer_layers, replace_rate=replace_rate,
                                       seed=seed, name="module_replacing")
        self.pooler = backbone.pooled_dense
        self.head_dropout = successor.output_dropout
        self.head = successor.output_dense

    def call(self, inputs, training=None):
        x = self.embeddings(inputs, training=training)
        x = self.encoder(x, padding_mask=inputs["padding_mask"], training=training)
        pooled = self.pooler(x[:, 0, :])  # the [CLS] position, as in BertBackbone
        return self.head(self.head_dropout(pooled, training=training))


class ReplacementCurriculum(keras.callbacks.Callback):
    """Sets ``encoder.replace_rate`` to ``schedule(t)`` before every training batch (``t``: optimizer steps
    taken), and logs the rate at the end of each epoch.

    Args:
        schedule: a :class:`ReplacementSchedule` (or any ``step -> rate``).
        encoder: the :class:`ModuleReplacing` layer.
        log: where the epoch lines go (``None``: silent).
    """

    def __init__(self, schedule, encoder, log=print):
        super().__init__()
        self.schedule, self.encoder, self.log = schedule, encoder, log

    def on_train_batch_begin(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.encoder.replace_rate.assign(self.schedule(step))

    def on_epoch_end(self, epoch, logs=None):
        if self.log:
            rate = float(keras.ops.convert_to_numpy(self.encoder.replace_rate))
            self.log(f"compression epoch {epoch + 1}: replacement rate p = {rate:.3f}")
