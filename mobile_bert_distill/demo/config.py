"""The demo's configuration: where things are, and the ``demo:`` section of a demo config.

A demo config (``mobile_bert_distill/configs/demo.yaml``) is a plain
distillation config plus a ``demo:`` section (:data:`DEMO_DEFAULTS`: corpus
slice, vocabulary size, export and benchmark settings). :func:`load_demo_config`
splits and checks it; :func:`run_configs` resolves the three training runs.

Example::

    from mobile_bert_distill.demo.config import DEMO_CONFIG, load_demo_config, run_configs
    demo, raw, base = load_demo_config(DEMO_CONFIG)
    runs = run_configs(demo, raw, base, train="train.txt", student_vocab="vocab.txt",
                       teacher_source="teacher/", prep_teacher="out/teacher_prep/teacher")
    runs["dual+up"]["train"]["steps"]
"""

import copy
import os

from mobile_bert_distill import CONFIGS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
DEFAULT_CONFIG = os.path.join(CONFIGS_DIR, "tiny.yaml")
DEMO_CONFIG = os.path.join(CONFIGS_DIR, "demo.yaml")

# The `demo:` section of mobile_bert_distill/configs/demo.yaml (everything else there is a plain distillation config).
DEMO_DEFAULTS = {
    "cache": None,  # null: $MBD_CACHE_DIR, else ~/.cache/mobile_bert_distill
    "train_mb": 12.0,  # training text: the first N MB of the fetched (already shuffled) train.txt
    "heldout_lines": 2000,  # held-out text: the first N lines of the fetched heldout.txt
    "heldout_fraction": 0.02,  # --corpus without --heldout: share of lines held out (hash of the line)
    "vocab_size": 4928,
    "teacher_prep": {},  # merged over the distillation config for `mbd teacher-prep`
    "eval_batch_size": 32,
    "export": {"seq_len": 128, "quantization": "int8", "num_calibration": 200, "num_parity": 200,
               "min_agreement": 0.0, "android_assets": "android_demo_assets"},
    "bench": {"seq_len": "128", "threads": "1", "runs": 20, "warmup": 3},
}
_DEMO_MAPPINGS = ("export", "bench")  # the sub-mappings of DEMO_DEFAULTS, merged key by key


class DemoError(Exception):
    """One line for the user; the demo stops with exit code 2."""


def _merge_strict(base, update, where="demo"):
    for k, v in update.items():
        if k not in base:
            raise DemoError(f"unknown config key '{where}.{k}'")
        if k in _DEMO_MAPPINGS and where == "demo":
            if not isinstance(v, dict):
                raise DemoError(f"config key '{where}.{k}' must be a mapping")
            _merge_strict(base[k], v, f"{where}.{k}")
        else:
            base[k] = v


def _deep_merge(base, update):
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_demo_config(path):
    """``(demo_settings, distill_mapping, base_dir)`` of a demo config (``mobile_bert_distill/configs/demo.yaml``).

    ``demo_settings`` is :data:`DEMO_DEFAULTS` with the file's ``demo:`` section merged over it
    (an unknown key is an error); ``distill_mapping`` is the rest of the file, unresolved;
    ``base_dir`` is what relative paths in it are relative to.

    Raises:
        DemoError: the file cannot be read, or a ``demo:`` key is unknown or out of range.
    """
    from mobile_bert_distill.distill import config as config_lib
    from mobile_bert_distill.errors import UserError

    try:
        raw, base = config_lib.load_yaml(path)
    except UserError as e:
        raise DemoError(str(e)) from None
    raw = dict(raw)
    section = raw.pop("demo", None) or {}
    if not isinstance(section, dict):
        raise DemoError(f"{path}: 'demo' must be a mapping")
    demo = copy.deepcopy(DEMO_DEFAULTS)
    _merge_strict(demo, section)
    if not isinstance(demo["teacher_prep"], dict):
        raise DemoError(f"{path}: demo.teacher_prep must be a mapping (config keys for `mbd teacher-prep`)")
    for k in ("train_mb",):
        if not (isinstance(demo[k], (int, float)) and demo[k] > 0):
            raise DemoError(f"demo.{k} must be a positive number")
    for k in ("heldout_lines", "vocab_size", "eval_batch_size"):
        if not (isinstance(demo[k], int) and demo[k] > 0):
            raise DemoError(f"demo.{k} must be a positive integer")
    return demo, raw, base


def run_configs(demo, raw, base, *, train, student_vocab, teacher_source, prep_teacher):
    """The three resolved distillation configs the demo runs: teacher-prep, nokd, dual+up.

    Args:
        demo, raw, base: what :func:`load_demo_config` returns.
        train: the training text (``data.corpus`` of every run).
        student_vocab: the student's ``vocab.txt``.
        teacher_source: the pretrained teacher folder (teacher-prep starts from it; nokd takes
            only its depth).
        prep_teacher: where teacher-prep writes the prepared teacher (dual+up distils from it).

    Returns:
        ``{"teacher-prep": cfg, "nokd": cfg, "dual+up": cfg}``; ``demo["teacher_prep"]`` is
        merged over the file's settings for teacher-prep only.

    Raises:
        DemoError: a config does not resolve, or nokd and dual+up differ in ``train.*`` or ``seed``.
    """
    from mobile_bert_distill.distill import config as config_lib
    from mobile_bert_distill.errors import UserError

    paths = [f"data.corpus=[{train}]", f"data.student_vocab={student_vocab}", "data.heldout=null"]
    try:
        prep = config_lib.resolve(_deep_merge(raw, demo["teacher_prep"]),
                                  paths + [f"teacher.source={teacher_source}", "mode=teacher"], base_dir=base)
        runs = {"teacher-prep": prep}
        # nokd never builds a teacher: its source only gives the student its depth
        for mode, source in (("nokd", teacher_source), ("dual+up", prep_teacher)):
            runs[mode] = config_lib.resolve(raw, paths + [f"teacher.source={source}", f"mode={mode}"],
                                            base_dir=base)
    except UserError as e:
        raise DemoError(f"{e}") from None
    if runs["nokd"]["train"] != runs["dual+up"]["train"] or runs["nokd"]["seed"] != runs["dual+up"]["seed"]:
        raise DemoError("nokd and dual+up must share train.* and seed")
    return runs
