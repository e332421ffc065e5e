"""Mixed-precision planning under a size budget (Q-BERT): rounding errors, the greedy plan, bad budgets."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export import mixed
from mobile_bert_distill.export.mixed import (PRECISIONS, TIED, TIED_PRECISIONS, as_out_in, plan_precisions,
                                              rounding_error, weight_bytes)


def test_docstring_example():
    assert doctest.testmod(mixed).failed == 0


def test_rounding_error_per_channel_and_order():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 40)) * np.array([[0.01], [0.1], [1], [10], [100], [0]])
    errors = [rounding_error(w, p) for p in PRECISIONS]
    assert errors[0] < errors[1] < errors[2]
    # int8 per row: each element off by at most half a step of its own row
    steps = np.abs(w).max(axis=1) / 127
    assert rounding_error(w[:1], "int8") <= 40 * (steps[0] / 2) ** 2 + 1e-18
    assert rounding_error(w[5:], "int4") == 0.0  # an all-zero row rounds exactly
    exact = rng.integers(-7, 8, (3, 5)) * np.array([[0.5], [2.0], [3.0]])
    exact[:, 0] = [3.5, -14.0, 21.0]  # max|row| = 7 steps: every value is on its row's int4 grid
    assert rounding_error(exact, "int4") < 1e-20
    with pytest.raises(ValueError, match="precision must be one of"):
        rounding_error(w, "int2")


def test_a_tied_head_rounds_with_one_scale_and_costs_no_bytes():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 12)) * np.array([[0.1], [1], [1], [1], [1]])
    scale = np.abs(w).max() / 127
    assert rounding_error(w, TIED) == pytest.approx(np.sum((np.round(w / scale) * scale - w) ** 2), rel=1e-12)
    assert rounding_error(w, TIED) > rounding_error(w, "int8")  # the small row shares the big rows' step
    same = np.sign(w) * np.abs(w).max()  # rows with one range: one scale is the per-row scale
    assert rounding_error(same, TIED) == pytest.approx(rounding_error(same, "int8"))
    assert weight_bytes(1000, TIED, 10) == 0 and weight_bytes(1000, "int4") == 500
    assert weight_bytes(1000, "int4", 10) == 500 + 10 * 12 and weight_bytes(1000, "float16", 10) == 2000


def test_as_out_in_layouts():
    dense = np.arange(12.0).reshape(3, 4)          # [in=3, out=4]
    assert as_out_in(dense).shape == (4, 3) and as_out_in(dense)[1, 2] == dense[2, 1]
    einsum = np.arange(24.0).reshape(3, 2, 4)      # [in=3, heads=2, head_dim=4]
    assert as_out_in(einsum).shape == (8, 3) and as_out_in(einsum)[5, 1] == einsum[1, 1, 1]


def _problem(seed=0, n=5):
    rng = np.random.default_rng(seed)
    weights = {f"m{i}": rng.standard_normal((8 * (i + 1), 64)) * rng.uniform(0.1, 3) for i in range(n)}
    sensitivity = {name: float(rng.uniform(0.01, 10)) for name in weights}
    return weights, sensitivity


def _bytes(w, precision):
    return weight_bytes(w.size, precision, w.shape[0])


def test_plan_fits_the_budget_and_is_near_the_best_assignment():
    weights, sensitivity = _problem()
    full = sum(_bytes(w, "float16") for w in weights.values())
    floor = sum(_bytes(w, "int4") for w in weights.values())
    for fraction in (1.0, 0.7, 0.5, 0.45, 0.4, floor / full):
        budget = full * fraction
        plan = plan_precisions(weights, sensitivity, budget)
        assert list(plan) == list(weights)
        assert sum(row["bytes"] for row in plan.values()) <= budget
        got = sum(row["loss_increase"] for row in plan.values())
        # exhaustive search over 3^5 assignments: the greedy plan is within 2x of the best one
        best = min(
            sum(0.5 * sensitivity[k] * rounding_error(weights[k], p) for k, p in zip(weights, combo))
            for combo in itertools.product(PRECISIONS, repeat=len(weights))
            if sum(_bytes(weights[k], p) for k, p in zip(weights, combo)) <= budget)
        assert got <= 2 * best + 1e-12, (fraction, got, best)
    assert {row["precision"] for row in plan_precisions(weights, sensitivity, full).values()} == {"float16"}


def test_a_tied_head_steps_to_the_table_instead_of_int4():
    weights, sensitivity = _problem(seed=3, n=4)
    head = "m3"
    ladders = [TIED_PRECISIONS if k == head else PRECISIONS for k in weights]
    full = sum(_bytes(w, "float16") for w in weights.values())
    floor = sum(_bytes(w, "int4") for k, w in weights.items() if k != head)
    seen = set()
    for fraction in (1.0, 0.7, 0.5, 0.4, 0.3, floor / full):
        budget = full * fraction
        plan = plan_precisions(weights, sensitivity, budget, tied=[head])
        assert sum(row["bytes"] for row in plan.values()) <= budget and plan[head]["precision"] != "int4"
        seen.add(plan[head]["precision"])
        got = sum(row["loss_increase"] for row in plan.values())
        best = min(
            sum(0.5 * sensitivity[k] * rounding_error(weights[k], p) for k, p in zip(weights, combo))
            for combo in itertools.product(*ladders)
            if sum(_bytes(weights[k], p) for k, p in zip(weights, combo)) <= budget)
        assert got <= 2 * best + 1e-12, (fraction, got, best)
    assert TIED in seen and plan[head]["bytes"] == 0
    # below the untied floor (every matrix int4) yet fits: only the tied head makes room
    assert floor < sum(_bytes(w, "int4") for w in weights.values())
    with pytest.raises(UserError, match=r"all in int4 \(tied ones reading their table\) they take"):
        plan_precisions(weights, sensitivity, floor - 1, tied=[head])


def test_no_bytes_left_that_could_buy_a_matrix_back_up():
    weights, sensitivity = _problem(seed=4, n=5)
    head = "m4"
    for tied in ((), (head,)):
        full = sum(_bytes(w, "float16") for w in weights.values())
        for fraction in np.linspace(0.36, 0.95, 24):
            plan = plan_precisions(weights, sensitivity, full * fraction, tied=tied)
            left = full * fraction - sum(row["bytes"] for row in plan.values())
            for name, row in plan.items():
                ladder = TIED_PRECISIONS if name in tied else PRECISIONS
                k = ladder.index(row["precision"])
                if k:
                    up = ladder[k - 1]
                    gain = row["loss_increase"] - 0.5 * sensitivity[name] * rounding_error(weights[name], up)
                    cost = weight_bytes(row["params"], up, row["rows"]) - row["bytes"]
                    assert cost > left or gain <= 0, (tied, fraction, name)


def test_more_room_never_loses_more_with_a_tied_head():
    rng = np.random.default_rng(5)
    weights = {f"m{i}": rng.standard_normal((32, 64)) for i in range(6)}
    weights["head"] = rng.standard_normal((400, 64)) * np.linspace(0.2, 1, 400)[:, None]  # a big tied table
    sensitivity = {name: float(rng.uniform(0.5, 2)) for name in weights}
    full = sum(_bytes(w, "float16") for w in weights.values())
    losses = []
    for fraction in np.linspace(0.2, 1.0, 33):
        plan = plan_precisions(weights, sensitivity, full * fraction, tied=["head"])
        losses.append(sum(row["loss_increase"] for row in plan.values()))
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:])), losses


def test_the_more_sensitive_matrix_keeps_more_bits():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 16))
    plan = plan_precisions({"sensitive": w, "robust": w.copy()}, {"sensitive": 5.0, "robust": 0.05},
                           budget_bytes=weight_bytes(256, "int8", 16) + weight_bytes(256, "int4", 16))
    assert plan["sensitive"]["precision"] == "int8" and plan["robust"]["precision"] == "int4"
    assert plan["sensitive"]["loss_increase"] == pytest.approx(0.5 * 5.0 * rounding_error(w, "int8"))


def test_bad_budgets():
    weights, sensitivity = _problem()
    floor = sum(_bytes(w, "int4") for w in weights.values())
    with pytest.raises(UserError, match=f"all in int4 they take {floor / 1e6:.3f} MB"):
        plan_precisions(weights, sensitivity, floor - 1)
    for bad in (0, -1.0):
        with pytest.raises(UserError, match="the size budget must be positive"):
            plan_precisions(weights, sensitivity, bad)
    assert {r["precision"] for r in plan_precisions(weights, sensitivity, floor).values()} == {"int4"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny trained-a-little student preset and calibration text."""
    from _export_fixtures import build_student, learn_vocab, make_sentences, save_student, train_briefly

    root = tmp_path_factory.mktemp("mixed")
    sentences = make_sentences(600, seed=8)
    vocab = learn_vocab(sentences, size=300)
    model = train_briefly(build_student(vocab, hidden=32, heads=2, intermediate=64, seq_len=32), sentences, steps=30)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return {"student": save_student(model, str(root / "student")), "corpus": str(corpus)}


