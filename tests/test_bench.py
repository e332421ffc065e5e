"""`mbd bench`, the standalone on-device bench, merging, the report and bad inputs (tiny models)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _bench_models import build_keras, tiny_tflite
from mobile_bert_distill.litert import on_device_bench as lb
from mobile_bert_distill.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD_SCRIPT = os.path.join(ROOT, "benchmarks", "on_device_bench.py")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "tiny_models"
    return {n: tiny_tflite(root, n) for n in ("kit_enc_f32", "stock_enc_f32")}


@pytest.fixture(scope="session")
def preset(tmp_path_factory):
    """A tiny keras-hub preset directory standing in for BERT-base as the baseline."""
    path = tmp_path_factory.getbasetemp() / "tiny_preset"
    if not path.exists():
        build_keras("stock_enc_f32", seed=1).save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="session")
def bench_run(models, preset, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cache = tmp_path_factory.mktemp("cache")
    args = ["bench", "--models", f"kit={models['kit_enc_f32']}", f"stock={models['stock_enc_f32']}",
            "--baseline", f"keras-hub-preset:{preset}", "--seq-len", "16,32", "--threads", "1",
            "--runs", "3", "--warmup", "1", "--out", str(out), "--cache-dir", str(cache)]
    assert main(args) == 0
    return out, cache, args


def _keys(obj):
    """The schema of a JSON value: nested key sets (lists by their first element)."""
    if isinstance(obj, dict):
        return {k: _keys(v) for k, v in obj.items()} if obj else {}
    if isinstance(obj, list):
        return [_keys(obj[0])] if obj and isinstance(obj[0], (dict, list)) else "list"
    return "value"


def test_report_generation(bench_run):
    out, _, _ = bench_run
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == lb.SCHEMA
    labels = {m["label"]: m for m in doc["models"]}
    assert set(labels) >= {"kit", "stock"}
    baseline = [m for m in doc["models"] if m["role"] == "baseline"]
    assert len(baseline) == 1 and baseline[0]["task"] == "encoder" and baseline[0]["quantization"] == "float32"
    # 3 models x 2 sequence lengths x 1 thread
    assert len(doc["results"]) == 6
    for r in doc["results"]:
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["static_seq_len"] == 32
        assert 0 < r["cpu_ms"]["min"] <= r["cpu_ms"]["p50"] and len(r["cpu_samples_ms"]) == r["runs"]
        # the worker's own high-water mark, not the (TensorFlow-sized) parent's it was forked from
        assert 10 < r["peak_rss_mb"] < 500
    for m in doc["models"]:
        assert m["size_bytes"] == os.path.getsize(m["path"])
        assert m["architecture"] is not None and m["flops_analytic"]["comparison"]["matmul_agrees"]
    report = (out / "REPORT.md").read_text()
    for heading in ("## Models", "## Student vs baseline", "latency x (CPU)", "## Latency",
                    "## FLOPs: analytic vs counted", "## Parameters", "109,482,240", "110,106,428", "1,775,910"):
        assert heading in report
    for png in ("latency_vs_seq.png", "size_vs_latency.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from mobile_bert_distill.bench.report import comparison_rows

    rows = comparison_rows(doc)
    assert sorted((r["model"], r["seq_len"]) for r in rows) == [("kit", 16), ("kit", 32), ("stock", 16),
                                                                ("stock", 32)]
    for r in rows:
        assert r["latency_x"] == pytest.approx(r["baseline_p50_ms"] / r["model_p50_ms"])
        assert r["gflops_ratio"] == pytest.approx(r["model_gflops"] / r["baseline_gflops"])
        assert f"{r['latency_x']:.1f}x" in report


def test_baseline_is_cached(bench_run, monkeypatch, tmp_path):
    _, cache, args = bench_run
    cached = sorted(p for p in os.listdir(cache) if p.endswith(".tflite"))
    assert len(cached) == 1
    import mobile_bert_distill.export as export

    def no_rebuild(*a, **k):
        raise AssertionError("the cached baseline was rebuilt")

    monkeypatch.setattr(export, "export_keras_model", no_rebuild)
    args = list(args)
    args[args.index("--out") + 1] = str(tmp_path / "again")
    args[args.index("--seq-len") + 1] = "32"
    assert main(args) == 0
    assert sorted(p for p in os.listdir(cache) if p.endswith(".tflite")) == cached


def _run_board_script(args, cwd):
    """Run the on-device script where TensorFlow, Keras and this package cannot be imported."""
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras', 'keras_hub', 'mobile_bert_distill'):\n"
        "            raise ImportError('blocked on the board: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = [{BOARD_SCRIPT!r}] + {args!r}\n"
        f"runpy.run_path({BOARD_SCRIPT!r}, run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=cwd)


def test_on_device_script_is_standalone_and_has_the_same_schema(bench_run, models, tmp_path):
    out, _, _ = bench_run
    board = tmp_path / "board.json"
    proc = _run_board_script(["--models", models["kit_enc_f32"], "--seq-len", "32", "--runs", "2",
                              "--warmup", "1", "--no-isolate", "--source", "pi5", "--out", str(board)],
                             cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    board_doc = json.loads(board.read_text())
    host_doc = json.loads((out / "results.json").read_text())
    assert board_doc["tool"] == "on_device_bench.py" and host_doc["tool"] == "mbd bench"
    assert set(board_doc) == set(host_doc)
    assert _keys(board_doc["host"]) == _keys(host_doc["host"])
    assert _keys(board_doc["settings"]) == _keys(host_doc["settings"])
    assert set(board_doc["models"][0]) == set(host_doc["models"][0])
    assert set(board_doc["models"][0]["flops_counted"]) == set(host_doc["models"][0]["flops_counted"])
    assert set(board_doc["results"][0]) == set(host_doc["results"][0])
    assert _keys(board_doc["results"][0]["latency_ms"]) == _keys(host_doc["results"][0]["latency_ms"])


def test_merge_board_file(bench_run, models, tmp_path):
    out, _, _ = bench_run
    board = tmp_path / "board.json"
    proc = _run_board_script(["--models", f"pi-kit={models['kit_enc_f32']}", "--seq-len", "16,32",
                              "--runs", "2", "--warmup", "0", "--source", "pi5", "--out", str(board)],
                             cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    merged = tmp_path / "merged"
    import shutil

    shutil.copytree(out, merged)
    before = json.loads((merged / "results.json").read_text())
    assert main(["bench", "--merge", str(board), "--out", str(merged)]) == 0
    doc = json.loads((merged / "results.json").read_text())
    board_results = [r for r in doc["results"] if r["source"] == "pi5"]
    assert len(board_results) == 2
    # the same file (same sha256) is the same model: no duplicate model, the host's label is kept
    assert len(doc["models"]) == len(before["models"])
    assert {r["model"] for r in board_results} == {"kit"}
    report = (merged / "REPORT.md").read_text()
    assert "## Merged device results" in report and "pi5" in report
    # merging the same board twice adds nothing; a merge keeps the folder's other files, and plots
    # it does not redraw (--no-plots) are gone rather than stale
    (merged / "notes.txt").write_text("mine")
    assert (merged / "latency_vs_seq.png").exists()
    assert main(["bench", "--merge", str(board), "--out", str(merged), "--no-plots"]) == 0
    again = json.loads((merged / "results.json").read_text())
    assert len(again["results"]) == len(doc["results"])
    assert sorted(os.listdir(merged)) == ["REPORT.md", "notes.txt", "results.json"]
    assert sorted(os.listdir(tmp_path)) == ["board.json", "merged"]  # nothing left beside the folder


def test_existing_folder_is_refused_and_overwrite_replaces_all_of_it(bench_run, models, tmp_path, capsys):
    out, _, args = bench_run
    before = (out / "results.json").read_bytes()
    rc, err = _error(capsys, args)  # the same measuring run again, before any baseline is built
    assert rc == 2 and err == f"mbd: error: the benchmark folder {out} already exists (pass --overwrite to replace it)"
    assert (out / "results.json").read_bytes() == before
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy)
    assert main(["bench", "--models", f"only={models['kit_enc_f32']}", "--seq-len", "16", "--runs", "1",
                 "--warmup", "0", "--no-isolate", "--no-plots", "--out", str(copy), "--overwrite"]) == 0
    doc = json.loads((copy / "results.json").read_text())
    assert {m["label"] for m in doc["models"]} == {"only"}
    assert sorted(os.listdir(copy)) == ["REPORT.md", "results.json"]  # the old plots went with the old run
    assert os.listdir(tmp_path) == ["copy"]


def _error(capsys, argv):
    try:
        rc = main(argv)
    except SystemExit as e:  # refused while the command line is read (e.g. --runs 0)
        rc = e.code
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("case", ["missing", "not_tflite", "seq_too_long", "threads_zero", "threads_negative",
                                  "runs_zero", "bad_merge", "bad_baseline", "seq_not_int"])
def test_bad_inputs_one_line_exit_2(case, models, tmp_path, capsys):
    model = models["kit_enc_f32"]
    junk = tmp_path / "junk.tflite"
    junk.write_text("this is not a flatbuffer at all")
    bad_json = tmp_path / "board.json"
    bad_json.write_text(json.dumps({"schema": "something-else", "models": [], "results": []}))
    out = tmp_path / "out"
    argv = {
        "missing": ["--models", str(tmp_path / "nope.tflite")],
        "not_tflite": ["--models", str(junk)],
        "seq_too_long": ["--models", model, "--seq-len", "64"],
        "threads_zero": ["--models", model, "--threads", "0"],
        "threads_negative": ["--models", model, "--threads", "1,-2"],
        "runs_zero": ["--models", model, "--runs", "0"],
        "bad_merge": ["--merge", str(bad_json)],
        "bad_baseline": ["--models", model, "--baseline", "bert-huge"],
        "seq_not_int": ["--models", model, "--seq-len", "12x"],
    }[case]
    rc, err = _error(capsys, ["bench", *argv, "--out", str(out)])
    assert rc == 2
    assert err.startswith("mbd: error: ") and len(err.splitlines()) == 1, err
    assert not out.exists()  # nothing written


def test_board_script_bad_inputs(models, tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    for args in (["--models", str(junk)], ["--models", models["kit_enc_f32"], "--seq-len", "33"],
                 ["--models", models["kit_enc_f32"], "--threads", "0"]):
        proc = subprocess.run([sys.executable, BOARD_SCRIPT, *args, "--out", str(tmp_path / "b.json")],
                              capture_output=True, text=True)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("on_device_bench.py: error: "), proc.stderr
    assert not (tmp_path / "b.json").exists()


def test_inputs_are_valid_bert_inputs(models):
    graph = lb.Graph.from_file(models["stock_enc_f32"])
    roles = graph.input_roles()
    vocab = graph.token_embedding()[0]
    assert vocab == 150 and graph.static_seq_len() == 32
    rng = np.random.default_rng(0)
    for seq in (8, 32):
        for _ in range(20):
            feeds = lb.make_inputs(graph, seq, rng)
            ids, mask = feeds[roles["ids"]][0], feeds[roles["mask"]][0]
            n = int(mask.sum())
            assert int(np.ceil(0.75 * seq)) <= n <= seq
            assert mask[:n].all() and not mask[n:].any()
            assert ids.min() >= 0 and ids.max() < vocab and not ids[n:].any()
            assert ids[0] == 2 and ids[n - 1] == 3


def test_adb_script(models, tmp_path, capsys):
    out = tmp_path / "adb"
    assert main(["bench", "--models", models["kit_enc_f32"], "--seq-len", "32", "--threads", "1,4",
                 "--adb-script", "--out", str(out)]) == 0
    script = (out / "android" / "run_on_phone.sh").read_text()
    assert script.count("benchmark_model --graph=") == 2
    assert "--input_layer_value_files=" in script
    assert "serving_default_input_ids::0:$REMOTE/" in script  # ':' in a tensor name is escaped as '::'
    assert "--input_layer_shape=1,32:1,32:1,32" in script
    assert "litert-benchmark" in script and "-128..127" in script
    bins = sorted((out / "android" / "inputs").iterdir())
    assert len(bins) == 3
    graph = lb.Graph.from_file(models["kit_enc_f32"])
    for b in bins:
        values = np.fromfile(b, "<i4")
        assert values.size == 32
        if "input_ids" in b.name:
            assert values.max() < graph.token_embedding()[0] and values.max() > 5
    argv = ["bench", "--models", models["kit_enc_f32"], "--seq-len", "16", "--adb-script", "--out", str(out)]
    rc, err = _error(capsys, argv)
    assert rc == 2 and err.endswith(f"{out / 'android'} already exists (pass --overwrite to replace it)"), err
    assert main(argv + ["--overwrite"]) == 0
    assert len(list((out / "android" / "inputs").iterdir())) == 3  # the s16 inputs replaced the s32 ones
    assert "input_ids.s16.bin" in (out / "android" / "run_on_phone.sh").read_text()
    assert sorted(os.listdir(out)) == ["android"]


def test_op_profile_and_partitions(models):
    from mobile_bert_distill.litert.opprofile import format_profile, profile

    prof = profile(models["kit_enc_f32"], runs=2)
    types = {e["type"]: e for e in prof["by_type"]}
    graph_fc = lb.Graph.from_file(models["kit_enc_f32"]).op_histogram()["FULLY_CONNECTED"]
    assert types["FULLY_CONNECTED"]["count"] == graph_fc
    assert types["FULLY_CONNECTED"]["delegated"] == types["FULLY_CONNECTED"]["count"]
    assert prof["whole_model_ms"] > 0 and prof["sum_of_ops_ms"] > 0
    assert abs(sum(e["share"] for e in prof["by_type"]) - 1) < 1e-6
    assert prof["xnnpack"]["partitions"] >= 1
    assert "FULLY_CONNECTED" in prof["xnnpack"]["delegated_ops"]
    assert "| FULLY_CONNECTED |" in format_profile(prof)


def test_rounds_pool_samples(models):
    doc = lb.run_benchmark([("kit", [models["kit_enc_f32"]])], [32], [1], 3, 1, tool="test",
                           isolate=False, rounds=2)
    (rec,) = doc["results"]
    assert rec["rounds"] == 2 and rec["runs"] == 6 and len(rec["samples_ms"]) == 6
    assert rec["latency_ms"]["min"] == pytest.approx(min(rec["samples_ms"]), abs=1e-3)
    with pytest.raises(lb.BenchError):
        lb.run_benchmark([("kit", [models["kit_enc_f32"]])], [32], [1], 3, 1, tool="test", rounds=0)


def test_plan_rejects_duplicates(models):
    path = models["kit_enc_f32"]
    with pytest.raises(lb.BenchError, match="given twice"):
        lb.plan([("a", [path]), ("b", [path])], [32], [1], 1, 0)
    with pytest.raises(lb.BenchError, match="labels must differ"):
        lb.plan([("a", [path]), ("a", [models["stock_enc_f32"]])], [32], [1], 1, 0)
    jobs, _ = lb.plan([("a", [path])], [8, 32], [1, 2], 1, 0)
    assert [(j[2], j[3]) for j in jobs] == [(8, 1), (8, 2), (32, 1), (32, 2)]
