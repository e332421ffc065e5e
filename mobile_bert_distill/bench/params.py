"""Parameter counts of standard BERT layouts, and the paper's Table 1 for comparison.

A "standard layout" is keras-hub's ``BertBackbone`` (= Google's BERT):
token/position/segment embeddings + LayerNorm, ``L`` transformer layers
(Q/K/V/output projections with biases, two LayerNorms, a feed-forward of
width ``I``), a pooler; the MLM head is a dense ``H x H`` + LayerNorm + an
output bias, its decoder tied to the token embeddings; the NSP head is
``H x 2`` + bias. An ALBERT-style layout (keras-hub's ``AlbertBackbone``, see
:mod:`~mobile_bert_distill.architectures`) has ``E``-wide embeddings and an
``E x H`` projection, stores ``distinct_layers`` of its ``L`` layers, and its
MLM head's dense is ``H x E`` with an ``E``-wide LayerNorm.

BERT-base reproduces the paper exactly (109,482,240 with the pooler;
110,106,428 with the tied MLM head and the NSP head). The paper's student
counts (1,775,910 for 48-d) are reproduced by no standard layout with a
4928-WordPiece vocabulary; :func:`paper_comparison` shows ours beside them.

Example:
>>> counts = param_counts(BERT_BASE)
>>> counts["backbone_with_pooler"], counts["paper_total"]
(109482240, 110106428)
>>> param_counts(student_config(48))["backbone_with_pooler"]
602928
>>> param_counts(student_config(48, embedding_dim=16, distinct_layers=1))["backbone_with_pooler"]
118544
"""

from __future__ import annotations

import dataclasses
import json
import os

from mobile_bert_distill.errors import UserError

#: Table 1 of Zhao et al. 2019 (arXiv 1909.11687): total parameters.
PAPER_TABLE1 = {
    "BERT-base": 110_106_428,
    "BERT-base backbone+pooler": 109_482_240,
    "BERT-base MLM head": 622_650,
    "BERT-base NSP head": 1_538,
    "student 48-d": 1_775_910,
    "student 96-d": 5_665_926,
    "student 192-d": 19_169_094,
}
PAPER_STUDENT_VOCAB = 4928


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT (keras-hub ``BertBackbone`` arguments), or of an ALBERT-style encoder.

    ``embedding_dim``: ``None`` for BERT; an ALBERT-style model's embedding width
    ``E`` (it then has an ``E -> hidden_dim`` projection, even when ``E == hidden_dim``).
    ``distinct_layers``: the transformer layers stored (``None``: ``num_layers``;
    fewer when depths share a layer). ``num_layers`` is always the depth run.
    """

    vocab_size: int
    hidden_dim: int
    num_layers: int
    num_heads: int
    intermediate_dim: int
    max_positions: int = 512
    num_segments: int = 2
    embedding_dim: int | None = None
    distinct_layers: int | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if (v is not None or f.default is not None) and (not isinstance(v, int) or v < 1):
                raise UserError(f"{f.name} must be a positive integer, got {v!r}")
        if self.hidden_dim % self.num_heads:
            raise UserError(
                f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.distinct_layers is not None and self.distinct_layers > self.num_layers:
            raise UserError(f"distinct_layers {self.distinct_layers} exceeds num_layers {self.num_layers}")

    @property
    def stored_layers(self):
        """The transformer layers whose weights are stored."""
        return self.distinct_layers or self.num_layers

    def to_dict(self):
        """The fields, less the ALBERT-style ones left at ``None``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


BERT_BASE = BertConfig(vocab_size=30522, hidden_dim=768, num_layers=12, num_heads=12, intermediate_dim=3072)


def student_config(hidden_dim, *, vocab_size=PAPER_STUDENT_VOCAB, num_layers=12, num_heads=4,
                   intermediate_dim=None, embedding_dim=None, distinct_layers=None):
    """The kit's standard student: 12 layers, feed-forward ``4 x hidden``, 4928 WordPieces
    (``embedding_dim``, ``distinct_layers``: an ALBERT-style one, see :class:`BertConfig`)."""
    return BertConfig(vocab_size=vocab_size, hidden_dim=hidden_dim, num_layers=num_layers,
                      num_heads=num_heads, intermediate_dim=intermediate_dim or 4 * hidden_dim,
                      embedding_dim=embedding_dim, distinct_layers=distinct_layers)


