"""The l+1 construction against the 2l one (issue 21): subset-sum statistics, then the size of the
random network each needs for the same certified ε and density.

1. **Subset sums** (Burkholz's published table: n = 15, ε = 0.01). One instance: n candidates
   and a target z ~ Uniform[−1, 1]; the *l+1* candidates are Uniform[−1, 1] weights, the *2l*
   ones products of two (a univariate weight times an output weight). Free subset size: the best
   of all 2ⁿ − 1 subsets, by enumeration (failure: its error > ε; its size; its error), and
   whether the project's solver (:func:`sslth.subset_sum.solve`) finds a subset within ε for
   some k. Fixed size k: the same, over the k-subsets only.
2. **Random dense targets** as in Figure 1 (``theorem3.make_target``: width × width Gaussian
   layers of spectral norm 1): for each width, depth, density, seed and construction ("2l",
   "l+1"), at the same ε: ``sslth.plan``'s sizes (m/m_t and the predicted ticket/target, any
   size, nothing drawn), then ``sslth.prune`` on the points planned within
   ``measure_max_random_params``, smallest planned m first, so that the prunes a stopped sweep
   did are the cheapest ones. The fits (Eq. 29's constant, slopes in the width, the l+1 / 2l
   crossover) are in :mod:`sslth.experiments.lplus1_fit`.

``python scripts/reproduce.py lplus1 --config configs/lplus1.toml --out DIR``. Plans are cached
under DIR/plans and prunes under DIR/prunes, one JSON file per point named by every setting it
depends on (construction, width, depth, density, ε, seed; prunes add max_random_params), so an
interrupted sweep resumes, and a larger ``measure_max_random_params`` only adds prunes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import sslth
from sslth.experiments.common import PointCache, point_name, require, sweep, write_csv
from sslth.experiments.lplus1_fit import plot, summary
from sslth.experiments.theorem3 import make_target
from sslth.subset_sum import solve

CONSTRUCTIONS = ("2l", "l+1")
PLAN_LIMIT = 10**13  # the plans look this far (sizing only: nothing of that size is drawn)


@dataclass
class Config:
    """Settings of the comparison (see configs/lplus1.toml)."""

    widths: list[int] = field(default_factory=lambda: [4, 8, 16])
    depths: list[int] = field(default_factory=lambda: [2, 3])
    densities: list[float] = field(default_factory=lambda: [0.3, 0.1])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    epsilon: float = 0.01
    max_random_params: int = 20_000_000  # the prunes' limit
    # prune only the points planned at most this large (the others are planned only)
    measure_max_random_params: int = 20_000_000
    subset_n: int = 15
    subset_epsilon: float = 0.01
    subset_trials: int = 10_000
    fixed_k: list[int] = field(default_factory=lambda: [2, 3])

    def validate(self) -> None:
        for name in ("widths", "depths", "seeds", "fixed_k"):
            for value in getattr(self, name):
                require(value >= (0 if name == "seeds" else 1), f"{name}: bad value {value}")
        for g in self.densities:
            require(0 < g <= 1, f"densities must be in (0, 1], got {g}")
        require(self.epsilon > 0 and self.subset_epsilon > 0, "epsilons must be > 0")
        require(2 <= self.subset_n <= 20, "subset_n must be in [2, 20] (2^n subsets are listed)")
        require(self.subset_trials >= 1, "subset_trials must be >= 1")
        require(self.max_random_params >= 1000, "max_random_params must be >= 1000")
        require(self.measure_max_random_params >= 0, "measure_max_random_params must be >= 0")


def candidates(variant: str, trials: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(trials, n) float64: Uniform[−1, 1] (l+1) or products of two (2l)."""
    first = torch.rand(trials, n, generator=generator, dtype=torch.float64) * 2 - 1
    if variant == "l+1":
        return first
    return first * (torch.rand(trials, n, generator=generator, dtype=torch.float64) * 2 - 1)


