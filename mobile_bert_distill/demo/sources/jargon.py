"""The ``jargon`` source: the Jargon File, plain text (Debian ``jargon-text``)."""

import re

from mobile_bert_distill.demo.sources.text import clean_line, find_files, read_text

_JARGON_HEAD = re.compile(r"^:[^:]+:")
_JARGON_LABEL = re.compile(r"^\[([^\]]*)\]\s*")
_JARGON_POS = re.compile(r"^(?:(?:n|v|vt|vi|adj|adv|interj|excl|prep|pron|conj|abbrev|pl)\.,?\s+)+")


def parse_jargon(text):
    """Paragraphs of the plain-text Jargon File.

    Body paragraphs are indented three spaces, list items start with a
    bullet; entry headers (``:word: n.``), centred titles, the contents list
    and the examples and code set in other indentations are dropped. ``{}``
    around cross-references go; a short leading ``[label]`` goes too, a long
    bracketed etymology keeps its words.

    >>> parse_jargon("   :frob: vt.\\n\\n   [MIT] To fiddle with a {knob}\\n   aimlessly for a while.\\n\\n"
    ...              " #include <stdio.h>\\n\\n     \\u2022 Twiddle is a\\n       milder form.\\n")
    ['To fiddle with a knob aimlessly for a while.', 'Twiddle is a milder form.']
    """
    out, block = [], []

    def flush():
        if not block:
            return
        first = block[0]
        ind = len(first) - len(first.lstrip())
        s0 = first.strip()
        bullet = s0.startswith("\u2022")
        if (ind == 3 and not _JARGON_HEAD.match(s0)) or (3 <= ind <= 6 and bullet):
            t = clean_line(" ".join(b.strip() for b in block))
            t = t.lstrip("\u2022 ")
            t = _JARGON_POS.sub("", re.sub(r"^\d{1,2}\.\s+", "", t))
            m = _JARGON_LABEL.match(t)
            if m:
                label = m.group(1)
                rest = t[m.end():]
                t = rest if len(label.split()) <= 3 else (f"{label}. {rest}" if rest else label)
            t = t.replace("{", "").replace("}", "").strip()
            if t:
                out.append(t)
        block.clear()

    for line in text.splitlines():
        if line.strip():
            block.append(line.rstrip())
        else:
            flush()
    flush()
    return out


def read_jargon(root):
    """Paragraphs of ``jargon.txt.gz`` (or ``jargon.txt``) under an unpacked package ``root``."""
    files = find_files(root, "**/jargon.txt.gz") or find_files(root, "**/jargon.txt")
    if not files:
        raise FileNotFoundError("no jargon.txt.gz under " + root)
    return parse_jargon(read_text(files[0]))
