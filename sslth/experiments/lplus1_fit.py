"""The fits, figure and summary of the l+1 against 2l sweep (:mod:`sslth.experiments.lplus1`).

As in Theorem 3's reproduction (:mod:`sslth.experiments.theorem3`), each construction's m/m_t is
fitted to c · log2²(2·l·d²/ε)/H2(γ) (Eq. 29's shape) by least squares in log space, and the
spread of measured/fitted shows how well the shape holds. Beside it, per depth, the log-log slope
of m/m_t against the width (each (depth, density, seed) series' mean removed), and per (depth,
density) the ratio of l+1's random weights to 2l's: its log-log slope in the width, and the width
where a line through it reaches 1 (the crossover), when the slope is negative.

Every fit is done twice: on the **measured** prunes (found tickets only) and on the **planned**
sizes (``sslth.plan``, the first round of each search), which reach widths the prunes cannot.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from sslth.experiments.common import pyplot
from sslth.experiments.theorem3 import paper_shape

Record = dict[str, Any]
LABEL = {"2l": "2l", "l+1": "l+1"}
COLOR = {"2l": "#0072B2", "l+1": "#D55E00"}


def value(record: Record, source: str, name: str) -> float | None:
    """``name`` ("overparameterization", "ticket_to_target", "random_params") as measured (a
    found ticket's) or planned, or None where there is none."""
    if source == "planned":
        return record.get(f"planned_{name}") if record.get("planned") else None
    return record.get(name) if record.get("measured") and record.get("found") else None


def paper_fit(records: list[Record], construction: str, source: str):
    """(c, lowest, highest measured/fitted, points) of m/m_t ≈ c · Eq. 29's shape, or None."""
    pairs = [
        (v, paper_shape(r["width"], r["depth"], r["epsilon"], r["density"]))
        for r in records
        if r["construction"] == construction
        and (v := value(r, source, "overparameterization")) is not None
    ]
    if not pairs:
        return None
    logs = np.log([v for v, _ in pairs]) - np.log([shape for _, shape in pairs])
    c = float(np.exp(logs.mean()))
    ratios = np.exp(logs) / c
    return c, float(ratios.min()), float(ratios.max()), len(pairs)


def _within_slope(xs, ys, keys: list[Hashable]) -> float | None:
    """Least-squares slope of y on x with each key's means removed (None: no spread in x)."""
    x, y = np.array(xs, dtype=float), np.array(ys, dtype=float)
    for key in set(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        x[idx] -= x[idx].mean()
        y[idx] -= y[idx].mean()
    spread = float((x * x).sum())
    return None if spread < 1e-12 else float((x * y).sum() / spread)


def width_slope(records: list[Record], construction: str, depth: int, source: str):
    """Log-log slope of m/m_t against the width at one depth, within each (density, seed)."""
    rows = [
        (math.log(r["width"]), math.log(v), (r["density"], r["seed"]))
        for r in records
        if r["construction"] == construction
        and r["depth"] == depth
        and (v := value(r, source, "overparameterization")) is not None
    ]
    return _within_slope(*zip(*rows, strict=True)) if len(rows) > 1 else None


def ratios(records: list[Record], source: str) -> list[Record]:
    """l+1's random weights over 2l's, per (width, depth, density, seed) where both exist."""
    by_point: dict[tuple, dict[str, float]] = {}
    for r in records:
        v = value(r, source, "random_params")
        if v is not None:
            key = (r["width"], r["depth"], r["density"], r["seed"])
            by_point.setdefault(key, {})[r["construction"]] = v
    return [
        dict(width=w, depth=d, density=g, seed=s, ratio=pair["l+1"] / pair["2l"])
        for (w, d, g, s), pair in sorted(by_point.items())
        if len(pair) == 2
    ]


def crossover(rows: list[Record], depth: int, density: float):
    """(slope, crossover width or None, smallest ratio) of log(l+1 / 2l) against log(width)
    at one (depth, density), pooled over seeds; None with fewer than two widths."""
    chosen = [r for r in rows if r["depth"] == depth and r["density"] == density]
    if len({r["width"] for r in chosen}) < 2:
        return None
    x = np.log([r["width"] for r in chosen])
    y = np.log([r["ratio"] for r in chosen])
    slope, intercept = np.polyfit(x, y, 1)
    width = float(math.exp(-intercept / slope)) if slope < 0 else None
    return float(slope), width, float(min(r["ratio"] for r in chosen))


def plan_agreement(records: list[Record], construction: str):
    """(median, lowest, highest, points) of measured m over planned m, over the found tickets
    (above 1: the search grew ρ or n beyond its first round; below: refine shrank it)."""
    ratios_ = [
        r["random_params"] / r["planned_random_params"]
        for r in records
        if r["construction"] == construction and value(r, "measured", "random_params")
    ]
    if not ratios_:
        return None
    return statistics.median(ratios_), min(ratios_), max(ratios_), len(ratios_)


def crossover_text(slope: float, width: float | None, smallest: float, *, widest: int) -> str:
    """The summary's reading of :func:`crossover`."""
    if smallest < 1:
        return f"in range: l+1 needs fewer random weights at some width (ratio {smallest:.3g})"
    if width is None:
        return "none in range, and the ratio grows with the width"
    return (
        f"none in range; the line reaches 1 at width ≈ {width:.3g} ({width / widest:.3g}× the "
        "widest measured, an extrapolation)"
    )


def unrun(records: list[Record], construction: str) -> tuple[int, float, float | None]:
    """(points planned but not pruned, their planned m in all, the estimated seconds to prune
    them: the median wall seconds per random weight of this construction's found prunes times
    their m — a linear extrapolation, crude for sizes far beyond the measured ones)."""
    left = [r for r in records if r["construction"] == construction and not r["measured"]]
    weights = sum(r.get("planned_random_params", 0) for r in left)
    rates = [
        r["seconds"] / r["random_params"]
        for r in records
        if r["construction"] == construction and r["measured"] and r.get("found")
    ]
    return len(left), weights, (statistics.median(rates) * weights if rates else None)


def plot(records: list[Record], out: Path) -> list[str]:
    """lplus1_vs_2l.png: m/m_t and ticket/target against the width (planned: lines, the mean
    over seeds and densities' own line each; measured: markers), and l+1 / 2l."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    markers = {2: "o", 3: "s", 4: "^"}
    for construction in ("2l", "l+1"):
        for depth in sorted({r["depth"] for r in records}):
            for density in sorted({r["density"] for r in records}):
                mine = [
                    r
                    for r in records
                    if r["construction"] == construction
                    and r["depth"] == depth
                    and r["density"] == density
                ]
                for ax, name in zip(
                    axes[:2], ("overparameterization", "ticket_to_target"), strict=False
                ):
                    _series(ax, mine, name, construction, markers.get(depth, "x"))
    _ratio_panel(axes[2], records, markers)
    axes[2].axhline(1.0, color="red", lw=0.8)
    titles = (
        "m / m_t (lines: planned, markers: measured)",
        "ticket / target params",
        "l+1 / 2l random params (black: measured; red: equal)",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("target width")
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    handles = [
        plt.Line2D([], [], color=COLOR[c], marker="o", linestyle="-", label=LABEL[c])
        for c in ("2l", "l+1")
    ]
    axes[0].legend(handles=handles, fontsize=8)
    axes[2].legend(fontsize=7, ncol=2)
    figure.suptitle("l+1 against 2l at the same certified ε and density", fontsize=11)
    figure.tight_layout()
    figure.savefig(out / "lplus1_vs_2l.png", dpi=110)
    plt.close(figure)
    return ["lplus1_vs_2l.png"]


def _ratio_panel(ax, records: list[Record], markers: dict[int, str]) -> None:
    """l+1 / 2l per (depth, density): the planned mean over seeds as a line (solid: the
    largest density, then dashed, dotted), each measured pair as a black marker."""
    planned, measured = ratios(records, "planned"), ratios(records, "measured")
    styles = ["-", "--", ":", "-."]
    for depth in _depths(records):
        for index, density in enumerate(sorted({r["density"] for r in records}, reverse=True)):
            mine = [r for r in planned if r["depth"] == depth and r["density"] == density]
            widths = sorted({r["width"] for r in mine})
            means = [statistics.mean(r["ratio"] for r in mine if r["width"] == w) for w in widths]
            ax.plot(
                widths,
                means,
                linestyle=styles[index % len(styles)],
                marker=markers.get(depth, "x"),
                markersize=3,
                color="grey",
                label=f"planned, depth {depth}, γ = {density:g}",
            )
            got = [r for r in measured if r["depth"] == depth and r["density"] == density]
            ax.scatter(
                [r["width"] for r in got],
                [r["ratio"] for r in got],
                marker=markers.get(depth, "x"),
                color="black",
                s=14,
            )


def _series(ax, mine: list[Record], name: str, construction: str, marker: str) -> None:
    """One (construction, depth, density): the planned mean over seeds as a line, and every
    measured ticket as a marker."""
    widths = sorted({r["width"] for r in mine})
    planned = [
        (w, statistics.mean(vs))
        for w in widths
        if (vs := [v for r in mine if r["width"] == w and (v := value(r, "planned", name))])
    ]
    if planned:
        ax.plot(*zip(*planned, strict=True), color=COLOR[construction], alpha=0.35, lw=1)
    measured = [(r["width"], v) for r in mine if (v := value(r, "measured", name)) is not None]
    if measured:
        ax.scatter(*zip(*measured, strict=True), color=COLOR[construction], marker=marker, s=14)


def _number(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _fit_lines(records: list[Record]) -> list[str]:
    """The summary's fits: Eq. 29's constant, the width slopes, the l+1 / 2l crossover."""
    lines = [
        "| construction | source | c in m/m_t ≈ c·log2²(2ld²/ε)/H2(γ) | measured/fitted range "
        "| points | " + " | ".join(f"width slope, depth {d}" for d in _depths(records)) + " |",
        "|---|---|---|---|---|" + "---|" * len(_depths(records)),
    ]
    for construction in ("2l", "l+1"):
        for source in ("measured", "planned"):
            fit = paper_fit(records, construction, source)
            slopes = [width_slope(records, construction, d, source) for d in _depths(records)]
            cells = (
                ["–", "–", "0"]
                if fit is None
                else [f"{fit[0]:.3g}", f"{fit[1]:.2f}–{fit[2]:.2f}", str(fit[3])]
            )
            lines.append(
                f"| {construction} | {source} | "
                + " | ".join(cells + [_number(s, ".2f") for s in slopes])
                + " |"
            )
    lines += [
        "",
        "| depth | density | source | l+1/2l slope in width | smallest l+1/2l | crossover |",
        "|---|---|---|---|---|---|",
    ]
    for source in ("measured", "planned"):
        rows = ratios(records, source)
        for depth in _depths(records):
            for density in sorted({r["density"] for r in records}):
                found = crossover(rows, depth, density)
                if found is None:
                    continue
                where = crossover_text(*found, widest=max(r["width"] for r in rows))
                lines.append(
                    f"| {depth} | {density:g} | {source} | {found[0]:.2f} | {found[2]:.3g} "
                    f"| {where} |"
                )
    return lines


def _depths(records: list[Record]) -> list[int]:
    return sorted({r["depth"] for r in records})


def summary(table, records: list[Record], figures: list[str], config) -> str:
    """summary.md: the subset-sum table, the fits, what was not run, every point."""
    lines = _subset_lines(table, config)
    lines += ["", f"## Random dense targets, ε = {config.epsilon:g}", ""]
    if records:
        lines += _fit_lines(records)
        lines += ["", "Measured m over planned m (found tickets):", ""]
        for construction in ("2l", "l+1"):
            agreement = plan_agreement(records, construction)
            lines.append(
                f"- {construction}: "
                + (
                    "none measured"
                    if agreement is None
                    else "median {:.3g}, range {:.3g}–{:.3g}, {} points".format(*agreement)
                )
            )
        lines += [
            "",
            "Planned but not pruned (over measure_max_random_params, or not reached when the sweep "
            "was stopped):",
            "",
        ]
        for construction in ("2l", "l+1"):
            count, weights, seconds = unrun(records, construction)
            lines.append(
                f"- {construction}: {count} points, planned m {weights:.3g} in all, about "
                f"{_number(None if seconds is None else seconds / 3600, '.3g')} h at the "
                "measured seconds per random weight (a linear extrapolation)"
            )
        lines += ["", *_point_lines(records)]
    lines += ["", *[f"![{name}]({name})" for name in figures]]
    return "\n".join(lines) + "\n"


def _point_lines(records: list[Record]) -> list[str]:
    lines = [
        "| construction | width | depth | density | seed | planned m/m_t | measured m/m_t "
        "| ticket/target | certified error | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["width"], r["depth"], r["density"], r["seed"])):
        measured = "–"
        if r["measured"]:
            measured = f"{r['overparameterization']:.4g}" if "overparameterization" in r else "?"
            measured += "" if r.get("found") else " (missed)"
        lines.append(
            f"| {r['construction']} | {r['width']} | {r['depth']} | {r['density']:g} | "
            f"{r['seed']} | {_number(r.get('planned_overparameterization'), '.4g')} | "
            f"{measured} | {_number(r.get('ticket_to_target'), '.4g')} | "
            f"{_number(r.get('certified_error'), '.3g')} | {_number(r.get('seconds'), '.1f')} |"
        )
    return lines


def _subset_lines(table, config) -> list[str]:
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
    return lines
