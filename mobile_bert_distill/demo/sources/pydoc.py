"""The ``pydoc`` source: the prose of the Python documentation (Debian ``python3.X-doc``).

The package ships each page's reStructuredText as ``html/_sources/*.rst.txt``;
:func:`parse_rst` keeps its prose paragraphs and drops code, tables and markup.
"""

import re

from mobile_bert_distill.demo.sources.text import clean_line, find_files, read_text, tidy_punct

_RST_ADMONITIONS = {"note", "warning", "important", "tip", "caution", "attention", "hint", "danger",
                    "error", "seealso", "impl-detail", "admonition"}
_RST_VERSION = {"versionadded", "versionchanged", "deprecated", "deprecated-removed"}
_RST_BODY_ONLY = {"function", "method", "class", "attribute", "data", "exception", "decorator",
                  "decoratormethod", "classmethod", "staticmethod", "abstractmethod", "coroutinefunction",
                  "coroutinemethod", "awaitablefunction", "awaitablemethod", "describe", "object", "option",
                  "cmdoption", "envvar", "opcode", "pdbcommand", "2to3fixer", "property", "type", "macro",
                  "member", "var", "struct", "union", "enum", "enumerator", "only", "glossary", "hlist",
                  "topic", "sidebar", "container", "compound", "epigraph", "highlights", "pull-quote"}
_RST_DIRECTIVE = re.compile(r"^\.\.\s+([\w:.+-]+)::\s*(.*)$")
_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_RST_SIMPLE_TABLE = re.compile(r"^=+(\s+=+)+\s*$")
_RST_ITEM = re.compile(r"^(?:[-*+\u2022]|\d{1,2}\.|#\.|\(\w\)|\(\d{1,2}\)|:[^:\s][^:]*:)(?:\s+|$)")


def _rst_directive_kind(name):
    name = name.split(":")[-1].lower()
    if name in _RST_ADMONITIONS:
        return "admonition"
    if name in _RST_VERSION:
        return "version"
    if name in _RST_BODY_ONLY:
        return "body"
    return "drop"


