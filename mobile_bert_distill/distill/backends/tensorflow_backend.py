"""The TensorFlow backend: ``tf.distribute`` steps, ``tf.data`` input, TensorBoard logs.

Under ``tf.distribute`` every replica runs :meth:`Distiller.compute_terms` on
its share of the global batch; :meth:`TrainingSteps.global_sum` all-reduces the
masked-piece counts so that each replica divides by the *global* count, and
``L_p`` is split over the replicas. The optimizer sums the replicas'
gradients, so one step equals the single-device step on the same global batch
(``tests/test_multidevice.py``).
"""

import keras
import tensorflow as tf

from mobile_bert_distill.errors import UserError


class TrainingSteps:
    """``train_step``/``test_step`` of the distiller on TensorFlow (graph or XLA)."""

    @staticmethod
    def num_replicas():
        return tf.distribute.get_strategy().num_replicas_in_sync

    @staticmethod
    def global_sum(x):
        """Sum of a per-replica scalar over all replicas (identity on one device)."""
        ctx = tf.distribute.get_replica_context()
        if ctx is None:
            return x
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)

    def gradients(self, batch, training=True):
        """``(loss, values, weights, grads)``; ``grads[i]`` belongs to ``trainable_variables[i]``
        (``None`` for a variable the loss does not reach, e.g. the poolers)."""
        batch = self.unpack(batch)
        with tf.GradientTape() as tape:
            loss, values, weights = self.compute_terms(batch, training=training)
            scaled_loss = self.optimizer.scale_loss(loss)
        return loss, values, weights, tape.gradient(scaled_loss, self.trainable_variables)

    def train_step(self, data):
        _, values, weights, grads = self.gradients(data)
        # The poolers take no part in MLM: they get no gradient and are left out.
        pairs = [(g, v) for g, v in zip(grads, self.trainable_variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self.update_metrics(values, weights)

    def test_step(self, data):
        _, values, weights = self.compute_terms(self.unpack(data), training=False)
        return self.update_metrics(values, weights)


def make_strategy(name):
    """The ``tf.distribute`` strategy of ``train.strategy``."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as e:  # no TPU here
            raise UserError(f"train.strategy=tpu but no TPU is reachable ({str(e).splitlines()[0][:200]})") from None
        return tf.distribute.TPUStrategy(resolver)
    if name == "data_parallel":
        raise UserError("train.strategy=data_parallel is the jax backend's; on tensorflow use mirrored")
    raise UserError(f"unknown strategy {name!r}")


def _multi_replica_context():
    ctx = tf.distribute.get_replica_context()
    return ctx is not None and ctx.num_replicas_in_sync > 1


def adamw_class():
    """``keras.optimizers.AdamW`` whose weight decay reads the learning rate once per step.

    Keras 3's TensorFlow ``AdamW`` evaluates ``self.learning_rate`` inside the
    per-variable weight-decay function, so a schedule (warm-up + cosine) is
    rebuilt once per decayed variable in the traced step: hundreds of copies
    that only slow tracing and every step. Here it is evaluated once per
    step and shared; the update itself is unchanged (tested against the
    stock optimizer in ``tests/test_training.py``).

    >>> import keras
    >>> opt = adamw_class()(learning_rate=1e-3, weight_decay=0.01)
    """
    base = keras.optimizers.AdamW
    if not hasattr(base, "_apply_weight_decay"):  # a Keras without the hook: stock AdamW
        return base

    class AdamW(base):
        def _apply_weight_decay(self, variables):
            if self.weight_decay is None:
                return

            def apply(distribution, variables, **kwargs):
                lr = self.learning_rate  # once, in the cross-replica context

                def decay(variable):
                    if self._use_weight_decay(variable):
                        variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype)
                                            * tf.cast(lr, variable.dtype))

                for variable in variables:
                    if isinstance(variable, keras.Variable):
                        variable = variable.value
                    distribution.extended.update(variable, decay, group=False)

            tf.__internal__.distribute.interim.maybe_merge_call(apply, self._distribution_strategy, variables)

    return AdamW


def check_precision(precision):
    """Every ``train.mixed_precision`` runs on TensorFlow (float16 slowly on a CPU)."""


def global_clip_adamw():
    """``AdamW`` that clips the *all-reduced* gradient under ``tf.distribute``.

    Keras 3 (TensorFlow backend) clips each replica's own gradient before the
    all-reduce, so with N replicas ``global_clipnorm`` would bound every
    replica's part instead of their sum and a multi-replica step would differ
    from the single-device step whenever clipping is active. Here the
    per-replica clipping is skipped and the same clipping is applied to the
    summed gradient right after Keras's all-reduce (no extra communication).
    One replica: plain ``AdamW``.
    """
    base = adamw_class()
    for hook in ("_clip_gradients", "_all_reduce_sum_gradients"):
        if not hasattr(base, hook):  # a Keras that no longer has the hooks must not silently drop clipping
            raise RuntimeError(f"keras.optimizers.AdamW has no {hook}(); the multi-replica clipping needs updating")

    class GlobalClipAdamW(base):
        def _clip_gradients(self, grads):
            if _multi_replica_context():
                return grads  # clipped after the all-reduce, below
            return super()._clip_gradients(grads)

        def _all_reduce_sum_gradients(self, grads_and_vars):
            reduced = list(super()._all_reduce_sum_gradients(grads_and_vars))
            if not _multi_replica_context():
                return reduced
            kept = [i for i, (g, _) in enumerate(reduced) if g is not None]
            clipped = super()._clip_gradients([reduced[i][0] for i in kept])
            for i, g in zip(kept, clipped):
                reduced[i] = (g, reduced[i][1])
            return reduced

    return GlobalClipAdamW


def training_input(maker, start_step, end_step):
    """A ``tf.data`` pipeline yielding ``maker(step)`` for ``start_step <= step < end_step``."""
    spec = maker.signature()
    keys = list(spec)

    def _py(step):
        b = maker(int(step))
        return tuple(b[k] for k in keys)

    def _map(step):
        outs = tf.numpy_function(_py, [step], [tf.as_dtype(spec[k][0]) for k in keys], stateful=False)
        return {k: tf.ensure_shape(o, spec[k][1]) for k, o in zip(keys, outs)}

    ds = tf.data.Dataset.range(start_step, end_step)
    ds = ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Re-batch so tf.distribute can split each global batch across replicas.
    ds = ds.unbatch().batch(maker.batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def heldout_input(maker, steps):
    """The first ``steps`` batches of ``maker`` (a re-iterable ``tf.data`` pipeline)."""
    return training_input(maker, 0, steps)


class _SummaryWriter:
    """TensorBoard scalars of one run (``logs/``)."""

    def __init__(self, logdir):
        self.writer = tf.summary.create_file_writer(logdir)

    def write(self, step, scalars):
        with self.writer.as_default(step=step):
            for k, v in scalars.items():
                tf.summary.scalar(k, v)
        self.writer.flush()


def summary_writer(logdir):
    return _SummaryWriter(logdir)


def enable_determinism():
    tf.config.experimental.enable_op_determinism()
