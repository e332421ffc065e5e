"""The ``web`` source: the World English Bible, a SWORD zText module (Debian ``sword-text-web``).

A zText testament is three files: ``*.bzz`` (compressed blocks of OSIS
markup), ``*.bzs`` (where each block is) and ``*.bzv`` (where each verse is
in its block); the module's ``mods.d/*.conf`` names the compression.
"""

import bz2
import html
import lzma
import re
import struct
import zlib

from mobile_bert_distill.demo.sources.text import clean_line, find_files, read_text, tidy_punct


def read_ztext_verses(bzs, bzv, bzz, compress="ZIP"):
    """Raw verse markup strings of one SWORD zText testament, in verse-index order.

    ``bzs`` holds one 12-byte little-endian record per compressed block
    (offset, compressed size, uncompressed size) into ``bzz``; ``bzv`` one
    10-byte record per verse (block number, offset, size) into that block
    once decompressed. Empty verses and verses repeated by linking are skipped.
    """
    decompress = {"ZIP": zlib.decompress, "BZIP2": bz2.decompress, "XZ": lzma.decompress}.get(compress.upper())
    if decompress is None:
        raise ValueError(f"zText compression {compress!r} is not supported (ZIP, BZIP2, XZ are)")
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
    cache = {}
    seen, verses = set(), []
    for i in range(0, len(bzv) - 9, 10):
        block, offset, size = struct.unpack_from("<IIH", bzv, i)
        if size == 0 or (block, offset) in seen or block >= len(blocks):
            continue
        seen.add((block, offset))
        if block not in cache:
            cache.clear()  # verses come block by block: keep one block in memory
            off, csize, _ = blocks[block]
            cache[block] = decompress(bzz[off:off + csize])
        verses.append(cache[block][offset:offset + size].decode("utf-8", errors="replace"))
    return verses


_OSIS_DROP = re.compile(r"<(note|title|rdg)\b[^>]*?(?<!/)>.*?</\1>", re.S)
_OSIS_BREAK = re.compile(
    r"<(?:div|lb)\b[^>]*\btype=\"(?:x-p|book|introduction|front|glossary|section|chapter|paragraph)\"[^>]*/?>"
    r"|<(?:lg|chapter|list|item|/item|p|/p)\b[^>]*>|<milestone\b[^>]*type=\"x-chapterLabel\"[^>]*/>")


def osis_paragraphs(markup):
    """Plain paragraphs from OSIS markup: notes and headings dropped, breaks at paragraph marks.

    >>> osis_paragraphs('<div sID="p1" type="x-p"/><w lemma="s:1">In</w> the beginning'
    ...     '<note placement="foot">a note</note> was the word. <div eID="p1" type="x-p"/>'
    ...     '<title type="section">A heading</title><div sID="p2" type="x-p"/>And so &amp; on.')
    ['In the beginning was the word.', 'And so & on.']
    """
    text = _OSIS_DROP.sub("", markup)
    text = _OSIS_BREAK.sub("\n\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    text = html.unescape(text)
    paras = []
    for p in text.split("\n\n"):
        p = tidy_punct(clean_line(p))
        if p:
            paras.append(p)
    return paras


def parse_ztext(bzs, bzv, bzz, compress="ZIP"):
    """Paragraphs of one zText testament (see :func:`read_ztext_verses`)."""
    return osis_paragraphs(" ".join(read_ztext_verses(bzs, bzv, bzz, compress)))


def _sword_conf(root):
    confs = find_files(root, "**/mods.d/*.conf")
    conf = {}
    if confs:
        for line in read_text(confs[0]).splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                conf.setdefault(k.strip(), v.strip())
    return conf


def read_sword_ztext(root):
    """Paragraphs of both testaments of the zText module under an unpacked package ``root``."""
    conf = _sword_conf(root)
    if conf.get("ModDrv", "zText").lower() != "ztext":
        raise ValueError(f"SWORD module driver {conf.get('ModDrv')} is not zText")
    if conf.get("CipherKey"):
        raise ValueError("the SWORD module is enciphered")
    out = []
    for testament in ("ot", "nt"):
        found = find_files(root, f"**/{testament}.bzs")
        if not found:
            continue
        base = found[0][:-4]
        with open(base + ".bzs", "rb") as a, open(base + ".bzv", "rb") as b, open(base + ".bzz", "rb") as c:
            out.extend(parse_ztext(a.read(), b.read(), c.read(), conf.get("CompressType", "ZIP")))
    if not out:
        raise FileNotFoundError("no zText testament (ot/nt.bzs/.bzv/.bzz) under " + root)
    return out

