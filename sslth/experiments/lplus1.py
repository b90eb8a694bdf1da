"""The l+1 construction against the 2l one (issue 21): subset-sum statistics, then the size of the
random network each needs for the same certified ε and density.

1. **Subset sums** (Burkholz's published table: n = 15, ε = 0.01). One instance: n candidates
   and a target z ~ Uniform[−1, 1]; the *l+1* candidates are Uniform[−1, 1] weights, the *2l*
   ones products of two (a univariate weight times an output weight). Free subset size: the best
   of all 2ⁿ − 1 subsets, by enumeration (failure: its error > ε; its size; its error), and
   whether the project's solver (:func:`sslth.subset_sum.solve`) finds a subset within ε for
   some k. Fixed size k: the same, over the k-subsets only.
2. **Random dense targets** as in Figure 1 (``theorem3.make_target``: width × width Gaussian
   layers of spectral norm 1): for each width, depth, density and seed, ``sslth.prune`` with
   ``construction="2l"`` and ``"l+1"`` at the same ε; m/m_t and ticket/target of each, and a
   least-squares fit of log(m/m_t) against log(width) per construction.

``python scripts/reproduce.py lplus1 --config configs/lplus1.toml --out DIR``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sslth
from sslth.experiments.common import PointCache, point_name, pyplot, require, sweep, write_csv
from sslth.experiments.theorem3 import make_target
from sslth.subset_sum import solve

CONSTRUCTIONS = ("2l", "l+1")


@dataclass
class Config:
    """Settings of the comparison (see configs/lplus1.toml)."""

    widths: list[int] = field(default_factory=lambda: [4, 8, 16])
    depths: list[int] = field(default_factory=lambda: [2, 3])
    densities: list[float] = field(default_factory=lambda: [0.3, 0.1])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    epsilon: float = 0.01
    max_random_params: int = 20_000_000
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


def measure(settings: dict[str, Any], max_random_params: int) -> dict[str, Any]:
    """Both constructions on one target: m/m_t, ticket/target, certificate, sizes, time."""
    target = make_target(settings["width"], settings["depth"], settings["seed"])
    record: dict[str, Any] = {}
    for construction in CONSTRUCTIONS:
        key = "lp1" if construction == "l+1" else "2l"
        start = time.perf_counter()
        try:
            ticket = sslth.prune(
                target,
                settings["epsilon"],
                settings["density"],
                construction=construction,
                seed=settings["seed"],
                device="cpu",
                progress=False,
                empirical_samples=200,
                max_random_params=max_random_params,
            )
            report, found = ticket.report, True
        except sslth.TicketNotFound as error:
            report, found = (None if error.best is None else error.best.report), False
        record[f"{key}_found"] = found
        record[f"{key}_seconds"] = time.perf_counter() - start
        if report is not None:
            record[f"{key}_overparameterization"] = report.overparameterization
            record[f"{key}_ticket_to_target"] = report.ticket_to_target
            record[f"{key}_certified_error"] = report.certified_error
            record[f"{key}_density"] = report.density
            record[f"{key}_n"] = report.n
            record[f"{key}_k"] = report.k
    return record


def width_slope(records: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares slope of log(m/m_t) against log(width) over the found points."""
    points = [
        (math.log(r["width"]), math.log(r[f"{key}_overparameterization"]))
        for r in records
        if r.get(f"{key}_found")
    ]
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = np.array(points).T
    return float(np.polyfit(xs, ys, 1)[0])


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    plots: bool = True,
    cached_only: bool = False,
) -> list[dict[str, Any]]:
    """Subset-sum table, then the sweep (cached under ``out_dir/points``); CSV, PNG, summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = subset_sum_table(config)
    write_csv(out / "lplus1_subset_sum.csv", table)

    def points() -> Iterator[tuple[str, dict[str, Any]]]:
        for seed in config.seeds:
            for width in config.widths:
                for depth in config.depths:
                    for density in config.densities:
                        settings = {"width": width, "depth": depth, "density": density}
                        settings.update(epsilon=config.epsilon, seed=seed)
                        name = point_name(w=width, l=depth, g=density, e=config.epsilon, s=seed)
                        yield name, settings

    total = len(config.seeds) * len(config.widths) * len(config.depths) * len(config.densities)
    records = sweep(
        points(),
        lambda s: measure(s, config.max_random_params),
        PointCache(out),
        total=total,
        desc="lplus1",
        progress=progress,
        cached_only=cached_only,
    )
    if records:
        write_csv(out / "lplus1_points.csv", records)
    figures = _plot(records, out) if plots and records else []
    (out / "summary.md").write_text(_summary(table, records, figures, config))
    return records


def _plot(records: list[dict[str, Any]], out: Path) -> list[str]:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = {2: "o", 3: "s", 4: "^"}
    for key, label, color in (("2l", "2l", "#0072B2"), ("lp1", "l+1", "#D55E00")):
        for depth in sorted({r["depth"] for r in records}):
            found = [r for r in records if r["depth"] == depth and r.get(f"{key}_found")]
            if not found:
                continue
            widths = [r["width"] for r in found]
            for ax, field_name in zip(
                axes, ("overparameterization", "ticket_to_target"), strict=True
            ):
                ax.scatter(
                    widths,
                    [r[f"{key}_{field_name}"] for r in found],
                    color=color,
                    marker=markers.get(depth, "x"),
                    label=f"{label}, depth {depth}",
                    alpha=0.8,
                )
    for ax, title in zip(
        axes, ("m / m_t (random / target params)", "ticket / target params"), strict=True
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("target width")
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("l+1 against 2l at the same certified ε and density", fontsize=11)
    figure.tight_layout()
    figure.savefig(out / "lplus1_vs_2l.png", dpi=120)
    plt.close(figure)
    return ["lplus1_vs_2l.png"]


def _summary(table, records, figures, config: Config) -> str:
    lines = [
        "# l+1 against 2l (issue 21)",
        "",
        f"## Subset sums: n = {config.subset_n}, ε = {config.subset_epsilon:g}, "
        f"{config.subset_trials:,} trials per row, z ~ Uniform[−1, 1]",
        "",
        "| variant | subset size | failure rate (best > ε) | solver failure rate | mean size "
        "| mean error | smallest within ε: mean size | its mean error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row['variant']} | {row['subset_size']} | {100 * row['failure_rate']:.2f}% | "
            f"{100 * row['solver_failure_rate']:.2f}% | {row['mean_subset_size']:.2f} | "
            f"{row['mean_error']:.3g} | {_number(row['mean_smallest_size'], '.2f')} | "
            f"{_number(row['mean_smallest_error'], '.3g')} |"
        )
    lines += ["", f"## Random dense targets, ε = {config.epsilon:g}", ""]
    lines += [
        "| width | depth | density | seed | 2l m/m_t | l+1 m/m_t | 2l ticket/target "
        "| l+1 ticket/target | l+1 / 2l random params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        both = r.get("2l_found") and r.get("lp1_found")
        ratio = r["lp1_overparameterization"] / r["2l_overparameterization"] if both else None
        cells = [
            _cell(r, "2l_overparameterization", "2l_found"),
            _cell(r, "lp1_overparameterization", "lp1_found"),
            _cell(r, "2l_ticket_to_target", "2l_found"),
            _cell(r, "lp1_ticket_to_target", "lp1_found"),
            "–" if ratio is None else f"{ratio:.3g}",
        ]
        lines.append(
            f"| {r['width']} | {r['depth']} | {r['density']:g} | {r['seed']} | "
            + " | ".join(cells)
            + " |"
        )
    slopes = {key: width_slope(records, key) for key in ("2l", "lp1")}
    lines += [
        "",
        "Least-squares slope of log(m/m_t) against log(width): "
        + ", ".join(
            f"{'l+1' if key == 'lp1' else key} " + ("–" if value is None else f"{value:.2f}")
            for key, value in slopes.items()
        ),
    ]
    lines += ["", *[f"![{name}]({name})" for name in figures]]
    return "\n".join(lines) + "\n"


def _cell(record: dict[str, Any], key: str, found: str) -> str:
    if key not in record:
        return "–"
    mark = "" if record.get(found) else " (missed)"
    return f"{record[key]:.4g}{mark}"


def _number(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)
