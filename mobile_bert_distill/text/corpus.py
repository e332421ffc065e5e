"""Reading a text corpus (one stripped, non-empty line per paragraph) and the kit's two split rules.

- :func:`heldout_bucket`: the demo corpus's train / held-out split, a hash of each line (stable
  whatever else the corpus holds).
- :func:`split_corpus`: a calibration text's calibration / parity split, every 10th line.

Example:
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "c.txt")
>>> _ = open(path, "w", encoding="utf-8").write("first line\\n\\n  second line  \\n")
>>> read_corpus(path)
['first line', 'second line']
"""

import hashlib
import os

from mobile_bert_distill.errors import UserError


def _decode_error_message(path, data, err):
    line = data.count(b"\n", 0, err.start) + 1
    return f"{path}: not UTF-8 at byte offset {err.start} (line {line}); fix the file or skip such lines"


def read_corpus(paths, skip_bad_lines=False, warn=print):
    """Read text files into a list of non-empty, stripped lines (one paragraph each).

    Raises :class:`UserError` for a missing file, a file that is not UTF-8
    (naming the byte offset) unless ``skip_bad_lines`` (then bad lines are
    dropped and counted), and a corpus with no text at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise UserError("no corpus file given")
    lines, skipped = [], 0
    for path in paths:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UserError(f"corpus file not found: {path}")
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
            file_lines = text.splitlines()
        except UnicodeDecodeError as err:
            if not skip_bad_lines:
                raise UserError(_decode_error_message(path, data, err), option="skip_bad_lines",
                                purpose="to skip them with a warning") from None
            file_lines = []
            for raw in data.split(b"\n"):
                try:
                    file_lines.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    skipped += 1
        lines.extend(s for s in (line.strip() for line in file_lines) if s)
    if skipped and warn:
        warn(f"warning: skipped {skipped} line(s) that are not UTF-8")
    if not lines:
        raise UserError(f"corpus is empty (no non-blank line in {', '.join(map(str, paths))})")
    return lines


def heldout_bucket(line, fraction):
    """True when ``line`` belongs to the held-out split (a hash of its text: stable forever).

    >>> heldout_bucket("any line", 0.0), heldout_bucket("any line", 1.0)
    (False, True)
    """
    h = int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "big")
    return h < fraction * 2 ** 64


def split_corpus(lines, heldout_fraction=0.1):
    """Deterministic split: every 10th line held out for parity, the rest calibrates."""
    step = max(2, int(round(1 / heldout_fraction)))
    heldout = [line for i, line in enumerate(lines) if i % step == 0]
    calib = [line for i, line in enumerate(lines) if i % step != 0] or heldout
    return calib, heldout
