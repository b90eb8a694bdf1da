"""Theorem 2 (and Theorem 5's lower bound): fixed-size random subset sum, measured.

For each (distribution, k/n, δ, target range) a grid of n through the transition: at each n,
``instances`` independent instances (n fresh samples, one target) are solved with the exact
meet-in-the-middle method, so an unsolved instance is *proved* to have no k-subset within δ.
The grid is centred on the n where the Poisson prediction 1 − exp(−λ), averaged over the
targets, crosses 1/2. k = max(1, round(n·k/n)): the ratio is only met approximately at small n,
and the x-axis uses the actual k.
"""

from __future__ import annotations

import math
import statistics
import time
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslth import theory
from sslth.experiments.common import (
    PointCache,
    crossing,
    point_name,
    pyplot,
    require,
    sweep,
    wilson,
    write_csv,
)
from sslth.subset_sum import solve

TARGET_RANGES = ("unit", "sqrt_k")  # z ~ U[-1, 1] or z ~ U[-√k, √k]
Z_GRID = 41  # points of |z| averaged (trapezoid) for the prediction


@dataclass
class Config:
    """Settings of a Theorem 2 sweep (see configs/theorem2.toml)."""

    distributions: list[str] = field(default_factory=lambda: ["uniform", "product"])
    ratios: list[float] = field(default_factory=lambda: [1 / 16, 1 / 8, 1 / 4, 1 / 2])
    deltas: list[float] = field(default_factory=lambda: [1e-2, 1e-3, 1e-4])
    target_ranges: list[str] = field(default_factory=lambda: ["unit", "sqrt_k"])
    instances: int = 1000
    grid_points: int = 8  # n values per curve
    grid_low: float = 0.5  # the grid spans [grid_low, grid_high] × the predicted n at 1/2
    grid_high: float = 2.0
    max_n: int = 64  # keeps the exact method fast
    # exact-method budget per instance (subsets enumerated); instances over it are reported as
    # budget_exhausted. Cached points keep their counts: delete them to re-measure.
    max_work: int = 4_000_000
    seed: int = 0

    def validate(self) -> None:
        for d in self.distributions:
            require(d in theory.DISTRIBUTIONS, f"distributions: unknown {d!r}")
        for r in self.ratios:
            require(0 < r <= 0.5, f"ratios must be in (0, 1/2], got {r}")
        for d in self.deltas:
            require(0 < d < 1, f"deltas must be in (0, 1), got {d}")
        for t in self.target_ranges:
            require(t in TARGET_RANGES, f"target_ranges: unknown {t!r}; use {TARGET_RANGES}")
        require(self.instances >= 1, "instances must be >= 1")
        require(self.grid_points >= 2, "grid_points must be >= 2")
        require(0 < self.grid_low < 1 < self.grid_high, "need 0 < grid_low < 1 < grid_high")
        require(self.max_n >= 4, "max_n must be >= 4")


# ---------------------------------------------------------------- theory
@lru_cache(maxsize=100_000)
def _density(k: int, z: float, distribution: str) -> float:
    return theory.sum_density(k, z, distribution)


def z_max(k: int, target_range: str) -> float:
    return 1.0 if target_range == "unit" else math.sqrt(k)


def predicted_success(n: int, k: int, delta: float, distribution: str, target_range: str) -> float:
    """1 − exp(−λ(z)) averaged over the target distribution (uniform, symmetric in z)."""
    zs = np.linspace(0.0, z_max(k, target_range), Z_GRID)
    # z = 0 is a log singularity of f_1 for products; the midpoint grid avoids evaluating it
    zs = (zs[:-1] + zs[1:]) / 2
    log_c = theory.log_binomial(n, k)
    probs = [
        -math.expm1(-math.exp(log_c) * 2 * delta * _density(k, round(float(z), 6), distribution))
        for z in zs
    ]
    return float(np.mean(probs))


def k_for(n: int, ratio: float) -> int:
    return max(1, round(n * ratio))


