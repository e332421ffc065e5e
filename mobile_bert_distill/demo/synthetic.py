"""A small generated English-like corpus, for tests and the offline tiny demo.

Sentences come from a fixed grammar with agreement (plural nouns take plural
verbs, adjectives pick from per-noun sets), so a masked-LM can learn real
regularities from a few thousand lines in seconds. No third-party text.

Example:
>>> lines = generate(3, seed=0)
>>> len(lines)
3
>>> generate(3, seed=0) == lines
True
"""

import random

_NOUNS = {
    "cat": ("small", "black", "lazy", "hungry"), "dog": ("big", "brown", "loyal", "noisy"),
    "bird": ("tiny", "blue", "singing", "quick"), "teacher": ("kind", "patient", "tired", "clever"),
    "student": ("curious", "young", "quiet", "clever"), "farmer": ("old", "strong", "busy", "patient"),
    "river": ("wide", "cold", "quiet", "deep"), "machine": ("loud", "new", "broken", "heavy"),
    "city": ("busy", "old", "crowded", "bright"), "garden": ("green", "small", "quiet", "bright"),
}
_PLURAL = {"city": "cities"}
_VERBS = {  # verb: (objects it takes)
    "watch": ("bird", "river", "city", "machine"), "feed": ("cat", "dog", "bird", "student"),
    "follow": ("river", "teacher", "farmer", "dog"), "build": ("machine", "garden", "city"),
    "visit": ("city", "garden", "farmer", "teacher"), "clean": ("machine", "garden", "river"),
}
_PLACES = ("near the river", "in the garden", "at the market", "behind the old house", "on monday",
           "after the rain", "before dinner", "in the city")
_ADVERBS = ("quickly", "slowly", "happily", "carefully", "again", "every morning")


def _noun_phrase(rng, noun, plural):
    word = _PLURAL.get(noun, noun + "s") if plural else noun
    det = rng.choice(("the", "some", "many", "two")) if plural else rng.choice(("the", "a", "this", "one"))
    if det == "a" and rng.random() < 0.5:
        det = "the"
    if rng.random() < 0.6:
        return f"{det} {rng.choice(_NOUNS[noun])} {word}"
    return f"{det} {word}"


def sentence(rng):
    subject = rng.choice(list(_NOUNS))
    plural = rng.random() < 0.4
    verb = rng.choice(list(_VERBS))
    obj = rng.choice(_VERBS[verb])
    v = verb if plural else (verb + "es" if verb.endswith(("sh", "ch", "ss")) else verb + "s")
    parts = [_noun_phrase(rng, subject, plural), v, _noun_phrase(rng, obj, rng.random() < 0.3)]
    if rng.random() < 0.5:
        parts.append(rng.choice(_ADVERBS))
    if rng.random() < 0.6:
        parts.append(rng.choice(_PLACES))
    s = " ".join(parts)
    if rng.random() < 0.15:
        s += f", {rng.randint(2, 99)} times"
    s = s[0].upper() + s[1:]
    return s + rng.choice((".", ".", ".", "!", "?"))


def generate(num_lines, seed=0, sentences_per_line=(1, 4)):
    """``num_lines`` paragraphs of 1–4 generated sentences each."""
    rng = random.Random(seed)
    return [" ".join(sentence(rng) for _ in range(rng.randint(*sentences_per_line))) for _ in range(num_lines)]


def write_corpus(path, num_lines, seed=0):
    from mobile_bert_distill.atomic import atomic_write_text

    atomic_write_text(path, "\n".join(generate(num_lines, seed)) + "\n")
    return path
