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

import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sslth
from sslth import theory
from sslth.experiments.common import PointCache, point_name, pyplot, require, sweep, write_csv


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
        for e in self.epsilons:
            require(e > 0, f"epsilons must be > 0, got {e}")
        for s in self.seeds:
            require(s >= 0, f"seeds must be >= 0, got {s}")
        for g in self.densities:
            require(0 < g <= 1, f"densities must be in (0, 1], got {g}")
        require(self.max_random_params >= 1000, "max_random_params must be >= 1000")


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
    target = make_target(settings["width"], settings["depth"], settings["seed"])
    start = time.perf_counter()
    record: dict[str, Any] = {}
    try:
        ticket = sslth.prune(
            target,
            settings["epsilon"],
            settings["density"],
            seed=settings["seed"],
            device="cpu",
            progress=False,
            refine=True,
            max_random_params=max_random_params,
        )
        report, found = ticket.report, True
    except sslth.TicketNotFound as error:
        report, found = (None if error.best is None else error.best.report), False
        record["reason"] = str(error).split(".")[0][:160]
    record["found"] = found
    record["seconds"] = time.perf_counter() - start
    if report is not None:
        record.update(
            certified_error=report.certified_error,
            achieved_density=report.density,
            random_params=report.random_params,
            target_params=report.target_params,
            overparameterization=report.overparameterization,
            n=[layer.n for layer in report.layers],
            k=[layer.k for layer in report.layers],
        )
    return record


def _series(config: Config) -> list[tuple[int, int, float, int]]:
    # seeds outermost: a partial run has every setting for its first seeds, not some settings
    return [
        (w, dp, e, s)
        for s in config.seeds
        for w in config.widths
        for dp in config.depths
        for e in config.epsilons
    ]


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    plots: bool = True,
    cached_only: bool = False,
) -> list[dict[str, Any]]:
    """Measure (cached under ``out_dir/points``) and write CSV, PNG and summary.md."""
    out = Path(out_dir)
    cache = PointCache(out)
    stopped: set[tuple] = set()
    densities = sorted(config.densities, reverse=True)

    def points() -> Iterator[tuple[str, dict[str, Any]]]:
        for series in _series(config):
            for density in densities:
                if series in stopped:
                    break
                w, dp, e, s = series
                settings = {"width": w, "depth": dp, "epsilon": e, "seed": s, "density": density}
                yield (
                    point_name(w=w, l=dp, eps=e, s=s, g=density, p=config.max_random_params),
                    settings,
                )

    def stop(settings: dict[str, Any], record: dict[str, Any]) -> None:
        if not record["found"]:
            key = (settings["width"], settings["depth"], settings["epsilon"], settings["seed"])
            stopped.add(key)

    records = sweep(
        points(),
        lambda s: measure(s, config.max_random_params),
        cache,
        total=len(_series(config)) * len(densities),
        desc="theorem3",
        progress=progress,
        cached_only=cached_only,
        stop=stop,
    )
    for r in records:
        r["paper_shape"] = paper_shape(r["width"], r["depth"], r["epsilon"], r["density"])
    if not records:
        (out / "summary.md").write_text("# Theorem3\n\nNo point measured yet.\n")
        return records
    write_csv(out / "theorem3_points.csv", records)
    groups = aggregate(records)
    c_ratio, c_amp = fit(records)
    write_csv(out / "theorem3_spread.csv", groups)
    figures = _plot(records, groups, c_ratio, out, config) if plots else []
    (out / "summary.md").write_text(_summary(records, groups, c_ratio, c_amp, figures, config))
    return records


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """min / median / max of m/m_t over the seeds that found a ticket, per setting."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["width"], r["depth"], r["epsilon"], r["density"]), []).append(r)
    rows = []
    for (w, dp, e, g), rs in sorted(groups.items(), key=lambda kv: (*kv[0][:3], -kv[0][3])):
        ok = [r["overparameterization"] for r in rs if r["found"]]
        rows.append(
            {
                "width": w,
                "depth": dp,
                "epsilon": e,
                "density": g,
                "seeds_tried": len(rs),
                "seeds_found": len(ok),
                "ratio_min": min(ok) if ok else None,
                "ratio_median": statistics.median(ok) if ok else None,
                "ratio_max": max(ok) if ok else None,
                "paper_shape": paper_shape(w, dp, e, g),
                "seconds_median": statistics.median(r["seconds"] for r in rs),
            }
        )
    return rows


def fit(records: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """One constant each, by least squares in log space (the mean log residual):
    m/m_t ≈ c · log2²(2 l d²/ε)/H2(γ), and Eq. 29's n ≈ c_amp · the same shape."""
    ok = [r for r in records if r["found"]]
    if not ok:
        return None, None
    log_shape = np.log([r["paper_shape"] for r in ok])
    c_ratio = float(np.exp(np.mean(np.log([r["overparameterization"] for r in ok]) - log_shape)))
    mean_n = [statistics.mean(r["n"]) for r in ok]
    c_amp = float(np.exp(np.mean(np.log(mean_n) - log_shape)))
    return c_ratio, c_amp


def _plot(records, groups, c_ratio, out: Path, config: Config) -> list[str]:
    plt = pyplot()
    eps = sorted(config.epsilons, reverse=True)
    fig, axes = plt.subplots(1, len(eps), figsize=(5.5 * len(eps), 4.8), squeeze=False)
    gammas = np.geomspace(min(config.densities), max(config.densities), 50)
    for ax, epsilon in zip(axes[0], eps, strict=True):
        ci = 0
        for w in config.widths:
            for dp in config.depths:
                rows = [
                    g
                    for g in groups
                    if (g["width"], g["depth"], g["epsilon"]) == (w, dp, epsilon)
                    and g["seeds_found"]
                ]
                colour = f"C{ci}"
                ci += 1
                if not rows:
                    continue
                xs = [g["density"] for g in rows]
                med = [g["ratio_median"] for g in rows]
                err = [
                    [m - g["ratio_min"] for m, g in zip(med, rows, strict=True)],
                    [g["ratio_max"] - m for m, g in zip(med, rows, strict=True)],
                ]
                ax.errorbar(
                    xs,
                    med,
                    yerr=err,
                    marker="o",
                    ms=4,
                    capsize=2,
                    color=colour,
                    label=f"d={w}, l={dp}",
                )
                if c_ratio is not None:
                    ax.plot(
                        gammas,
                        [c_ratio * paper_shape(w, dp, epsilon, g) for g in gammas],
                        ls=":",
                        color=colour,
                        lw=1,
                    )
        found = [r for r in records if r["found"] and r["epsilon"] == epsilon]
        if found:
            # Pensia et al.: γ = Θ(1) with logarithmic overparameterization -> flat in γ; drawn
            # at the median measured level at the largest density as a reference
            top = max(r["density"] for r in found)
            level = statistics.median(
                r["overparameterization"] for r in found if r["density"] == top
            )
            ax.axhline(level, color="grey", ls="--", lw=1, label="Pensia regime (flat in γ)")
        ax.plot(gammas, 1 / gammas, color="k", ls="-.", lw=1, label="Malach regime m/m_t = 1/γ")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("density γ")
        ax.set_ylabel("m / m_t")
        ax.set_title(f"ε = {epsilon:g}")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(
        "Theorem 3: overparameterization found by sslth.prune (median, min–max over "
        "seeds) and c·log2²(2ld²/ε)/H2(γ) fitted (dotted)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    name = "theorem3_density.png"
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return [name]


def slopes(records: list[dict[str, Any]], max_density: float = 0.1) -> tuple[float, float] | None:
    """Log-log slope α of m/m_t ∝ γ^−α over the found tickets with γ <= max_density, measured
    and for the paper's 1/H2(γ) at the same points (Malach's regime is α = 1)."""
    ok = [r for r in records if r["found"] and r["density"] <= max_density]
    if len({r["density"] for r in ok}) < 2:
        return None
    x = -np.log([r["density"] for r in ok])
    # within-setting slope: remove each setting's mean so widths, depths and ε do not mix in
    keys = [(r["width"], r["depth"], r["epsilon"], r["seed"]) for r in ok]

    def slope(y: np.ndarray) -> float:
        xc, yc = x.copy(), y.copy()
        for key in set(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            xc[idx] -= xc[idx].mean()
            yc[idx] -= yc[idx].mean()
        return float((xc * yc).sum() / (xc * xc).sum())

    measured = slope(np.log([r["overparameterization"] for r in ok]))
    paper = slope(-np.log([theory.binary_entropy(r["density"]) for r in ok]))
    return measured, paper


def _fmt(value, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def _slope_line(result: tuple[float, float] | None) -> str:
    if result is None:
        return "- Too few densities ≤ 0.1 for a log-log slope."
    measured, paper = result
    return (
        f"- Log-log slope for γ ≤ 0.1 (m/m_t ∝ γ^−α, within each setting): measured α = "
        f"{measured:.2f}; the paper's 1/H2(γ) at the same points gives α = {paper:.2f}; "
        "Malach's regime is α = 1."
    )


def _summary(records, groups, c_ratio, c_amp, figures, config: Config) -> str:
    found = [r for r in records if r["found"]]
    seconds = sum(r["seconds"] for r in records)
    bad = [
        r
        for r in found
        if r["certified_error"] > r["epsilon"] or r["achieved_density"] > r["density"]
    ]
    if found:
        resid = np.log([r["overparameterization"] / (c_ratio * r["paper_shape"]) for r in found])
        spread = f"{math.exp(resid.min()):.2f}×…{math.exp(resid.max()):.2f}×"
    else:
        spread = "—"
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
        f"- Fitted m/m_t ≈ c · log2²(2·l·d²/ε)/H2(γ): c = {_fmt(c_ratio)}; measured/fitted "
        f"ranges over {spread}.",
        f"- Eq. 29 on neurons per input, n ≈ c_amp · log2²(2·l·d²/ε)/H2(γ) (mean n over "
        f"layers): c_amp = {_fmt(c_amp)}.",
        "- Malach regime (m/m_t = 1/γ) and Pensia regime (flat in γ) are drawn as references.",
        _slope_line(slopes(records)),
        "",
        "## Spread over seeds (m/m_t among the seeds that found a ticket)",
        "",
        "| d | l | ε | γ | found/tried | min | median | max | shape log²/H2 | median s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        lines.append(
            f"| {g['width']} | {g['depth']} | {g['epsilon']:g} | {g['density']:g} | "
            f"{g['seeds_found']}/{g['seeds_tried']} | {_fmt(g['ratio_min'])} | "
            f"{_fmt(g['ratio_median'])} | {_fmt(g['ratio_max'])} | {g['paper_shape']:.0f} | "
            f"{g['seconds_median']:.1f} |"
        )
    lines += ["", "Every point: `theorem3_points.csv`.", "", "## Figures", ""]
    lines += [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)
