"""Shared helpers for the export / inference / predict tests: generated text,
a tiny WordPiece vocabulary learned on it, and a tiny keras-hub student preset
saved exactly the way ``mbd distill`` saves one.
"""

from __future__ import annotations

import os
import random

WORDS = (
    "the a of and to in is was for on that with as by at from his her it this "
    "capital city river mountain paris london berlin tokyo france germany japan "
    "king queen small large model student teacher learns words quickly slowly "
    "north south east west music song book library train station coffee cafe "
    "running jumped reading written distillation compression vocabulary token "
    "seventeen hundred thousand million first second third year years people"
).split()
ACCENTED = ["café", "naïve", "résumé", "Zürich", "São", "Ångström", "façade", "élan", "Señor", "Dvořák"]
PUNCT = [".", ",", "!", "?", ";", ":", "-", "(", ")", "'", '"', "/", "&", "%", "$", "#", "@", "*", "+", "=", "[", "]"]
SPECIAL_SHAPES = ["e-mail", "U.S.A.", "it's", "don't", "3.14", "1,000", "2019", "x^2", "a/b", "(hello)", "<tag>",
                  "C++", "#hashtag", "100%", "$5", "well-known", "hello...", "“quoted”", "—dash—", "‘single’"]


def make_sentences(n, seed=0, *, exotic=False):
    """``n`` varied English-like sentences with punctuation, accents, numbers,
    mixed case and (sometimes) very long words. ``exotic`` adds characters on
    which the keras-hub and Hugging Face normalisations differ (ß, ligatures,
    NBSP, full-width, CJK, emoji, control characters)."""
    rng = random.Random(seed)
    exotic_bits = ["straße", "ﬁne", "Ｆｕｌｌ", "a\u00a0b", "東京", "日本語", "🙂", "x\u200by", "tab\there",
                   "①②", "…", "ǅ", "İstanbul", "ŉ", "\u0007bell"]
    out = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(3, 18)):
            r = rng.random()
            if r < 0.55:
                w = rng.choice(WORDS)
            elif r < 0.65:
                w = rng.choice(ACCENTED)
            elif r < 0.75:
                w = str(rng.randint(0, 100000))
            elif r < 0.85:
                w = rng.choice(SPECIAL_SHAPES)
            elif r < 0.9:
                w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(12, 120)))
            else:
                w = rng.choice(PUNCT)
            if exotic and rng.random() < 0.15:
                w = rng.choice(exotic_bits)
            if rng.random() < 0.2:
                w = w.capitalize() if rng.random() < 0.5 else w.upper()
            words.append(w)
        sep = "  " if rng.random() < 0.1 else " "
        out.append(sep.join(words) + rng.choice([".", "!", "?", "", " ."]))
    return out


def learn_vocab(sentences, size=200):
    """A BERT-ordered vocabulary (``[PAD] [UNK] [CLS] [SEP] [MASK]`` first)."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    tok.train_from_iterator(
        sentences, vocab_size=size, min_frequency=1, limit_alphabet=120,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False,
    )
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], tokens[:5]
    # the trainer lists its alphabet in hash order, which changes from process to process
    return tokens[:5] + sorted(tokens[5:])


def write_vocab(tokens, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return path


def build_student(vocab, *, num_layers=2, hidden=16, heads=2, intermediate=32, seq_len=32, seed=0):
    """A tiny keras-hub ``BertMaskedLM`` with the preset layout ``mbd distill`` writes."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=num_layers, num_heads=heads, hidden_dim=hidden,
        intermediate_dim=intermediate, max_sequence_length=512, dropout=0.0,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=list(vocab), lowercase=True, strip_accents=True)
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(tokenizer=tokenizer, sequence_length=seq_len)
    return keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=preprocessor)


def train_briefly(model, sentences, *, steps=60, batch=16, seed=0):
    """A few MLM steps so that predictions are not uniform noise."""
    import keras
    import numpy as np

    pre = model.preprocessor
    x, y, w = pre(sentences)
    n = len(sentences)
    rng = np.random.default_rng(seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[], jit_compile=False)
    x = {k: np.asarray(v) for k, v in x.items()}
    y, w = np.asarray(y), np.asarray(w)
    model.preprocessor = None  # feed preprocessed arrays directly
    try:
        for _ in range(steps):
            idx = rng.integers(0, n, size=batch)
            model.train_on_batch({k: v[idx] for k, v in x.items()}, y[idx], sample_weight=w[idx])
    finally:
        model.preprocessor = pre
    return model


def save_student(model, directory):
    model.save_to_preset(directory)
    return directory


SEQ_LEN = 32
_CACHE = {}


def export_artifacts(tmp_path_factory):
    """Build once per test session: a briefly trained tiny student preset, a
    corpus, and an export per quantization mode (mlm, seq 32) plus a float32
    encoder export. Returns a dict of paths and reports."""
    if "artifacts" in _CACHE:
        return _CACHE["artifacts"]
    from mobile_bert_distill.export import (
        corpus_sequences, export_keras_model, export_student, read_calibration_text)
    from mobile_bert_distill.text.corpus import split_corpus
    from mobile_bert_distill.text.wordpiece import WordPiece

    root = tmp_path_factory.mktemp("export_artifacts")
    train = make_sentences(1200, seed=1)
    vocab = learn_vocab(train, 200)
    model = build_student(vocab, seq_len=SEQ_LEN)
    train_briefly(model, train, steps=40)
    student = save_student(model, str(root / "student"))
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(make_sentences(300, seed=2)) + "\n", encoding="utf-8")
    art = {"root": str(root), "student": student, "corpus": str(corpus),
           "vocab": str(root / "student" / "assets" / "tokenizer" / "vocabulary.txt"),
           "vocab_list": vocab, "keras_model": model, "models": {}, "reports": {}}
    # int8 goes through the preset + corpus path; the other modes reuse the
    # in-memory model (same weights) to keep the suite fast
    out = str(root / "mlm_int8.tflite")
    art["reports"]["int8"] = export_student(student, out, task="mlm", quantization="int8", seq_len=SEQ_LEN,
                                            calibration_corpus=str(corpus), num_calibration=64, num_parity=64)
    art["models"]["int8"] = out
    tok = WordPiece(art["vocab"])
    _, heldout = split_corpus(read_calibration_text(str(corpus)))
    feeds, labels = corpus_sequences(heldout, tok, SEQ_LEN, 64, seed=1)
    for q, task in (("float32", "mlm"), ("float16", "mlm"), ("dynamic", "mlm"), ("encoder", "encoder")):
        out = str(root / f"{task}_{q}.tflite")
        art["reports"][q] = export_keras_model(
            model, out, task=task, quantization="float32" if q == "encoder" else q, seq_len=SEQ_LEN,
            parity_sequences=feeds, parity_labels=labels)
        art["models"][q] = out
    _CACHE["artifacts"] = art
    return art
