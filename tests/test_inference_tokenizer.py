"""The pure-Python WordPiece equals the training tokenizer (keras-hub) and,
where their definitions coincide, Hugging Face's BertWordPieceTokenizer."""

import unicodedata

import pytest

from _export_fixtures import learn_vocab, make_sentences, write_vocab

from mobile_bert_distill.text.wordpiece import WordPiece, casefold, pretokenize


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    tokens = learn_vocab(make_sentences(2000, seed=11), 200)
    path = write_vocab(tokens, str(tmp_path_factory.mktemp("tok") / "vocab.txt"))
    return tokens, path


def _keras_hub_ids(tokens, sentences):
    """The training path: keras-hub BertTokenizer inside tf.data (tf-text ops)."""
    import keras_hub
    import tensorflow as tf

    tok = keras_hub.models.BertTokenizer(vocabulary=tokens, lowercase=True, strip_accents=True)
    ds = tf.data.Dataset.from_tensor_slices(sentences).batch(64).map(tok)
    return [row for batch in ds for row in batch.to_list()]


@pytest.mark.parametrize("exotic", [False, True])
def test_matches_keras_hub_training_tokenizer(vocab, exotic):
    tokens, _ = vocab
    sentences = make_sentences(300, seed=21, exotic=exotic)
    ours = WordPiece(tokens)
    expected = _keras_hub_ids(tokens, sentences)
    mismatches = [(s, ours.encode(s), e) for s, e in zip(sentences, expected) if ours.encode(s) != e]
    assert mismatches == []
    # the sample really covers what it claims to
    joined = " ".join(sentences)
    assert any(c in joined for c in "éüçñ") and any(ch.isdigit() for ch in joined)
    assert any(len(w) > 100 for w in joined.split()), "no word over the 100-byte limit"
    assert ours.encode("x" * 101) == [ours.token_to_id["[UNK]"]]


def _hf_agrees_by_definition(text):
    """Inputs on which HF's normalisation (str.lower, control-char removal,
    Unicode-space splitting, no NFKC) coincides with keras-hub's
    (NFKC_Casefold, RE2 ASCII \\s)."""
    for ch in text:
        if ch in " \t\n\r":
            continue
        cat = unicodedata.category(ch)
        if cat.startswith("C") or cat.startswith("Z"):
            return False
        if unicodedata.normalize("NFKC", ch) != ch or ch.casefold() != ch.lower():
            return False
        if 0x4E00 <= ord(ch) <= 0x9FFF or ord(ch) > 0xFFFF:
            return False
    return True


def test_matches_hugging_face_where_definitions_coincide(vocab):
    from tokenizers import BertWordPieceTokenizer

    tokens, path = vocab
    hf = BertWordPieceTokenizer(path, lowercase=True, strip_accents=True)
    ours = WordPiece(path)
    plain = make_sentences(300, seed=31)
    assert all(_hf_agrees_by_definition(s) for s in plain)
    for s in plain:
        assert ours.encode(s) == hf.encode(s, add_special_tokens=False).ids, s
    exotic = [s for s in make_sentences(300, seed=32, exotic=True) if _hf_agrees_by_definition(s)]
    assert len(exotic) > 50
    for s in exotic:
        assert ours.encode(s) == hf.encode(s, add_special_tokens=False).ids, s


def test_documented_differences_from_hugging_face(vocab):
    """Where HF differs, we follow keras-hub (training): these are the cases."""
    assert casefold("Straße") == "strasse"          # full case folding; HF lower() keeps ß
    assert casefold("ﬁne") == "fine"                # NFKC ligature; HF keeps ﬁ
    assert casefold("Ｆｕｌｌ") == "full"           # NFKC full-width
    assert pretokenize("a\u00a0b") == ["a b"]        # NBSP is not RE2 \s: one word (NFKC -> space)
    assert pretokenize("x\u200by") == ["x", "y"]     # Cf splits
    assert pretokenize("東京") == ["東", "京"]         # CJK ideographs are words
    assert pretokenize("café, naïve!") == ["cafe", ",", "naive", "!"]


def test_mask_literal_and_specials(vocab):
    tokens, _ = vocab
    ours = WordPiece(tokens)
    ids = ours.encode("the [MASK] of paris", specials=("[MASK]",))
    assert ids.count(ours.token_to_id["[MASK]"]) == 1
    # without the specials argument [MASK] is ordinary text, as in keras-hub
    assert ours.token_to_id["[MASK]"] not in ours.encode("the [MASK] of paris")
    assert ours.decode(ours.encode("running")) == "running"
