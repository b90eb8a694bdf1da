"""What the density sweeps of Theorems 3 and 4 share: the sweep itself (each series tried from
the largest density down until its first failure, and the files written from its records), the
config checks and record fields they have in common, the fitted constants, the within-series
log-log slope, and the pieces of their figures (median and min–max bars, the Pensia and Malach
guides, plain log ticks)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sslth import theory
from sslth.experiments.common import PointCache, require, sweep, write_csv

Record = dict[str, Any]


# ---------------------------------------------------------------- the sweep
def check_config(config: Any) -> None:
    """The range checks every density sweep's config shares (its ``epsilons``, ``seeds``,
    ``densities`` and ``max_random_params``), after the checks of its own target settings."""
    for e in config.epsilons:
        require(e > 0, f"epsilons must be > 0, got {e}")
    for s in config.seeds:
        require(s >= 0, f"seeds must be >= 0, got {s}")
    for g in config.densities:
        require(0 < g <= 1, f"densities must be in (0, 1], got {g}")
    require(config.max_random_params >= 1000, "max_random_params must be >= 1000")


def report_fields(report: Any, *, empirical: bool = False) -> Record:
    """A sweep record's figures of a ticket's report (the ticket found, or the best one when
    none met the request); ``empirical`` adds the empirical error."""
    fields: Record = {"certified_error": report.certified_error}
    if empirical:
        fields["empirical_error"] = report.empirical_error
    fields.update(
        achieved_density=report.density,
        random_params=report.random_params,
        target_params=report.target_params,
        overparameterization=report.overparameterization,
        n=[layer.n for layer in report.layers],
        k=[layer.k for layer in report.layers],
    )
    return fields


def run_sweep(
    experiment: ModuleType,
    config: Any,
    out_dir: str | Path,
    *,
    progress: bool,
    plots: bool,
    cached_only: bool,
) -> list[Record]:
    """Measure a density sweep (cached under ``out_dir/points``) and write its files.

    Each of the experiment's series is tried at its densities from the largest down; the first
    density at which no ticket is found ends that series. ``experiment`` is the sweep's module
    (:mod:`~sslth.experiments.theorem3`, :mod:`~sslth.experiments.theorem4`), which names its
    parts: ``NAME`` (the files' prefix), ``TITLE`` (the summary's heading while nothing is
    measured), ``_series(config)`` (the series, seeds outermost), ``_point(config, series,
    density)`` (a point's cache name and settings), ``_measure(config, settings)`` (one prune
    run: a record with ``found``), ``_complete(record)`` (the fields derived from a record,
    cached or not), ``aggregate``, ``fit``, ``_plot(records, c_ratio, c_amp, out, config)``
    and ``_summary(records, groups, c_ratio, c_amp, figures, config)``. Each is looked up when
    it is used, so a test can replace one.

    Returns:
        The records, in sweep order: ``NAME_points.csv``; ``NAME_spread.csv`` (the
        ``aggregate``), the figures (unless ``plots`` is false) and ``summary.md`` are written.
    """
    out = Path(out_dir)
    series = experiment._series(config)
    densities = sorted(config.densities, reverse=True)
    last: dict[str, bool] = {}  # whether the point just yielded found a ticket (if measured)

    def points() -> Iterator[tuple[str, Record]]:
        for key in series:
            for density in densities:
                last.clear()
                yield experiment._point(config, key, density)
                if last.get("found") is False:
                    break  # where it stops being possible: the smaller densities are not tried

    records = sweep(
        points(),
        lambda settings: experiment._measure(config, settings),
        PointCache(out),
        total=len(series) * len(densities),
        desc=experiment.NAME,
        progress=progress,
        cached_only=cached_only,
        stop=lambda settings, record: last.update(found=record["found"]),
    )
    for r in records:
        experiment._complete(r)
    if not records:
        (out / "summary.md").write_text(f"# {experiment.TITLE}\n\nNo point measured yet.\n")
        return records
    write_csv(out / f"{experiment.NAME}_points.csv", records)
    groups = experiment.aggregate(records)
    c_ratio, c_amp = experiment.fit(records)
    write_csv(out / f"{experiment.NAME}_spread.csv", groups)
    figures = experiment._plot(records, c_ratio, c_amp, out, config) if plots else []
    summary = experiment._summary(records, groups, c_ratio, c_amp, figures, config)
    (out / "summary.md").write_text(summary)
    return records


def fmt(value, spec: str = ".3g") -> str:
    """A number for a summary table, "—" for None."""
    return "—" if value is None else format(value, spec)


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


def seed_spread(records: list[Record]) -> Record:
    """A setting's row fields over its seeds: how many were tried and found a ticket, and the
    min / median / max of m/m_t among those found (None when none was)."""
    ok = [r["overparameterization"] for r in records if r["found"]]
    return {
        "seeds_tried": len(records),
        "seeds_found": len(ok),
        "ratio_min": min(ok) if ok else None,
        "ratio_median": statistics.median(ok) if ok else None,
        "ratio_max": max(ok) if ok else None,
    }


def fit_range(found: list[Record], c_ratio: float | None) -> str:
    """The summary's range of measured over fitted m/m_t (c_ratio · paper_shape), "—" when no
    ticket was found."""
    if not found:
        return "—"
    resid = np.log([r["overparameterization"] / (c_ratio * r["paper_shape"]) for r in found])
    return f"{math.exp(resid.min()):.2f}×…{math.exp(resid.max()):.2f}×"


def summary_tail(name: str, figures: list[str]) -> list[str]:
    """The summary's closing lines: where every point is, and the figures."""
    lines = ["", f"Every point: `{name}_points.csv`.", "", "## Figures", ""]
    return lines + [f"![{f}]({f})" for f in figures] + [""]


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


