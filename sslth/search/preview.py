"""``sslth.plan``: what a prune will cost, before paying for it.

For a target and (ε, density) it gives, per layer and without solving the layer, what
:func:`sslth.prune` starts from: the sizes n and k and the tolerance of the planner
(:mod:`sslth.search.plan`, the same pure functions the search calls), the number of subset-sum
instances, the random network's size m and m/m_t, the predicted density, and Eq. 29's n with the
constant fitted to our runs. Beside them, **estimates** of time and peak memory on this device:

- time of the first round: each layer's random pair is drawn as the prune draws it (the same
  seed, so the same first layer U and the same blocks) but restricted to a few random outputs,
  and a random sample of its instances is solved with the prune's solver on the prune's device.
  The solve time per instance (measured on calls of at least :data:`LARGE_CHUNK` rows, where it
  has settled) is extrapolated linearly to the layer's instances; drawing U, whose cost does
  not depend on the outputs, is timed in full, and drawing V and laying out the instances per
  output. The report (certificate, empirical check) is timed on a stand-in ticket of the same
  shapes. Later rounds (repair, growth, refine) multiply the first round by
  :data:`LATER_ROUNDS`, measured.
- memory: a formula (:func:`layer_memory`) for what each layer's solution holds (the random V
  as float32, the instances as float64 with their bool masks, the operators), summed over the
  layers (the search keeps every layer's), plus the largest temporary and a fixed overhead; and
  the same when the search grows its largest layer (it holds the old solution while solving the
  new).

Measured against real prunes from 64-32-10 to 784-500-10 (16 CPU cores and an H100; table in
docs/examples.md): the first-round time was overestimated by 1.2–1.5×, every whole prune fell
in the printed range, and the measured peak memory in the printed range (or below it).

Everything is in :func:`plan`; :class:`Plan` prints as a table (``sslth plan`` on the command
line).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from sslth import theory
from sslth.certify import PairOperator, empirical_error
from sslth.construct import PairSpec
from sslth.device import available_cores, resolve_device
from sslth.errors import ConfigError
from sslth.search.instances import BlockDraw, instance_rows, lay_out, target_values
from sslth.search.layer import BLOCK_GROWTH, DRAW_CACHE_BYTES, GROUP_INSTANCES
from sslth.search.options import PruneOptions, as_options
from sslth.search.plan import (
    choose_k,
    expected_kept,
    instance_count,
    plan_layer,
    random_params,
    sizes,
)
from sslth.sizes import check_random_params, layer_sizes
from sslth.subset_sum import make_solver, solve
from sslth.subset_sum.api import DEFAULT_MEMORY_BUDGET
from sslth.target import Target, TargetLayer, as_target

C_AMP = 0.0886  # Eq. 29's constant fitted to the Theorem 3 runs (docs/reproducing.md)
SAMPLE_INSTANCES = {"cpu": 12_000, "cuda": 48_000}  # most instances sampled per layer
# (a GPU needs larger batches before its rate per instance settles)
SAMPLE_SECONDS = 0.6  # solve time per layer after which the calibration stops sampling
WARM_UP_ROWS = 64  # the first chunk of each sign: warms the solver up, not counted
# rows per call from which the solver's rate is near that of a whole layer's call
LARGE_CHUNK = {"cpu": 1024, "cuda": 16_384}
HOUR = 3600.0
ASCENT_STEPS = 100  # the report's gradient ascent (Ticket.evaluate's default)
REPORT_FRACTION = 10  # the report's empirical check is timed on 1/10 of its points and steps
BEYOND_PARAMS = 10**15  # how far the planner looks for sizes beyond max_random_params
# (whole prune − report) / first round: 1.6–2.0 on 64-32-10 … 784-500-10 (docs/examples.md);
# 1 where the first round meets the request and refine changes nothing
LATER_ROUNDS = (1.0, 2.5)
# what a prune added beyond the formula's tensors on small targets (45 MiB over 7 MiB of
# tensors for 64-32-10): libraries loaded on first use, the Poisson tables, the report's batches
SEARCH_OVERHEAD = 48 * 1024**2
_BYTES_PER_SOLVER_ENTRY = 64  # sslth.subset_sum.api's bound on a method's temporaries


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
    transient_bytes: int | None  # estimated largest temporary while solving it
    sample: int = 0  # instances solved to calibrate the time
    per_instance_seconds: float | None = None  # the measured solve time per instance
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
    warnings: tuple[str, ...] = field(default_factory=tuple)

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

    @property
    def total_seconds(self) -> tuple[float, float] | None:
        """(low, high) estimate of the whole prune: the first round times
        :data:`LATER_ROUNDS`, plus the report."""
        if self.seconds is None:
            return None
        report = self.report_seconds or 0.0
        return tuple(self.seconds * factor + report for factor in LATER_ROUNDS)

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
            total_seconds=self.total_seconds,
        )
        return data

    def __str__(self) -> str:
        return _format(self)


# ------------------------------------------------------------------------------- sizes


def _shape(layer: TargetLayer) -> str:
    return layer.kind.label(layer.d_in, layer.d_out)


# ------------------------------------------------------------------------------ memory


def _fat_block(n: int, blocks: int) -> int:
    """Neurons of one sign in the fullest of ``blocks`` blocks (Binomial(2n, 1/2) each): the
    padded width of a layer's instance tensors. Mirrors ``thin_block_neurons``."""
    return min(2 * n, int(math.ceil(n + math.sqrt(2 * math.log(2 * blocks)) * math.sqrt(n / 2))))


