"""The demo corpus: English text from Debian packages, one module per source.

:func:`fetch_demo_corpus` downloads a few Debian packages with ``apt-get
download`` (nothing is installed system-wide; :mod:`~mobile_bert_distill.demo.apt`),
unpacks each with ``dpkg-deb -x`` into ``CACHE/debs/NAME/`` (skipped when
already there), turns their text into paragraphs with one small parser per
file format, and writes

* ``OUT/train.txt`` and ``OUT/heldout.txt``: clean UTF-8, one paragraph per
  line, whitespace normalised, deduplicated, very short lines dropped, in a
  fixed shuffled order; a line's side of the split depends only on its text
  (:func:`heldout_bucket`), so the held-out set stays held out whatever the
  sources or ``max_mb``;
* ``OUT/corpus_stats.json``: lines, MB (10^6 bytes) and per-source counts.

========  ===================  ===============================================
source    Debian package       what becomes text (module)
========  ===================  ===============================================
wordnet   wordnet-base         ``data.{noun,verb,adj,adv}``: glosses, examples (``wordnet``)
gcide     dict-gcide           ``gcide.dict.dz``: senses, notes, quotations (``gcide``)
web       sword-text-web       zText Bible module, World English Bible (``web``)
pydoc     python3.11-doc       ``html/_sources/*.rst.txt``: prose paragraphs (``pydoc``)
jargon    jargon-text          ``jargon.txt.gz``: the Jargon File (``jargon``)
========  ===================  ===============================================

Each source module has pure parsers from a file's content to a list of
paragraphs, so they can be tested on small hand-written fixtures, and a
``read_*(root)`` for an unpacked package; ``text`` holds what they share.

>>> from mobile_bert_distill.demo.sources.wordnet import parse_wordnet_data
>>> parse_wordnet_data('  1 licence header line  \\n'
...     '00001740 03 n 01 entity 0 000 | that which is known to exist; "the entity is here"  \\n')
['entity: that which is known to exist', 'the entity is here']

The pretrained teacher the demo also needs: :mod:`mobile_bert_distill.demo.teacher_fetch`.
"""

import json
import os
import random
import struct
import time
import zlib

from mobile_bert_distill.atomic import atomic_file, atomic_write_json, check_writable
from mobile_bert_distill.demo.apt import FALLBACK_HINT, Apt, fetch_package
from mobile_bert_distill.demo.sources.gcide import read_gcide
from mobile_bert_distill.demo.sources.jargon import read_jargon
from mobile_bert_distill.demo.sources.pydoc import read_pydoc
from mobile_bert_distill.demo.sources.text import clean_line, is_prose
from mobile_bert_distill.demo.sources.web import read_sword_ztext
from mobile_bert_distill.demo.sources.wordnet import read_wordnet
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.text.corpus import heldout_bucket

FORMAT_VERSION = 1
SEED = 20190930  # fixed: the shuffle and the split never change between runs

#: source name -> Debian package names to try, first available wins
SOURCES = {
    "wordnet": ("wordnet-base",),
    "gcide": ("dict-gcide",),
    "web": ("sword-text-web",),
    "pydoc": ("python3.11-doc", "python3.12-doc", "python3.13-doc", "python3.10-doc"),
    "jargon": ("jargon-text",),
}
DEFAULT_SOURCES = tuple(SOURCES)

#: source name -> reader: paragraphs of the package unpacked at a folder
READERS = {"wordnet": read_wordnet, "gcide": read_gcide, "web": read_sword_ztext, "pydoc": read_pydoc,
           "jargon": read_jargon}


def build_corpus(paragraphs_by_source, heldout_fraction=0.02, max_mb=None, seed=SEED):
    """Clean, filter, deduplicate, shuffle, cap and split paragraphs from several sources.

    ``paragraphs_by_source`` maps a source name to its paragraphs (order
    matters only for which source keeps a duplicate: the first). Returns
    ``(train, heldout, stats)`` with ``train``/``heldout`` lists of lines and
    per-source counts in ``stats``.

    >>> tr, ho, st = build_corpus({"a": ["one two three four five", "one  two three four five", "too short"]},
    ...                           heldout_fraction=0.0)
    >>> tr, st["dropped"]
    (['one two three four five'], {'short': 1, 'duplicate': 1, 'over_max_mb': 0})
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"the held-out fraction must be in [0, 1), got {heldout_fraction}")
    seen = set()
    kept = []
    per = {}
    dropped = {"short": 0, "duplicate": 0, "over_max_mb": 0}
    for source, paragraphs in paragraphs_by_source.items():
        s = per.setdefault(source, {"paragraphs": 0, "kept": 0, "train": 0, "heldout": 0, "mb": 0.0})
        for p in paragraphs:
            s["paragraphs"] += 1
            line = clean_line(p)
            if not is_prose(line):
                dropped["short"] += 1
                continue
            if line in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(line)
            kept.append((line, source))
            s["kept"] += 1
    random.Random(seed).shuffle(kept)
    if max_mb is not None:
        budget, used, capped = max_mb * 1e6, 0, []
        for line, source in kept:
            n = len(line.encode("utf-8")) + 1
            if used + n > budget:
                dropped["over_max_mb"] += 1
                continue
            used += n
            capped.append((line, source))
        kept = capped
    train, heldout = [], []
    for line, source in kept:
        side = "heldout" if heldout_bucket(line, heldout_fraction) else "train"
        (heldout if side == "heldout" else train).append(line)
        per[source][side] += 1
        per[source]["mb"] += (len(line.encode("utf-8")) + 1) / 1e6
    for s in per.values():
        s["mb"] = round(s["mb"], 3)
    stats = {"sources": per, "dropped": dropped}
    return train, heldout, stats


def _readable(path):
    """Give ``path`` the permissions of an ordinary new file (temporary files start private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_lines(path, lines):
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line)
                f.write("\n")
        _readable(tmp)
    return sum(len(x.encode("utf-8")) + 1 for x in lines)


