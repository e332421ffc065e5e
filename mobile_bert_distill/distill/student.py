"""The student: a stock keras-hub ``BertMaskedLM`` with the small vocabulary.

Keeping the student a plain keras-hub model means the saved preset loads with
keras-hub alone (``BertMaskedLM.from_preset``, ``BertTextClassifier.from_preset``).

Example:
>>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
>>> mlm = build_student(vocab, hidden_dim=16, num_layers=2, num_heads=2, seq_len=8)
>>> mlm.backbone.hidden_dim
16
"""


def build_student(vocab, *, hidden_dim=48, num_layers=12, num_heads=4, intermediate_dim=None,
                  dropout=0.1, max_sequence_length=512, seq_len=128, mask_rate=0.15,
                  max_predictions=20, dtype=None):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim or 4 * hidden_dim,
        dropout=dropout,
        max_sequence_length=max_sequence_length,
        dtype=dtype,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=list(vocab), lowercase=True, strip_accents=True)
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        tokenizer=tokenizer,
        sequence_length=seq_len,
        mask_selection_rate=mask_rate,
        mask_selection_length=max_predictions,
    )
    return keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=preprocessor, dtype=dtype)


def save_student(mlm, path):
    """Write the student as a keras-hub preset directory (``path`` must not exist)."""
    mlm.save_to_preset(path)