def param_rows(cfg):
    """``[(component, count)]`` for backbone, pooler and heads (``x L`` rows are totals over
    the stored layers)."""
    h, i, L = cfg.hidden_dim, cfg.intermediate_dim, cfg.stored_layers
    e = cfg.embedding_dim or h
    ln = 2 * h
    projection = [] if cfg.embedding_dim is None else [("embedding projection", e * h + h)]
    return [
        ("token embeddings", cfg.vocab_size * e),
        ("position embeddings", cfg.max_positions * e),
        ("segment embeddings", cfg.num_segments * e),
        ("embedding LayerNorm", 2 * e),
        *projection,
        (f"attention Q/K/V/output (x{L})", L * 4 * (h * h + h)),
        (f"attention LayerNorm (x{L})", L * ln),
        (f"feed-forward (x{L})", L * (h * i + i + i * h + h)),
        (f"output LayerNorm (x{L})", L * ln),
        ("pooler", h * h + h),
        (_MLM_HEAD, h * e + e + 2 * e + cfg.vocab_size),
        ("NSP head", 2 * h + 2),
    ]


_MLM_HEAD = "MLM head: transform + LayerNorm + bias (decoder tied)"


def param_counts(cfg):
    """Totals: ``backbone`` (no pooler), ``backbone_with_pooler``, heads, and the paper-style total."""
    rows = dict(param_rows(cfg))
    pooler = rows["pooler"]
    mlm = rows[_MLM_HEAD]
    nsp = rows["NSP head"]
    backbone = sum(rows.values()) - pooler - mlm - nsp
    return {
        "backbone": backbone,
        "pooler": pooler,
        "backbone_with_pooler": backbone + pooler,
        "mlm_head_tied": mlm,
        "nsp_head": nsp,
        "masked_lm": backbone + pooler + mlm,  # keras-hub BertMaskedLM/AlbertMaskedLM (its backbone has the pooler)
        "paper_total": backbone + pooler + mlm + nsp,
    }


def size_mb(params, bytes_per_param=4):
    """Weights-only size in MB (10^6 bytes)."""
    return params * bytes_per_param / 1e6


def paper_comparison(vocab_size=PAPER_STUDENT_VOCAB):
    """Rows ``(model, paper count, our standard-layout count)`` for Table 1."""
    rows = [("BERT-base", PAPER_TABLE1["BERT-base"], param_counts(BERT_BASE)["paper_total"]),
            ("BERT-base backbone+pooler", PAPER_TABLE1["BERT-base backbone+pooler"],
             param_counts(BERT_BASE)["backbone_with_pooler"])]
    for h in (48, 96, 192):
        ours = param_counts(student_config(h, vocab_size=vocab_size))["backbone_with_pooler"]
        rows.append((f"student {h}-d", PAPER_TABLE1[f"student {h}-d"], ours))
    return rows


# --------------------------------------------------------------------------
# reading configurations
# --------------------------------------------------------------------------
_KEYS = {
    "vocab_size": ("vocab_size", "vocabulary_size"),
    "hidden_dim": ("hidden_dim", "hidden_size"),
    "num_layers": ("num_layers", "num_hidden_layers"),
    "num_heads": ("num_heads", "num_attention_heads"),
    "intermediate_dim": ("intermediate_dim", "intermediate_size"),
    "max_positions": ("max_sequence_length", "max_position_embeddings", "max_positions"),
    "num_segments": ("num_segments", "type_vocab_size"),
    "embedding_dim": ("embedding_dim", "embedding_size"),
}
_ALBERT_GROUPS = ("num_groups", "num_hidden_groups")  # distinct layer groups (keras-hub, HF)
_ALBERT_INNER = ("num_inner_repetitions", "inner_group_num")  # layers per group


