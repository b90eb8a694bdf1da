"""What the soundness sweeps share (``tests/test_soundness.py``, ``test_lplus1_soundness.py``,
``test_sparse_soundness.py``, ``test_graph.py``, and ``scripts/attack_sweep.py``, which runs
them whole): a random layer-list target, pruning that falls back on the best ticket of a
``TicketNotFound`` (its certified error is still a claimed bound, so it is attacked too), the
verdict of an attack against a certificate, and a sweep's summary.

Each sweep module defines ``COUNT`` (its cases) and ``run_case(index) -> list[Outcome] | None``
(``None``: no ticket could be built within the limits); the tests run a few indices that cover
each branch, the script runs all of them and records the figures in docs/reliability.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

import sslth


@dataclass(frozen=True)
class Outcome:
    """One attack on one module: the largest gap found against the bound it is held to."""

    case: str  # which target and module, e.g. "target 12 float32"
    kind: str  # what is compared, e.g. "float32" or "sparse float32 rounding"
    observed: float
    certified: float
    best: bool = False  # the ticket is the best of a TicketNotFound, not one that met ε

    @property
    def ratio(self) -> float:
        return self.observed / self.certified if self.certified > 0 else math.inf

    @property
    def violated(self) -> bool:
        return not (math.isfinite(self.certified) and self.observed <= self.certified)


def linear_target(case: dict) -> nn.Sequential:
    """Linear/ReLU layers of ``case["widths"]``, each scaled to spectral norm ``case["norms"][i]``,
    with biases (0.3·N(0, 1)) when ``case["bias"]``; seeded by ``case["seed"]``."""
    generator = torch.Generator().manual_seed(case["seed"])
    widths, modules = case["widths"], []
    for index, norm in enumerate(case["norms"]):
        layer = nn.Linear(widths[index], widths[index + 1], bias=case["bias"])
        with torch.no_grad():
            weight = torch.randn(widths[index + 1], widths[index], generator=generator)
            layer.weight.copy_(weight * (norm / torch.linalg.matrix_norm(weight, ord=2)))
            if case["bias"]:
                layer.bias.copy_(0.3 * torch.randn(widths[index + 1], generator=generator))
        modules += [layer, nn.ReLU()]
    return nn.Sequential(*modules[:-1])


def prune_or_best(
    target: nn.Module, epsilon: float, density: float, **options
) -> tuple[sslth.Ticket | None, bool]:
    """``sslth.prune`` without a progress bar, and whether its ticket is the best of a
    ``TicketNotFound`` (``(None, True)`` when no ticket could be built within the limits)."""
    try:
        return sslth.prune(target, epsilon, density, progress=False, **options), False
    except sslth.TicketNotFound as error:
        return error.best, True


def assert_sound(outcomes: Iterable[Outcome]) -> None:
    """Fail, naming the case, where an attack went above the bound it is held to."""
    for outcome in outcomes:
        assert not outcome.violated, (
            f"{outcome.case} ({outcome.kind}): the attack reached {outcome.observed:.6g}, "
            f"above the certified {outcome.certified:.6g}"
        )


def summary(rows: list[list[Outcome] | None]) -> dict:
    """Per kind of comparison: modules attacked, violations, worst and median observed/certified;
    and the count of cases and of cases skipped (no ticket within the limits)."""
    outcomes = [outcome for row in rows if row is not None for outcome in row]
    result: dict = {"cases": len(rows), "skipped": sum(row is None for row in rows)}
    for kind in dict.fromkeys(outcome.kind for outcome in outcomes):
        ratios = [outcome.ratio for outcome in outcomes if outcome.kind == kind]
        result[kind] = {
            "attacked": len(ratios),
            "best_of_ticket_not_found": sum(o.best for o in outcomes if o.kind == kind),
            "violations": sum(o.violated for o in outcomes if o.kind == kind),
            "worst_observed_over_certified": max(ratios),
            "median_observed_over_certified": statistics.median(ratios),
        }
    return result
