"""Mixed-precision planning under a size budget (Q-BERT): rounding errors, the greedy plan, bad budgets."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from mobile_bert_distill.errors import UserError
from mobile_bert_distill.export import mixed
from mobile_bert_distill.export.mixed import PRECISIONS, as_out_in, plan_precisions, rounding_error, weight_bytes


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


def test_as_out_in_layouts():
    dense = np.arange(12.0).reshape(3, 4)          # [in=3, out=4]
    assert as_out_in(dense).shape == (4, 3) and as_out_in(dense)[1, 2] == dense[2, 1]
    einsum = np.arange(24.0).reshape(3, 2, 4)      # [in=3, heads=2, head_dim=4]
    assert as_out_in(einsum).shape == (8, 3) and as_out_in(einsum)[5, 1] == einsum[1, 1, 1]


def _problem(seed=0, n=5):
    rng = np.random.default_rng(seed)
    weights = {f"m{i}": rng.standard_normal((8 * (i + 1), 16)) * rng.uniform(0.1, 3) for i in range(n)}
    sensitivity = {name: float(rng.uniform(0.01, 10)) for name in weights}
    return weights, sensitivity


def test_plan_fits_the_budget_and_is_near_the_best_assignment():
    weights, sensitivity = _problem()
    params = {k: w.size for k, w in weights.items()}
    full = sum(weight_bytes(n, "float16") for n in params.values())
    for fraction in (1.0, 0.7, 0.5, 0.4, 0.3, 0.25):
        budget = full * fraction
        plan = plan_precisions(weights, sensitivity, budget)
        assert list(plan) == list(weights)
        assert sum(row["bytes"] for row in plan.values()) <= budget
        got = sum(row["loss_increase"] for row in plan.values())
        # exhaustive search over 3^5 assignments: the greedy plan is within 2x of the best one
        best = min(
            sum(0.5 * sensitivity[k] * rounding_error(weights[k], p) for k, p in zip(weights, combo))
            for combo in itertools.product(PRECISIONS, repeat=len(weights))
            if sum(weight_bytes(params[k], p) for k, p in zip(weights, combo)) <= budget)
        assert got <= 2 * best + 1e-12, (fraction, got, best)
    assert {row["precision"] for row in plan_precisions(weights, sensitivity, full).values()} == {"float16"}


def test_the_more_sensitive_matrix_keeps_more_bits():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 16))
    plan = plan_precisions({"sensitive": w, "robust": w.copy()}, {"sensitive": 5.0, "robust": 0.05},
                           budget_bytes=weight_bytes(256, "int8") + weight_bytes(256, "int4"))
    assert plan["sensitive"]["precision"] == "int8" and plan["robust"]["precision"] == "int4"
    assert plan["sensitive"]["loss_increase"] == pytest.approx(0.5 * 5.0 * rounding_error(w, "int8"))


def test_bad_budgets():
    weights, sensitivity = _problem()
    floor = sum(weight_bytes(w.size, "int4") for w in weights.values())
    with pytest.raises(UserError, match=f"all in int4 they take {floor / 1e6:.3f} MB"):
        plan_precisions(weights, sensitivity, floor - 1)
    for bad in (0, -1.0):
        with pytest.raises(UserError, match="the size budget must be positive"):
            plan_precisions(weights, sensitivity, bad)
    assert {r["precision"] for r in plan_precisions(weights, sensitivity, floor).values()} == {"int4"}