@dataclass
class DensityFigure:
    """What differs between the Theorem 3 and Theorem 4 figures; :func:`plot_density` draws
    the rest (two rows, one column per ε, shared axes, the guides, the legend's common part)."""

    name: str  # file name of the figure
    title: str
    width: float  # inches
    x_label: str
    bottom_label: str  # the bottom row's y label
    series: list[tuple[Hashable, Hashable]]  # (colour key, style key), in drawing order
    colour: dict  # colour key -> colour
    style: dict  # style key -> (marker, line style)
    dodge: dict  # series -> factor along the γ axis (so that bars do not overlap)
    member: Callable[[Record, tuple], bool]  # the record belongs to the series
    bottom: Callable[[Record], float]  # the bottom row's value of a record
    bottom_guides: list[tuple[float, dict]] = field(default_factory=list)  # (y, line style)
    handles: list = field(default_factory=list)  # legend entries first (series colours, styles)
    fit_handles: list = field(default_factory=list)  # legend entries last (the bottom's fit)


def _paper_constant(found: list[Record]) -> float | None:
    """The paper's shape in γ alone, c / H2(γ): one constant over every ticket found."""
    if not found:
        return None
    return math.exp(
        statistics.mean(
            math.log(r["overparameterization"] * theory.binary_entropy(r["density"])) for r in found
        )
    )


def _draw_column(top, bottom, mine, figure: DensityFigure, c_entropy, densities, gammas) -> None:
    for key in figure.series:
        rs = [r for r in mine if figure.member(r, key)]
        gs = sorted({r["density"] for r in rs})
        if not gs:
            continue
        marker, line = figure.style[key[1]]
        xs = [g * figure.dodge[key] for g in gs]
        for ax, value in ((top, lambda r: r["overparameterization"]), (bottom, figure.bottom)):
            groups_at = [[value(r) for r in rs if r["density"] == g] for g in gs]
            median_bars(ax, xs, groups_at, figure.colour[key[0]], marker, line)
    regime_guides(top, mine, gammas)
    if c_entropy is not None:
        top.plot(gammas, [c_entropy / theory.binary_entropy(g) for g in gammas], "k", lw=1.6)
    bottom.axhline(1.0, color="black", lw=1.4)
    for y, line_style in figure.bottom_guides:
        bottom.axhline(y, **line_style)
    for ax in (top, bottom):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="major")
        ax.tick_params(labelsize=10)
        log_ticks(ax, "x", densities)
        log_ticks(ax, "y")
    bottom.set_xlabel(figure.x_label, fontsize=11)
    # tilted: 0.005 and 0.01 are a third of a decade apart, too close for upright labels
    for label in bottom.get_xticklabels():
        label.set(rotation=40, ha="right", rotation_mode="anchor")


