"""``sslth.plan``: what a prune will cost, before paying for it.

For a target and (ε, density) it gives, per layer and without solving the layer, what
:func:`sslth.prune` starts from: the sizes n and k and the tolerance of the planner
(:mod:`sslth.search.sizing`, the same pure functions the search calls), the number of subset-sum
instances, the random network's size m and m/m_t, the predicted density, and Eq. 29's n with the
constant fitted to our runs. Beside them, **estimates** of time and peak memory on this device
(:mod:`sslth.search.estimate`: how they are made, what is timed and what is modelled).

Everything is in :func:`plan`; :class:`Plan` prints as a table (``sslth plan`` on the command
line). Measured against fresh-process prunes: docs/benchmarks.md, "sslth plan against the prune".
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field

from sslth import theory
from sslth.device import default_workers, intra_op_threads, resolve_device
from sslth.rounding import DTYPES
from sslth.search import estimate
from sslth.search.floor import rounding_refusal
from sslth.search.layer import BLOCK_GROWTH
from sslth.search.options import PruneOptions, as_options
from sslth.search.sizing import (
    LayerPlan,
    expected_kept,
    instance_count,
    plan_layer,
    random_params,
    sizes,
)
from sslth.sizes import check_random_params, layer_sizes
from sslth.sparse_rounding import deployed_arithmetic
from sslth.subset_sum import make_solver
from sslth.target import Target, TargetLayer, as_target

C_AMP = 0.0886  # Eq. 29's constant fitted to the Theorem 3 runs (docs/reproducing.md)
HOUR = 3600.0
BEYOND_PARAMS = 10**15  # how far the planner looks for sizes beyond max_random_params


@dataclass(frozen=True)
class LayerPreview:
    """The plan of one target layer.

    ``n``, ``k``, ``random_params``, ``expected_density``, ``seconds`` and ``memory_bytes`` are
    None where no size within ``max_random_params`` is predicted to work (``needed_n`` then says
    what would).
    """

    index: int  # 1-based, as in the report
    shape: str  # "784->500", or "conv 1->8 3x3"
    n: int | None
    k: int | None
    tolerance: float
    instances: int
    target_params: int
    random_params: int | None
    expected_density: float | None
    paper_n: float  # Eq. 29's n with c_amp = C_AMP
    seconds: float | None  # estimated first-round time (None: not calibrated)
    memory_bytes: int | None  # estimated bytes the layer's solution keeps
    transient_bytes: int | None  # estimated bytes its solve holds on top while it runs
    sample: int = 0  # instances solved to calibrate the time
    per_instance_seconds: float | None = None  # the measured solve time per instance
    refine_steps: int = 0  # smaller n refine may try on this layer (0: not refined)
    refine_step_seconds: float | None = None  # estimated time of one refine step
    needed_n: int | None = None  # beyond the limit: the smallest n predicted to work, if any
    needed_params: int | None = None
    note: str = ""

    @property
    def overparameterization(self) -> float | None:
        """m_i / m_t,i."""
        return None if self.random_params is None else self.random_params / self.target_params


@dataclass(frozen=True)
class Plan:
    """What :func:`sslth.prune` would start from, and what it is estimated to cost."""

    layers: tuple[LayerPreview, ...]
    epsilon: float
    density: float
    radius: float
    device: str
    solver: str
    widths: list[int]
    seconds: float | None  # first round, all layers (None: some layer is not calibrated)
    report_seconds: float | None  # the final report: certificate and empirical check
    memory_bytes: int | None  # estimated peak of the prune's tensors at the planned sizes
    memory_grown_bytes: int | None  # … when the search grows its largest layer once
    process_bytes: int  # resident memory of this process (the baseline a prune adds to)
    available_bytes: int | None  # the memory the estimate is compared with
    available_what: str  # "available RAM", "GPU memory", …
    planning_seconds: float  # how long plan() took
    sizing_seconds: float = 0.0  # choosing n and k (the prune does the same)
    certificate_seconds: float | None = None  # one certificate of the whole network
    round_seconds: float | None = None  # per search round: operators, density, certificate
    warnings: tuple[str, ...] = field(default_factory=tuple)
    construction: str = "2l"  # "l+1": n is ρ_{t−1}, k is k_t (sslth/lplus1/preview.py)

    @property
    def within_limits(self) -> bool:
        """Every layer has sizes within ``max_random_params``."""
        return all(layer.n is not None for layer in self.layers)

    @property
    def random_params(self) -> int | None:
        """m: the random network's weights (None if some layer has no sizes)."""
        if not self.within_limits:
            return None
        return sum(layer.random_params for layer in self.layers)

    def _refine(self, steps_of) -> float:
        """Refine's time when it tries ``steps_of(steps)`` of each layer's steps: each a
        re-solve of the layer and a certificate."""
        return sum(
            steps_of(layer.refine_steps) * (layer.refine_step_seconds + self.certificate_seconds)
            for layer in self.layers
            if layer.refine_steps
        )

    @property
    def expected_seconds(self) -> float | None:
        """Estimated whole prune: sizing, the first round, one search round's bookkeeping,
        refine trying ``REFINE_EXPECTED_STEPS`` smaller n per layer, and the report."""
        if self.seconds is None:
            return None
        return (
            self.sizing_seconds
            + self.seconds
            + self.round_seconds
            + self._refine(lambda steps: min(steps, estimate.REFINE_EXPECTED_STEPS))
            + self.report_seconds
        )

    @property
    def total_seconds(self) -> tuple[float, float] | None:
        """(low, high) estimate of the whole prune: refine stopping at its first step, or
        trying all; the high one adds a second round (repairs, growth, tightening re-solve at
        most every instance once more)."""
        if self.seconds is None:
            return None
        fixed = self.sizing_seconds + self.seconds + self.round_seconds + self.report_seconds
        low = fixed + self._refine(lambda steps: min(steps, 1))
        high = fixed + self.seconds + self.round_seconds + self._refine(lambda steps: steps)
        return low, high

    @property
    def peak_bytes(self) -> int | None:
        """Estimated peak resident memory of a process that prunes: its baseline (this
        process's, on the CPU) plus the prune's tensors."""
        if self.memory_bytes is None:
            return None
        return self.memory_bytes + (self.process_bytes if self.device == "cpu" else 0)

    @property
    def target_params(self) -> int:
        return sum(layer.target_params for layer in self.layers)

    @property
    def predicted_density(self) -> float | None:
        """Expected kept weights / m, from the planner's model of the picks."""
        if not self.within_limits:
            return None
        kept = sum(layer.expected_density * layer.random_params for layer in self.layers)
        return kept / self.random_params

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            within_limits=self.within_limits,
            random_params=self.random_params,
            target_params=self.target_params,
            predicted_density=self.predicted_density,
            expected_seconds=self.expected_seconds,
            total_seconds=self.total_seconds,
            peak_bytes=self.peak_bytes,
        )
        return data

    def __str__(self) -> str:
        return _format(self)