def _rst_inline_markup(text):
    def role(m):
        t = m.group(1)
        if "<" in t and t.rstrip().endswith(">"):
            t = t[:t.rindex("<")].strip() or t
        t = t.lstrip("!")
        if t.startswith("~"):
            t = t[1:].split(".")[-1]
        return t

    text = re.sub(r"\s*\[(?:#\w*|\*|\d+)\]_", "", text)
    text = re.sub(r"(?::[\w.+-]+)+:`([^`]+)`", role, text)
    text = re.sub(r"`([^`<]+?)\s*<[^>`]+>`__?", r"\1", text)
    text = re.sub(r"`([^`]+)`(?:__?|(?::[\w.+-]+)+:)?", role, text)
    text = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*\\])\*(\S(?:.*?\S)?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\|([^|\s][^|]*)\|_{0,2}", r"\1", text)
    text = re.sub(r"(?<![\w])([A-Za-z][\w-]*[A-Za-z0-9])__?(?=[\s.,;:)]|$)", r"\1", text)
    return re.sub(r"\\(.)", lambda m: "" if m.group(1).isspace() else m.group(1), text)


def rst_inline(text):
    """Strip reST inline markup: roles, literals, emphasis, links, substitutions, footnotes.

    Inline literals keep their content verbatim (backslashes included).

    >>> rst_inline("Use :func:`~os.path.join` or ``'\\\\0'``, see :ref:`the guide <guide>` and `PEP 8`_[#]_.")
    "Use join or '\\\\0', see the guide and PEP 8."
    """
    parts = re.split(r"(``.+?``)", text)
    out = [p[2:-2] if i % 2 else _rst_inline_markup(p) for i, p in enumerate(parts)]
    return tidy_punct(clean_line("".join(out)))


def parse_rst(text):
    """Prose paragraphs of a reStructuredText document.

    Kept: body paragraphs, list items, block quotes, the prose inside
    admonitions, ``version*``/``deprecated`` notes and object descriptions
    (``.. function::`` etc., whose signatures are dropped). Dropped: titles,
    literal blocks (after ``::``), doctest blocks, tables, comments, targets
    and every other directive with its body (code, index, toctree, tables...).

    >>> parse_rst("Title\\n=====\\n\\nA *short* intro with :func:`len`::\\n\\n   code()\\n\\n"
    ...           ".. note:: Mind the gap\\n   between words.\\n\\n.. code-block:: c\\n\\n   int x;\\n")
    ['A short intro with len:', 'Mind the gap between words.']
    """
    paras = []
    cur, cur_indent = [], None
    adopt = False  # the current paragraph began in a directive: take the next line's indent
    skip_deeper = None
    skip_block = False
    marker_indent = None  # indent of the current list item's marker (None: not a list item)

    def flush():
        nonlocal cur, cur_indent, skip_deeper, adopt
        if cur:
            t = " ".join(cur)
            if t.endswith("::"):
                skip_deeper = cur_indent if cur_indent is not None else 0
                t = t[:-2].rstrip() if (t[:-2].endswith((" ", "\t")) or t == "::") else t[:-1]
            t = rst_inline(_RST_ITEM.sub("", t, count=1))
            if t:
                paras.append(t)
        cur, cur_indent, adopt = [], None, False

    def start(s, ind):
        nonlocal cur, cur_indent, marker_indent
        m = _RST_ITEM.match(s)
        cur, cur_indent = [s], ind + (m.end() if m and m.end() < len(s) else 0)
        marker_indent = ind if m else None

    for line in text.expandtabs(8).splitlines():
        s = line.strip()
        ind = len(line) - len(line.lstrip())
        if skip_deeper is not None:
            if not s or ind > skip_deeper:
                continue
            skip_deeper = None
        if skip_block:
            if s:
                continue
            skip_block = False
        if not s:
            flush()
            continue
        if _RST_ADORNMENT.match(s) and not _RST_SIMPLE_TABLE.match(s):
            if len(cur) == 1 and not adopt:  # underline: the one-line paragraph was a title
                cur, cur_indent = [], None
            elif cur:
                flush()
            continue
        if s == ".." or s.startswith(".. "):
            flush()
            m = _RST_DIRECTIVE.match(s)
            kind = _rst_directive_kind(m.group(1)) if m else "drop"
            if kind == "drop":
                skip_deeper = ind
            elif kind == "body":
                skip_block = True  # signature continuation lines and options up to the blank line
            else:
                arg = m.group(2).strip()
                if kind == "version":
                    arg = re.sub(r"^[\d.]+(?:[\s,]+[\d.]+)?\s*", "", arg)
                cur, cur_indent, adopt = ([arg] if arg else []), ind, True
                if not arg:
                    cur_indent = None
            continue
        if not cur and not adopt:
            if s.startswith(("+-", "+=", ">>>")) or _RST_SIMPLE_TABLE.match(s) or s.startswith("| "):
                skip_block = True
                continue
            if re.fullmatch(r":[\w -]+:(\s.*)?", s) and ind > 0 and len(s) < 60:
                continue  # a directive option such as ":noindex:" or ":synopsis: ..."
            start(s, ind)
            continue
        if adopt:
            if not cur:
                start(s, ind)
            else:
                cur.append(s)
                if cur_indent is None or ind > cur_indent:
                    cur_indent = ind
            adopt = False
            continue
        next_item = marker_indent is not None and ind <= marker_indent and _RST_ITEM.match(s)
        if next_item or ind < cur_indent or (ind > cur_indent and len(cur) == 1 and marker_indent is None):
            flush()  # the next list item, a dedent, or a definition after its term
            start(s, ind)
            continue
        cur.append(s)
    flush()
    return paras


def read_pydoc(root):
    """Paragraphs of every ``html/_sources/*.rst.txt`` page under an unpacked package ``root``."""
    files = find_files(root, "**/html/_sources/**/*.rst.txt")
    if not files:
        raise FileNotFoundError("no html/_sources/*.rst.txt under " + root)
    return [p for path in files for p in parse_rst(read_text(path))]
