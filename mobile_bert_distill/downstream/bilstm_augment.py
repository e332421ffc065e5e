"""Task-data augmentation for distilling a classifier into a small student (Tang et al. 2019, §3.2);
the BiLSTM student and the FastBERT exits both learn from it.

A teacher labels any text with its logits, so the student can learn from many
more texts than the labelled set holds. Each example yields up to ``n_iter``
new texts, each drawn by two rules over its words:

* **masking**: every word is replaced by ``[MASK]`` with probability ``p_mask``
  (the BiLSTM reads it as one more token of its vocabulary; the teacher reads
  its own mask token);
* **n-gram sampling**: afterwards, with probability ``p_ng``, the text is cut
  to a window of ``n`` consecutive words, ``n`` uniform in ``{1, …, 5}`` (the
  whole text when it is shorter).

Draws equal to the original or to an earlier draw are discarded, so an example
gives at most ``n_iter`` distinct new texts. The paper's third rule,
POS-guided word replacement (a word swapped for another of the same
part-of-speech tag, with probability ``p_pos``), is left out: it needs a
part-of-speech tagger and tagged word lists, which the kit does not have.

Words are the kit's pre-tokenization of the text (whitespace and punctuation
split, case and accents kept), joined again with spaces: both tokenizers split
the same places, so a draw without changes reads like the original.

Example:
>>> texts, source = augment_texts(["A gorgeous, witty film!"], Augmentation(p_mask=0.2, p_ng=0.5, n_iter=6), seed=3)
>>> texts[0], texts[1:3]
('A gorgeous, witty film!', ['gorgeous , witty film', 'A [MASK] , witty film !'])
>>> texts[3:]
['A [MASK] , witty [MASK]', 'witty film', 'witty film !']
>>> source
[0, 0, 0, 0, 0, 0]
"""

from __future__ import annotations

import dataclasses
import random

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.text.wordpiece import pretokenize

MASK_TOKEN = "[MASK]"
#: n-gram sampling keeps a window of 1 .. ``MAX_NGRAM`` words.
MAX_NGRAM = 5


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The augmentation rates (defaults: the paper's ``p_mask = 0.1``, ``p_ng = 0.25``, ``n_iter = 20``).

    Args:
        p_mask: probability that a word becomes ``[MASK]``.
        p_ng: probability that a draw is cut to an n-gram window.
        n_iter: draws per example (duplicates discarded); 0 trains on the originals alone.
    """

    p_mask: float = 0.1
    p_ng: float = 0.25
    n_iter: int = 20

    def __post_init__(self):
        for name in ("p_mask", "p_ng"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"the augmentation probability {name} must be in [0, 1], got {value}")
        if int(self.n_iter) != self.n_iter or self.n_iter < 0:
            raise UserError(f"the augmentation draws per example must be an integer >= 0, got {self.n_iter}")

    def to_dict(self):
        return dataclasses.asdict(self)


def ngram_window(length, rng):
    """``(start, n)`` of an n-gram window inside ``length`` words: ``n`` uniform in 1..5, at most ``length``."""
    n = min(rng.randint(1, MAX_NGRAM), length)
    return rng.randint(0, length - n), n


def augment_words(words, rng, p_mask, p_ng):
    """One draw: mask each word with probability ``p_mask``, then with probability ``p_ng``
    keep an n-gram window of the result. ``rng`` is a :class:`random.Random`."""
    out = [MASK_TOKEN if rng.random() < p_mask else w for w in words]
    if out and rng.random() < p_ng:
        start, n = ngram_window(len(out), rng)
        out = out[start:start + n]
    return out


def augment_texts(texts, augmentation, *, seed=0, progress=False):
    """The originals followed by their distinct augmented draws.

    Returns ``(texts, source)``: the original texts first (unchanged, in order),
    then the new ones; ``source[i]`` is the index of the original that text ``i``
    came from. The same ``seed`` gives the same texts. ``progress`` shows a bar.
    """
    texts = list(texts)
    rng = random.Random(seed)
    out, source = list(texts), list(range(len(texts)))
    a = augmentation
    rows = enumerate(texts)
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, total=len(texts), desc="augmenting", unit="text", leave=False)
    for i, text in rows:
        words = pretokenize(text, lowercase=False, accents=False)
        if not words:
            continue
        seen = {tuple(words)}
        for _ in range(a.n_iter):
            draw = tuple(augment_words(words, rng, a.p_mask, a.p_ng))
            if draw not in seen:
                seen.add(draw)
                out.append(" ".join(draw))
                source.append(i)
    return out, source
