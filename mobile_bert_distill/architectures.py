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

from mobile_bert_distill.errors import UserError

MASKED_LM_CLASSES = ("BertMaskedLM", "AlbertMaskedLM")
CLASSIFIER_CLASSES = ("BertTextClassifier", "AlbertTextClassifier")
BACKBONE_CLASSES = ("BertBackbone", "AlbertBackbone")
#: The kit's keras-hub model kinds and their classes.
MODEL_KINDS = {"masked_lm": MASKED_LM_CLASSES, "classifier": CLASSIFIER_CLASSES, "backbone": BACKBONE_CLASSES}
_BASE_CLASS = {"masked_lm": "MaskedLM", "classifier": "TextClassifier", "backbone": "Backbone"}


def model_kind(model):
    """``"masked_lm"``, ``"classifier"`` or ``"backbone"``: which of :data:`MODEL_KINDS`'
    keras-hub classes ``model`` is an instance of; ``None`` for any other model."""
    import keras_hub

    for kind, names in MODEL_KINDS.items():
        if isinstance(model, tuple(getattr(keras_hub.models, n) for n in names)):
            return kind
    return None


def load_preset(preset_dir, kind, what, **kwargs):
    """A keras-hub preset loaded as a model of ``kind`` (``keras_hub.models.MaskedLM``,
    ``TextClassifier`` or ``Backbone.from_preset`` with ``kwargs``); a broken preset, or a
    model of a class not in :data:`MODEL_KINDS` ``[kind]``, is a one-line :class:`UserError`
    that calls the model ``what``."""
    import keras_hub

    try:
        model = getattr(keras_hub.models, _BASE_CLASS[kind]).from_preset(preset_dir, **kwargs)
    except Exception as e:  # keras-hub raises many types for a broken preset
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the {what} preset {preset_dir}: {first}") from e
    if model_kind(model) != kind:
        raise UserError(f"{preset_dir} is a {type(model).__name__} preset; the {what} must be a "
                        f"{' or '.join(MODEL_KINDS[kind])}")
    return model


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