def _export(tiny, out, *extra):
    from mobile_bert_distill.cli import main

    return main(["export", "--student", tiny["student"], "--out", str(out), "--quantization", "mixed",
                 "--calibration-corpus", tiny["corpus"], "--seq-len", "32", "--num-calibration", "32",
                 "--num-parity", "32", "--min-agreement", "0", *extra])


def _fc_weight_types(path):
    from mobile_bert_distill.litert.on_device_bench import Graph

    return Graph.from_file(str(path)).stored_weight_types()["fc_weights"]


def test_mixed_export_fits_the_target_and_stores_the_plan(tiny, tmp_path, capsys):
    import json
    import os

    pytest.importorskip("ai_edge_quantizer")
    roomy = tmp_path / "roomy.tflite"
    assert _export(tiny, roomy, "--target-size-mb", "10") == 0
    report = json.loads((tmp_path / "roomy.report.json").read_text())
    rows = report["mixed_precision"]["matrices"]
    assert {r["precision"] for r in rows} == {"float16"} and _fc_weight_types(roomy) == {"float16": len(rows)}
    names = [r["name"] for r in rows]
    assert names[:6] == [f"layer_0.{k}" for k in ("q", "k", "v", "o", "ff1", "ff2")]
    assert names[-2:] == ["mlm.dense", "token_embedding"]  # the logits share the token table
    target = (os.path.getsize(roomy) - 0.45 * sum(r["bytes"] for r in rows)) / 1e6
    tight = tmp_path / "tight.tflite"
    assert _export(tiny, tight, "--target-size-mb", f"{target:.6f}") == 0
    out = capsys.readouterr().out
    assert "mixed precision for" in out and "embedding tables int8" in out
    report = json.loads((tmp_path / "tight.report.json").read_text())
    mixed = report["mixed_precision"]
    assert os.path.getsize(tight) == report["size_bytes"] <= target * 1e6
    kinds = {}
    for r in mixed["matrices"]:
        kinds[r["precision"]] = kinds.get(r["precision"], 0) + r["ops"]
        assert r["bytes"] == weight_bytes(r["params"], r["precision"], r["rows"])
        assert r["trace_stderr"] >= 0 and r["sensitivity"] >= 0
    assert len(kinds) >= 2 and "int4" in kinds
    assert _fc_weight_types(tight) == {("int8" if p == TIED else p): n for p, n in kinds.items()}
    assert report["parity"]["masked_tokens"] > 0 and 0 <= report["parity"]["top1_agreement"] <= 1


