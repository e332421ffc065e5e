"""The two keras-hub encoder families a student can be: BERT and ALBERT-style.

A student is a stock keras-hub model either way, so its preset loads with
keras-hub alone:

* **BERT** (``BertBackbone``): token embeddings as wide as the hidden states,
  one set of weights per layer.
* **ALBERT-style** (``AlbertBackbone``, Lan et al. 2019): a factorised
  embedding (``vocabulary × E`` then a learned ``E → H`` projection, so a
  small ``E`` saves ``V·(H − E)`` parameters) and, optionally, cross-layer
  sharing (every depth runs the same transformer layer). The student keeps
  the kit's WordPiece tokenizer: its preset is an ``AlbertMaskedLM`` with a
  ``BertMaskedLMPreprocessor`` (``keras_hub.models.MaskedLM.from_preset``
  loads it).

Everything that walks an encoder layer by layer uses :func:`encoder_layers`,
the layers in the order the forward pass calls them (a shared layer appears
once per depth it stands for).

Example:
>>> import keras_hub
>>> bb = keras_hub.models.AlbertBackbone(vocabulary_size=10, num_layers=3, num_heads=2,
...     embedding_dim=4, hidden_dim=8, intermediate_dim=16, num_groups=1)
>>> layers = encoder_layers(bb)
>>> len(layers), len({id(layer) for layer in layers})
(3, 1)
"""

MASKED_LM_CLASSES = ("BertMaskedLM", "AlbertMaskedLM")
CLASSIFIER_CLASSES = ("BertTextClassifier", "AlbertTextClassifier")
BACKBONE_CLASSES = ("BertBackbone", "AlbertBackbone")


def is_albert(backbone):
    """Whether ``backbone`` is a keras-hub ``AlbertBackbone`` (else it is a ``BertBackbone``)."""
    import keras_hub

    return isinstance(backbone, keras_hub.models.AlbertBackbone)


def encoder_layers(backbone):
    """The transformer layers of a BERT or ALBERT backbone in call order, one per depth.

    ALBERT runs group ``g`` (its ``num_inner_repetitions`` layers) ``num_layers
    / num_groups`` times before group ``g + 1``; shared layers repeat here.
    """
    if not is_albert(backbone):
        return list(backbone.transformer_layers)
    calls_per_group = backbone.num_layers // backbone.num_groups
    return [layer for group in backbone.transformer_layers
            for _ in range(calls_per_group) for layer in group]


def embedding_projection(backbone):
    """ALBERT's ``E → H`` embedding projection (a ``Dense``), or ``None`` for BERT."""
    return backbone.embeddings_projection if is_albert(backbone) else None


def architecture_summary(backbone):
    """One line: depth, width, the factorised embedding and sharing, if any."""
    text = f"{backbone.num_layers} layers, {backbone.hidden_dim}-d"
    if is_albert(backbone):
        distinct = backbone.num_groups * backbone.num_inner_repetitions
        text += f", {backbone.embedding_dim}-d factorised embedding"
        if distinct < backbone.num_layers:
            text += f", {distinct} distinct layer{'s' if distinct > 1 else ''} shared across depth"
    return text
