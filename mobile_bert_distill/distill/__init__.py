"""The method (Zhao et al. 2019): dual-vocabulary training and shared projections.

Modules, in the order a run uses them:

- :mod:`~mobile_bert_distill.distill.config`: the run configuration (``MODES``, defaults, checks,
  ``teacher_depth``).
- :mod:`~mobile_bert_distill.distill.data`: a corpus tokenized once with both vocabularies.
- :mod:`~mobile_bert_distill.distill.mixing`: the dual-training batches (each word of a teacher
  input segmented with the student vocabulary with probability ``p_dt``).
- :mod:`~mobile_bert_distill.distill.student`, :mod:`~mobile_bert_distill.distill.teacher`: the
  student and the two-headed teacher (student pieces enter through an up-projection).
- :mod:`~mobile_bert_distill.distill.projections`: the shared-projection loss on weights.
- :mod:`~mobile_bert_distill.distill.soft`: the ``+soft`` modes' terms (DistilBERT: KL at temperature, cosine).
- :mod:`~mobile_bert_distill.distill.tinybert`: the ``tinybert`` mode's layer-wise terms (embeddings, hidden
  states, attention probabilities).
- :mod:`~mobile_bert_distill.distill.distiller`: ``L = L_p + ε·(L_ce_student + L_ce_teacher)``.
- :mod:`~mobile_bert_distill.distill.optimizer`, :mod:`~mobile_bert_distill.distill.run`,
  :mod:`~mobile_bert_distill.distill.checkpoints`: AdamW, the run lifecycle (``mbd distill``), resume.
- :mod:`~mobile_bert_distill.distill.evaluation`: held-out masked-token accuracy (``mbd eval``).
- :mod:`~mobile_bert_distill.distill.backends`: what differs per Keras backend (step, strategy, loader).
- :mod:`~mobile_bert_distill.distill.pack_run`: one folder that trains on an offline JAX machine.
"""
