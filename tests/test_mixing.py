import numpy as np
import pytest

from mobile_bert_distill.distill.data import PieceTable, TokenizedCorpus, gather_pieces
from mobile_bert_distill.errors import UserError
from mobile_bert_distill.distill.mixing import DualBatchMaker, p_dt_schedule
from mobile_bert_distill.text import load_vocab, read_corpus


@pytest.fixture(scope="module")
def tables(tiny_data):
    lines = read_corpus([tiny_data["train"]])[:200]
    corpus = TokenizedCorpus.from_lines(lines)
    s = PieceTable(load_vocab(tiny_data["student_vocab"]), corpus.words)
    t = PieceTable(load_vocab(tiny_data["teacher_vocab"]), corpus.words)
    return corpus, s, t


def maker(tables, **kw):
    corpus, s, t = tables
    args = dict(seq_len=32, batch_size=6, max_predictions=5, p_dt=0.5, seed=3)
    args.update(kw)
    return DualBatchMaker(corpus, s, t, **args)


def _unmasked(batch, prefix):
    """Token ids with the masked positions restored to their labels."""
    ids = batch[f"{prefix}_token_ids"].copy()
    for b in range(ids.shape[0]):
        for p, lab, w in zip(batch[f"{prefix}_mask_positions"][b], batch[f"{prefix}_mask_ids"][b],
                             batch[f"{prefix}_mask_weights"][b]):
            if w > 0:
                ids[b, p] = lab
    return ids


def test_same_seed_same_batch_and_different_seed_differs(tables):
    a, b = maker(tables)(7), maker(tables)(7)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = maker(tables, seed=4)(7)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert not np.array_equal(a["s_token_ids"], maker(tables)(8)["s_token_ids"])


def test_p_dt_zero_is_pure_teacher_and_one_is_pure_student(tables):
    corpus, s, t = tables
    b0 = maker(tables, p_dt=0.0)(1)
    assert b0["t_is_student"].sum() == 0
    b1 = maker(tables, p_dt=1.0)(1)
    real = b1["t_padding_mask"] == 1
    # Every piece except [CLS]/[SEP] comes from the student vocabulary ...
    is_sep_or_cls = np.isin(b1["t_token_ids"], [t.special["cls"], t.special["sep"]]) & (b1["t_is_student"] == 0)
    assert np.all(b1["t_is_student"][real & ~is_sep_or_cls] == 1)
    # ... and, unmasked, the teacher's view is exactly the student's segmentation (specials aside).
    s_ids, t_ids = _unmasked(b1, "s"), _unmasked(b1, "t")
    for r in range(s_ids.shape[0]):
        s_body = [x for x in s_ids[r] if x not in (s.special["cls"], s.special["sep"], s.special["pad"])]
        t_body = [x for x, f in zip(t_ids[r], b1["t_is_student"][r]) if f == 1]
        assert s_body == t_body


def test_word_boundaries_preserved(tables):
    corpus, s, t = tables
    m = maker(tables, p_dt=0.5, seq_len=64)
    batch = m(2)
    t_ids, flags = _unmasked(batch, "t"), batch["t_is_student"]
    rng = np.random.default_rng([m.seed, 2])
    windows = m._batch_windows(2, rng)
    for r, words in enumerate(windows):
        # Re-segment every word with each vocabulary; the mixed sequence must be a
        # concatenation of whole-word segmentations, one vocabulary per word.
        seq = list(zip(t_ids[r][1:], flags[r][1:]))
        pos = 0
        for w in words:
            if w == 0:
                assert seq[pos] == (t.special["sep"], 0)
                pos += 1
                continue
            sp, _ = gather_pieces(s.offsets, s.flat, np.array([w]))
            tp, _ = gather_pieces(t.offsets, t.flat, np.array([w]))
            f = seq[pos][1]
            expect = list(sp if f == 1 else tp)
            got = [x for x, _ in seq[pos: pos + len(expect)]]
            assert got == expect and all(ff == f for _, ff in seq[pos: pos + len(expect)])
            pos += len(expect)


