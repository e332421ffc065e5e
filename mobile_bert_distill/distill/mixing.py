"""Dual-vocabulary MLM batches: the student's view and the teacher's mixed view.

For one text window the student always sees its own segmentation. The teacher
sees the same words, each one segmented with the student vocabulary with
probability ``p_dt`` (optionally ramped up linearly from ``p_dt_start`` over
``ramp_steps`` steps) and with the teacher vocabulary otherwise; a flag per
piece says which vocabulary produced it. Both views are then masked BERT-style
(``mask_rate`` of the pieces, 80% ``[MASK]`` / 10% random / 10% kept, whole
pieces) — each with its own draw. A masked student-vocabulary piece is
replaced by tokens of the student vocabulary and is scored by the teacher's
student-vocabulary head; a teacher-vocabulary piece likewise.

Batch ``k`` is a pure function of ``(seed, k)``, so a resumed run sees exactly
the data an uninterrupted one would.

Example:
>>> from mobile_bert_distill.distill.data import TokenizedCorpus, PieceTable
>>> corpus = TokenizedCorpus.from_lines(["the cats sat on the mat"] * 4)
>>> sv = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "sat", "on", "mat"]
>>> tv = sv + ["cats"]
>>> maker = DualBatchMaker(corpus, PieceTable(sv, corpus.words), PieceTable(tv, corpus.words),
...                        seq_len=16, batch_size=2, max_predictions=3, p_dt=1.0)
>>> batch = maker(0)
>>> sorted(batch)[:3]
['s_mask_ids', 's_mask_positions', 's_mask_weights']
>>> bool((batch["t_is_student"][:, 1:7] == 1).all())
True
"""

import numpy as np

from mobile_bert_distill.errors import UserError

STUDENT_KEYS = ("s_token_ids", "s_padding_mask", "s_mask_positions", "s_mask_ids", "s_mask_weights")
TEACHER_KEYS = ("t_token_ids", "t_is_student", "t_padding_mask", "t_mask_positions", "t_mask_ids",
                "t_mask_weights", "t_mask_is_student")


def p_dt_schedule(step, p_dt, p_dt_start=None, ramp_steps=0):
    """Probability of student segmentation per word at ``step`` (linear ramp)."""
    if p_dt_start is None or not ramp_steps:
        return float(p_dt)
    frac = min(max(step / float(ramp_steps), 0.0), 1.0)
    return float(p_dt_start + (p_dt - p_dt_start) * frac)