def n_half(ratio: float, delta: float, distribution: str, target_range: str, max_n: int) -> int:
    """Smallest n whose averaged prediction reaches 1/2 (max_n if none does)."""
    for n in range(2, 4 * max_n):
        k = k_for(n, ratio)
        if k < n and predicted_success(n, k, delta, distribution, target_range) >= 0.5:
            return n
    return max_n


def n_grid(config: Config, ratio: float, delta: float, distribution: str, target_range: str):
    centre = n_half(ratio, delta, distribution, target_range, config.max_n)
    low = max(2, math.floor(centre * config.grid_low))
    high = min(config.max_n, math.ceil(centre * config.grid_high))
    grid = np.unique(np.round(np.geomspace(low, max(high, low + 1), config.grid_points)))
    return [int(n) for n in grid if k_for(int(n), ratio) < n]


def counting_bound_n(k_ratio: float, delta: float, max_n: int) -> int | None:
    """Smallest n with C(n, k)·2δ >= 1 (the one-target counting bound, theorem5_necessary)."""
    for n in range(2, 8 * max_n):
        if theory.theorem5_necessary(n, k_for(n, k_ratio), delta):
            return n
    return None


# ---------------------------------------------------------------- measurement


def points(config: Config) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for distribution in config.distributions:
        for target_range in config.target_ranges:
            for ratio in config.ratios:
                for delta in config.deltas:
                    for n in n_grid(config, ratio, delta, distribution, target_range):
                        settings = {
                            "distribution": distribution,
                            "target_range": target_range,
                            "ratio": ratio,
                            "delta": delta,
                            "n": n,
                            "k": k_for(n, ratio),
                            "instances": config.instances,
                            "seed": config.seed,
                        }
                        name = point_name(
                            d=distribution,
                            z=target_range,
                            r=ratio,
                            delta=delta,
                            n=n,
                            k=settings["k"],
                            i=config.instances,
                            s=config.seed,
                        )
                        out.append((name, settings))
    return out


def sample_values(
    count: int, n: int, distribution: str, generator: torch.Generator
) -> torch.Tensor:
    def uniform() -> torch.Tensor:
        return torch.rand(count, n, generator=generator, dtype=torch.float64) * 2 - 1

    return uniform() if distribution == "uniform" else uniform() * uniform()


def measure(settings: dict[str, Any], max_work: int) -> dict[str, Any]:
    """Solve ``instances`` random instances exactly; count solved / proved infeasible."""
    n, k, delta = settings["n"], settings["k"], settings["delta"]
    # the seed depends on every setting so points are independent and reproducible alone
    key = f"{settings['distribution']}|{settings['target_range']}|{settings['ratio']}|{delta}|{n}"
    seed = settings["seed"] * 1_000_003 + zlib.crc32(key.encode())
    generator = torch.Generator().manual_seed(seed)
    count = settings["instances"]
    values = sample_values(count, n, settings["distribution"], generator)
    zmax = z_max(k, settings["target_range"])
    targets = (torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1) * zmax
    start = time.perf_counter()
    result = solve(values, targets, k, delta, method="exact", max_work=max_work)
    seconds = time.perf_counter() - start
    solved = int(result.solved.sum())
    exhausted = int(result.budget_exhausted.sum())
    decided = count - exhausted
    low, high = wilson(solved, decided)
    return {
        "solved": solved,
        "infeasible": int(result.infeasible.sum()),
        "budget_exhausted": exhausted,
        "success": solved / decided if decided else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "x": theory.theorem2_ratio(n, k, delta),
        "predicted": predicted_success(
            n, k, delta, settings["distribution"], settings["target_range"]
        ),
        "theorem5_counting": theory.theorem5_necessary(n, k, delta),
        "seconds": seconds,
    }


# ---------------------------------------------------------------- analysis and output
def _curve_key(r: dict[str, Any]) -> tuple:
    return (r["distribution"], r["target_range"], r["ratio"], r["delta"])