# ------------------------------------------------------------------------------- sizes


def _shape(layer: TargetLayer) -> str:
    return layer.kind.label(layer.d_in, layer.d_out)


# -------------------------------------------------------------------------------- plan


def plan(
    target,
    epsilon: float | PruneOptions,
    density: float | None = None,
    *,
    calibrate: bool = True,
    **options,
) -> Plan:
    """What :func:`sslth.prune` would start from for this request, and what it would cost,
    without running it.

    Args:
        target: anything :func:`sslth.prune` takes (an ``nn.Sequential``, a list of weights or
            (weight, bias) pairs, …).
        epsilon, density: the request, as for :func:`sslth.prune`; or a whole
            :class:`sslth.PruneOptions` as ``epsilon`` (``plan(target, options)``).
        calibrate: measure this device's solve rate on a sample of each layer's instances to
            estimate the time (a second or so per layer); False skips it (no time estimate).
        **options: the fields of :class:`sslth.PruneOptions` (seed, device, n, k, method,
            max_random_params, radius, input_shape, …), as for :func:`sslth.prune`.

    Returns:
        The :class:`Plan`: per layer n, k, the tolerance, the instances, m and m/m_t, the
        predicted density, Eq. 29's n (c_amp = 0.0886), the estimated time and memory; and
        warnings when the request is beyond the limits or the machine. ``print(plan)`` shows
        it as a table.

    Raises:
        ConfigError: an unknown or invalid option.
        TargetError: a target sslth cannot take.
    """
    started = time.perf_counter()
    opts = as_options(epsilon, density, options, caller="plan", extra=("calibrate",))
    target = as_target(target, input_shape=opts.input_shape)
    # beyond max_random_params the plan still says how far (up to BEYOND_PARAMS)
    check_random_params(
        layer_sizes(target), max(opts.max_random_params, BEYOND_PARAMS), opts.construction
    )
    if opts.construction == "l+1":
        from sslth.lplus1.preview import plan_lplus1_preview

        device = str(resolve_device(opts.device))
        return plan_lplus1_preview(target, opts, started=started, device=device)
    baseline = estimate.process_bytes()  # before any sample: what a pruning process starts at
    # as prune runs: one intra-op thread (torch's pool made the norms of the sizing 18 times
    # slower than in the prune on a loaded 2-core machine, and every sample 3-5 times)
    with intra_op_threads(1):
        return _plan(target, opts, calibrate, baseline, started)


def _plan(target: Target, opts: PruneOptions, calibrate: bool, baseline: int, started) -> Plan:
    device = resolve_device(opts.device)
    solver = make_solver(opts.method)
    sizing = time.perf_counter()
    planned = sizes(target, opts)
    sizing = time.perf_counter() - sizing  # what the prune's own sizing takes
    arithmetic = deployed_arithmetic(DTYPES[opts.dtype], device, target)
    refusal = rounding_refusal(target, planned, opts, arithmetic)  # prune's own refusal
    workers = opts.threads or default_workers(device)  # as the search's
    layers = [
        _layer_preview(target, i, size, opts, calibrate, device, solver, workers)
        for i, size in enumerate(planned)
    ]
    timed = calibrate and all(layer.seconds is not None for layer in layers)
    costs = None
    if timed:
        certificate = estimate.certificate_seconds(target, device)
        costs = dict(
            sizing_seconds=sizing,
            certificate_seconds=certificate,
            round_seconds=certificate + sum(layer.round_seconds for layer in layers),
            report_seconds=certificate
            + sum(layer.regenerate_seconds for layer in layers)
            + estimate.empirical_seconds(target, opts, device),
        )
    plan_ = _finish(
        [layer.preview for layer in layers], opts, target, device, costs, baseline, started
    )
    if refusal is None:
        return plan_
    return dataclasses.replace(plan_, warnings=(*plan_.warnings, refusal))


@dataclass(frozen=True)
class _Planned:
    """A layer's preview and the times that only the whole plan uses."""

    preview: LayerPreview
    round_seconds: float = 0.0  # per search round: its operator and density
    regenerate_seconds: float = 0.0  # the report's regeneration of its pair

    @property
    def seconds(self) -> float | None:
        return self.preview.seconds


def _layer_preview(
    target: Target, i: int, size: LayerPlan, opts, calibrate, device, solver, workers
) -> _Planned:
    """One layer's row of the plan: its sizes, and the estimates when ``calibrate``."""
    layer, depth, tolerance = target.layers[i], len(target.layers), size.tolerance
    target_params = layer.weight.numel() + (0 if layer.bias is None else layer.bias.numel())
    paper_n = (
        theory.paper_neurons_per_input(
            C_AMP, depth, layer.d_in, layer.d_out, opts.epsilon, opts.density
        )
        if 0 < opts.density < 1
        else math.inf
    )
    common = dict(
        index=i + 1,
        shape=_shape(layer),
        tolerance=tolerance,
        instances=instance_count(layer),
        target_params=target_params,
        paper_n=paper_n,
    )
    if not size.found:
        beyond = plan_layer(layer, opts.density, tolerance, max_params=BEYOND_PARAMS)
        return _Planned(
            LayerPreview(
                **common,
                n=None,
                k=None,
                random_params=None,
                expected_density=None,
                seconds=None,
                memory_bytes=None,
                transient_bytes=None,
                needed_n=None if beyond is None else beyond[0],
                needed_params=None if beyond is None else random_params(layer, beyond[0]),
            )
        )
    n, k = size.n, size.k
    params = random_params(layer, n)
    kept, transient = estimate.layer_memory(layer, n, k, workers, device)
    preview = LayerPreview(
        **common,
        n=n,
        k=k,
        random_params=params,
        expected_density=expected_kept(layer, n, k) / params,
        seconds=None,
        memory_bytes=kept,
        transient_bytes=transient,
    )
    if not calibrate:
        return _Planned(preview)
    cost = estimate.time_layer(
        layer, i, n, k, tolerance, seed=opts.seed, device=device, solver=solver, workers=workers
    )
    steps = estimate.refine_steps(layer, n, opts.density) if cost.refinable else 0
    return _Planned(
        dataclasses.replace(
            preview,
            seconds=cost.first_round,
            sample=cost.sample,
            per_instance_seconds=cost.per_instance,
            refine_steps=steps,
            refine_step_seconds=cost.solve + cost.bookkeeping if steps else None,
            note=cost.note,
        ),
        round_seconds=cost.bookkeeping,
        regenerate_seconds=cost.regenerate,
    )


