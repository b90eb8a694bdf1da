"""The planner against the certificate on graph targets (issue 20): the tolerances it plans are
confirmed by the certificate of the ticket solved at them, its predicted rounding term matches
the certified one, and an ε the rounding term alone puts out of reach is refused before any
solving."""

from __future__ import annotations

import re

import pytest

import sslth
from sslth.device import resolve_device
from sslth.rounding import DTYPES
from sslth.search.floor import RELIABILITY, predicted_rounding
from sslth.search.loop import Search
from sslth.search.options import as_options
from sslth.search.sizing import SAFETY
from sslth.sparse_rounding import deployed_arithmetic
from sslth.subset_sum import make_solver
from sslth.target import as_target
from tests.graph_targets import random_graph_target


def _first_round(seed: int, epsilon: float, dtype: str):
    model, shape = random_graph_target(seed)
    target = as_target(model, input_shape=shape)
    options = as_options(epsilon, 0.3, {"input_shape": shape, "dtype": dtype}, caller="prune")
    search = Search(target, options, resolve_device("cpu"), make_solver(options.method))
    plans = search.choose_sizes()
    search.solve_missing()
    search.evaluate()
    return target, options, plans, search


@pytest.mark.parametrize("seed", [1])
def test_certificate_confirms_the_planned_tolerances(seed: int) -> None:
    """Solved at the planned tolerances (every instance within its own), the certified exact
    part is within ε and not far below the planned SAFETY · ε: the planner's error model is
    the certificate's (gains through adds, folded BatchNorm norms, radius at each node)."""
    target, options, _, search = _first_round(seed, 0.05, "float64")
    if any(state.solution.unsolved_fraction() > 0 for state in search.states):
        pytest.skip("an instance missed its tolerance: the plan is not what was certified")
    exact = search.certificate.exact
    assert exact <= options.epsilon
    assert exact >= 0.2 * SAFETY * options.epsilon


@pytest.mark.parametrize("seed", [3])
def test_predicted_rounding_matches_the_certificate(seed: int) -> None:
    """float32 graph tickets round visibly: the plan's prediction is within a factor 2 of the
    certified rounding term, and RELIABILITY of it is below it (a refusal is never wrong)."""
    target, options, plans, search = _first_round(seed, 5.0, "float32")
    arithmetic = deployed_arithmetic(DTYPES["float32"], "cpu", target)
    predicted, _ = predicted_rounding(target, plans, options.radius, arithmetic)
    certified = search.certificate.rounding
    assert 0.5 * certified <= predicted <= 2 * certified
    assert RELIABILITY * predicted <= certified


def test_unreachable_epsilon_is_refused_before_solving(monkeypatch) -> None:
    """An ε far below the float32 rounding term (~0.1): one line, from the plan, naming the ε that
    is reachable; nothing is solved."""
    model, shape = random_graph_target(3)

    def no_solving(*args, **kwargs):
        raise AssertionError("solved before refusing")

    monkeypatch.setattr(Search, "solve_missing", no_solving)
    with pytest.raises(sslth.TicketNotFound, match="out of reach") as caught:
        sslth.prune(model, 1e-3, 0.3, input_shape=shape, dtype="float32", progress=False)
    message = str(caught.value)
    assert "\n" not in message
    reachable = float(re.search(r"smallest ε it can reach is about ([0-9.e+-]+)\.", message)[1])
    assert reachable > 1e-2  # float32 rounding on a target with folded BatchNorms
    plan = sslth.plan(model, 1e-3, 0.3, input_shape=shape, dtype="float32", calibrate=False)
    assert any("out of reach" in warning for warning in plan.warnings)
