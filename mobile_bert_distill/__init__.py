"""mobile-bert-distill: distil BERT into a sub-7 MB on-device student.

Implements Zhao et al. 2019, "Extreme Language Model Compression with Optimal
Subwords and Shared Projections" (arXiv 1909.11687) with Keras 3 / keras-hub,
exports the student to LiteRT and benchmarks it against BERT-base.

Heavy modules (TensorFlow, keras-hub) are imported lazily by the submodules
that need them, so `import mobile_bert_distill` stays cheap.
"""

import os

__version__ = "0.1.0"

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
"""The shipped configurations (``tiny.yaml``, ``demo.yaml``, ``bert_base_colab.yaml``)."""
