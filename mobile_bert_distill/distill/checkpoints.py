"""Step checkpoints of the whole training state, and resume from the newest one.

A checkpoint holds every variable of the distiller (student, teacher, heads,
up-projection, shared projections, dropout seed states) and of the optimizer
(step counter included), written atomically as ``step-NNNNNNN.npz``; the
newest ``keep`` are kept. Data batches are a pure function of the step, so
restoring the variables is all a resumed run needs to continue exactly where
the killed one stopped. A newest checkpoint that cannot be read (a disk that
filled up, a copy cut short) is skipped for the newest intact one.

Example:
>>> import keras, tempfile
>>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> opt = keras.optimizers.Adam(); opt.build(m.trainable_variables)
>>> ck = Checkpointer(tempfile.mkdtemp(), m, opt, keep=2)
>>> path = ck.save(10)
>>> ck.latest_step()
10
"""

import glob
import os
import re
import zipfile

import keras
import numpy as np

from mobile_bert_distill.atomic import atomic_file
from mobile_bert_distill.errors import UserError

_NAME = re.compile(r"step-(\d+)\.npz$")


class Checkpointer:
    def __init__(self, directory, model, optimizer, keep=2):
        self.directory = directory
        self.model = model
        self.optimizer = optimizer
        self.keep = keep

    def _variables(self):
        return list(self.model.variables), list(self.optimizer.variables)

    def steps(self):
        found = []
        for path in glob.glob(os.path.join(self.directory, "step-*.npz")):
            m = _NAME.search(path)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def latest_step(self):
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step):
        return os.path.join(self.directory, f"step-{step:07d}.npz")

    def save(self, step):
        os.makedirs(self.directory, exist_ok=True)
        model_vars, opt_vars = self._variables()
        arrays = {f"m{i:05d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model_vars)}
        arrays.update({f"o{i:05d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(opt_vars)})
        arrays["backend"] = np.array(keras.backend.backend())
        arrays["model_paths"] = np.array([v.path for v in model_vars])
        arrays["optimizer_paths"] = np.array([v.path for v in opt_vars])
        target = self.path(step)
        with atomic_file(target, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        for old in self.steps()[: -self.keep]:
            os.remove(self.path(old))
        return target

    def restore_latest(self, log=print):
        """Restore the newest intact checkpoint; ``(step, backend that wrote it)``, or ``(0, None)`` if none.

        An unreadable newest checkpoint is skipped, saying so; when checkpoints exist and none can be
        read, :class:`UserError` names ``restart``.
        """
        steps = self.steps()
        for step in reversed(steps):
            try:
                return step, self.restore(step)
            except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
                log(f"checkpoint {self.path(step)} cannot be read ({type(e).__name__}: {str(e)[:120]}); "
                    "trying the one before it")
        if steps:
            raise UserError(f"no checkpoint in {self.directory} can be read", option="restart",
                            purpose="to start over")
        return 0, None

    def restore(self, step):
        """Assign the checkpoint of ``step``; the optimizer must already be built.

        Returns the Keras backend that wrote it (``None`` for checkpoints older than
        that record). The arrays are backend-neutral: a run may resume on another backend.
        """
        model_vars, opt_vars = self._variables()
        with np.load(self.path(step)) as z:
            saved_m = [str(p) for p in z["model_paths"]]
            saved_o = [str(p) for p in z["optimizer_paths"]]
            if saved_m != [v.path for v in model_vars] or len(saved_o) != len(opt_vars):
                raise UserError(f"checkpoint {self.path(step)} does not match this model "
                                "(was the configuration changed?)", option="restart", purpose="to start over")
            for i, v in enumerate(model_vars):
                v.assign(z[f"m{i:05d}"])
            for i, v in enumerate(opt_vars):
                v.assign(z[f"o{i:05d}"])
            return str(z["backend"]) if "backend" in z.files else None