class DualBatchMaker:
    """Build MLM batches for the student and (optionally) the dual-vocabulary teacher.

    Args:
        corpus: a :class:`~mobile_bert_distill.distill.data.TokenizedCorpus`.
        student: :class:`~mobile_bert_distill.distill.data.PieceTable` of the student vocabulary.
        teacher: piece table of the teacher vocabulary, or ``None`` (no teacher view).
        seq_len: sequence length of both views, ``[CLS]`` and ``[SEP]`` included.
        batch_size: sequences per batch.
        max_predictions: masked positions per sequence (padded with weight 0).
        mask_rate: share of maskable pieces that are masked (at least one).
        p_dt, p_dt_start, ramp_steps: the dual-training mixing probability schedule.
        seed: data seed.
        eval_masking: replace every selected piece by ``[MASK]`` (no 10/10 noise),
            for deterministic evaluation.
        sequential: windows tile the corpus in order (evaluation) instead of
            starting at random lines (training).
    """

    def __init__(self, corpus, student, teacher=None, *, seq_len=128, batch_size=32,
                 max_predictions=20, mask_rate=0.15, p_dt=0.5, p_dt_start=None, ramp_steps=0,
                 seed=0, eval_masking=False, sequential=False):
        if not 0.0 <= p_dt <= 1.0 or (p_dt_start is not None and not 0.0 <= p_dt_start <= 1.0):
            raise UserError(f"p_dt must be in [0, 1] (got p_dt={p_dt}, p_dt_start={p_dt_start})")
        if seq_len < 3:
            raise UserError(f"seq_len must be at least 3 (got {seq_len})")
        if not 1 <= max_predictions <= seq_len:
            raise UserError(f"max_predictions must be in [1, seq_len] (got {max_predictions})")
        if not 0.0 < mask_rate < 1.0:
            raise UserError(f"mask_rate must be in (0, 1) (got {mask_rate})")
        self.corpus, self.student, self.teacher = corpus, student, teacher
        self.seq_len, self.batch_size = int(seq_len), int(batch_size)
        self.max_predictions, self.mask_rate = int(max_predictions), float(mask_rate)
        self.p_dt, self.p_dt_start, self.ramp_steps = float(p_dt), p_dt_start, int(ramp_steps or 0)
        self.seed, self.eval_masking, self.sequential = int(seed), bool(eval_masking), bool(sequential)
        lens = student.lengths
        if teacher is not None:
            lens = np.maximum(lens, teacher.lengths)
        self._window_lens = lens
        self._windows = self._tile_windows() if sequential else None

    # ------------------------------------------------------------ windows
    @property
    def budget(self):
        return self.seq_len - 2

    def _fit(self, start):
        words = self.corpus.stream[start : start + self.budget]
        fits = np.cumsum(self._window_lens[words]) <= self.budget
        n = max(int(fits.sum()), 1)
        return words[:n]

    def _tile_windows(self):
        windows, start, end = [], 0, len(self.corpus.stream)
        while start < end:
            words = self._fit(start)
            windows.append((start, len(words)))
            start += len(words)
        return windows

    @property
    def num_windows(self):
        """Windows in one pass over the corpus (sequential mode)."""
        return len(self._windows) if self._windows is not None else None

    def steps_per_pass(self):
        return -(-self.num_windows // self.batch_size)

    def _batch_windows(self, step, rng):
        if self.sequential:
            n = len(self._windows)
            picks = [(step * self.batch_size + b) % n for b in range(self.batch_size)]
            return [self.corpus.stream[s : s + k] for s, k in (self._windows[i] for i in picks)]
        starts = self.corpus.line_starts[rng.integers(0, self.corpus.num_lines, self.batch_size)]
        return [self._fit(int(s)) for s in starts]

    # ------------------------------------------------------------ pieces
    def _assemble(self, pieces, flags, table_cls, table_sep, ends_with_break):
        body = pieces[: self.budget]
        fl = flags[: self.budget]
        tail = [] if ends_with_break and len(body) == len(pieces) else [table_sep]
        ids = np.concatenate([[table_cls], body, tail]).astype(np.int32)
        fl = np.concatenate([[0], fl, [0] * len(tail)]).astype(np.int32)
        return ids, fl

    def _student_view(self, words):
        from mobile_bert_distill.distill.data import gather_pieces

        pieces, _ = gather_pieces(self.student.offsets, self.student.flat, words)
        sp = self.student.special
        return self._assemble(pieces, np.zeros_like(pieces), sp["cls"], sp["sep"], words[-1] == 0)

    def _teacher_view(self, words, p, rng):
        s, t = self.student, self.teacher
        use_student = rng.random(len(words)) < p
        use_student &= words != 0  # line breaks stay teacher [SEP]
        n_t = len(t.flat)
        offsets_s = s.offsets[words] + n_t
        offsets_t = t.offsets[words]
        starts = np.where(use_student, offsets_s, offsets_t)
        lens = np.where(use_student, s.lengths[words], t.lengths[words])
        total = int(lens.sum())
        idx = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)
        table = np.concatenate([t.flat, s.flat])
        pieces = table[idx]
        flags = (idx >= n_t).astype(np.int32)
        sp = t.special
        return self._assemble(pieces, flags, sp["cls"], sp["sep"], words[-1] == 0)

    # ------------------------------------------------------------ masking
    def _mask(self, ids, flags, rng, tables):
        B, S = ids.shape
        P = self.max_predictions
        maskable = np.zeros_like(ids, dtype=bool)
        for f, table in enumerate(tables):
            maskable |= (flags == f) & ~table.is_special[np.minimum(ids, table.size - 1)]
        maskable &= ids >= 0
        n_cand = maskable.sum(1)
        k = np.minimum(np.maximum(np.rint(self.mask_rate * n_cand).astype(np.int64), 1), P)
        k = np.minimum(k, n_cand)
        scores = rng.random((B, S))
        scores[~maskable] = 2.0
        order = np.argsort(scores, axis=1, kind="stable")[:, :P]
        valid = np.arange(P)[None, :] < k[:, None]
        positions = np.sort(np.where(valid, order, S), axis=1)  # valid first, ascending
        valid = positions < S
        positions = np.where(valid, positions, 0)
        labels = np.where(valid, np.take_along_axis(ids, positions, 1), 0)
        pos_flags = np.where(valid, np.take_along_axis(flags, positions, 1), 0)
        mask_tok = np.zeros_like(labels)
        rand_tok = np.zeros_like(labels)
        for f, table in enumerate(tables):
            mask_tok = np.where(pos_flags == f, table.special["mask"], mask_tok)
            rand_tok = np.where(pos_flags == f, rng.choice(table.ordinary_ids, size=labels.shape), rand_tok)
        r = rng.random((B, P))
        if self.eval_masking:
            new = mask_tok
        else:
            new = np.where(r < 0.8, mask_tok, np.where(r < 0.9, rand_tok, labels))
        out = ids.copy()
        rows = np.broadcast_to(np.arange(B)[:, None], (B, P))
        out[rows[valid], positions[valid]] = new[valid]
        return out, positions.astype(np.int32), labels.astype(np.int32), valid.astype(np.float32), pos_flags

    def _pad(self, seqs):
        out = np.zeros((len(seqs), self.seq_len), np.int32)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return out

    # ------------------------------------------------------------ batches
    def __call__(self, step):
        step = int(step)
        rng = np.random.default_rng([self.seed, step])
        windows = self._batch_windows(step, rng)
        batch = {}
        s_ids, s_flags = zip(*(self._student_view(w) for w in windows))
        ids, padding = self._pad(s_ids), self._pad([np.ones_like(x) for x in s_ids])
        ids_m, pos, lab, w, _ = self._mask(ids, self._pad(s_flags), rng, [self.student])
        batch.update(s_token_ids=ids_m, s_padding_mask=padding, s_mask_positions=pos,
                     s_mask_ids=lab, s_mask_weights=w)
        if self.teacher is not None:
            p = p_dt_schedule(step, self.p_dt, self.p_dt_start, self.ramp_steps)
            t_ids, t_flags = zip(*(self._teacher_view(w, p, rng) for w in windows))
            ids, flags = self._pad(t_ids), self._pad(t_flags)
            padding = self._pad([np.ones_like(x) for x in t_ids])
            ids_m, pos, lab, w, pf = self._mask(ids, flags, rng, [self.teacher, self.student])
            batch.update(t_token_ids=ids_m, t_is_student=flags, t_padding_mask=padding,
                         t_mask_positions=pos, t_mask_ids=lab, t_mask_weights=w,
                         t_mask_is_student=pf.astype(np.float32))
        return batch

    def keys(self):
        return STUDENT_KEYS + (TEACHER_KEYS if self.teacher is not None else ())

    def signature(self):
        """``{key: (dtype, shape)}`` of one batch."""
        B, S, P = self.batch_size, self.seq_len, self.max_predictions
        spec = {}
        for k in self.keys():
            shape = (B, P) if "mask_" in k else (B, S)
            dtype = "float32" if k.endswith("weights") or k == "t_mask_is_student" else "int32"
            spec[k] = (dtype, shape)
        return spec

