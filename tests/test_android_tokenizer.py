"""The shipped Android sample, compiled and run on a JVM: ``android_demo_assets/WordPieceBert.kt``
must tokenize exactly like the Python :class:`~mobile_bert_distill.text.wordpiece.WordPiece`.

``make test-android`` installs what these tests need and runs them (``make test`` leaves them
out): a JDK, Android's ``org.json`` (Debian ``libandroid-json-java``), a Kotlin compiler
(``KOTLINC``), the demo's held-out text (``MBD_ANDROID_TEXT``) and the demo teacher's
bert-base-uncased vocabulary (``MBD_ANDROID_VOCAB``). The Android and LiteRT classes the sample
imports are compile-time stand-ins with the real signatures (``tests/android/stubs``), so a call
that the real API lacks fails to compile here; the README's early-exit loop is compiled with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _export_fixtures import build_student, learn_vocab, make_sentences, write_vocab  # noqa: E402

pytestmark = pytest.mark.android

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "android"
ASSETS = ROOT / "android_demo_assets"
REAL_LINES = 1000
SEQ_LEN = 32
# java.lang.Character.getType values, by Unicode general category.
JAVA_TYPES = {"Cn": 0, "Lu": 1, "Ll": 2, "Lt": 3, "Lm": 4, "Lo": 5, "Mn": 6, "Me": 7, "Mc": 8, "Nd": 9,
              "Nl": 10, "No": 11, "Zs": 12, "Zl": 13, "Zp": 14, "Cc": 15, "Cf": 16, "Co": 18, "Cs": 19,
              "Pd": 20, "Ps": 21, "Pe": 22, "Pc": 23, "Po": 24, "Sm": 25, "Sc": 26, "Sk": 27, "So": 28,
              "Pi": 29, "Pf": 30}


def _kotlinc():
    return os.environ.get("KOTLINC") or shutil.which("kotlinc")


def _json_jar():
    return os.environ.get("ANDROID_JSON_JAR", "/usr/share/java/com.android.json.jar")


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    """Compile the sample, the README's early-exit class and the check program; returns a runner."""
    kotlinc, jar = _kotlinc(), _json_jar()
    if not kotlinc or not shutil.which("javac") or not os.path.isfile(jar):
        pytest.skip("needs a JDK, a Kotlin compiler and Android's org.json: run `make test-android`")
    work = tmp_path_factory.mktemp("android")
    stubs = work / "stubs"
    java = sorted(str(p) for p in (HERE / "stubs").rglob("*.java"))
    subprocess.run(["javac", "-d", str(stubs), *java], check=True, capture_output=True, text=True)
    readme = (ASSETS / "README.md").read_text(encoding="utf-8")
    early_exit = [b for b in re.findall(r"```kotlin\n(.*?)```", readme, re.S) if "class EarlyExitClassifier" in b]
    assert len(early_exit) == 1, "the README's early-exit sample moved"
    sample = work / "EarlyExitClassifier.kt"
    sample.write_text("package com.example.mobilebert\n\nimport java.nio.MappedByteBuffer\n"
                      "import org.tensorflow.lite.Interpreter\n" + early_exit[0], encoding="utf-8")
    out = work / "check.jar"
    done = subprocess.run(
        [kotlinc, "-cp", f"{stubs}{os.pathsep}{jar}", "-include-runtime", "-d", str(out),
         str(ASSETS / "WordPieceBert.kt"), str(sample), str(HERE / "TokenizerCheck.kt")],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    classpath = os.pathsep.join([str(out), str(stubs), jar])

    def run(texts, vocab, model, seq_len):
        assert not any("\n" in t for t in texts)
        tin, tout = work / "texts.txt", work / "out.tsv"
        tin.write_text("\n".join(texts), encoding="utf-8")
        res = subprocess.run(["java", "-cp", classpath, "TokenizerCheckKt", str(model), str(vocab),
                              str(seq_len), str(tin), str(tout)], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        rows = tout.read_text(encoding="utf-8").rstrip("\n").split("\n")
        assert len(rows) == len(texts)
        fields = [r.split("\t") for r in rows]
        ints = lambda f: [int(x) for x in f.split()]  # noqa: E731
        return [{"mlm": ints(f[0]), "plain": ints(f[1]), "bert_input": ints(f[2]),
                 "classifier_input": ints(f[3]), "classifier_length": int(f[4]),
                 "words": [bytes.fromhex(w).decode("utf-8") for w in f[5].split()],
                 "java_types": ints(f[6].replace(",", " "))} for f in fields]

    return run


def _expected(tok, text, seq_len):
    from mobile_bert_distill.litert.inference import MASK
    from mobile_bert_distill.text.rows import pack_rows

    mlm = tok.encode(text, specials=(MASK,))
    plain = tok.encode(text)
    rows = pack_rows([mlm[: seq_len - 2], plain[: seq_len - 2]], seq_len, tok.special_id("[CLS]"),
                     tok.special_id("[SEP]"))["input_ids"].tolist()
    return {"mlm": mlm, "plain": plain, "bert_input": rows[0], "classifier_input": rows[1],
            "classifier_length": min(len(plain), seq_len - 2) + 2}


def _compare(run, texts, vocab_path, model, seq_len=SEQ_LEN):
    """The texts whose Kotlin ids differ from Python's, with both."""
    from mobile_bert_distill.text.wordpiece import WordPiece, read_vocab

    tok = WordPiece(read_vocab(vocab_path))
    bad = []
    for text, got in zip(texts, run(texts, vocab_path, model, seq_len)):
        want = _expected(tok, text, seq_len)
        if any(got[k] != want[k] for k in want):
            bad.append({"text": text, "python": tok.tokenize(text), "kotlin_words": got["words"]})
    return bad


def _real_lines():
    path = os.environ.get("MBD_ANDROID_TEXT")
    if not path:
        pytest.skip("MBD_ANDROID_TEXT (the demo's held-out text) is not set: run `make test-android`")
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    lines = [line for line in lines if line.strip() and "\r" not in line][:REAL_LINES]
    assert len(lines) == REAL_LINES, f"{path} has only {len(lines)} usable lines"
    return lines


@pytest.fixture(scope="module")
def model_assets(tmp_path_factory):
    """A tiny student exported to LiteRT with its android assets (for the golden inputs)."""
    from mobile_bert_distill.export import export_keras_model
    from mobile_bert_distill.export.android import write_android_assets

    work = tmp_path_factory.mktemp("assets")
    vocab = learn_vocab(make_sentences(400, seed=5), size=300)
    vocab_path = write_vocab(vocab, work / "vocab.txt")
    model = work / "student.tflite"
    report = export_keras_model(build_student(vocab, seq_len=SEQ_LEN), str(model), task="mlm",
                                quantization="float32", seq_len=SEQ_LEN)
    write_android_assets(str(work / "android"), str(model), str(vocab_path), report)
    return work / "android"


def test_real_text_matches_python_with_teacher_vocab(check, model_assets):
    vocab = os.environ.get("MBD_ANDROID_VOCAB")
    if not vocab:
        pytest.skip("MBD_ANDROID_VOCAB (the demo teacher's vocab.txt) is not set: run `make test-android`")
    lines = _real_lines()
    bad = _compare(check, lines, vocab, model_assets / "model.tflite", seq_len=128)
    assert not bad, f"{len(bad)} of {len(lines)} lines differ, first: {bad[0]}"


def test_real_and_generated_text_match_python_with_a_small_vocab(check, model_assets):
    """A 300-piece vocabulary: most words split into ##-pieces or fall back to [UNK]."""
    texts = [t.replace("\n", " ").replace("\r", " ") for t in make_sentences(1000, seed=11, exotic=True)]
    texts += [t + " [MASK] x[MASK]y" for t in texts[:50]] + ["[MASK]", "[mask] [MASK][MASK]", " "]
    if os.environ.get("MBD_ANDROID_TEXT"):
        texts += _real_lines()
    bad = _compare(check, texts, model_assets / "vocab.txt", model_assets / "model.tflite")
    assert not bad, f"{len(bad)} of {len(texts)} texts differ, first: {bad[0]}"


def test_golden_inputs_of_model_info(check, model_assets):
    info = json.loads((model_assets / "model_info.json").read_text(encoding="utf-8"))
    golden = info["golden"]
    got = check([g["text"] for g in golden], model_assets / "vocab.txt", model_assets / "model.tflite",
                info["seq_len"])
    for g, row in zip(golden, got):
        assert row["bert_input"][: g["length"]] == g["input_ids"], g["text"]
        assert set(row["bert_input"][g["length"]:]) <= {info["special_tokens"]["[PAD]"]}
    from mobile_bert_distill.export.android import CLASSIFIER_GOLDEN_SENTENCES

    bad = _compare(check, list(CLASSIFIER_GOLDEN_SENTENCES), model_assets / "vocab.txt",
                   model_assets / "model.tflite", seq_len=info["seq_len"])
    assert not bad, bad


def test_every_code_point_pretokenizes_like_python(check, model_assets):
    """Each code point between two letters: the Kotlin words equal Python's, except where the
    JVM's Unicode version gives the character another category (or none) than Python's."""
    from mobile_bert_distill.text.wordpiece import pretokenize

    cps = [cp for cp in range(0x20, 0x110000) if not 0xD800 <= cp <= 0xDFFF and chr(cp) not in "\n\r"]
    texts = [f"a{chr(cp)}b" for cp in cps]
    rows = check(texts, model_assets / "vocab.txt", model_assets / "model.tflite", SEQ_LEN)
    differ, versions = [], 0
    for cp, text, row in zip(cps, texts, rows):
        if row["words"] == pretokenize(text):
            continue
        if row["java_types"][1] != JAVA_TYPES[unicodedata.category(chr(cp))]:
            versions += 1  # assigned or recategorised in one Unicode version only
            continue
        differ.append(f"U+{cp:04X} {unicodedata.name(chr(cp), '?')}: {pretokenize(text)} vs {row['words']}")
    assert not differ, f"{len(differ)} code points differ: {differ[:10]}"
    assert versions < 5000, versions  # Python's and the JVM's Unicode versions are a few years apart
