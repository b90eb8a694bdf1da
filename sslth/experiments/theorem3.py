"""Theorem 3 / Figure 1: density against overparameterization, measured with ``sslth.prune``.

Targets are random ReLU networks (square layers d×d, Gaussian weights scaled to spectral norm 1,
no bias). For each (width, depth, ε, seed) the densities γ are tried from the largest down; the
first γ at which no ticket is found ends that series ("where it stops being possible").

What is measured at each γ is the overparameterization m/m_t that prune's *automatic* search
reaches (sizes planned from the Poisson heuristic, then ``refine=True`` shrinks n layer by layer
while the certificate and the density still hold). It is therefore an upper bound on the true
smallest m/m_t, found by the library's own search, not an exhaustive scan over n.
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import sslth
from sslth import theory
from sslth.experiments import density as density_sweep
from sslth.experiments.common import point_name, prune_outcome, require
from sslth.experiments.density import DensityFigure, fmt, plot_density, style_handles


@dataclass
class Config:
    """Settings of a Theorem 3 sweep (see configs/theorem3.toml)."""

    widths: list[int] = field(default_factory=lambda: [4, 8, 16])
    depths: list[int] = field(default_factory=lambda: [2, 3])
    epsilons: list[float] = field(default_factory=lambda: [0.1, 0.05, 0.01])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    densities: list[float] = field(default_factory=lambda: [0.5, 0.2, 0.1, 0.05, 0.02, 0.01])
    max_random_params: int = 2_000_000

    def validate(self) -> None:
        for w in self.widths:
            require(w >= 1, f"widths must be >= 1, got {w}")
        for d in self.depths:
            require(d >= 1, f"depths must be >= 1, got {d}")
        density_sweep.check_config(self)


def make_target(width: int, depth: int, seed: int) -> list[torch.Tensor]:
    """``depth`` Gaussian width×width matrices, each divided by its spectral norm."""
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(depth):
        weight = torch.randn(width, width, generator=generator, dtype=torch.float64)
        layers.append(weight / torch.linalg.matrix_norm(weight, ord=2))
    return layers


def paper_shape(width: int, depth: int, epsilon: float, density: float) -> float:
    """log2²(2·l·d²/ε) / H2(γ): Eq. 29's dependence on the settings, without its constant."""
    return math.log2(2 * depth * width * width / epsilon) ** 2 / theory.binary_entropy(density)


def measure(settings: dict[str, Any], max_random_params: int) -> dict[str, Any]:
    """One prune run at one sweep point; the record has the report's figures (those of the best
    ticket when none met the request, with ``found`` false)."""
    target = make_target(settings["width"], settings["depth"], settings["seed"])
    start = time.perf_counter()
    report, found, reason = prune_outcome(
        lambda: sslth.prune(
            target,
            settings["epsilon"],
            settings["density"],
            seed=settings["seed"],
            device="cpu",
            progress=False,
            refine=True,
            max_random_params=max_random_params,
        )
    )
    record: dict[str, Any] = {} if reason is None else {"reason": reason}
    record["found"] = found
    record["seconds"] = time.perf_counter() - start
    if report is not None:
        record.update(density_sweep.report_fields(report))
    return record


def _series(config: Config) -> list[tuple[int, int, int, float]]:
    # seeds outermost: a partial run has every setting for its first seeds, not some settings
    return list(itertools.product(config.seeds, config.widths, config.depths, config.epsilons))


NAME, TITLE = "theorem3", "Theorem3"  # the files' prefix; the summary's heading while empty


def _point(config: Config, series: tuple, density: float) -> tuple[str, dict[str, Any]]:
    s, w, dp, e = series
    settings = {"width": w, "depth": dp, "epsilon": e, "seed": s, "density": density}
    return point_name(w=w, l=dp, eps=e, s=s, g=density, p=config.max_random_params), settings


def _measure(config: Config, settings: dict[str, Any]) -> dict[str, Any]:
    return measure(settings, config.max_random_params)


def _complete(record: dict[str, Any]) -> None:
    record["paper_shape"] = paper_shape(
        record["width"], record["depth"], record["epsilon"], record["density"]
    )


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    plots: bool = True,
    cached_only: bool = False,
) -> list[dict[str, Any]]:
    """Measure (cached under ``out_dir/points``) and write CSV, PNG and summary.md: see
    :func:`~sslth.experiments.density.run_sweep`."""
    module = sys.modules[__name__]
    return density_sweep.run_sweep(
        module, config, out_dir, progress=progress, plots=plots, cached_only=cached_only
    )


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """min / median / max of m/m_t over the seeds that found a ticket, per setting."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["width"], r["depth"], r["epsilon"], r["density"]), []).append(r)
    rows = []
    for (w, dp, e, g), rs in sorted(groups.items(), key=lambda kv: (*kv[0][:3], -kv[0][3])):
        rows.append(
            {
                "width": w,
                "depth": dp,
                "epsilon": e,
                "density": g,
                **density_sweep.seed_spread(rs),
                "paper_shape": paper_shape(w, dp, e, g),
                "seconds_median": statistics.median(r["seconds"] for r in rs),
            }
        )
    return rows


def fit(records: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """One constant each, by least squares in log space (the mean log residual):
    m/m_t ≈ c · log2²(2 l d²/ε)/H2(γ), and Eq. 29's n ≈ c_amp · the same shape."""
    return density_sweep.fit_constants(records, lambda r: statistics.mean(r["n"]))


