"""The optimizer every distillation trains with: AdamW on a warm-up + cosine schedule.

The AdamW class comes from the backend (``global_clip_adamw()`` of
:mod:`mobile_bert_distill.distill.backends`): on TensorFlow it clips the
all-reduced gradient and reads the schedule once per step, on JAX it is
Keras's own. Biases and LayerNorm ``gamma``/``beta`` are not decayed.

Example:
>>> opt = make_optimizer({"steps": 100, "warmup_steps": 10, "learning_rate": 1e-4,
...                       "weight_decay": 0.01, "clipnorm": 1.0})
>>> opt.name
'adam_w'
"""

from mobile_bert_distill.distill import backends


def make_optimizer(cfg_train, precision=None):
    """The AdamW of a resolved config's ``train`` section.

    Args:
        cfg_train: the ``train`` section: ``steps``, ``warmup_steps``,
            ``learning_rate``, ``weight_decay``, ``clipnorm`` (a bound on the global gradient norm).
        precision: ``train.mixed_precision``; ``"mixed_float16"`` wraps the
            optimizer in a ``keras.optimizers.LossScaleOptimizer``.

    Returns:
        A ``keras.optimizers.Optimizer`` named ``adam_w`` (not yet built).
    """
    import keras

    steps, warmup = cfg_train["steps"], min(cfg_train["warmup_steps"], cfg_train["steps"])
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else float(cfg_train["learning_rate"]),
        decay_steps=max(steps - warmup, 1), alpha=0.0,
        warmup_target=float(cfg_train["learning_rate"]) if warmup else None, warmup_steps=warmup)
    opt = backends.module().global_clip_adamw()(learning_rate=schedule, weight_decay=float(cfg_train["weight_decay"]),
                                                epsilon=1e-6, global_clipnorm=cfg_train["clipnorm"], name="adam_w")
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt
