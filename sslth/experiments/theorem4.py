"""Theorem 4 (G = Z², CNNs): density against overparameterization, measured with ``sslth.prune``.

The Figure 1 experiment of :mod:`sslth.experiments.theorem3`, for convolutional targets. Each
target is ``Conv2d(1 → c, 3×3, padding 1) → ReLU → Conv2d(c → c, 3×3, padding 1)`` on inputs of
shape ``1 × H × H``. Its kernels are Gaussian, each divided by
:func:`sslth.convnorm.conv_norm_bound` on the layer's own input shape: a *certified upper bound*
on the operator norm, so every layer has ``‖T‖₂ ≤ 1`` for sure, as the theorem assumes.
:func:`sslth.convnorm.conv_norm_power` (a lower estimate) of the rescaled kernel is recorded as
``norm_power`` to show that the bound is tight, i.e. that the layers really have norm ≈ 1. With
``bias = true`` each conv also gets a Gaussian bias, scaled so that its constant output map has
ℓ2 norm 1/2 (half of what the kernel can contribute on the unit ball).

For each (c, H, bias, ε, seed) the densities γ are tried from the largest down; the first γ at
which no ticket is found ends that series. What is measured is the overparameterization m/m_t
that prune's automatic search (with ``refine=True``) reaches, where m counts the random
network's kernel entries and m_t the target's: Theorem 4's equivariant parameters for G = Z².
It is an upper bound on the smallest m/m_t, not an exhaustive scan over n.

**The paper's shape.** Theorem 4 asks for ñ = c_amp·log2²(2·l·n²·max(|B|, ‖B‖)/ε)/H2(γ) hidden
feature spaces per input one, where n is the number of channels and B the equivariant basis. For
G = Z² and k×k kernels, B is the k² shifts, so |B| = k² and ‖B‖ = k² too (all-ones
coefficients reach it at the zero frequency): the log's argument is 2·l·(c_in·c_out·k²)/ε, the
number of kernel entries of a layer, exactly where Theorem 3 has 2·l·d²/ε. We take the largest
layer's count (9c²) and fit one constant to m/m_t and one, c_amp, to the mean n over layers.

**Comparison with Theorem 3.** c_amp is comparable with the dense experiment's (n is neurons per
input channel in both), m/m_t's constant is not: per hidden channel the random CNN spends c_in
entries in U and c_out·k² in V, so m/m_t ≈ 2n(c_in + 9c_out)/(9c_out) ≈ 2.2n, against 4n for
square dense layers.

The measurement (:func:`measure`, :func:`run` without ``plots``) does not import matplotlib; the
figure is drawn from the records only.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import sslth
from sslth import theory
from sslth.convnorm import conv_norm_bound, conv_norm_power
from sslth.experiments import density as density_sweep
from sslth.experiments.common import point_name, prune_outcome, require
from sslth.experiments.density import DensityFigure, fmt, plot_density, style_handles

KERNEL = 3
BIAS_NORM = 0.5
# Theorem 3's c_amp as measured by configs/theorem3.toml (docs/figures/theorem3_summary.md): the
# dense constant this experiment's c_amp is compared with
THEOREM3_C_AMP = 0.0886


@dataclass
class Config:
    """Settings of a Theorem 4 sweep (see configs/theorem4.toml)."""

    channels: list[int] = field(default_factory=lambda: [2, 4, 8])
    input_sizes: list[int] = field(default_factory=lambda: [8])
    biases: list[bool] = field(default_factory=lambda: [False])
    epsilons: list[float] = field(default_factory=lambda: [0.1, 0.05])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    densities: list[float] = field(default_factory=lambda: [0.5, 0.2, 0.1, 0.05, 0.02, 0.01])
    max_random_params: int = 4_000_000
    # prune's empirical check is a sanity check here, not the measurement: at its default of
    # 10,000 points it is most of a small CNN's prune time
    empirical_samples: int = 1000
    # torch intra-op threads while measuring (0: leave torch's setting). The targets are tiny, so
    # threads only add synchronisation: on a loaded 2-core machine two threads made each point
    # 4-6 times slower than one
    threads: int = 1

    def validate(self) -> None:
        for c in self.channels:
            require(c >= 1, f"channels must be >= 1, got {c}")
        for h in self.input_sizes:
            require(h >= 1, f"input_sizes must be >= 1, got {h}")
        density_sweep.check_config(self)
        require(self.empirical_samples >= 1, "empirical_samples must be >= 1")
        require(self.threads >= 0, f"threads must be >= 0, got {self.threads}")


def layer_params(channels: int) -> list[int]:
    """Kernel entries of each target layer (m_t's terms): 1 → c, then c → c."""
    return [channels * KERNEL * KERNEL, channels * channels * KERNEL * KERNEL]


@functools.lru_cache(maxsize=64)
def _target_tensors(
    channels: int, size: int, bias: bool, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor | None, float], ...]:
    # cached: the densities of a series share one target, and the power estimate is not free
    generator = torch.Generator().manual_seed(seed)
    # all kernels before any bias, so that the bias variant has the kernels of the plain target
    # (and every input size the same draws, rescaled): the comparisons are then like for like
    shapes = [(channels, c_in, KERNEL, KERNEL) for c_in in (1, channels)]
    kernels = [torch.randn(shape, generator=generator).to(torch.float64) for shape in shapes]
    offsets = [
        torch.randn(channels, generator=generator).to(torch.float64) if bias else None
        for _ in kernels
    ]
    layers = []
    for kernel, offset in zip(kernels, offsets, strict=True):
        kernel /= conv_norm_bound(kernel, size, padding=KERNEL // 2)
        if offset is not None:
            # the bias map is constant over the size × size output
            offset *= BIAS_NORM / (float(torch.linalg.vector_norm(offset)) * size)
        power = conv_norm_power(kernel, size, padding=KERNEL // 2, iterations=50, seed=seed)
        layers.append((kernel, offset, power))
    return tuple(layers)


def make_target(channels: int, size: int, bias: bool, seed: int) -> nn.Sequential:
    """Conv(1 → c) → ReLU → Conv(c → c), 3×3 with padding 1, float64, each layer's operator norm
    on its ``1 × size × size`` (then ``c × size × size``) input at most 1 (certified)."""
    modules: list[nn.Module] = []
    for kernel, offset, _ in _target_tensors(channels, size, bias, seed):
        conv = nn.Conv2d(kernel.shape[1], kernel.shape[0], KERNEL, padding=KERNEL // 2, bias=bias)
        conv = conv.to(torch.float64)
        with torch.no_grad():
            conv.weight.copy_(kernel)
            if offset is not None:
                conv.bias.copy_(offset)
        modules += [conv, nn.ReLU()]
    return nn.Sequential(*modules[:-1])


def paper_shape(channels: int, epsilon: float, density: float) -> float:
    """log2²(2·l·P/ε) / H2(γ) with P = 9c², the largest layer's kernel entries (Theorem 4's
    n²·max(|B|, ‖B‖) for G = Z²), without the constant."""
    params = max(layer_params(channels))
    depth = len(layer_params(channels))
    return math.log2(2 * depth * params / epsilon) ** 2 / theory.binary_entropy(density)


def measure(
    settings: dict[str, Any], max_random_params: int, empirical_samples: int = 1000
) -> dict[str, Any]:
    """One prune run at one sweep point; the record has the report's figures (those of the best
    ticket when none met the request, with ``found`` false)."""
    channels, size = settings["channels"], settings["input_size"]
    target = make_target(channels, size, settings["bias"], settings["seed"])
    start, cpu = time.perf_counter(), time.process_time()
    report, found, reason = prune_outcome(
        lambda: sslth.prune(
            target,
            settings["epsilon"],
            settings["density"],
            input_shape=[1, size, size],
            seed=settings["seed"],
            device="cpu",
            progress=False,
            refine=True,
            max_random_params=max_random_params,
            empirical_samples=empirical_samples,
        )
    )
    record: dict[str, Any] = {} if reason is None else {"reason": reason}
    record["found"] = found
    record["seconds"] = time.perf_counter() - start
    # CPU time too: the shared 2-core machines are often loaded, which inflates wall time
    record["cpu_seconds"] = time.process_time() - cpu
    record["norm_power"] = [
        layer[2] for layer in _target_tensors(channels, size, settings["bias"], settings["seed"])
    ]
    if report is not None:
        record.update(density_sweep.report_fields(report, empirical=True))
    return record


def _series(config: Config) -> list[tuple[int, int, int, bool, float]]:
    # seeds outermost: a partial run has every setting for its first seeds, not some settings
    fields = (config.channels, config.input_sizes, config.biases, config.epsilons)
    return list(itertools.product(config.seeds, *fields))


NAME, TITLE = "theorem4", "Theorem 4"  # the files' prefix; the summary's heading while empty


def _point(config: Config, series: tuple, density: float) -> tuple[str, dict[str, Any]]:
    s, c, h, b, e = series
    settings = {
        "channels": c,
        "input_size": h,
        "bias": b,
        "epsilon": e,
        "seed": s,
        "density": density,
    }
    name = point_name(
        c=c,
        H=h,
        b=int(b),
        eps=e,
        s=s,
        g=density,
        p=config.max_random_params,
        m=config.empirical_samples,
    )
    return name, settings


def _measure(config: Config, settings: dict[str, Any]) -> dict[str, Any]:
    # ``measure`` is looked up at call time, so a test can replace it to prove the cache is used
    return measure(settings, config.max_random_params, config.empirical_samples)


def _complete(record: dict[str, Any]) -> None:
    record["paper_shape"] = paper_shape(record["channels"], record["epsilon"], record["density"])
    if record.get("n"):
        record["mean_n"] = statistics.mean(record["n"])


def run(
    config: Config,
    out_dir: str | Path,
    *,
    progress: bool = True,
    plots: bool = True,
    cached_only: bool = False,
) -> list[dict[str, Any]]:
    """Measure (cached under ``out_dir/points``) and write CSV, PNG and summary.md: see
    :func:`~sslth.experiments.density.run_sweep`. The sweep runs on ``config.threads`` torch
    threads; the caller's setting is restored after."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return density_sweep.run_sweep(
            sys.modules[__name__],
            config,
            out_dir,
            progress=progress,
            plots=plots,
            cached_only=cached_only,
        )
    finally:
        torch.set_num_threads(threads)  # the setting is process-wide: give the caller theirs back


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """min / median / max of m/m_t (and median n) over the seeds that found a ticket."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        key = (r["channels"], r["input_size"], r["bias"], r["epsilon"], r["density"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (c, h, b, e, g), rs in sorted(groups.items(), key=lambda kv: (*kv[0][:4], -kv[0][4])):
        ok = [r for r in rs if r["found"]]
        rows.append(
            {
                "channels": c,
                "input_size": h,
                "bias": b,
                "epsilon": e,
                "density": g,
                **density_sweep.seed_spread(rs),
                "mean_n_median": statistics.median(r["mean_n"] for r in ok) if ok else None,
                "paper_shape": paper_shape(c, e, g),
                "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in rs),
            }
        )
    return rows


def fit(records: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """One constant each, by least squares in log space (the mean log residual):
    m/m_t ≈ c · log2²(2·l·9c²/ε)/H2(γ), and Theorem 4's ñ ≈ c_amp · the same shape."""
    return density_sweep.fit_constants(records, lambda r: r["mean_n"])


def slopes(records: list[dict[str, Any]], max_density: float = 0.1) -> tuple[float, float] | None:
    """:func:`~sslth.experiments.density.within_slopes`, each (c, H, bias, ε, seed) a series."""
    return density_sweep.within_slopes(
        records,
        lambda r: (r["channels"], r["input_size"], r["bias"], r["epsilon"], r["seed"]),
        max_density,
    )


def variant_ratios(records: list[dict[str, Any]]) -> dict[str, tuple[float, float, float, int]]:
    """m/m_t of a variant over the base one (smallest input size, no bias) at the same (c, ε,
    seed, γ): min, median, max and the number of pairs. Theorem 4's count does not depend on
    the input size, so the size ratio should be about 1; a bias adds a block per layer."""
    found = {
        (r["channels"], r["input_size"], r["bias"], r["epsilon"], r["seed"], r["density"]): r
        for r in records
        if r["found"]
    }
    if not found:
        return {}
    base_size = min(key[1] for key in found)
    pairs: dict[str, list[float]] = {}
    for (c, h, b, e, s, g), r in sorted(found.items()):
        if h != base_size and not b:
            other = found.get((c, base_size, False, e, s, g))
            label = f"H = {h} over H = {base_size}"
        elif b:
            other = found.get((c, h, False, e, s, g))
            label = f"bias over no bias (H = {h})"
        else:
            continue
        if other is not None:
            ratio = r["overparameterization"] / other["overparameterization"]
            pairs.setdefault(label, []).append(ratio)
    return {label: (min(v), statistics.median(v), max(v), len(v)) for label, v in pairs.items()}


VARIANT_STYLES = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."))


def _variant_label(size: int, bias: bool) -> str:
    return f"input 1×{size}×{size}" + (", bias" if bias else "")


def _plot(records, c_ratio, c_amp, out: Path, config: Config) -> list[str]:
    """Top row: m/m_t against γ per ε (median over seeds, bars min–max) with the paper's
    c/H2(γ) and the Pensia / Malach regimes as guides. Bottom row: mean n over the fitted
    c_amp·log2²(2·l·9c²/ε)/H2(γ), with Theorem 3's dense c_amp for comparison."""
    from matplotlib.lines import Line2D

    from sslth.plot import PALETTE

    channels = sorted(config.channels)
    variants = [(h, b) for h in sorted(config.input_sizes) for b in sorted(config.biases)]
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(channels)}
    style = {v: VARIANT_STYLES[i % len(VARIANT_STYLES)] for i, v in enumerate(variants)}
    series = [(c, v) for c in channels for v in variants]
    # series are shifted a little along the log γ axis so their bars do not overlap: (c, bias)
    # groups apart, the input sizes of a group close together (their values nearly coincide),
    # so that the whole cluster at one γ stays narrower than the gap to the next γ
    groups = [(c, b) for c in channels for b in sorted(config.biases)]
    sizes = sorted(config.input_sizes)
    dodge = {
        (c, (h, b)): math.exp(
            0.045 * (groups.index((c, b)) - (len(groups) - 1) / 2)
            + 0.016 * (sizes.index(h) - (len(sizes) - 1) / 2)
        )
        for c, (h, b) in series
    }
    handles = [Line2D([], [], color=colour[c], lw=2.5, label=f"channels c = {c}") for c in channels]
    if len(variants) > 1:
        handles += style_handles(style, lambda v: _variant_label(*v))
    guides, fit_handles = [], []
    if c_amp is not None:
        dense = f"bottom: Theorem 3's\ndense c_amp = {THEOREM3_C_AMP:g}"
        guides = [(THEOREM3_C_AMP / c_amp, dict(color="0.3", ls=":", lw=1.8))]
        fit_handles = [
            Line2D([], [], color="black", lw=1.4, label=f"bottom: the fit,\nc_amp = {c_amp:.3g}"),
            Line2D([], [], color="0.3", ls=":", lw=1.8, label=dense),
        ]
    figure = DensityFigure(
        name="theorem4_density.png",
        title="Theorem 4 (CNN targets): overparameterization sslth.prune needs for density γ",
        width=4.4 * len(config.epsilons) + 3.4,
        x_label="density γ (kept / all random kernel entries)",
        bottom_label="mean n / fit\nc_amp·log2²(2l·9c²/ε)/H2(γ)",
        series=series,
        colour=colour,
        style=style,
        dodge=dodge,
        member=lambda r, key: (r["channels"], (r["input_size"], r["bias"])) == key,
        bottom=lambda r: r["mean_n"] / (c_amp * r["paper_shape"]),
        bottom_guides=guides,
        handles=handles,
        fit_handles=fit_handles,
    )
    return plot_density(records, config.epsilons, config.densities, figure, out)


def _summary(records, groups, c_ratio, c_amp, figures, config: Config) -> str:
    found = [r for r in records if r["found"]]
    cpu = sum(r["cpu_seconds"] for r in records)
    wall = sum(r["seconds"] for r in records)
    bad = [
        r
        for r in found
        if r["certified_error"] > r["epsilon"]
        or r["achieved_density"] > r["density"]
        or r["empirical_error"] > r["certified_error"]
    ]
    spread = density_sweep.fit_range(found, c_ratio)
    norms = "—"
    if found:
        powers = [p for r in records for p in r["norm_power"]]
        norms = f"{min(powers):.4f}…{max(powers):.4f}"
    lines = [
        "# Theorem 4 (CNN targets): density against overparameterization, measured",
        "",
        f"{len(records)} prune runs ({len(found)} found a ticket; {cpu:.0f} s of CPU, {wall:.0f} s "
        f"of wall time in prune) over channels {config.channels}, input sizes "
        f"{config.input_sizes}, biases {config.biases}, ε {config.epsilons}, seeds "
        f"{config.seeds}, densities {sorted(config.densities, reverse=True)} (each series stops "
        f"at its first failure), max_random_params {config.max_random_params:,}, "
        f"empirical_samples {config.empirical_samples:,}.",
        "",
        "Targets: Conv2d(1→c, 3×3, padding 1) → ReLU → Conv2d(c→c, 3×3, padding 1) on 1×H×H "
        "inputs, Gaussian kernels divided by a certified upper bound on their operator norm on "
        f"the layer's input shape (power-iteration estimates of the rescaled norms: {norms}). "
        "m and m_t count kernel entries (and biases). m/m_t is what `sslth.prune`'s automatic "
        "search with `refine=True` reaches: an upper bound on the smallest possible.",
        "",
        "## Comparison with the theory",
        "",
        f"- Every ticket found has certified error ≤ ε, density ≤ γ and empirical ≤ certified: "
        f"{'yes' if not bad else f'NO, {len(bad)} violate it'}.",
        f"- Fitted m/m_t ≈ c · log2²(2·l·9c²/ε)/H2(γ): c = {fmt(c_ratio)}; measured/fitted "
        f"ranges over {spread}.",
        f"- Theorem 4's ñ (mean n over layers) ≈ c_amp · log2²(2·l·9c²/ε)/H2(γ): c_amp = "
        f"{fmt(c_amp)} (Theorem 3's dense experiment: c_amp = {THEOREM3_C_AMP:g}"
        + (f", ratio {c_amp / THEOREM3_C_AMP:.2f})." if c_amp else ")."),
        density_sweep.slope_line(slopes(records), "series"),
    ]
    for label, (low, mid, high, count) in variant_ratios(records).items():
        lines.append(
            f"- m/m_t, {label} (same c, ε, seed, γ; {count} pairs): median {mid:.2f}, "
            f"range {low:.2f}…{high:.2f}."
        )
    lines += [
        "",
        "## Spread over seeds (m/m_t among the seeds that found a ticket)",
        "",
        "| c | H | bias | ε | γ | found/tried | min | median | max | median n | "
        "shape log²/H2 | median CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        lines.append(
            f"| {g['channels']} | {g['input_size']} | {'yes' if g['bias'] else 'no'} | "
            f"{g['epsilon']:g} | {g['density']:g} | {g['seeds_found']}/{g['seeds_tried']} | "
            f"{fmt(g['ratio_min'])} | {fmt(g['ratio_median'])} | {fmt(g['ratio_max'])} | "
            f"{fmt(g['mean_n_median'])} | {g['paper_shape']:.0f} | "
            f"{g['cpu_seconds_median']:.1f} |"
        )
    return "\n".join(lines + density_sweep.summary_tail(NAME, figures))
