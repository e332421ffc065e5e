"""`mbd pack-run`: one folder that trains a config on an offline machine without TensorFlow.

The target is a machine with a system Python (3.12 by default) that has JAX, NumPy, h5py,
safetensors and tokenizers, but no TensorFlow, Keras or keras-hub, and no network. The folder
holds everything else the JAX training path needs::

    DIR/
      run.py        stdlib only: `python3 run.py [extra `mbd distill` args]`
      wheels/       keras, keras-hub (this machine's versions) and what they need that is
                    not on the target (see DEVICE_HAS, LEFT_OUT)
      package/      a copy of the `mobile_bert_distill/` source tree
      teacher/      the teacher preset, weights as bfloat16 safetensors (see pack_teacher)
      data/         the first --max-lines lines of each corpus file, the vocabularies and a
                    config.yaml whose paths are relative to data/
      manifest.json what was packed, from where, and the size of each part

`run.py` installs the wheels the target lacks into DIR/site (`pip install --no-index --no-deps
--target`), rebuilds a float32 teacher preset in DIR/data/teacher_preset with :func:`unpack_teacher`,
and runs ``python3 -m mobile_bert_distill distill --backend jax --config data/config.yaml --out
DIR/out`` with ``PYTHONPATH=site:package``, streaming its output and exiting with its code.

Modules: :mod:`.pack` (:func:`pack_run`, the verb), :mod:`.wheels` (which wheels, from where),
:mod:`.teacher` (:func:`pack_teacher`, :func:`unpack_teacher`), :mod:`.safetensors_io` (safetensors
with NumPy alone) and :mod:`.template` (the ``run.py`` text). ``run.py`` imports
:func:`unpack_teacher` from this package, so that name stays here.

Example:
>>> PARTS
('wheels', 'package', 'teacher', 'data', 'run.py')
"""

from mobile_bert_distill.distill.pack_run.pack import (DEFAULT_MAX_LINES, PARTS, UNPACKED_TEACHER, WARN_MB,
                                                       pack_run, size_table)
from mobile_bert_distill.distill.pack_run.safetensors_io import (read_safetensors, safetensors_dtypes,
                                                                 write_safetensors)
from mobile_bert_distill.distill.pack_run.teacher import (TEACHER_DTYPES, TEACHER_MANIFEST, pack_teacher,
                                                          unpack_teacher)
from mobile_bert_distill.distill.pack_run.wheels import (DEVICE_HAS, LEFT_OUT, PYTHON_VERSION, collect_wheels,
                                                         default_wheel_cache, wheel_requirements)

__all__ = [
    "DEFAULT_MAX_LINES", "DEVICE_HAS", "LEFT_OUT", "PARTS", "PYTHON_VERSION", "TEACHER_DTYPES", "TEACHER_MANIFEST",
    "UNPACKED_TEACHER", "WARN_MB", "collect_wheels", "default_wheel_cache", "pack_run", "pack_teacher",
    "read_safetensors", "safetensors_dtypes", "size_table", "unpack_teacher", "wheel_requirements",
    "write_safetensors",
]