def test_the_head_reads_the_token_table_below_the_untied_floor(tiny, tmp_path, capsys):
    import json
    import os
    import re

    from mobile_bert_distill.litert.on_device_bench import Graph

    pytest.importorskip("ai_edge_quantizer")
    assert _export(tiny, tmp_path / "none.tflite", "--target-size-mb", "0.001") == 2
    floor = float(re.search(r"about ([0-9.]+) MB", capsys.readouterr().err).group(1))
    out = tmp_path / "tied.tflite"
    target = floor * 1.12  # the tiny file's overhead is estimated roughly: leave room for a second try
    assert _export(tiny, out, "--target-size-mb", f"{target:.6f}") == 0
    assert "matrices tied; embedding tables int8 (the MLM head reads the token table)" in capsys.readouterr().out
    report = json.loads((tmp_path / "tied.report.json").read_text())
    rows = {r["name"]: r for r in report["mixed_precision"]["matrices"]}
    head = rows["token_embedding"]
    assert head["precision"] == TIED and head["bytes"] == 0
    assert os.path.getsize(out) <= target * 1e6
    # a copy of the head of its own, even in int4, costs more than the room above the floor
    assert weight_bytes(head["params"], "int4", head["rows"]) > (target - floor) * 1e6
    graph = Graph.from_file(str(out))
    gather = next(op for op in graph.ops if op["type"] == "GATHER")
    logits = [op for op in graph.ops if op["type"] == "FULLY_CONNECTED"][-1]
    assert logits["inputs"][1] == gather["inputs"][0]  # the logits read the lookup's own int8 table
    assert graph.tensors[gather["inputs"][0]]["dtype"] == "int8"


@pytest.mark.parametrize("extra, fragment", [
    (["--target-size-mb", "0.001"], "is below the smallest mixed-precision file of this model, about"),
    ([], "mixed precision needs a target size in MB"),
    (["--target-size-mb", "1", "--task", "encoder"], "mixed precision is for masked LMs (task mlm)"),
])
def test_bad_mixed_requests_one_line_exit_2_nothing_written(tiny, tmp_path, capsys, extra, fragment):
    out = tmp_path / "m.tflite"
    assert _export(tiny, out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and not any(tmp_path.iterdir())


def test_mixed_needs_calibration_text_and_a_target_only_for_mixed(tiny, tmp_path, capsys):
    from mobile_bert_distill.cli import main

    base = ["export", "--student", tiny["student"], "--out", str(tmp_path / "m.tflite"), "--seq-len", "32"]
    assert main([*base, "--quantization", "mixed", "--target-size-mb", "1"]) == 2
    assert "mixed precision needs calibration text" in capsys.readouterr().err
    assert main([*base, "--quantization", "float32", "--target-size-mb", "1"]) == 2
    assert "a target size applies to mixed precision only, not to float32" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
