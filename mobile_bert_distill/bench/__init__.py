"""Benchmarks against BERT-base: latency, FLOPs, parameters, the report (``mbd bench``, ``mbd params``).

Modules:

- :mod:`~mobile_bert_distill.bench.run`: ``run_bench``, everything ``mbd bench`` does: times the
  models in fresh worker processes (:mod:`mobile_bert_distill.litert.on_device_bench`) and writes
  the results folder at once.
- :mod:`~mobile_bert_distill.bench.baseline`: the BERT-base baseline, exported like a student and
  cached under a hash of the export code.
- :mod:`~mobile_bert_distill.bench.results`: a results document's analysis, reading and merging.
- :mod:`~mobile_bert_distill.bench.adb`: the adb script for Android phones.
- :mod:`~mobile_bert_distill.bench.flops`, :mod:`~mobile_bert_distill.bench.params`: analytic FLOPs
  and parameter counts (the paper's Table 1).
- :mod:`~mobile_bert_distill.bench.report`, :mod:`~mobile_bert_distill.bench.plots`: REPORT.md and
  its plots.

The names below are the package's public API.

Example::

    from mobile_bert_distill import bench
    doc = bench.run_bench(models=["student.tflite"], baseline="bert-base",
                          seq_lens=[128], threads=[1], runs=20, warmup=3, out="bench")
"""

from mobile_bert_distill.bench.adb import write_adb_script
from mobile_bert_distill.bench.baseline import (
    BASELINE_LABEL, Baseline, default_cache_dir, default_quantization, export_fingerprint,
    perturb_constant_weights)
from mobile_bert_distill.bench.results import analyse_model, load_document, merge
from mobile_bert_distill.bench.run import TOOL, run_bench

__all__ = ["BASELINE_LABEL", "Baseline", "TOOL", "analyse_model", "default_cache_dir", "default_quantization",
           "export_fingerprint", "load_document", "merge", "perturb_constant_weights", "run_bench",
           "write_adb_script"]