def _finish(layers, opts, target, device, costs, baseline, started) -> Plan:
    """The plan with its totals and warnings."""
    complete = all(layer.n is not None for layer in layers)
    memory = grown = None
    if complete:
        memory = estimate.SEARCH_OVERHEAD + estimate.peak_memory(
            [(layer.memory_bytes, layer.transient_bytes) for layer in layers],
            estimate.report_memory(target, opts.empirical_samples),
        )
        # a grown layer is solved while the best candidate still holds its old solution
        grown = memory + int(BLOCK_GROWTH * max(layer.memory_bytes for layer in layers))
    available, what = estimate.memory_limit(device)
    timed = costs is not None and complete
    plan_ = Plan(
        layers=tuple(layers),
        epsilon=opts.epsilon,
        density=opts.density,
        radius=opts.radius,
        device=str(device),
        solver=opts.method if isinstance(opts.method, str) else repr(opts.method),
        widths=target.widths,
        seconds=sum(layer.seconds for layer in layers) if timed else None,
        report_seconds=costs["report_seconds"] if timed else None,
        memory_bytes=memory,
        memory_grown_bytes=grown,
        process_bytes=baseline,
        available_bytes=available,
        available_what=what,
        planning_seconds=time.perf_counter() - started,
        **({k: v for k, v in costs.items() if k != "report_seconds"} if timed else {}),
    )
    return dataclasses.replace(plan_, warnings=tuple(_warnings(plan_, opts)))


def _warnings(plan_: Plan, opts: PruneOptions) -> list[str]:
    """One line per reason the request is beyond what prune or this machine can do."""
    found = []
    for layer in plan_.layers:
        if layer.n is not None:
            continue
        if layer.needed_n is None:
            found.append(
                f"layer {layer.index} ({layer.shape}): no random network of up to "
                f"{BEYOND_PARAMS:.0e} weights is predicted to reach density {opts.density:g} "
                f"at tolerance {layer.tolerance:.3g}: far beyond any machine; raise density "
                "or ε"
            )
        else:
            found.append(
                f"layer {layer.index} ({layer.shape}): needs n = {layer.needed_n:,} "
                f"(m = {layer.needed_params:,} random weights, about "
                f"{_bytes(4 * layer.needed_params)} as float32), over max_random_params = "
                f"{opts.max_random_params:,}: prune would refuse; raise density or ε (or "
                "max_random_params, if the machine holds it)"
            )
    if plan_.seconds is not None and plan_.total_seconds[0] > HOUR:
        low, high = plan_.total_seconds
        found.append(
            f"the prune is estimated to take {_duration(low)} to {_duration(high)} on "
            f"{plan_.device}"
        )
    if plan_.memory_bytes is not None and plan_.available_bytes is not None:
        need = plan_.peak_bytes
        grown = need + plan_.memory_grown_bytes - plan_.memory_bytes
        if need > plan_.available_bytes:
            found.append(
                f"the estimated peak memory, {_bytes(need)}, exceeds the "
                f"{_bytes(plan_.available_bytes)} of {plan_.available_what}"
            )
        elif grown > plan_.available_bytes:
            found.append(
                f"the estimated peak memory if the search grows a layer, {_bytes(grown)}, "
                f"exceeds the {_bytes(plan_.available_bytes)} of {plan_.available_what}"
            )
    return found


# ------------------------------------------------------------------------------ format


def _bytes(count: float | None) -> str:
    if count is None:  # not estimated (construction l+1)
        return "-"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            value = count / size
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{int(count)} B"


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.3g} days"
    if seconds >= 2 * HOUR:
        return f"{seconds / HOUR:.3g} h"
    if seconds >= 120:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def _count(value: float) -> str:
    if value >= 10**6:
        return f"{value / 1e6:.3g}M"
    if value >= 10**4:
        return f"{value / 1e3:.3g}k"
    return f"{value:,.0f}"


