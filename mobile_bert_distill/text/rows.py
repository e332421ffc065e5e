"""The special tokens and the one packing rule of single texts: ``[CLS] body [SEP] [PAD]..``.

Example:
>>> KIT_SPECIAL_IDS["[CLS]"], KIT_SPECIAL_IDS["[SEP]"]
(2, 3)
>>> pack_rows([[7, 8]], 5, KIT_SPECIAL_IDS["[CLS]"], KIT_SPECIAL_IDS["[SEP]"])["padding_mask"].tolist()
[[1, 1, 1, 1, 0]]
"""

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: their ids in the kit's own vocabularies, which list them first (a teacher's vocabulary may not)
KIT_SPECIAL_IDS = {token: i for i, token in enumerate(SPECIAL_TOKENS)}


def pack_rows(bodies, seq_len, cls_id, sep_id):
    """The model input of single texts, in one place: each body becomes ``[CLS] body [SEP] [PAD]..``.

    Args:
        bodies: token-id sequences, each at most ``seq_len - 2`` long (cut them first).
        seq_len: the static length of a row.
        cls_id, sep_id: the ids of ``[CLS]`` and ``[SEP]`` in the model's vocabulary.

    Returns:
        int32 ``input_ids``, ``segment_ids`` (zeros: one segment) and ``padding_mask``,
        each ``[len(bodies), seq_len]``.

    Example:
    >>> pack_rows([[7, 8], [9]], 5, 2, 3)["input_ids"].tolist()
    [[2, 7, 8, 3, 0], [2, 9, 3, 0, 0]]
    """
    ids = np.zeros((len(bodies), seq_len), np.int32)
    mask = np.zeros_like(ids)
    for i, body in enumerate(bodies):
        if len(body) > seq_len - 2:
            raise ValueError(f"a body of {len(body)} tokens does not fit {seq_len} with [CLS] and [SEP]")
        row = [cls_id, *body, sep_id]
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def special_ids(tokens):
    index = {t: i for i, t in enumerate(tokens)}
    return {t.strip("[]").lower(): index[t] for t in SPECIAL_TOKENS}
