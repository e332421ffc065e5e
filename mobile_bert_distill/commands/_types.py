"""Argument types that check ranges while the command line is parsed (argparse ``type=``).

A value out of range is refused before any work starts, as
``mbd: error: argument --seed: must be an integer >= 0 (got -1)``.
"""

import argparse
import math


def _parse(kind, text):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'} (got {text!r})")
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text!r})")
    return value


def positive_int(text):
    value = _parse(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {text})")
    return value


def nonnegative_int(text):
    value = _parse(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text})")
    return value


def seed(text):
    value = _parse(int, text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**32 - 1 (got {text})")
    return value


def positive_int_list(text):
    """Comma-separated integers >= 1, e.g. sequence lengths ``64,128``."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must list at least one integer (got {text!r})")
    return [positive_int(part) for part in parts]


def positive_float(text):
    value = _parse(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0 (got {text})")
    return value


def unit_interval(text):
    """A share or probability in [0, 1]."""
    value = _parse(float, text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1 (got {text})")
    return value


def open_unit_interval(text):
    """A share strictly between 0 and 1 (both parts must be non-empty)."""
    value = _parse(float, text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, both excluded (got {text})")
    return value
