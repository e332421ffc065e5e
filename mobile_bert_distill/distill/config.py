"""Distillation configuration: YAML with defaults, ``--override key=value``, strict keys.

Every knob of the method lives here. Unknown keys are an error (a typo must
not silently fall back to a default).

Example:
>>> cfg = resolve({"data": {"corpus": ["a.txt"], "student_vocab": "v.txt"}}, ["train.steps=10", "mode=nokd"])
>>> cfg["train"]["steps"], cfg["mode"]
(10, 'nokd')
"""

import copy
import json
import math
import os

import yaml

from mobile_bert_distill.errors import UserError

MODES = ("nokd", "dual", "dual+down", "dual+up", "soft", "dual+soft", "dual+down+soft", "dual+up+soft", "tinybert",
         "teacher")


def mode_parts(mode):
    """What a mode trains with: ``{"teacher", "dual", "projection", "soft", "tinybert"}`` flags and the
    projection direction (``"down"``, ``"up"`` or ``None``). ``tinybert`` includes the soft KL term.

    >>> mode_parts("dual+up+soft")["projection"], mode_parts("soft")["dual"]
    ('up', False)
    """
    parts = mode.split("+")
    return {"teacher": mode != "nokd", "dual": "dual" in parts or mode == "teacher",
            "projection": next((p for p in parts if p in ("down", "up")), None),
            "soft": "soft" in parts or mode == "tinybert", "tinybert": mode == "tinybert"}

STRATEGIES = ("default", "mirrored", "tpu", "data_parallel")
JIT_COMPILE = ("auto", True, False)
PRECISIONS = (None, "float32", "mixed_float16", "mixed_bfloat16")

DEFAULTS = {
    # nokd | dual | dual+down | dual+up | soft | dual+soft | dual+down+soft | dual+up+soft | tinybert;
    # `teacher` trains the teacher's heads alone (mbd teacher-prep)
    "mode": "dual+up",
    "seed": 0,
    "output_dir": "out",
    "data": {
        "corpus": [],  # training text files, one paragraph per line
        "heldout": None,  # optional held-out text file, evaluated every train.eval_every steps
        "student_vocab": None,  # vocab.txt written by `mbd vocab`
        "seq_len": 128,
        "max_predictions": 20,  # masked positions per sequence
        "mask_rate": 0.15,
        "skip_bad_lines": False,
        "heldout_batches": 8,  # batches of held-out data per evaluation
    },
    "teacher": {
        # keras-hub preset name or directory, a local Hugging Face BERT folder,
        # or a teacher checkpoint from an earlier run; null with `random` below.
        "source": None,
        # Random initialisation instead of `source` (tests, speed studies):
        # {vocabulary: vocab.txt, num_layers, hidden_dim, num_heads, intermediate_dim}
        "random": None,
        "trainable": True,
        "dropout": None,  # null keeps the preset's value
    },
    "student": {
        "hidden_dim": 48,
        "num_layers": None,  # null: the teacher's depth (the projections pair layers 1:1)
        "num_heads": 4,
        "intermediate_dim": None,  # null: 4 x hidden_dim
        # ALBERT-style student (a keras-hub AlbertMaskedLM with the kit's WordPiece tokenizer):
        # embedding_dim E factorises the embedding (vocabulary x E, then a learned E -> hidden_dim
        # projection; null: BERT's embedding, as wide as hidden_dim); share_layers runs one transformer
        # layer at every depth (ALBERT's cross-layer sharing)
        "embedding_dim": None,
        "share_layers": False,
        "dropout": 0.1,
        "max_sequence_length": 512,
    },
    "dual": {
        "p_dt": 0.5,  # probability that a word is segmented with the student vocabulary
        "p_dt_start": None,  # with ramp_steps: linear ramp from p_dt_start to p_dt
        "ramp_steps": 0,
    },
    "projection": {
        "layer_map": None,  # {student_layer: teacher_layer}; required when depths differ
    },
    "loss": {
        "epsilon": 1.0,  # L = L_p + epsilon * (L_ce_student + L_ce_teacher) [+ the soft terms below]
    },
    "soft": {
        # modes with +soft (DistilBERT / Hinton): + kd_weight * T^2 * KL(teacher || student) at temperature T
        # over the masked positions, the teacher reading the student's own segmentation through its
        # student-vocabulary head, + cosine_weight * (1 - cos) between student hidden states and the
        # teacher's, projected to the student width by a learned matrix (training only)
        "temperature": 2.0,
        "kd_weight": 1.0,
        "cosine_weight": 0.0,
    },
    "tinybert": {
        # mode tinybert (TinyBERT): + layer_weight * (L_emb + L_hidn + L_attn) per paired layer
        # (projection.layer_map), + the soft KL term above (soft.temperature, soft.kd_weight)
        "layer_weight": 1.0,
    },
    "train": {
        "steps": 1000,
        "batch_size": 32,  # global batch (split over replicas)
        "learning_rate": 1e-3,
        "warmup_steps": 100,
        "weight_decay": 0.01,
        "clipnorm": 1.0,
        "log_every": 10,
        "eval_every": 0,  # 0: only at the end (when data.heldout is set)
        "checkpoint_every": 100,
        "keep_checkpoints": 2,
        # default | mirrored, tpu (TensorFlow) | data_parallel (JAX: keras.distribution.DataParallel)
        "strategy": "default",
        "mixed_precision": None,  # null | mixed_float16 | mixed_bfloat16
        "jit_compile": "auto",  # auto: each backend's fastest measured path (see jit_compile())
        "deterministic": False,  # op determinism (TensorFlow; slower; exact resume equality)
    },
}