def layer_memory(
    layer: TargetLayer, n: int, widths: tuple[int, int] | None = None, k: int | None = None
) -> tuple[int, int]:
    """Estimated bytes a layer's solve keeps and the largest temporary it makes.

    Args:
        layer: the target layer.
        n: neurons per input.
        widths: the padded widths of the positive and negative instance tensors (the largest
            block count of each sign), when known from a draw; else estimated.
        k: picks per instance (default: what :func:`choose_k` would pick at density 1).

    Returns:
        (kept, transient): kept is what the search holds while the layer has a solution (the
        random V as float32 while it fits the solution's draw cache, U's block diagonal, per
        instance its k picked positions (int64) and V entries (float32), its sum, magnitude
        and error (float64) and an existence flag, the masks and the float64 operators A and B
        with their magnitudes); transient is the largest temporary (a group of instances laid
        out in float64 and the solver's work on it, per worker, or the masks' int32 counts).
    """
    has_bias = layer.bias is not None
    blocks = layer.d_in + int(has_bias)
    hidden = 2 * n * blocks
    rows = layer.d_out * layer.kind.taps
    if k is None:
        k = max(1, choose_k(layer, n, 1.0))
    if widths is None:
        widths = (_fat_block(n, blocks), _fat_block(n, layer.d_in))
    kept = min(4 * rows * hidden, DRAW_CACHE_BYTES) + 4 * hidden  # V float32, U's diagonal
    kept += rows * hidden  # the bool mask of V
    kept += 4 * 8 * rows * layer.d_in  # A, B and their magnitudes, float64
    for block_count in (blocks, layer.d_in):  # the positive sign has the bias block
        kept += rows * block_count * (12 * k + 25)
    width = max(widths)
    group = GROUP_INSTANCES * width * (8 + 1 + _BYTES_PER_SOLVER_ENTRY)
    solver = min(group, DEFAULT_MEMORY_BUDGET // 2) * available_cores()
    counts = 4 * rows * hidden  # the masks' int32 pick counts
    return kept, max(solver, counts)


def _memory_limit(device: torch.device) -> tuple[int | None, str]:
    """Bytes the estimate is compared with: available RAM (``/proc/meminfo``'s MemAvailable,
    else the physical memory), or the GPU's total memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, f"{device} memory"
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "RAM"
    except (ValueError, OSError, AttributeError):
        return None, "RAM"


def _process_bytes() -> int:
    """Resident memory of this process now (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# ------------------------------------------------------------------------------ timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> float:
    _sync(device)
    return time.perf_counter()


@dataclass
class _Calibration:
    seconds: float
    sample: int
    widths: tuple[int, int]
    per_instance: float
    fixed: float  # U's draw
    note: str = ""


def calibrate_layer(
    layer: TargetLayer,
    index: int,
    n: int,
    k: int,
    tolerance: float,
    *,
    seed: int,
    device: torch.device,
    solver,
    sample_instances: int | None = None,
    sample_seconds: float = SAMPLE_SECONDS,
) -> _Calibration:
    """Estimate the first-round time of one layer by solving a sample of its own instances.

    The layer's random pair is drawn with the prune's seed restricted to a few random outputs
    (U, and so every block's sign counts, is the prune's own); its instances are laid out with
    :func:`sslth.search.instances.lay_out` and a random sample of them is solved with
    :func:`sslth.subset_sum.solve`, as :func:`sslth.search.layer.solve_layer` does.

    Args:
        layer: the target layer.
        index: its position (0-based; it seeds the pair as in the prune).
        n, k, tolerance: the planned sizes and tolerance.
        seed: the prune's seed.
        device: where the prune solves.
        solver: the prune's solver (built).
        sample_instances: most instances solved (default: :data:`SAMPLE_INSTANCES` for the
            device type).
        sample_seconds: stop sampling once this much solve time is measured.

    Returns:
        The estimate: U's draw (timed in full) + the per-output cost of V and the layout × the
        layer's outputs + the per-instance solve time × its instances.
    """
    generator = torch.Generator().manual_seed(seed % (2**31) + 7 * index + 1)
    kind = "cuda" if device.type == "cuda" else "cpu"
    large_chunk = LARGE_CHUNK[kind]
    if sample_instances is None:
        sample_instances = SAMPLE_INSTANCES[kind]
    spec = PairSpec.for_layer(layer, n, seed, index)
    # the prune's own blocks, a random few: each block's streams are its own, so a sample of
    # blocks costs (draw, layout, solve) exactly what those blocks cost in the prune
    per_block = 2 * spec.rows
    count = min(spec.d_in, max(1, math.ceil(sample_instances / per_block)))
    chosen = torch.randperm(spec.d_in, generator=generator)[:count].sort().values.tolist()
    targets = target_values(layer, spec)
    start = _clock(device)
    draws = {j: BlockDraw.of(spec, j) for j in chosen}
    signs = [
        lay_out(
            spec, targets, sign, {j: instance_rows(spec, j, sign) for j in chosen}, draws, device
        )
        for sign in (+1, -1)
    ]
    per_block_seconds = (_clock(device) - start) / count
    draw_u = 0.0  # U's block diagonal is drawn with each block, in per_block_seconds
    widths = (signs[0].values.shape[1], signs[1].values.shape[1])

    # a random sample of rows, both signs, that a k-pick exists in (the prune grows n where a
    # block is too small: that is reported, not timed)
    pools, short = [], 0
    for sign in signs:
        enough = sign.valid.sum(dim=1) >= k
        short += int((~enough).sum())
        rows = enough.nonzero().squeeze(1).cpu()
        pools.append(rows[torch.randperm(rows.numel(), generator=generator)])
    note = (
        f"{short} sampled instances have a block with fewer than k = {k} neurons of their "
        "sign: the prune will grow n"
        if short
        else ""
    )
    # chunks of growing size, alternating signs; the first of each sign only warms up
    # (allocations, kernels). The solver's cost per row falls with the batch until its groups
    # of rows (by k and valid count) are full: the rate is taken on the large chunks, which on
    # our measurements is within ~10% of the rate of a whole layer's call.
    chunks: list[tuple[int, float]] = []
    warm_up: list[tuple[int, float]] = []
    taken, size, spent, total, rate = [0, 0], WARM_UP_ROWS, 0.0, 0.0, 0.0
    warming = True
    limit = 5 * sample_seconds  # all the solving the calibration may do, warm-up included
    while sum(taken) < sample_instances and total < limit:
        if spent >= sample_seconds and any(rows >= large_chunk for rows, _ in chunks):
            break
        if rate > 0:  # slow instances (a large n): a smaller chunk, so the limit holds
            size = min(size, int((limit - total) / (2 * rate)))
            if size < 16:
                break
        progressed = False
        for sign, pool in enumerate(pools):
            rows = pool[taken[sign] : taken[sign] + size]
            if rows.numel() == 0:
                continue
            taken[sign] += rows.numel()
            progressed = True
            instances = signs[sign]
            rows = rows.to(instances.values.device)
            start = _clock(device)
            solve(
                instances.values[rows],
                instances.targets[rows],
                k,
                tolerance,
                valid=instances.valid[rows],
                method=solver,
                seed=1,
            )
            elapsed = _clock(device) - start
            total += elapsed
            rate = elapsed / rows.numel()
            if not warming or all(p.numel() <= size for p in pools):
                chunks.append((rows.numel(), elapsed))
                spent += elapsed
            else:
                warm_up.append((rows.numel(), elapsed))
        if not progressed:
            break
        warming, size = False, 4 * size
    large = [(rows, t) for rows, t in chunks if rows >= large_chunk] or chunks
    per_instance = sum(t for _, t in large) / max(sum(rows for rows, _ in large), 1)
    solved = sum(rows for rows, _ in chunks)
    # what the first calls cost beyond their rows (tables the solver builds once, lazy
    # initializations): a fresh process pays it too
    setup = sum(max(t - per_instance * rows, 0.0) for rows, t in warm_up)
    seconds = setup + per_block_seconds * spec.blocks + per_instance * instance_count(layer)
    return _Calibration(seconds, solved, widths, per_instance, draw_u, note)


def _timed(clock_device: torch.device, action, *args, **kwargs) -> float:
    """Seconds ``action(*args, **kwargs)`` takes, synchronized on ``clock_device``."""
    start = _clock(clock_device)
    action(*args, **kwargs)
    return _clock(clock_device) - start


def report_seconds(target: Target, options: PruneOptions, device: torch.device) -> float:
    """Estimated time of the final report (certificate and empirical check), measured on this
    device with the report's own functions on a stand-in ticket of the same shapes.

    The stand-in is the exact ticket (A = B = W): :func:`sslth.certify.empirical_error` costs
    the same on it as on the real one; it is run on a tenth of the points and ascent steps
    after a warm-up, and scaled. The certificate is timed as the operator norms it takes (of
    W, and of the (d_out, 2·d_in) error matrix).
    """
    operators = [
        PairOperator(
            layer.weight.to(device),
            layer.weight.to(device),
            torch.zeros(layer.d_out, dtype=torch.float64, device=device)
            if layer.bias is None
            else layer.bias.to(device),
            layer.kind,
        )
        for layer in target.layers
    ]
    samples = options.empirical_samples

    def check(count: int, steps: int) -> float:
        return _timed(
            device,
            empirical_error,
            target,
            operators,
            options.radius,
            samples=count,
            ascent_steps=steps,
            device=device,
        )

    check(8, 2)  # warm-up: the first call pays for lazy initializations (autograd, kernels)
    # a tenth of the points and of the ascent steps, times ten (the landmark points, a fixed
    # cost, are counted ten times: a slight overestimate); much shorter runs misled, as the
    # cost of a call on a few points is mostly latency
    empirical = REPORT_FRACTION * check(
        max(1, samples // REPORT_FRACTION), max(1, ASCENT_STEPS // REPORT_FRACTION)
    )
    norms = 0.0
    for layer in target.layers:
        norms += _timed(device, layer.kind.operator_norm, layer.weight)
        doubled = torch.cat([layer.weight, layer.weight], dim=1)
        norms += _timed(device, layer.kind.operator_norm, doubled)
    return empirical + norms


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
    if opts.construction != "2l":
        raise ConfigError(
            f"plan previews construction='2l' only; for construction={opts.construction!r} "
            "run prune (it reports ρ, k and m)"
        )
    target = as_target(target, input_shape=opts.input_shape)
    # beyond max_random_params the plan still says how far (up to BEYOND_PARAMS)
    check_random_params(
        layer_sizes(target), max(opts.max_random_params, BEYOND_PARAMS), opts.construction
    )
    device = resolve_device(opts.device)
    solver = make_solver(opts.method)
    depth = len(target.layers)
    layers = []
    for i, (layer, planned) in enumerate(zip(target.layers, sizes(target, opts), strict=True)):
        tolerance = planned.tolerance
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
        if not planned.found:
            beyond = plan_layer(layer, opts.density, tolerance, max_params=BEYOND_PARAMS)
            layers.append(
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
            continue
        n, k = planned.n, planned.k
        params = random_params(layer, n)
        calibration = (
            calibrate_layer(layer, i, n, k, tolerance, seed=opts.seed, device=device, solver=solver)
            if calibrate
            else None
        )
        kept, transient = layer_memory(
            layer, n, None if calibration is None else calibration.widths, k=k
        )
        layers.append(
            LayerPreview(
                **common,
                n=n,
                k=k,
                random_params=params,
                expected_density=expected_kept(layer, n, k) / params,
                seconds=None if calibration is None else calibration.seconds,
                memory_bytes=kept,
                transient_bytes=transient,
                sample=0 if calibration is None else calibration.sample,
                per_instance_seconds=None if calibration is None else calibration.per_instance,
                note="" if calibration is None else calibration.note,
            )
        )
    report = report_seconds(target, opts, device) if calibrate else None
    available, what = _memory_limit(device)
    return _finish(
        layers, opts, target, device, report, available, what, time.perf_counter() - started
    )


def _finish(layers, opts, target, device, report, available, what, seconds_taken) -> Plan:
    """The plan with its totals and warnings."""
    planned = [layer for layer in layers if layer.n is not None]
    complete = len(planned) == len(layers)
    timed = complete and all(layer.seconds is not None for layer in layers)
    memory = grown = None
    if complete:
        memory = (
            SEARCH_OVERHEAD
            + sum(layer.memory_bytes for layer in layers)
            + max(layer.transient_bytes for layer in layers)
        )
        # a grown layer is solved while the best candidate still holds its old solution
        grown = memory + int(BLOCK_GROWTH * max(layer.memory_bytes for layer in layers))
    process = _process_bytes()
    plan_ = Plan(
        layers=tuple(layers),
        epsilon=opts.epsilon,
        density=opts.density,
        radius=opts.radius,
        device=str(device),
        solver=opts.method if isinstance(opts.method, str) else repr(opts.method),
        widths=target.widths,
        seconds=sum(layer.seconds for layer in layers) if timed else None,
        report_seconds=report,
        memory_bytes=memory,
        memory_grown_bytes=grown,
        process_bytes=process,
        available_bytes=available,
        available_what=what,
        planning_seconds=seconds_taken,
    )
    return Plan(**{**plan_.__dict__, "warnings": tuple(_warnings(plan_, opts))})


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
        base = plan_.process_bytes if plan_.device == "cpu" else 0
        need, grown = plan_.memory_bytes + base, plan_.memory_grown_bytes + base
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


def _bytes(count: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
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
    lines.append(
        "n, k, tolerance: what prune's search starts from (the planner; later rounds may change "
        "them). density: the planner's predicted kept fraction. Eq.29 n: the paper's n* = "
        f"c_amp·log2²(2·l·d_in·d_out/ε)/H2(γ) with c_amp = {C_AMP} fitted to our runs "
        "(docs/reproducing.md)."
    )
    if plan_.seconds is not None:
        sample = sum(layer.sample for layer in plan_.layers)
        low, high = LATER_ROUNDS
        low_total, high_total = plan_.total_seconds
        lines.append(
            f"time: ESTIMATES on {plan_.device}. First round (draw, lay out and solve every "
            f"instance once) {_duration(plan_.seconds)}: {sample:,} instances of the layers' "
            "own random networks were solved here, and the time extrapolated linearly in the "
            f"number of instances. Report (certificate, empirical check) "
            f"{_duration(plan_.report_seconds)}, timed on a stand-in ticket. Whole prune: "
            f"{_duration(low_total)} to {_duration(high_total)} (later rounds took "
            f"{low:g}–{high:g}× the first in our measurements); a busy machine is slower."
        )
    if plan_.memory_bytes is not None:
        where = (
            f"on {plan_.device} (the host also holds the random V and the CUDA runtime)"
            if plan_.device.startswith("cuda")
            else f"on top of this process's {_bytes(plan_.process_bytes)}"
        )
        room = (
            f"{_bytes(plan_.available_bytes)} of {plan_.available_what}"
            if plan_.available_bytes is not None
            else "the machine's memory is unknown"
        )
        lines.append(
            f"memory: an ESTIMATE of the prune's peak, {_bytes(plan_.memory_bytes)} at these "
            f"sizes, up to {_bytes(plan_.memory_grown_bytes)} if the search grows the largest "
            "layer (a formula: each layer's random V as float32, its instances as float64 with "
            "bool masks, its operators, plus the largest temporary and a fixed overhead), "
            f"{where}; {room}."
        )
    for layer in plan_.layers:
        if layer.note:
            lines.append(f"note: layer {layer.index}: {layer.note}")
    for warning in plan_.warnings:
        lines.append(f"WARNING: {warning}")
    lines.append(f"(planned in {plan_.planning_seconds:.2g} s)")
    return "\n".join(lines)


__all__ = ["LayerPreview", "Plan", "calibrate_layer", "layer_memory", "plan"]