DEPTH_STYLES = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."))


def _plot(records, c_ratio, c_amp, out: Path, config: Config) -> list[str]:
    """Top row: m/m_t against γ per ε (median over seeds, bars min–max), with the paper's
    1/H2(γ) and the Pensia / Malach regimes as guides. Bottom row: measured over the fitted
    c·log2²(2ld²/ε)/H2(γ), which shows the fit and the seed spread at a readable scale."""
    from matplotlib.lines import Line2D

    from sslth.plot import PALETTE

    widths, depths = sorted(config.widths), sorted(config.depths)
    colour = {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(widths)}
    depth_style = {d: DEPTH_STYLES[i % len(DEPTH_STYLES)] for i, d in enumerate(depths)}
    series = [(w, dp) for w in widths for dp in depths]
    handles = [Line2D([], [], color=colour[w], lw=2.5, label=f"width d = {w}") for w in widths]
    handles += style_handles(depth_style, lambda d: f"depth l = {d}")
    fit = f"bottom: the fit,\nc = {c_ratio:.3g}" if c_ratio is not None else ""
    figure = DensityFigure(
        name="theorem3_density.png",
        title="Theorem 3: overparameterization sslth.prune needs for density γ",
        width=3.6 * len(config.epsilons) + 3.2,
        x_label="density γ (kept / all random weights)",
        bottom_label="measured / fit\nc·log2²(2ld²/ε)/H2(γ)",
        series=series,
        colour=colour,
        style=depth_style,
        # neighbouring series are shifted a little along the log γ axis: bars do not overlap
        dodge={s: math.exp(0.045 * (i - (len(series) - 1) / 2)) for i, s in enumerate(series)},
        member=lambda r, key: (r["width"], r["depth"]) == key,
        bottom=lambda r: r["overparameterization"] / (c_ratio * r["paper_shape"]),
        handles=handles,
        fit_handles=[Line2D([], [], color="black", lw=1.4, label=fit)] if fit else [],
    )
    return plot_density(records, config.epsilons, config.densities, figure, out)


def slopes(records: list[dict[str, Any]], max_density: float = 0.1) -> tuple[float, float] | None:
    """:func:`~sslth.experiments.density.within_slopes`, each (width, depth, ε, seed) a series."""
    return density_sweep.within_slopes(
        records, lambda r: (r["width"], r["depth"], r["epsilon"], r["seed"]), max_density
    )


def _summary(records, groups, c_ratio, c_amp, figures, config: Config) -> str:
    found = [r for r in records if r["found"]]
    seconds = sum(r["seconds"] for r in records)
    bad = [
        r
        for r in found
        if r["certified_error"] > r["epsilon"] or r["achieved_density"] > r["density"]
    ]
    spread = density_sweep.fit_range(found, c_ratio)
    lines = [
        "# Theorem 3 / Figure 1: density against overparameterization, measured",
        "",
        f"{len(records)} prune runs ({len(found)} found a ticket, {seconds:.0f} s in all) over "
        f"widths {config.widths}, depths {config.depths}, ε {config.epsilons}, seeds "
        f"{config.seeds}, densities {sorted(config.densities, reverse=True)} (each series stops "
        f"at its first failure), max_random_params {config.max_random_params:,}.",
        "",
        "Targets: square ReLU layers, Gaussian weights divided by their spectral norm, no bias. "
        "m/m_t is the overparameterization reached by `sslth.prune`'s automatic search with "
        "`refine=True`: an upper bound on the smallest possible, not an exhaustive scan over n.",
        "",
        "## Comparison with the theory",
        "",
        f"- Every ticket found has certified error ≤ ε and density ≤ γ: "
        f"{'yes' if not bad else f'NO, {len(bad)} violate it'}.",
        f"- Fitted m/m_t ≈ c · log2²(2·l·d²/ε)/H2(γ): c = {fmt(c_ratio)}; measured/fitted "
        f"ranges over {spread}.",
        f"- Eq. 29 on neurons per input, n ≈ c_amp · log2²(2·l·d²/ε)/H2(γ) (mean n over "
        f"layers): c_amp = {fmt(c_amp)}.",
        "- Malach regime (m/m_t = 1/γ) and Pensia regime (flat in γ) are drawn as references.",
        density_sweep.slope_line(slopes(records), "setting"),
        "",
        "## Spread over seeds (m/m_t among the seeds that found a ticket)",
        "",
        "| d | l | ε | γ | found/tried | min | median | max | shape log²/H2 | median s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        lines.append(
            f"| {g['width']} | {g['depth']} | {g['epsilon']:g} | {g['density']:g} | "
            f"{g['seeds_found']}/{g['seeds_tried']} | {fmt(g['ratio_min'])} | "
            f"{fmt(g['ratio_median'])} | {fmt(g['ratio_max'])} | {g['paper_shape']:.0f} | "
            f"{g['seconds_median']:.1f} |"
        )
    return "\n".join(lines + density_sweep.summary_tail(NAME, figures))