_FREE_FORM = {("teacher", "random"), ("projection", "layer_map")}


def _merge(base, update, path=()):
    for key, value in update.items():
        where = ".".join(path + (str(key),))
        if key not in base:
            raise UserError(f"unknown config key '{where}'")
        if (path + (key,)) in _FREE_FORM and isinstance(base[key], dict) and isinstance(value, dict):
            base[key] = {**base[key], **value}  # free-form mapping: key-wise update
        elif isinstance(base[key], dict) and (path + (key,)) not in _FREE_FORM:
            if not isinstance(value, dict):
                raise UserError(f"config key '{where}' must be a mapping")
            _merge(base[key], value, path + (key,))
        else:
            base[key] = value


def parse_override(text):
    if "=" not in text:
        raise UserError(f"an override must read KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    node = value
    for part in reversed(key.strip().split(".")):
        node = {part: node}
    return node


def load_yaml(path):
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte offset {e.start}); a config is YAML text") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config must be a mapping")
    base = os.path.dirname(os.path.abspath(path))
    return data, base


def _rel(path, base):
    if path is None or base is None or os.path.isabs(path):
        return path
    candidate = os.path.join(base, path)
    return candidate if os.path.exists(candidate) and not os.path.exists(path) else path


def resolve(data, overrides=(), base_dir=None):
    """Defaults <- ``data`` <- overrides; checks values; returns a plain dict."""
    cfg = copy.deepcopy(DEFAULTS)
    _merge(cfg, data)
    for text in overrides:
        _merge(cfg, parse_override(text))
    d = cfg["data"]
    if isinstance(d["corpus"], str):
        d["corpus"] = [d["corpus"]]
    d["corpus"] = [_rel(p, base_dir) for p in d["corpus"]]
    d["heldout"] = _rel(d["heldout"], base_dir)
    d["student_vocab"] = _rel(d["student_vocab"], base_dir)
    t = cfg["teacher"]
    if t["source"] and base_dir and not os.path.isabs(str(t["source"])):
        t["source"] = _rel(str(t["source"]), base_dir)
    if isinstance(t["random"], dict) and t["random"].get("vocabulary"):
        t["random"]["vocabulary"] = _rel(t["random"]["vocabulary"], base_dir)
    validate(cfg)
    return cfg


