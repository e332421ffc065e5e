"""The JAX backend: a stateless step, ``keras.distribution`` data parallelism, a NumPy loader.

Nothing on this path imports TensorFlow or tf-text (``tests/test_backends.py``
runs ``mbd distill`` and ``mbd eval`` with both imports blocked).

Under ``train.strategy=data_parallel`` Keras shards every global batch over
the devices and ``jax.jit`` computes :meth:`Distiller.compute_terms` on the
global arrays: its sums are already global, so :meth:`TrainingSteps.global_sum`
is the identity, the gradient is the global one and ``global_clipnorm``
clips it (plain ``keras.optimizers.AdamW``).
"""

import contextlib
import queue
import threading

import jax
import keras

from mobile_bert_distill.errors import UserError


def _current_values(variables, scope):
    out = []
    for v in variables:
        new = scope.get_current_value(v)
        out.append(v.value if new is None else new)
    return out


class TrainingSteps:
    """``train_step``/``test_step`` of the distiller on JAX (stateless, as Keras's JAX trainer wants)."""

    @staticmethod
    def num_replicas():
        return 1  # jit sees the global batch, sharded or not

    @staticmethod
    def global_sum(x):
        return x

    def _stateless_terms(self, trainable, non_trainable, batch, training):
        mapping = list(zip(self.trainable_variables, trainable)) + list(zip(self.non_trainable_variables,
                                                                             non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss, values, weights = self.compute_terms(batch, training=training)
        return loss, values, weights, _current_values(self.non_trainable_variables, scope)

    def _loss_and_grads(self, trainable, non_trainable, optimizer_variables, batch, training=True):
        def scaled_loss(trainable, non_trainable):
            loss, values, weights, non_trainable = self._stateless_terms(trainable, non_trainable, batch, training)
            with keras.StatelessScope(state_mapping=list(zip(self.optimizer.variables, optimizer_variables))):
                scaled = self.optimizer.scale_loss(loss)
            return scaled, (loss, values, weights, non_trainable)

        (_, aux), grads = jax.value_and_grad(scaled_loss, has_aux=True)(trainable, non_trainable)
        return aux, grads

    def gradients(self, batch, training=True):
        """``(loss, values, weights, grads)`` at the current weights; ``grads[i]`` belongs to
        ``trainable_variables[i]`` (zeros for a variable the loss does not reach)."""
        (loss, values, weights, _), grads = self._loss_and_grads(
            [v.value for v in self.trainable_variables], [v.value for v in self.non_trainable_variables],
            [v.value for v in self.optimizer.variables], self.unpack(batch), training)
        return loss, values, weights, grads

    def _stateless_metrics(self, metrics_variables, values, weights):
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metrics_variables))) as scope:
            logs = self.update_metrics(values, weights)
        return logs, _current_values(self.metrics_variables, scope)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        (_, values, weights, non_trainable), grads = self._loss_and_grads(
            trainable, non_trainable, optimizer_variables, self.unpack(data))
        trainable, optimizer_variables = self.optimizer.stateless_apply(optimizer_variables, grads, trainable)
        logs, metrics_variables = self._stateless_metrics(metrics_variables, values, weights)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        _, values, weights, non_trainable = self._stateless_terms(trainable, non_trainable, self.unpack(data),
                                                                  training=False)
        logs, metrics_variables = self._stateless_metrics(metrics_variables, values, weights)
        return logs, (trainable, non_trainable, metrics_variables)


class _Strategy:
    """``train.strategy`` on JAX: one device, or ``keras.distribution.DataParallel`` over all of them."""

    def __init__(self, distribution=None):
        self.distribution = distribution
        self.num_replicas_in_sync = len(jax.devices()) if distribution is not None else 1

    def scope(self):
        return self.distribution.scope() if self.distribution is not None else contextlib.nullcontext()


def make_strategy(name):
    if name == "default":
        return _Strategy()
    if name == "data_parallel":
        return _Strategy(keras.distribution.DataParallel(devices=jax.devices()))
    if name == "mirrored":
        raise UserError("train.strategy=mirrored is TensorFlow's; on jax use data_parallel "
                        "(every local device: GPUs, TPU cores or logical CPU devices)")
    if name == "tpu":
        raise UserError("train.strategy=tpu is TensorFlow's; on jax use data_parallel (it spans the TPU cores)")
    raise UserError(f"unknown strategy {name!r}")


def check_precision(precision):
    """Refuse a ``train.mixed_precision`` this JAX platform cannot run."""
    if precision == "mixed_float16" and jax.default_backend() == "cpu":
        raise UserError("train.mixed_precision=mixed_float16 does not run on jax's CPU platform (XLA has no "
                        "float16 matrix multiply there): use mixed_bfloat16 or float32")


def global_clip_adamw():
    """Keras's AdamW: on JAX it already clips the global gradient (see the module docstring)."""
    return keras.optimizers.AdamW


class _Prefetch:
    """Iterate ``maker(step)`` for ``start <= step < end``, ``depth`` batches ahead on one thread.

    Batches come in step order and are exactly ``maker(step)``: the loader adds
    no state of its own, so a resumed run reads the same batches.
    """

    def __init__(self, maker, start, end, depth=4):
        self.maker, self.start, self.end, self.depth = maker, start, end, depth

    def __iter__(self):
        q = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def work():
            try:
                for step in range(self.start, self.end):
                    item = (True, self.maker(step))
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as e:  # re-raised in the consumer
                q.put((False, e))

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            for _ in range(self.start, self.end):
                ok, item = q.get()
                if not ok:
                    raise item
                yield (item,)  # Keras reads a generator's elements as (inputs,) tuples
        finally:
            stop.set()


def training_input(maker, start_step, end_step):
    """A generator of ``maker(step)`` batches, prepared on a thread ahead of the step."""
    return iter(_Prefetch(maker, start_step, end_step))


class _HeldOut(keras.utils.PyDataset):
    """The first ``steps`` batches of ``maker``; read again at every evaluation."""

    def __init__(self, maker, steps):
        super().__init__()
        self.maker, self.steps = maker, steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return self.maker(index)


def heldout_input(maker, steps):
    return _HeldOut(maker, steps)


def summary_writer(logdir):
    return None  # TensorBoard's writer needs TensorFlow; history.json holds the same scalars


def enable_determinism():
    pass  # XLA on CPU is deterministic; the step has no atomics there