def test_masked_labels_in_range_of_their_head(tables):
    corpus, s, t = tables
    for step in range(5):
        b = maker(tables, p_dt=0.5)(step)
        w = b["t_mask_weights"] > 0
        is_s = b["t_mask_is_student"] > 0
        labels = b["t_mask_ids"]
        assert np.all(labels[w & is_s] < s.size) and np.all(labels[w & ~is_s] < t.size)
        assert (w & is_s).any() and (w & ~is_s).any()
        # flags at masked positions agree with the per-piece vocabulary flags
        flags_at = np.take_along_axis(b["t_is_student"], b["t_mask_positions"], 1)
        np.testing.assert_array_equal(flags_at[w], b["t_mask_is_student"][w].astype(int))
        assert np.all(b["s_mask_ids"][b["s_mask_weights"] > 0] < s.size)
        # specials are never masked
        assert not np.isin(b["s_mask_ids"][b["s_mask_weights"] > 0], list(s.special.values())).any()


def test_masking_rate_and_eval_masking(tables):
    corpus, s, t = tables
    b = maker(tables, seq_len=64, max_predictions=20, eval_masking=True)(0)
    w = b["s_mask_weights"] > 0
    n_real = (b["s_padding_mask"] == 1).sum(1) - 2
    assert np.all(np.abs(w.sum(1) - np.rint(0.15 * n_real)) <= 1)
    masked = np.take_along_axis(b["s_token_ids"], b["s_mask_positions"], 1)
    assert np.all(masked[w] == s.special["mask"])


def test_ramp_and_bad_p_dt():
    assert p_dt_schedule(0, 0.8, 0.2, 100) == pytest.approx(0.2)
    assert p_dt_schedule(50, 0.8, 0.2, 100) == pytest.approx(0.5)
    assert p_dt_schedule(500, 0.8, 0.2, 100) == pytest.approx(0.8)
    assert p_dt_schedule(3, 0.4) == 0.4


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_dt_outside_unit_interval_rejected(tables, p):
    with pytest.raises(UserError, match="p_dt"):
        maker(tables, p_dt=p)


def test_sequential_windows_tile_the_corpus(tables):
    corpus, s, t = tables
    m = maker(tables, sequential=True, seq_len=24)
    covered = sum(n for _, n in m._windows)
    assert covered == len(corpus.stream)
    assert all(sum(max(a, b) for a, b in zip(s.lengths[corpus.stream[st:st + n]],
                                              t.lengths[corpus.stream[st:st + n]])) <= 22 or n == 1
               for st, n in m._windows)


def test_corpus_cache_round_trips_without_pickle(tables, tmp_path):
    from mobile_bert_distill.distill.data import load_or_build_corpus

    corpus = tables[0]
    corpus.words.append("naïve-日本")  # any UTF-8 word survives the blob
    path = tmp_path / "c.npz"
    corpus.save(str(path))
    back = TokenizedCorpus.load(str(path))
    assert back.words == corpus.words
    np.testing.assert_array_equal(back.stream, corpus.stream)
    np.testing.assert_array_equal(back.line_starts, corpus.line_starts)
    with np.load(str(path), allow_pickle=False) as z:  # plain arrays only
        assert sorted(z.files) == ["line_starts", "stream", "word_ends", "words_utf8"]
    corpus.words.pop()
    # a planted cache that needs pickle (or any file that is not ours) is never unpickled: it is rebuilt
    lines = ["one two three", "four five"]
    from mobile_bert_distill.distill.data import corpus_fingerprint

    planted = tmp_path / "cache" / f"corpus-{corpus_fingerprint(lines)}.npz"
    planted.parent.mkdir()
    with open(planted, "wb") as f:
        np.savez(f, words=np.array([{"evil": 1}], dtype=object))
    assert TokenizedCorpus.load(str(planted)) is None
    rebuilt = load_or_build_corpus(lines, str(planted.parent))
    assert "three" in rebuilt.words and TokenizedCorpus.load(str(planted)).words == rebuilt.words