def _check(cond, msg):
    if not cond:
        raise UserError(msg)


def validate(cfg):
    _check(cfg["mode"] in MODES, f"mode must be one of {', '.join(MODES)} (got {cfg['mode']!r})")
    d, tr, dual = cfg["data"], cfg["train"], cfg["dual"]
    _check(d["corpus"], "data.corpus: give at least one training text file")
    _check(d["student_vocab"], "data.student_vocab: give the vocab.txt written by `mbd vocab`")
    for name in ("p_dt", "p_dt_start"):
        v = dual[name]
        if v is None and name == "p_dt_start":
            continue
        _check(isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0,
               f"dual.{name} must be a number in [0, 1] (got {v!r})")
    _check(isinstance(dual["ramp_steps"], int) and dual["ramp_steps"] >= 0, "dual.ramp_steps must be an integer >= 0")
    for name in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
        _check(isinstance(tr[name], int) and tr[name] >= 1, f"train.{name} must be a positive integer")
    _check(isinstance(tr["eval_every"], int) and tr["eval_every"] >= 0, "train.eval_every must be an integer >= 0")
    _check(tr["steps"] % tr["log_every"] == 0, "train.steps must be a multiple of train.log_every "
                                                "(one logged round, a Keras epoch, is log_every steps)")
    _check(tr["checkpoint_every"] % tr["log_every"] == 0, "train.checkpoint_every must be a multiple of train.log_every")
    _check(tr["eval_every"] % tr["log_every"] == 0, "train.eval_every must be a multiple of train.log_every")
    _check(tr["strategy"] in STRATEGIES, f"train.strategy must be one of {', '.join(STRATEGIES)}")
    _check(tr["jit_compile"] in JIT_COMPILE, f"train.jit_compile must be auto, true or false (got {tr['jit_compile']!r})")
    _check(tr["mixed_precision"] in PRECISIONS, f"train.mixed_precision must be one of {PRECISIONS}")
    _check(float(tr["learning_rate"]) > 0, "train.learning_rate must be > 0")
    _check(isinstance(d["seq_len"], int) and d["seq_len"] >= 3, "data.seq_len must be an integer >= 3")
    _check(isinstance(d["max_predictions"], int) and 1 <= d["max_predictions"] <= d["seq_len"],
           "data.max_predictions must be in [1, seq_len]")
    _check(0.0 < float(d["mask_rate"]) < 1.0, "data.mask_rate must be in (0, 1)")
    soft = cfg["soft"]
    for name in ("temperature", "kd_weight", "cosine_weight"):
        v = soft[name]
        _check(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
               f"soft.{name} must be a number (got {v!r})")
    _check(soft["temperature"] > 0, f"soft.temperature must be > 0 (got {soft['temperature']!r})")
    for name in ("kd_weight", "cosine_weight"):
        _check(soft[name] >= 0, f"soft.{name} must be >= 0 (got {soft[name]!r})")
    _check(cfg["mode"] != "tinybert" or soft["cosine_weight"] == 0,
           f"soft.cosine_weight is {soft['cosine_weight']!r}, but mode tinybert matches hidden states by its "
           "layer terms (tinybert.layer_weight), not by a cosine: set it to 0")
    w = cfg["tinybert"]["layer_weight"]
    _check(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0,
           f"tinybert.layer_weight must be a number >= 0 (got {w!r})")
    s = cfg["student"]
    _check(isinstance(s["hidden_dim"], int) and s["hidden_dim"] > 0, "student.hidden_dim must be a positive integer")
    _check(isinstance(s["num_heads"], int) and s["hidden_dim"] % s["num_heads"] == 0,
           "student.num_heads must divide student.hidden_dim")
    e = s["embedding_dim"]
    _check(e is None or (isinstance(e, int) and not isinstance(e, bool) and e > 0),
           f"student.embedding_dim must be null or a positive integer (got {e!r})")
    _check(isinstance(s["share_layers"], bool), f"student.share_layers must be true or false (got {s['share_layers']!r})")
    _check(s["max_sequence_length"] >= d["seq_len"], "student.max_sequence_length must be >= data.seq_len")
    t = cfg["teacher"]
    if cfg["mode"] != "nokd":
        _check(bool(t["source"]) != bool(t["random"]),
               "teacher: set exactly one of teacher.source (preset/directory) and teacher.random")
        if t["random"]:
            r = t["random"]
            allowed = {"vocabulary", "num_layers", "hidden_dim", "num_heads", "intermediate_dim", "max_sequence_length"}
            unknown = set(r) - allowed
            _check(not unknown, f"unknown config key(s) teacher.random.{', teacher.random.'.join(sorted(unknown))}")
            for k in ("vocabulary", "num_layers", "hidden_dim", "num_heads"):
                _check(k in r, f"teacher.random.{k} is required")
    return cfg