def fit_constants(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """c_hyp per curve: the x at which measured success first reaches 1/2 and 0.99."""
    curves: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        curves.setdefault(_curve_key(r), []).append(r)
    rows = []
    for key, rs in sorted(curves.items()):
        rs = [r for r in rs if not math.isnan(r["success"])]
        xs = [r["x"] for r in rs]
        ys = [r["success"] for r in rs]
        ps = [r["predicted"] for r in rs]
        rows.append(
            {
                "distribution": key[0],
                "target_range": key[1],
                "ratio": key[2],
                "delta": key[3],
                "c_hyp_50": crossing(xs, ys, 0.5),
                "c_hyp_99": crossing(xs, ys, 0.99),
                "predicted_x_50": crossing(xs, ps, 0.5),
                "predicted_x_99": crossing(xs, ps, 0.99),
            }
        )
    return rows


DELTA_MARKERS = "os^Dv<>"
AXIS_LABELS = {
    "x": "x = n·H2(k/n) / log2(k/δ)   (Theorem 2 assumes x ≥ c)",
    "n": "n, the number of samples (k = round(n · k/n))",
}


def _delta_label(delta: float) -> str:
    exponent = math.log10(delta)
    if abs(exponent - round(exponent)) < 1e-9:
        return rf"$\delta = 10^{{{round(exponent)}}}$"
    return f"δ = {delta:g}"


def _ratio_label(ratio: float) -> str:
    fraction = Fraction(ratio).limit_denominator(1000)
    if abs(float(fraction) - ratio) < 1e-9:
        return f"k/n = {fraction.numerator}/{fraction.denominator}"
    return f"k/n = {ratio:g}"


def _family_label(distribution: str, target_range: str) -> str:
    zr = "z ~ U[−1, 1]" if target_range == "unit" else "z ~ U[−√k, √k]"
    return f"{distribution} samples\n{zr}"


def _draw_curve(ax, rs: list[dict[str, Any]], axis: str, colour, marker: str, bound) -> None:
    """One (samples, z range, k/n, δ) curve against ``axis``: measured success with its 95%
    interval, the Poisson prediction dashed, and the counting bound ``bound`` (an n, or None)
    dotted where it falls within the curve."""
    xs = [r[axis] for r in rs]
    ys = [r["success"] for r in rs]
    # max(0, ·): Wilson bounds at p = 0 or 1 can miss p by a rounding error
    err = [
        [max(0.0, r["success"] - r["ci_low"]) for r in rs],
        [max(0.0, r["ci_high"] - r["success"]) for r in rs],
    ]
    ax.errorbar(xs, ys, yerr=err, color=colour, marker=marker, ms=4, lw=1.3, capsize=2)
    ax.plot(xs, [r["predicted"] for r in rs], color=colour, ls="--", lw=1.3)
    if bound is not None and min(xs) <= bound <= max(xs):
        ax.axvline(bound, color=colour, lw=1.0, ls=":")


def _plot(records: list[dict[str, Any]], out: Path, config: Config) -> list[str]:
    """Small multiples: a row per (samples, target range), a column per k/n, one colour (and
    marker) per δ; the Poisson prediction dashed in the colour of its measured curve."""
    from matplotlib.lines import Line2D

    from sslth.plot import PALETTE, wrap_to_width

    plt = pyplot()
    families = [(d, t) for d in config.distributions for t in config.target_ranges]
    ratios = sorted(config.ratios)
    deltas = sorted(config.deltas, reverse=True)
    style = {
        d: (PALETTE[i % len(PALETTE)], DELTA_MARKERS[i % len(DELTA_MARKERS)])
        for i, d in enumerate(deltas)
    }
    files = []
    for axis in ("x", "n"):
        width = 2.6 * len(ratios) + 3.0
        fig, axes = plt.subplots(
            len(families),
            len(ratios),
            figsize=(width, 2.25 * len(families) + 1.6),
            squeeze=False,
            sharex=axis == "x",
            sharey=True,
            layout="constrained",
        )
        for row, (distribution, target_range) in enumerate(families):
            for col, ratio in enumerate(ratios):
                ax = axes[row][col]
                for delta in deltas:
                    rs = sorted(
                        (
                            r
                            for r in records
                            if _curve_key(r) == (distribution, target_range, ratio, delta)
                            and not math.isnan(r["success"])
                        ),
                        key=lambda r: r["n"],
                    )
                    if not rs:
                        continue
                    bound = counting_bound_n(ratio, delta, config.max_n) if axis == "n" else None
                    _draw_curve(ax, rs, axis, *style[delta], bound)
                if axis == "x":
                    ax.axvline(0.5, color="black", ls=":", lw=1.2)
                ax.set_ylim(-0.04, 1.04)
                ax.set_yticks([0, 0.5, 1])
                ax.grid(alpha=0.3)
                ax.tick_params(labelsize=10)
                if row == 0:
                    ax.set_title(_ratio_label(ratio), fontsize=11)
                if col == 0:
                    ax.set_ylabel(_family_label(distribution, target_range), fontsize=10)
        title = "Theorem 2: success of fixed-size random subset sum, measured and predicted"
        fig.suptitle(wrap_to_width(title, width, 12), fontsize=12)
        fig.supxlabel(AXIS_LABELS[axis], fontsize=11)
        fig.supylabel("P(some k-subset within δ of z)", fontsize=11)
        handles = [
            Line2D([], [], color=style[d][0], marker=style[d][1], lw=1.3, label=_delta_label(d))
            for d in deltas
        ]
        handles += [
            Line2D([], [], color="0.3", marker="o", ms=4, lw=1.3, label="measured (95% CI)"),
            Line2D([], [], color="0.3", ls="--", lw=1.3, label="Poisson prediction"),
        ]
        if axis == "x":
            handles.append(Line2D([], [], color="black", ls=":", label="Theorem 5 (d=1): x = 1/2"))
        else:
            handles.append(Line2D([], [], color="0.3", ls=":", label="C(n,k)·2δ = 1"))
        # beside the panels, centred: above or below, an outside legend collides with the
        # suptitle or the supxlabel under constrained layout
        fig.legend(handles=handles, loc="outside right center", fontsize=10, frameon=False)
        name = f"theorem2_vs_{axis}.png"
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(name)
    return sorted(files)


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def _family_rows(decided: list[dict[str, Any]], fits: list[dict[str, Any]]) -> list[str]:
    rows = []
    families = sorted({(r["distribution"], r["target_range"]) for r in decided})
    for family in families:
        gaps = [
            abs(r["success"] - r["predicted"])
            for r in decided
            if (r["distribution"], r["target_range"]) == family
        ]
        mine = [f for f in fits if (f["distribution"], f["target_range"]) == family]
        c50 = [f["c_hyp_50"] for f in mine if f["c_hyp_50"] is not None]
        c99 = [f["c_hyp_99"] for f in mine if f["c_hyp_99"] is not None]
        rows.append(
            f"| {family[0]} | {family[1]} | {statistics.mean(gaps):.3f} | "
            f"{_fmt(statistics.median(c50) if c50 else None)} ({len(c50)} curves) | "
            f"{_fmt(statistics.median(c99) if c99 else None)} ({len(c99)} curves) |"
        )
    return rows


def _summary(
    records: list[dict[str, Any]], fits: list[dict[str, Any]], figures: list[str], config: Config
) -> str:
    exhausted = sum(r["budget_exhausted"] for r in records)
    total = sum(r["instances"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    above = [r for r in records if r["x"] >= 0.5]
    c50 = [f["c_hyp_50"] for f in fits if f["c_hyp_50"] is not None]
    c99 = [f["c_hyp_99"] for f in fits if f["c_hyp_99"] is not None]
    # a point whose every instance hit the exact budget has no success rate: leave it out
    decided = [r for r in records if not math.isnan(r["success"])]
    gaps = [abs(r["success"] - r["predicted"]) for r in decided]
    inside = sum(r["ci_low"] - 0.01 <= r["predicted"] <= r["ci_high"] + 0.01 for r in decided)
    below_t5 = [r for r in decided if r["x"] < 0.5]
    lines = [
        "# Theorem 2: fixed-size random subset sum, measured",
        "",
        f"{len(records)} sweep points, {total:,} instances, each solved with the exact "
        f"meet-in-the-middle method ({seconds:.0f} s of solver time). "
        f"{exhausted} instances hit the exact method's budget and are left out of the "
        "success rates (never counted as failures).",
        "",
        f"Settings: distributions {config.distributions}, k/n {config.ratios} "
        f"(k = max(1, round(n·k/n))), δ {config.deltas}, target ranges {config.target_ranges}, "
        f"{config.instances} instances per point, n ≤ {config.max_n}.",
        "",
        "## Comparison with the theory",
        "",
        f"- Poisson prediction 1 − exp(−λ) (averaged over z): mean |measured − predicted| = "
        f"{statistics.mean(gaps):.3f}, max {max(gaps):.3f}; the prediction lies within the 95% "
        f"Wilson interval (±0.01) at {inside} of {len(decided)} points with a success rate.",
        f"- Theorem 2's hypothesis x = n·H2(k/n)/log2(k/δ) ≥ c_hyp: success first reaches 1/2 "
        f"at x = {_fmt(min(c50) if c50 else None)}…{_fmt(max(c50) if c50 else None)} "
        f"(median {_fmt(statistics.median(c50) if c50 else None)}) and 0.99 at "
        f"x = {_fmt(min(c99) if c99 else None)}…{_fmt(max(c99) if c99 else None)} "
        f"(median {_fmt(statistics.median(c99) if c99 else None)}), over "
        f"{len(c50)} / {len(c99)} curves whose grid brackets the crossing.",
        f"- Theorem 5 (d = 1) needs x ≥ 1/2 for success ≥ 1/2: the highest success measured "
        f"below x = 1/2 is {_fmt(max((r['success'] for r in below_t5), default=None))} "
        f"({len(below_t5)} points); at or above it, {len(above)} points.",
        "",
        "## Per family (median over its curves)",
        "",
        "| samples | z range | mean abs(measured − predicted) | c_hyp (1/2) | c_hyp (0.99) |",
        "|---|---|---|---|---|",
        *_family_rows(decided, fits),
        "",
        "## Fitted c_hyp per curve (x where success reaches 1/2 and 0.99; linear interpolation)",
        "",
        "| samples | z range | k/n | δ | c_hyp (1/2) | c_hyp (0.99) | predicted x (1/2) "
        "| predicted x (0.99) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in fits:
        lines.append(
            f"| {f['distribution']} | {f['target_range']} | {f['ratio']:g} | {f['delta']:g} | "
            f"{_fmt(f['c_hyp_50'])} | {_fmt(f['c_hyp_99'])} | {_fmt(f['predicted_x_50'])} | "
            f"{_fmt(f['predicted_x_99'])} |"
        )
    lines += [
        "",
        "## Every point (95% Wilson interval)",
        "",
        "| samples | z range | k/n | δ | n | k | x | success | 95% CI | predicted | exhausted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (_curve_key(r), r["n"])):
        lines.append(
            f"| {r['distribution']} | {r['target_range']} | {r['ratio']:g} | {r['delta']:g} | "
            f"{r['n']} | {r['k']} | {r['x']:.3f} | {r['success']:.3f} | "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['predicted']:.3f} | "
            f"{r['budget_exhausted']} |"
        )
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    plots: bool = True,
    cached_only: bool = False,
) -> list[dict[str, Any]]:
    """Measure every point (cached under ``out_dir/points``) and write CSV, PNG, summary.md."""
    out = Path(out_dir)
    cache = PointCache(out)
    todo = points(config)
    records = sweep(
        todo,
        lambda s: measure(s, config.max_work),
        cache,
        total=len(todo),
        desc="theorem2",
        progress=progress,
        cached_only=cached_only,
    )
    if not records:
        (out / "summary.md").write_text("# Theorem2\n\nNo point measured yet.\n")
        return records
    write_csv(out / "theorem2_points.csv", records)
    fits = fit_constants(records)
    write_csv(out / "theorem2_constants.csv", fits)
    figures = _plot(records, out, config) if plots else []
    (out / "summary.md").write_text(_summary(records, fits, figures, config))
    return records
