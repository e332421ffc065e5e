"""keras-hub presets on disk: the student folder ``mbd distill`` writes, and any preset's task class.

Loading imports keras-hub (inside the functions); a broken preset is a
:class:`~mobile_bert_distill.errors.UserError`.
"""

from __future__ import annotations

import json
import os

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export.conversion import quiet_tf


def check_student_dir(student_dir):
    """Raise :class:`UserError` unless ``student_dir`` looks like a keras-hub preset."""
    student_dir = str(student_dir)
    if not os.path.isdir(student_dir):
        raise UserError(f"student directory not found: {student_dir}")
    for required in ("config.json", "metadata.json"):
        if not os.path.isfile(os.path.join(student_dir, required)):
            raise UserError(f"{student_dir} is not a keras-hub preset (no {required}); "
                            "pass the student/ folder that `mbd distill` writes")
    return find_preset_vocab(student_dir)


def load_student(student_dir):
    """Load the masked-LM preset ``mbd distill`` writes (a BERT or ALBERT-style student);
    return ``(model, vocab_path)``."""
    student_dir = str(student_dir)
    vocab_path = check_student_dir(student_dir)
    return load_preset(student_dir, "masked_lm", "student"), vocab_path


def load_preset(preset_dir, kind, what):
    """:func:`mobile_bert_distill.architectures.load_preset` with TensorFlow's start-up logs quieted."""
    quiet_tf()
    from mobile_bert_distill import architectures

    return architectures.load_preset(preset_dir, kind, what)


def find_preset_vocab(preset_dir):
    """The tokenizer vocabulary file of a preset; a :class:`UserError` when there is none."""
    for rel in ("assets/tokenizer/vocabulary.txt", "vocabulary.txt", "vocab.txt"):
        path = os.path.join(preset_dir, rel)
        if os.path.isfile(path):
            return path
    raise UserError(f"{preset_dir} has no tokenizer vocabulary (assets/tokenizer/vocabulary.txt)")


def preset_task_class(preset_dir):
    """The keras-hub task class a preset was saved from (``task.json``), or ``None``."""
    path = os.path.join(str(preset_dir), "task.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("class_name")
    except (OSError, ValueError, AttributeError) as e:
        raise UserError(f"{path} is not a keras-hub task config: {e}") from None