# train.jit_compile=auto, per backend: the faster measured path (benchmarks/train_speed.py,
# docs/results/train_speed.md: with the demo's settings XLA beats TensorFlow's graph mode by 1.07-1.6x).
JIT_AUTO = {"tensorflow": True, "jax": True}


def jit_compile(cfg_train):
    """``train.jit_compile`` resolved for the backend of this process."""
    from mobile_bert_distill.distill import backends

    value = cfg_train["jit_compile"]
    return JIT_AUTO[backends.current()] if value == "auto" else bool(value)


def same_config(path, cfg):
    """True when the run config at ``path`` (a run's ``config.yaml``) records ``cfg``.

    ``output_dir`` is left out of the comparison: it names where a run was written, not how
    (a run records its final folder while it writes ``OUT.partial``). A setting the record
    lacks counts as its default: the record predates that setting, and a new setting's
    default keeps the behaviour the kit had before it.
    """
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        old = yaml.safe_load(f) or {}
    if isinstance(old, dict):
        old = _with_defaults(old, DEFAULTS)
    new = json.loads(json.dumps(cfg))
    return isinstance(old, dict) and {k: v for k, v in old.items() if k != "output_dir"} == \
        {k: v for k, v in new.items() if k != "output_dir"}


def _with_defaults(recorded, defaults):
    """``recorded`` with every key of ``defaults`` it lacks added (sections merged key by key)."""
    merged = dict(recorded)
    for key, default in defaults.items():
        if key not in merged:
            merged[key] = json.loads(json.dumps(default))
        elif isinstance(default, dict) and isinstance(merged[key], dict):
            merged[key] = _with_defaults(merged[key], default)
    return merged


def teacher_depth(teacher_cfg, base_dir=None, default=12):
    """The teacher's number of layers, read without building it (the student's depth by default).

    From ``teacher.random.num_layers``, else the ``config.json`` of a local ``teacher.source``
    (keras-hub preset, Hugging Face folder or teacher checkpoint; a relative path is looked up
    in ``base_dir``); a preset name gives ``default`` (BERT-base's 12, the paper's teacher). A
    source that looks like a path but holds no ``config.json`` is refused: never guess, a
    student of the wrong depth would be trained silently.
    """
    if teacher_cfg.get("random"):
        return int(teacher_cfg["random"].get("num_layers", default))
    src = teacher_cfg.get("source")
    if not src:
        return default
    src = str(src)
    folder = os.path.join(base_dir, src) if base_dir and not os.path.isabs(src) else src
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        if os.sep in src or src.startswith("."):
            raise UserError(f"cannot read the teacher's depth: no config.json in {src} "
                            "(fix teacher.source or set student.num_layers)")
        return default
    try:
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable JSON config ({type(e).__name__})") from None
    inner = c.get("config", c) if isinstance(c, dict) else {}
    for key in ("num_layers", "num_hidden_layers"):
        if isinstance(inner, dict) and inner.get(key):
            return int(inner[key])
    return default


def dump(cfg):
    return yaml.safe_dump(cfg, sort_keys=False)