def _parse_sources(sources):
    if sources is None:
        return list(DEFAULT_SOURCES)
    if isinstance(sources, str):
        sources = [s for s in sources.split(",")]
    names = [s.strip().lower() for s in sources if s.strip()]
    unknown = [s for s in names if s not in SOURCES]
    if unknown or not names:
        raise UserError(f"unknown source(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SOURCES)}")
    return list(dict.fromkeys(names))


def fetch_demo_corpus(cache_dir, out_dir=None, sources=None, heldout_fraction=0.02, max_mb=None, log=print,
                      force=False):
    """Fetch the Debian text packages, parse them and write the demo corpus.

    Returns ``{"train": path, "heldout": path, "stats": dict}``. Packages are
    cached in ``cache_dir/debs/``; the corpus in ``out_dir`` (default
    ``cache_dir/corpus``) is reused when it was built with the same
    sources, fraction and ``max_mb`` (``force=True`` rebuilds it). Raises
    :class:`UserError` (one line, suggesting your own text) when apt is not
    available and a package is not cached.

    Args:
        cache_dir: the cache folder (the packages go to its ``debs/``).
        out_dir: where the corpus goes (default ``cache_dir/corpus``).
        sources: names from :data:`SOURCES`, a list or a comma-separated string (default: all).
        heldout_fraction: the share of lines held out, in [0, 1) (:func:`heldout_bucket`).
        max_mb: cap on the corpus size in MB (10^6 bytes), applied before the split.
        log: called with each progress message.
        force: rebuild the corpus even when one with the same settings is there.

    Example (needs Debian/Ubuntu with apt; about a minute on 2 cores)::

        from mobile_bert_distill.demo.sources import fetch_demo_corpus
        r = fetch_demo_corpus("~/.cache/mbd", sources="wordnet,jargon", max_mb=5)
        print(r["train"], r["stats"]["lines"])
    """
    t0 = time.time()
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    out_dir = os.path.abspath(os.path.expanduser(out_dir or os.path.join(cache_dir, "corpus")))
    check_writable(cache_dir, "cache folder")
    check_writable(out_dir, "corpus folder")
    names = _parse_sources(sources)
    if max_mb is not None and max_mb <= 0:
        raise UserError(f"the corpus size limit (MB) must be positive, got {max_mb}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"the held-out fraction must be in [0, 1), got {heldout_fraction}")
    params = {"format": FORMAT_VERSION, "sources": names, "heldout_fraction": heldout_fraction,
              "max_mb": max_mb, "seed": SEED}
    paths = {k: os.path.join(out_dir, f) for k, f in
             (("train", "train.txt"), ("heldout", "heldout.txt"), ("stats", "corpus_stats.json"))}
    if not force and all(os.path.isfile(p) for p in paths.values()):
        try:
            with open(paths["stats"], encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
        if old.get("params") == params:
            log(f"[data] corpus already built: {paths['train']} ({old['lines']['train']:,} lines), "
                f"{paths['heldout']} ({old['lines']['heldout']:,} lines)")
            return {"train": paths["train"], "heldout": paths["heldout"], "stats": old}

    apt = Apt(log)
    paragraphs, packages = {}, {}
    for name in names:
        root, info = fetch_package(cache_dir, SOURCES[name], apt, log=log)
        if root is None:
            log(f"[data] {name}: skipped (none of {', '.join(SOURCES[name])} is available)")
            continue
        t = time.time()
        try:
            paragraphs[name] = READERS[name](root)
        except (OSError, ValueError, struct.error, zlib.error) as e:
            log(f"[data] {name}: skipped, cannot read {info['package']}: {e}")
            continue
        packages[name] = info
        log(f"[data] {name}: {len(paragraphs[name]):,} paragraphs from {info['package']} {info['version']} "
            f"({time.time() - t:.1f} s)")
    if not paragraphs:
        raise UserError(f"none of the sources {','.join(names)} could be fetched; {FALLBACK_HINT}")

    train, heldout, stats = build_corpus(paragraphs, heldout_fraction=heldout_fraction, max_mb=max_mb)
    if not train:
        raise UserError(f"the demo corpus came out empty; {FALLBACK_HINT}")
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(paths["stats"]):
        os.remove(paths["stats"])  # the stats file marks a complete corpus: drop it first
    train_bytes = _write_lines(paths["train"], train)
    heldout_bytes = _write_lines(paths["heldout"], heldout)
    for name, info in packages.items():
        stats["sources"][name].update(package=info["package"], version=info["version"])
    stats = {
        "params": params,
        "lines": {"train": len(train), "heldout": len(heldout), "total": len(train) + len(heldout)},
        "mb": {"train": round(train_bytes / 1e6, 3), "heldout": round(heldout_bytes / 1e6, 3),
               "total": round((train_bytes + heldout_bytes) / 1e6, 3)},
        **stats,
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(paths["stats"], stats)
    _readable(paths["stats"])
    log(f"[data] wrote {paths['train']} ({len(train):,} lines, {train_bytes / 1e6:.1f} MB) and "
        f"{paths['heldout']} ({len(heldout):,} lines, {heldout_bytes / 1e6:.2f} MB) in {stats['seconds']} s")
    return {"train": paths["train"], "heldout": paths["heldout"], "stats": stats}

