"""The ``wordnet`` source: glosses and usage examples of WordNet (Debian ``wordnet-base``).

>>> parse_wordnet_data('  1 licence header line  \\n'
...     '00001740 03 n 01 entity 0 000 | that which is known to exist; "the entity is here"  \\n')
['entity: that which is known to exist', 'the entity is here']
"""

import re

from mobile_bert_distill.demo.sources.text import find_files, read_text

_WN_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


def _split_outside_quotes(text, sep=";"):
    if '"' not in text:
        return [p.strip() for p in text.split(sep) if p.strip()]
    parts, buf, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def parse_wordnet_data(text):
    """Paragraphs from one WordNet ``data.{noun,verb,adj,adv}`` file.

    Each synset line gives one paragraph ``lemma: definition; definition``
    (the lemma is the synset's first word) and one paragraph per quoted usage
    example; the licence header (lines starting with two spaces) is skipped.

    >>> parse_wordnet_data('00002724 29 v 02 choke 0 gag 0 000 | breathe with difficulty; '
    ...                    '"she choked with emotion"; "he gagged" - Anon  ')
    ['choke: breathe with difficulty', 'she choked with emotion', 'he gagged']
    """
    out = []
    for line in text.splitlines():
        if line.startswith("  ") or " | " not in line:
            continue
        head, gloss = line.split(" | ", 1)
        fields = head.split()
        try:
            n_words = int(fields[3], 16)
            lemma = fields[4]
        except (IndexError, ValueError):
            continue
        if n_words < 1:
            continue
        lemma = _WN_ADJ_MARKER.sub("", lemma).replace("_", " ")
        gloss = re.sub(r"`([^`'\"]*)'", "\u2018\\1\u2019", gloss)  # `word' -> ‘word’
        definitions, examples = [], []
        for part in _split_outside_quotes(gloss.strip()):
            if part.startswith('"'):
                end = part.find('"', 1)
                examples.append(part[1:end] if end > 0 else part[1:])
            else:
                definitions.append(part)
        if definitions:
            out.append(f"{lemma}: {'; '.join(definitions)}")
        out.extend(e.strip() for e in examples if e.strip())
    return out


def read_wordnet(root):
    """Paragraphs of every ``data.{noun,verb,adj,adv}`` file under an unpacked package ``root``."""
    files = [p for pos in ("noun", "verb", "adj", "adv")
             for p in find_files(root, f"**/data.{pos}")]
    if not files:
        raise FileNotFoundError("no data.{noun,verb,adj,adv} under " + root)
    return [p for path in files for p in parse_wordnet_data(read_text(path))]