def _estimate_lines(plan_: Plan) -> list[str]:
    """The table's notes on the time and memory estimates (none where not estimated)."""
    lines = []
    if plan_.seconds is not None:
        sample = sum(layer.sample for layer in plan_.layers)
        low, high = plan_.total_seconds
        refined = sum(1 for layer in plan_.layers if layer.refine_steps)
        lines.append(
            f"time: ESTIMATES on {plan_.device}, whole prune about "
            f"{_duration(plan_.expected_seconds)} ({_duration(low)} to {_duration(high)}). "
            f"First round (draw, lay out and solve every instance once) "
            f"{_duration(plan_.seconds)}: {sample:,} instances of sample layers were solved "
            "here with the prune's own code and threads, and the time scaled by the number of "
            f"instances. Sizing {_duration(plan_.sizing_seconds)}; certificate "
            f"{_duration(plan_.certificate_seconds)} per round; refine on {refined} "
            f"layer{'s' if refined != 1 else ''}; report (certificate, empirical check) "
            f"{_duration(plan_.report_seconds)}. The range: refine stopping at once or trying "
            "every step, and a second round of re-solves; a busier machine is slower."
        )
    if plan_.memory_bytes is not None:
        where = (
            f"on {plan_.device} (the host also holds the random V and the CUDA runtime)"
            if plan_.device.startswith("cuda")
            else f"{_bytes(plan_.peak_bytes)} with this process's {_bytes(plan_.process_bytes)}"
        )
        room = (
            f"{_bytes(plan_.available_bytes)} of {plan_.available_what}"
            if plan_.available_bytes is not None
            else "the machine's memory is unknown"
        )
        lines.append(
            f"memory: an ESTIMATE of the prune's peak, {_bytes(plan_.memory_bytes)} of tensors "
            f"at these sizes ({where}), up to {_bytes(plan_.memory_grown_bytes)} if the "
            "search grows the largest layer (byte counts of the search's storage: each "
            "layer's picks, random V and masks, kept; the layer being solved, its laid-out "
            f"instances and the solver's temporaries; a fixed overhead); {room}."
        )
    return lines


def _format(plan_: Plan) -> str:
    widths = "-".join(map(str, plan_.widths))
    lines = [
        f"sslth plan: target {widths} ({plan_.target_params:,} weights), ε = "
        f"{plan_.epsilon:g}, density <= {plan_.density:g}, radius {plan_.radius:g}, device "
        f"{plan_.device}, solver {plan_.solver}",
        "",
        f"  {'layer':>5}  {'shape':<16} {'n':>6} {'k':>3} {'tolerance':>10} {'instances':>10} "
        f"{'m':>8} {'m/m_t':>7} {'density':>8} {'Eq.29 n':>8} {'time':>9} {'memory':>10}",
    ]
    for layer in plan_.layers:
        if layer.n is None:
            lines.append(
                f"  {layer.index:>5}  {layer.shape:<16} {'-':>6} {'-':>3} {layer.tolerance:>10.3g} "
                f"{_count(layer.instances):>10} {'-':>8} {'-':>7} {'-':>8} "
                f"{layer.paper_n:>8.3g} {'-':>9} {'-':>10}   beyond max_random_params"
            )
            continue
        time_text = "-" if layer.seconds is None else _duration(layer.seconds)
        lines.append(
            f"  {layer.index:>5}  {layer.shape:<16} {layer.n:>6} {layer.k:>3} "
            f"{layer.tolerance:>10.3g} {_count(layer.instances):>10} "
            f"{_count(layer.random_params):>8} {layer.overparameterization:>7.4g} "
            f"{layer.expected_density:>8.4g} {layer.paper_n:>8.3g} {time_text:>9} "
            f"{_bytes(layer.memory_bytes):>10}"
        )
    if plan_.within_limits:
        lines.append(
            f"  {'all':>5}  {'':<16} {'':>6} {'':>3} {'':>10} "
            f"{_count(sum(layer.instances for layer in plan_.layers)):>10} "
            f"{_count(plan_.random_params):>8} "
            f"{plan_.random_params / plan_.target_params:>7.4g} "
            f"{plan_.predicted_density:>8.4g} {'':>8} "
            f"{'-' if plan_.seconds is None else _duration(plan_.seconds):>9} "
            f"{_bytes(plan_.memory_bytes):>10}"
        )
    lines.append("")
    if plan_.construction == "l+1":
        lines.append(
            "construction l+1: n is ρ, the copies of each input a layer's instances choose "
            "from (layer 1: univariate neurons per input and sign); m is module t's weights "
            "(with module 0's for layer 1). Time and memory are not estimated for l+1 (the "
            "estimates model the 2l solve)."
        )
    lines.append(
        "n, k, tolerance: what prune's search starts from (the planner; later rounds may change "
        "them). density: the planner's predicted kept fraction. Eq.29 n: the paper's n* = "
        f"c_amp·log2²(2·l·d_in·d_out/ε)/H2(γ) with c_amp = {C_AMP} fitted to our runs "
        "(docs/reproducing.md)."
    )
    lines += _estimate_lines(plan_)
    for layer in plan_.layers:
        if layer.note:
            lines.append(f"note: layer {layer.index}: {layer.note}")
    for warning in plan_.warnings:
        lines.append(f"WARNING: {warning}")
    lines.append(f"(planned in {plan_.planning_seconds:.2g} s)")
    return "\n".join(lines)


__all__ = ["LayerPreview", "Plan", "plan"]
