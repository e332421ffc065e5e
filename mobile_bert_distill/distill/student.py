"""The student: a stock keras-hub masked LM with the small vocabulary.

By default a ``BertMaskedLM``; with ``embedding_dim`` or ``share_layers`` an
ALBERT-style ``AlbertMaskedLM`` (factorised embedding, optional cross-layer
sharing; see :mod:`mobile_bert_distill.architectures`). Either way the tokenizer
is the kit's WordPiece (``BertMaskedLMPreprocessor``) and the saved preset
loads with keras-hub alone (``keras_hub.models.MaskedLM.from_preset``).

Example:
>>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
>>> mlm = build_student(vocab, hidden_dim=16, num_layers=2, num_heads=2, seq_len=8)
>>> mlm.backbone.hidden_dim
16
>>> albert = build_student(vocab, hidden_dim=16, num_layers=2, num_heads=2, seq_len=8,
...                        embedding_dim=8, share_layers=True)
>>> type(albert).__name__, albert.backbone.embedding_dim
('AlbertMaskedLM', 8)
"""


def build_student(vocab, *, hidden_dim=48, num_layers=12, num_heads=4, intermediate_dim=None,
                  embedding_dim=None, share_layers=False, dropout=0.1, max_sequence_length=512,
                  seq_len=128, mask_rate=0.15, max_predictions=20, dtype=None):
    """A fresh student masked LM.

    Args:
        vocab: the student vocabulary (a list of tokens).
        hidden_dim, num_layers, num_heads, intermediate_dim: the encoder's shape
            (``intermediate_dim`` ``None``: ``4 * hidden_dim``).
        embedding_dim: ``None`` for BERT's embedding as wide as the hidden
            states; an integer ``E`` for an ALBERT-style factorised embedding
            (``vocabulary × E`` and a learned ``E → hidden_dim`` projection).
        share_layers: one transformer layer run at every depth (ALBERT's
            cross-layer sharing); ALBERT-style, with ``E = hidden_dim`` unless
            ``embedding_dim`` says otherwise.
        dropout, max_sequence_length: as keras-hub's backbones.
        seq_len, mask_rate, max_predictions: the preprocessor's masking.
        dtype: the Keras dtype policy.
    """
    import keras_hub

    common = dict(vocabulary_size=len(vocab), num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
                  intermediate_dim=intermediate_dim or 4 * hidden_dim, dropout=dropout,
                  max_sequence_length=max_sequence_length, dtype=dtype)
    albert = embedding_dim is not None or share_layers
    if albert:
        backbone = keras_hub.models.AlbertBackbone(
            embedding_dim=embedding_dim or hidden_dim, num_groups=1 if share_layers else num_layers, **common)
    else:
        backbone = keras_hub.models.BertBackbone(**common)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=list(vocab), lowercase=True, strip_accents=True)
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        tokenizer=tokenizer,
        sequence_length=seq_len,
        mask_selection_rate=mask_rate,
        mask_selection_length=max_predictions,
    )
    task = keras_hub.models.AlbertMaskedLM if albert else keras_hub.models.BertMaskedLM
    return task(backbone=backbone, preprocessor=preprocessor, dtype=dtype)


def save_student(mlm, path):
    """Write the student as a keras-hub preset directory (``path`` must not exist)."""
    mlm.save_to_preset(path)
