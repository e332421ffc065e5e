"""CLI verbs, one module each; see :mod:`mobile_bert_distill.cli`."""