def errors_by_size(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(trials, n): the best error of the k-subsets, k = 1 … n, per row, by enumerating every
    non-empty subset in float64."""
    n = values.shape[1]
    codes = torch.arange(1, 2**n)
    bits = ((codes[:, None] >> torch.arange(n)) & 1).to(torch.float64)  # (subsets, n)
    size = bits.sum(1).long() - 1
    out = []
    for start in range(0, len(values), 256):
        gap = (values[start : start + 256] @ bits.T - targets[start : start + 256, None]).abs()
        best = torch.full((len(gap), n), math.inf, dtype=torch.float64)
        best.scatter_reduce_(1, size.expand(len(gap), -1), gap, reduce="amin")
        out.append(best)
    return torch.cat(out)


def subset_sum_table(config: Config, seed: int = 0) -> list[dict[str, Any]]:
    """The rows of the subset-sum table: per variant and mode (free, or each fixed k)."""
    rows = []
    for variant in ("l+1", "2l"):
        generator = torch.Generator().manual_seed(seed)
        values = candidates(variant, config.subset_trials, config.subset_n, generator)
        targets = torch.rand(config.subset_trials, generator=generator, dtype=torch.float64) * 2 - 1
        by_size = errors_by_size(values, targets)
        for size in [None, *config.fixed_k]:
            if size is None:
                errors, sizes = by_size.min(dim=1)
                sizes = sizes + 1
            else:
                errors, sizes = by_size[:, size - 1], torch.full((len(targets),), size)
            within = by_size <= config.subset_epsilon
            smallest = within.double().argmax(dim=1) + 1  # the first size with a subset within ε
            found = within.any(dim=1)
            ks = range(1, config.subset_n + 1) if size is None else [size]
            solved = torch.zeros(len(targets), dtype=torch.bool)
            for k in ks:
                result = solve(values, targets, k, config.subset_epsilon, method="auto", seed=seed)
                solved |= result.solved
            smallest_error = by_size.gather(1, (smallest - 1)[:, None])[:, 0][found]
            rows.append(
                {
                    "variant": variant,
                    "subset_size": "free" if size is None else size,
                    "trials": config.subset_trials,
                    "failure_rate": float((errors > config.subset_epsilon).double().mean()),
                    "solver_failure_rate": float((~solved).double().mean()),
                    "mean_subset_size": float(sizes.double().mean()),
                    "mean_error": float(errors.mean()),
                    # free size only: the smallest subset within ε, as a search by size finds
                    "mean_smallest_size": float(smallest[found].double().mean())
                    if size is None and found.any()
                    else None,
                    "mean_smallest_error": float(smallest_error.mean())
                    if size is None and found.any()
                    else None,
                }
            )
    return rows


def _request(settings: dict[str, Any]) -> tuple[list[torch.Tensor], float, float, dict]:
    """The target, ε, density and keywords that the point's plan and prune share."""
    target = make_target(settings["width"], settings["depth"], settings["seed"])
    common = dict(construction=settings["construction"], seed=settings["seed"], device="cpu")
    return target, settings["epsilon"], settings["density"], common


def plan_point(settings: dict[str, Any]) -> dict[str, Any]:
    """What ``sslth.plan`` predicts for one construction on one target, at any size (sizing
    only, nothing drawn): m, m/m_t, the predicted ticket/target and each layer's n (ρ) and k."""
    target, epsilon, density, common = _request(settings)
    start = time.perf_counter()
    planned = sslth.plan(
        target, epsilon, density, calibrate=False, max_random_params=PLAN_LIMIT, **common
    )
    record: dict[str, Any] = {"plan_seconds": time.perf_counter() - start}
    record["planned"] = planned.within_limits
    if planned.within_limits:
        m, m_t = planned.random_params, planned.target_params
        record.update(
            planned_random_params=m,
            planned_overparameterization=m / m_t,
            planned_ticket_to_target=planned.predicted_density * m / m_t,
            planned_n=[row.n for row in planned.layers],
            planned_k=[row.k for row in planned.layers],
        )
    return record


def prune_point(settings: dict[str, Any]) -> dict[str, Any]:
    """One prune: whether it met ε and the density, its m/m_t and ticket/target, and its time
    (wall and this process's CPU)."""
    target, epsilon, density, common = _request(settings)
    start, cpu = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {}
    try:
        ticket = sslth.prune(
            target,
            epsilon,
            density,
            progress=False,
            empirical_samples=200,
            max_random_params=settings["max_random_params"],
            **common,
        )
        report, found = ticket.report, True
    except sslth.TicketNotFound as error:
        report, found = (None if error.best is None else error.best.report), False
        record["reason"] = str(error)[:160]
    record.update(
        found=found,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu,
    )
    if report is not None:
        record.update(
            random_params=report.random_params,
            overparameterization=report.overparameterization,
            ticket_to_target=report.ticket_to_target,
            certified_error=report.certified_error,
            achieved_density=report.density,
            n=report.n,
            k=report.k,
        )
    return record


def _plan_items(config: Config) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (seed, width, depth, density, construction); the name holds every setting the
    plan depends on (the cache under DIR/plans is valid across configs)."""
    for seed in config.seeds:
        for width in config.widths:
            for depth in config.depths:
                for density in config.densities:
                    for construction in CONSTRUCTIONS:
                        settings = dict(
                            construction=construction,
                            width=width,
                            depth=depth,
                            density=density,
                            epsilon=config.epsilon,
                            seed=seed,
                        )
                        yield _name(settings), settings


def _name(settings: dict[str, Any], *extra: str) -> str:
    short = {"construction": "c", "width": "w", "depth": "l", "density": "g", "epsilon": "e"}
    named = {short.get(key, key[0]): settings[key] for key in (*short, "seed", *extra)}
    return point_name(**named).replace("+", "p")


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    plots: bool = True,
    cached_only: bool = False,
) -> list[dict[str, Any]]:
    """The subset-sum table; then every point's plan (cached under ``DIR/plans``), and the
    prunes of those planned within ``measure_max_random_params``, smallest planned m first
    (cached under ``DIR/prunes``, their names adding max_random_params); CSV, PNG, summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = subset_sum_table(config)
    write_csv(out / "lplus1_subset_sum.csv", table)
    plans = sweep(
        _plan_items(config),
        plan_point,
        PointCache(out / "plans"),
        total=len(config.seeds)
        * len(config.widths)
        * len(config.depths)
        * len(config.densities)
        * len(CONSTRUCTIONS),
        desc="lplus1 plans",
        progress=progress,
        cached_only=cached_only,
    )
    chosen = sorted(
        (r for r in plans if r["planned"]),
        key=lambda r: r["planned_random_params"],
    )
    chosen = [r for r in chosen if r["planned_random_params"] <= config.measure_max_random_params]
    prunes = sweep(
        (
            (_name(s, "max_random_params"), s)
            for s in ({**r, "max_random_params": config.max_random_params} for r in chosen)
        ),
        prune_point,
        PointCache(out / "prunes"),
        total=len(chosen),
        desc="lplus1 prunes",
        progress=progress,
        cached_only=cached_only,
    )
    records = merge(plans, prunes)
    if records:
        write_csv(out / "lplus1_points.csv", records)
    figures = plot(records, out) if plots and records else []
    (out / "summary.md").write_text(summary(table, records, figures, config))
    return records


def merge(plans: list[dict[str, Any]], prunes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per plan, with its prune's fields where it was pruned (``measured``)."""
    done = {_name(r): r for r in prunes}
    return [
        {**plan, **done.get(_name(plan), {}), "measured": _name(plan) in done} for plan in plans
    ]