def plot_density(
    records: list[Record],
    epsilons: list[float],
    densities: list[float],
    figure: DensityFigure,
    out,
) -> list[str]:
    """Top row: m/m_t against γ per ε (median over seeds, bars min–max) with the paper's
    c/H2(γ) and the Pensia / Malach regimes as guides; bottom row: ``figure.bottom`` (measured
    over a fit). Saved as ``out / figure.name``; returns ``[figure.name]``."""
    from matplotlib.lines import Line2D

    from sslth.experiments.common import pyplot
    from sslth.plot import wrap_to_width

    plt = pyplot()
    found = [r for r in records if r["found"]]
    eps = sorted(epsilons, reverse=True)
    densities = sorted(densities)
    gammas = np.geomspace(min(densities), max(densities), 60)
    c_entropy = _paper_constant(found)
    fig, axes = plt.subplots(
        2,
        len(eps),
        figsize=(figure.width, 8.0),
        squeeze=False,
        sharex=True,
        sharey="row",
        height_ratios=[1.6, 1],
        layout="constrained",
    )
    for col, epsilon in enumerate(eps):
        mine = [r for r in found if r["epsilon"] == epsilon]
        _draw_column(axes[0][col], axes[1][col], mine, figure, c_entropy, densities, gammas)
        axes[0][col].set_title(f"ε = {epsilon:g}", fontsize=12)
    if found:
        # the 1/γ guide runs far below the data: the axis shows the data, not the guides
        low = min(r["overparameterization"] for r in found)
        high = max(r["overparameterization"] for r in found)
        axes[0][0].set_ylim(low / 1.6, high * 1.6)
        ratios = [figure.bottom(r) for r in found] + [y for y, _ in figure.bottom_guides]
        axes[1][0].set_ylim(min(0.5, min(ratios) / 1.15), max(2.0, max(ratios) * 1.15))
    axes[0][0].set_ylabel("overparameterization m / m_t", fontsize=11)
    axes[1][0].set_ylabel(figure.bottom_label, fontsize=11)
    median = "median over seeds,\nbars: min–max"
    handles = figure.handles + [Line2D([], [], color="0.3", marker="o", ls="none", label=median)]
    if c_entropy is not None:
        paper = f"{c_entropy:.3g} / H2(γ): paper,\nconstant fitted"
        handles.append(Line2D([], [], color="black", lw=1.6, label=paper))
    handles += [
        Line2D([], [], color="0.45", ls="--", lw=1.2, label="Pensia et al.:\nflat in γ"),
        Line2D([], [], color="0.45", ls="-.", lw=1.2, label="Malach et al.: ∝ 1/γ"),
    ]
    handles += figure.fit_handles
    fig.legend(handles=handles, loc="outside right center", fontsize=10, frameon=False)
    fig.suptitle(wrap_to_width(figure.title, figure.width, 12), fontsize=12)
    fig.savefig(out / figure.name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [figure.name]


def style_handles(style: dict, label) -> list:
    """Legend entries of the series' marker and line styles, hollow markers off solid lines."""
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], color="0.3", marker=m, ls=ls, mfc="white" if ls != "-" else "0.3",
               label=label(key))
        for key, (m, ls) in style.items()
    ]  # fmt: skip