def _count_vocab(path):
    if not os.path.isfile(path):
        raise UserError(f"vocabulary file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def config_from_mapping(mapping, *, base_dir=".", defaults=None):
    """Build a :class:`BertConfig` from a dict with BERT / ALBERT, keras-hub / HF key names.

    ``vocabulary`` (a vocab file, relative to ``base_dir``) may stand in for
    ``vocab_size``; ``intermediate_dim`` defaults to ``4 x hidden_dim`` and
    ``num_heads`` to 4 (the kit's student). ALBERT's layer groups (or a
    distill config's ``share_layers: true``, one layer at every depth) give
    ``distinct_layers``, and make the embedding factorised (``embedding_dim``
    defaults to ``hidden_dim``).
    """
    values = dict(defaults or {})
    for field, names in _KEYS.items():
        for n in names:
            if mapping.get(n) is not None:
                values[field] = mapping[n]
                break
    groups = next((mapping[n] for n in _ALBERT_GROUPS if mapping.get(n) is not None), None)
    groups = 1 if mapping.get("share_layers") is True else groups
    if groups is not None and "num_layers" in values and "hidden_dim" in values:
        inner = next((mapping[n] for n in _ALBERT_INNER if mapping.get(n) is not None), 1)
        values.setdefault("embedding_dim", values["hidden_dim"])
        try:
            depth, distinct = int(values["num_layers"]) * int(inner), int(groups) * int(inner)
        except (TypeError, ValueError):
            raise UserError(f"configuration values must be integers: {mapping}") from None
        values["num_layers"] = depth
        values["distinct_layers"] = distinct if distinct < depth else None
    if "vocab_size" not in values and isinstance(mapping.get("vocabulary"), str):
        values["vocab_size"] = _count_vocab(os.path.join(base_dir, mapping["vocabulary"]))
    missing = [k for k in ("vocab_size", "hidden_dim", "num_layers") if k not in values]
    if missing:
        raise UserError(f"configuration lacks {', '.join(missing)}")
    values.setdefault("num_heads", 4)
    values.setdefault("intermediate_dim", 4 * int(values["hidden_dim"]))
    try:
        values = {k: v if v is None else int(v) for k, v in values.items()}
    except (TypeError, ValueError):
        raise UserError(f"configuration values must be integers: {values}") from None
    return BertConfig(**values)


def load_config(path, section="student", overrides=None):
    """A :class:`BertConfig` from a distill YAML (its ``student:`` section), a keras-hub
    preset directory (``config.json``) or a Hugging Face ``config.json``.

    ``overrides`` (keys as in the file, e.g. ``{"vocab_size": 4928}``) win over the file's
    values and may supply what it lacks.
    """
    over = dict(overrides or {})
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"configuration not found: {path}")
    base = os.path.dirname(os.path.abspath(path))
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        else:
            import yaml

            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
    except Exception as e:
        raise UserError(f"cannot parse {path}: {type(e).__name__}: {' '.join(str(e).split())[:120]}") from e
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a mapping")
    if isinstance(data.get("config"), dict):  # keras-hub preset config.json
        return config_from_mapping({**data["config"], **over}, base_dir=base)
    if not isinstance(data.get(section), dict):
        return config_from_mapping({**data, **over}, base_dir=base)
    # a distill config: the student section, its vocabulary from data.student_vocab,
    # and (when student.num_layers is null) the teacher's depth
    student = dict(data[section])
    if student.get("max_sequence_length") is None:
        student.pop("max_sequence_length", None)
    vocab = (data.get("data") or {}).get("student_vocab")
    if student.get("vocab_size") is None and student.get("vocabulary") is None and vocab:
        student["vocabulary"] = vocab
    student.update(over)
    if student.get("num_layers") is None:
        from mobile_bert_distill.distill.config import teacher_depth

        student["num_layers"] = teacher_depth(data.get("teacher") or {}, base)
    return config_from_mapping(student, base_dir=base)
