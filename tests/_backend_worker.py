"""One backend's side of the parity tests: run in a fresh process by tests/test_backends.py.

``python _backend_worker.py BACKEND TASK CONFIG.json INIT.npz OUT.npz``

* ``BACKEND`` is set as ``KERAS_BACKEND`` before Keras is imported.
* ``CONFIG.json`` maps each mode to its resolved config (dropout 0: the step has no RNG).
* ``INIT.npz``: the initial weights, by variable path. Written by the first backend that runs
  (the models' random initialisers differ between backends), loaded by every later one.
* ``TASK``:
  ``step`` — for every mode, the loss terms and the gradient of every trainable variable at the
  initial weights, on batch 0; and the first three batches the backend's training input yields
  for the first mode (tf.data + tf-text on TensorFlow, the NumPy loader + pure Python on JAX);
  ``curve`` — for the first mode, ``fit()`` over the backend's real training input for
  ``train.steps`` steps, one loss per step;
  ``data_parallel`` — JAX only, two logical CPU devices: three steps under
  ``train.strategy=default`` and under ``data_parallel``, the logs and the final weights of each.
"""

import json
import os
import sys

BACKEND, TASK, CONFIG, INIT, OUT = sys.argv[1:6]
os.environ["KERAS_BACKEND"] = BACKEND
if TASK == "data_parallel":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mobile_bert_distill.distill import backends  # noqa: E402
from mobile_bert_distill.distill.run import Run  # noqa: E402


def build(cfg, strategy="default"):
    run = Run(cfg, strategy=backends.module().make_strategy(strategy), log=lambda m: None).build()
    run.make_makers()
    return run


def load_or_save_init(run, path):
    """Same initial weights on every backend (variables in order; paths are not unique)."""
    weights = [v for v in run.distiller.variables if "seed_generator" not in v.path]
    paths = np.array([v.path for v in weights])
    if not os.path.exists(path):
        np.savez(path, paths=paths, **{f"w{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(weights)})
        return
    with np.load(path) as z:
        assert z["paths"].tolist() == paths.tolist(), "the variables differ between backends"
        for i, v in enumerate(weights):
            v.assign(z[f"w{i}"])


def step(configs):
    out = {}
    for mode, cfg in configs.items():
        run = build(cfg)
        if not out:
            for i, batch in enumerate(backends.module().training_input(run.maker, 0, 3)):
                batch = batch[0] if isinstance(batch, tuple) else batch
                out.update({f"batch/{i}/{k}": keras.ops.convert_to_numpy(v) for k, v in batch.items()})
        load_or_save_init(run, INIT.replace(".npz", f"-{mode.replace('+', '_')}.npz"))
        loss, values, _, grads = run.distiller.gradients(run.maker(0))
        out[f"{mode}/loss_for_gradients"] = keras.ops.convert_to_numpy(loss)
        for name, value in values.items():
            out[f"{mode}/value/{name}"] = keras.ops.convert_to_numpy(value)
        for i, (v, g) in enumerate(zip(run.distiller.trainable_variables, grads)):
            if g is not None:
                out[f"{mode}/grad/{i:04d}/{v.path}"] = keras.ops.convert_to_numpy(g)
    return out


def curve(configs):
    mode, cfg = next(iter(configs.items()))
    run = build(cfg)
    load_or_save_init(run, INIT)
    losses = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            losses.append([float(logs[k]) for k in ("loss", "l_ce_student", "l_ce_teacher", "l_p")])

    steps = cfg["train"]["steps"]
    run.distiller.fit(backends.module().training_input(run.maker, 0, steps), epochs=steps, steps_per_epoch=1,
                      callbacks=[Record()], verbose=0)
    return {"losses": np.array(losses), **{f"weight/{i:04d}/{v.path}": keras.ops.convert_to_numpy(v)
                                           for i, v in enumerate(run.student.backbone.trainable_variables)}}


def data_parallel(configs):
    import jax

    assert len(jax.devices()) == 2, jax.devices()
    mode, cfg = next(iter(configs.items()))
    out = {}
    for strategy in ("default", "data_parallel"):
        s = backends.module().make_strategy(strategy)
        with s.scope():
            run = build(cfg, strategy)
            run.strategy = s
            load_or_save_init(run, INIT)
            logs = []
            for i in range(3):
                logs.append(run.distiller.train_on_batch(run.maker(i), return_dict=True))
                run.distiller.reset_metrics()
        out[f"{strategy}/replicas"] = np.array(s.num_replicas_in_sync)
        out[f"{strategy}/losses"] = np.array([[float(lg[k]) for k in ("loss", "l_ce_student", "l_p")]
                                              for lg in logs])
        for i, v in enumerate(run.student.backbone.trainable_variables):
            out[f"{strategy}/weight/{i:04d}/{v.path}"] = keras.ops.convert_to_numpy(v)
    return out


if __name__ == "__main__":
    with open(CONFIG, encoding="utf-8") as f:
        configs = json.load(f)
    result = {"step": step, "curve": curve, "data_parallel": data_parallel}[TASK](configs)
    np.savez(OUT, **result)
    print(f"{BACKEND} {TASK}: {len(result)} arrays", flush=True)
