"""`mbd distill --strategy mirrored` on two logical CPU devices follows the single-device run.

Both runs go through the real command (config -> tf.data pipeline -> ``fit()`` -> artifacts), one
after the other in one fresh process (one TensorFlow start-up), on the same global batch of 8:
each of the two replicas gets 4 sequences, divides its summed
cross-entropy by the *global* number of masked pieces and ``L_p`` by the number of replicas, the
optimizer sums the replicas' gradients and clips the sum (``train.clipnorm=1.0``, active in these
steps). The teacher, and so the student, has one layer: the replica arithmetic is the same at any
depth, while the cost (tracing the mirrored step) grows with it.
Mathematically the runs are identical step for step; in float32 they differ only in the
order of summation (per-replica partial sums, then the all-reduce): relative rounding of ~1e-7
per step, which AdamW carries forward. Measured over the ten steps: at most 1.8e-7 relative on
every logged loss and 6e-8 absolute on every student weight, so ``rtol=1e-5`` / ``atol=1e-6``
leave a 50x / 16x margin. They still catch real differences: with Keras's stock clipping (each
replica clips its own half-gradient before the all-reduce; `tensorflow_backend.global_clip_adamw` fixes
that) the ``L_p`` curve was off by up to 2.7e-3 relative (4.7e-4 at step 3, growing after); a
replica that saw other sequences than its half of the global batch would change the
cross-entropies by far more.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import tiny_config_dict

# Runs the CLI in a fresh process whose one physical CPU is split into two logical devices
# (the same pattern as tests/test_training.py). argv[1] is a JSON list of `mbd` argument lists, run
# one after the other by `cli.main` in that one process (one TensorFlow start-up for both runs; each
# run seeds and builds its own models); each run's stdout is framed by the marker lines below.
_MARK = "=== mbd run"
_RUN_MBD_ON_2_CPUS = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mobile_bert_distill.cli import main
for i, args in enumerate(json.loads(sys.argv[1])):
    print(f"=== mbd run {i}", flush=True)
    code = main(args)
    if code:
        sys.exit(code)
"""

STEPS = 10


def _distill_all(cfg_path, runs):
    """``mbd distill`` once per ``(out, strategy)`` in ``runs``; returns each run's stdout."""
    argvs = []
    for out, strategy in runs:
        args = ["distill", "--config", cfg_path, "--out", str(out), "--no-progress"]
        if strategy:
            args += ["--strategy", strategy]
        argvs.append(args)
    r = subprocess.run([sys.executable, "-c", _RUN_MBD_ON_2_CPUS, json.dumps(argvs)], capture_output=True,
                       text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    parts = r.stdout.split(_MARK)[1:]
    assert len(parts) == len(runs), r.stdout[-2000:]
    return parts


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multidevice")
    cfg = tiny_config_dict(tiny_data, "dual+up", steps=STEPS, batch_size=8, learning_rate=5e-3,
                           warmup_steps=2, log_every=1, checkpoint_every=STEPS, eval_every=0,
                           deterministic=True, clipnorm=1.0)
    cfg["teacher"]["random"]["num_layers"] = 1
    assert cfg["student"]["dropout"] == 0.0 and cfg["teacher"]["dropout"] == 0.0  # no RNG in the step
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    names = {"default": None, "mirrored": "mirrored"}
    stdouts = _distill_all(str(path), [(tmp / name, strategy) for name, strategy in names.items()])
    return {name: {"stdout": stdout, "history": json.loads((tmp / name / "history.json").read_text()),
                   "dir": tmp / name} for name, stdout in zip(names, stdouts)}


@pytest.mark.slow
def test_mirrored_loss_curve_equals_default(two_runs):
    d, m = two_runs["default"], two_runs["mirrored"]
    assert "replicas 1" in d["stdout"] and "replicas 2" in m["stdout"]
    assert [r["step"] for r in d["history"]] == list(range(1, STEPS + 1))
    assert [r["step"] for r in m["history"]] == [r["step"] for r in d["history"]]
    keys = ("loss", "l_p", "l_ce_student", "l_ce_teacher", "l_ce_teacher_tvocab", "l_ce_teacher_svocab")
    curve_d = np.array([[r[k] for k in keys] for r in d["history"]])
    curve_m = np.array([[r[k] for k in keys] for r in m["history"]])
    np.testing.assert_allclose(curve_m, curve_d, rtol=1e-5)
    for rd, rm in zip(d["history"], m["history"]):
        assert rm["learning_rate"] == pytest.approx(rd["learning_rate"], rel=1e-6)
        for k in ("student_acc", "teacher_acc_tvocab", "teacher_acc_svocab", "teacher_svocab_share"):
            assert rm[k] == pytest.approx(rd[k], abs=1e-6), (rd["step"], k)
    # the run really trained: the loss curve moved
    assert curve_d[-1, 0] < 0.97 * curve_d[0, 0], curve_d[:, 0]


@pytest.mark.slow
def test_mirrored_student_weights_equal_default(two_runs):
    import h5py

    def weights(run_dir):
        out = {}
        with h5py.File(run_dir / "student" / "model.weights.h5") as f:
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out

    wd, wm = weights(two_runs["default"]["dir"]), weights(two_runs["mirrored"]["dir"])
    assert wd.keys() == wm.keys() and len(wd) > 10
    for k in wd:
        # ten AdamW steps of lr <= 5e-3 move a weight by up to ~5e-2; 1e-6 is 0.002% of that
        np.testing.assert_allclose(wm[k], wd[k], rtol=0, atol=1e-6, err_msg=k)

