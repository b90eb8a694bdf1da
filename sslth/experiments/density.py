"""What the density sweeps of Theorems 3 and 4 share: the fitted constants, the within-series
log-log slope, and the pieces of their figures (median and min–max bars, the Pensia and Malach
guides, plain log ticks)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from sslth import theory

Record = dict[str, Any]


def fmt(value, spec: str = ".3g") -> str:
    """A number for a summary table, "—" for None."""
    return "—" if value is None else format(value, spec)


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


def fit_constants(
    records: list[Record], neurons: Callable[[Record], float]
) -> tuple[float | None, float | None]:
    """One constant each, by least squares in log space (the mean log residual) against each
    record's ``paper_shape``: m/m_t ≈ c · shape, and neurons per input ≈ c_amp · shape."""
    ok = [r for r in records if r["found"]]
    if not ok:
        return None, None
    log_shape = np.log([r["paper_shape"] for r in ok])
    c_ratio = float(np.exp(np.mean(np.log([r["overparameterization"] for r in ok]) - log_shape)))
    c_amp = float(np.exp(np.mean(np.log([neurons(r) for r in ok]) - log_shape)))
    return c_ratio, c_amp


def within_slopes(
    records: list[Record], series: Callable[[Record], Hashable], max_density: float = 0.1
) -> tuple[float, float] | None:
    """Log-log slope α of m/m_t ∝ γ^−α over the found tickets with γ <= max_density, each
    series' mean removed (so widths, sizes and ε do not mix in), measured and for the paper's
    1/H2(γ) at the same points (Malach's regime is α = 1). None with fewer than two densities."""
    ok = [r for r in records if r["found"] and r["density"] <= max_density]
    if len({r["density"] for r in ok}) < 2:
        return None
    x = -np.log([r["density"] for r in ok])
    keys = [series(r) for r in ok]

    def slope(y: np.ndarray) -> float:
        xc, yc = x.copy(), y.copy()
        for key in set(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            xc[idx] -= xc[idx].mean()
            yc[idx] -= yc[idx].mean()
        denominator = float((xc * xc).sum())
        return float((xc * yc).sum()) / denominator if denominator > 0 else math.nan

    measured = slope(np.log([r["overparameterization"] for r in ok]))
    paper = slope(-np.log([theory.binary_entropy(r["density"]) for r in ok]))
    return measured, paper


def slope_line(result: tuple[float, float] | None, within: str) -> str:
    """The summary's line for :func:`within_slopes` (``within``: "setting" or "series")."""
    if result is None:
        return "- Too few densities ≤ 0.1 for a log-log slope."
    measured, paper = result
    return (
        f"- Log-log slope for γ ≤ 0.1 (m/m_t ∝ γ^−α, within each {within}): measured α = "
        f"{measured:.2f}; the paper's 1/H2(γ) at the same points gives α = {paper:.2f}; "
        "Malach's regime is α = 1."
    )


def log_ticks(ax, axis: str, ticks: list[float] | None = None) -> None:
    """Plain-number ticks on a log axis (1, 2, 5 per decade unless given), no minor labels:
    matplotlib's default minor labels (2×10⁻¹, 3×10⁻¹, …) overlap on short axes."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(
        FixedLocator(ticks) if ticks is not None else LogLocator(subs=(1.0, 2.0, 5.0))
    )
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def median_bars(
    ax, xs: list[float], groups: list[list[float]], colour, marker: str, line: str
) -> None:
    """The median of each group at its x, with min–max bars (hollow markers off solid lines)."""
    spreads = [spread(values) for values in groups]
    med = [s[1] for s in spreads]
    ax.errorbar(
        xs,
        med,
        yerr=[
            [m - s[0] for m, s in zip(med, spreads, strict=True)],
            [s[2] - m for m, s in zip(med, spreads, strict=True)],
        ],
        color=colour,
        marker=marker,
        ms=5,
        mfc="white" if line != "-" else colour,
        ls=line,
        lw=0.9,
        elinewidth=1.8,
        capsize=3,
        capthick=1.4,
    )


def regime_guides(ax, records: list[Record], gammas) -> None:
    """Guides, not fits: Pensia et al. (γ = Θ(1), logarithmic overparameterization) is flat in
    γ, drawn at the median m/m_t of the largest density found; Malach et al.'s m/m_t ∝ 1/γ is
    drawn through the median at the smallest."""
    if not records:
        return
    largest = max(r["density"] for r in records)
    level = statistics.median(r["overparameterization"] for r in records if r["density"] == largest)
    ax.axhline(level, color="0.45", ls="--", lw=1.2)
    low = min(r["density"] for r in records)
    anchor = statistics.median(r["overparameterization"] for r in records if r["density"] == low)
    ax.plot(gammas, anchor * low / gammas, color="0.45", ls="-.", lw=1.2)
