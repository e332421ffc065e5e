"""Downstream tasks: what ``mbd finetune`` and ``mbd theseus`` train from a preset.

``arch`` (which architecture ``mbd finetune`` trains, and its options), ``finetune`` (a keras-hub
classifier, optional soft-target KD), ``early_exit`` (FastBERT's self-distilled exits), ``theseus``
and ``module_replacing`` (BERT-of-Theseus), ``bilstm`` and ``bilstm_augment`` (the BiLSTM student of
Tang et al.), ``sentiment_data`` (the Rotten Tomatoes split of ``mbd data fetch-sentiment``).
"""
