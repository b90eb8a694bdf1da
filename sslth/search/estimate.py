"""What a prune will cost on this device, estimated without running it: time, by timing the
prune's own code on a sample of each layer; memory, from the byte counts the search's storage
declares (:mod:`sslth.search.layer`); and the machine's memory, from ``/proc``.

Time. Everything is timed as :func:`sslth.prune` runs it: torch's intra-op pool at one thread,
the layer's instances shared among ``threads`` workers. (Timed with torch's default pool, the
many small operators of a solve ran 3-5 times slower than in the prune on 2 cores, and far
slower on many: that made ``sslth plan`` estimate 28-71 min for a 784-500-10 prune of under a
minute.) For each layer, :func:`time_layer` solves a *sample layer*, the target layer restricted
to a few random inputs (each input is one block of the random pair: its instances and its
random streams are independent of the others), with :func:`sslth.search.layer.solve_layer`
itself, so that the estimate follows the solve path as it gets faster. The layer's time is the
sample's, scaled by the layer's instances over the sample's; the first call of each layer, on a
one-weight layer, is timed apart and counted once (a fresh process's lazy initializations, the
solver's tables for the layer's k). The bookkeeping each search round does (the pair operator,
the density) and the report's regeneration of the pair (``masked_pair_operator``) are timed on
the sample's solution and scaled the same way; the certificate's operator norms are timed on
the target's own weights; the report's empirical check, on a stand-in ticket of the same shapes:
its gap on one batch of points and a few steps of its ascent, scaled by the points and steps the
check runs (timing a tenth of the check cost 2-3 s of a LeNet-5 plan; the batch, 0.2-0.5 s).

Later steps are modelled, not timed: refine (:mod:`sslth.search.refine`) re-solves each layer
of at most ``REFINE_MAX_INSTANCES`` instances 1 to ``REFINE_STEPS`` times (expected:
``REFINE_EXPECTED_STEPS``), each followed by a certificate; the search's other rounds (repair,
growth, tightening) re-solve some instances of a layer (at most one more first round, in the
high estimate).

Memory. A layer's solution keeps its picks, V's drawn columns, its masks and its operators
(:func:`layer_memory`); while it is solved, every laid-out batch of the layer is held until the
picks are stored, with one chunk's layout and solver temporaries on each worker. The search
keeps every layer's solution, so the peak is the largest, over the layers in order, of what
the layers before keep plus the layer's own kept and transient bytes, or, at the end, of every
solution plus the report's empirical check (a batch of points through the widest layer: for a
CNN on 28×28 images, the largest part of the peak). It comes on top of the process's own
resident memory (the interpreter, torch, the target).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

from sslth.certificate import (
    PairOperator,
    _landmarks,
    empirical_batch,
    masked_pair_operator,
    ticket_forward,
)
from sslth.construct import PairSpec
from sslth.device import available_cores, intra_op_threads
from sslth.search.layer import (
    chunk_bytes,
    chunk_instances,
    draw_bytes,
    held_bytes,
    masks_bytes,
    picks_bytes,
    solve_layer,
)
from sslth.search.options import PruneOptions
from sslth.search.refine import REFINE_MAX_INSTANCES, REFINE_STEPS, SHRINK
from sslth.search.sizing import choose_k, instance_count
from sslth.target import Target, TargetLayer

# instances of a layer's sample: enough that a solver call is batched as in the prune (a GPU
# needs larger batches before its rate per instance settles)
SAMPLE_INSTANCES = {"cpu": 8192, "cuda": 65_536}
SAMPLE_BLOCKS = 32  # … over at least this many blocks (inputs), where the layer has them
ASCENT_STEPS = 100  # the report's gradient ascent (Ticket.evaluate's default)
# refine steps a layer takes, as expected: it tried 1-3 (1.75 on average) on the four refined
# layers of the digits 64-32-10 MLP and a random 196-100-10 (docs/benchmarks.md)
REFINE_EXPECTED_STEPS = 2
# the report's empirical check: its gap timed on a batch of this many points, its gradient
# ascent (from the two worst landmarks and the two worst points of each random kind) for this
# many steps
PROBE_POINTS, ASCENT_POINTS, ASCENT_PROBE = 128, 6, 5
# what a prune added beyond the formula's tensors on small targets (45 MiB over 7 MiB of
# tensors for 64-32-10): libraries loaded on first use, the Poisson tables, the report's batches
SEARCH_OVERHEAD = 48 * 1024**2


@dataclass(frozen=True)
class LayerTime:
    """Estimated seconds of one layer's work in a prune, on this device."""

    solve: float  # drawing, laying out and solving every instance once
    setup: float  # the layer's first call beyond its instances (counted once)
    bookkeeping: float  # per search round: the pair operator, the density
    regenerate: float  # the report's pair operator, regenerated from the masks
    sample: int  # instances solved to measure it
    per_instance: float  # measured seconds per instance (solve / instances)
    refinable: bool  # refine re-solves this layer
    note: str = ""

    @property
    def first_round(self) -> float:
        return self.setup + self.solve


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _timed(clock: torch.device, action, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of ``action(*args, **kwargs)``, synchronized on ``clock``."""
    start = _clock(clock)
    result = action(*args, **kwargs)
    return _clock(clock) - start, result


def _sample_layer(
    layer: TargetLayer, inputs: torch.Tensor, outputs: int | None = None
) -> TargetLayer:
    """The layer restricted to the given inputs and its first ``outputs`` outputs (all: None)."""
    weight = layer.weight[:outputs, inputs]
    bias = None if layer.bias is None else layer.bias[:outputs]
    return TargetLayer(weight, bias, layer.kind)


def _sample_of(layer: TargetLayer, instances: int, seed: int) -> TargetLayer:
    """A sample layer of about ``instances`` instances: random inputs, over at least
    ``SAMPLE_BLOCKS`` of them where the layer has them (the solver batches instances by their
    block's width: a few blocks would batch worse than the whole layer), and fewer outputs if
    need be; the whole layer, as the prune draws it, where it is no larger."""
    per_output = 2 * layer.kind.taps
    blocks = min(layer.d_in, max(SAMPLE_BLOCKS, instances // (per_output * layer.d_out)))
    outputs = min(layer.d_out, max(1, math.ceil(instances / (per_output * blocks))))
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randperm(layer.d_in, generator=generator)[:blocks].sort().values
    sample = _sample_layer(layer, inputs, outputs)
    return layer if instance_count(sample) >= instance_count(layer) else sample


def _parallel_gain(layer: TargetLayer, sample: TargetLayer, n: int, device, workers: int) -> float:
    """How much faster ``workers`` threads solve the whole layer than the sample's threads
    (two at most) solved the sample: the solve shares chunks of consecutive blocks among the
    workers, at least ``2 workers − 1`` of them (:meth:`LayerSolution._chunks`)."""
    width = _fat_block(n, layer.d_in + int(layer.bias is not None))
    per_chunk = chunk_instances(device, width)
    cores = available_cores() if device.type == "cpu" else workers

    def speed(instances: int, threads: int) -> int:
        chunks = max(math.ceil(instances / per_chunk), 2 * threads - 1)
        return min(threads, chunks, cores)

    sampled = min(workers, 2)
    return speed(instance_count(layer), workers) / speed(instance_count(sample), sampled)


def time_layer(
    layer: TargetLayer,
    index: int,
    n: int,
    k: int,
    tolerance: float,
    *,
    seed: int,
    device: torch.device,
    solver,
    workers: int,
    sample_instances: int | None = None,
) -> LayerTime:
    """Estimate one layer's share of a prune's time by solving a sample layer with the prune's
    own :func:`~sslth.search.layer.solve_layer` (see the module docstring).

    Args:
        layer: the target layer.
        index: its position (0-based; it seeds the pair as in the prune).
        n, k, tolerance: the planned sizes and tolerance.
        seed: the prune's seed.
        device: where the prune solves.
        solver: the prune's solver (built).
        workers: the prune's worker threads.
        sample_instances: about how many instances to solve (default:
            :data:`SAMPLE_INSTANCES` of the device type).

    Returns:
        The layer's estimated times.
    """
    if sample_instances is None:
        sample_instances = SAMPLE_INSTANCES["cuda" if device.type == "cuda" else "cpu"]
    instances = instance_count(layer)
    sample = _sample_of(layer, sample_instances, seed % (2**31) + 7 * index + 1)

    def solve(part: TargetLayer, threads: int):
        spec = PairSpec.for_layer(part, n, seed, index)
        return _timed(
            device, solve_layer, spec, part, k, tolerance, index=index, device=device,
            solver=solver, workers=threads,
        )  # fmt: skip

    with intra_op_threads(1):
        # the first call pays what a process and a k pay once: timed on a one-weight layer
        tiny = _sample_layer(sample, torch.arange(1), outputs=1)
        first, _ = solve(tiny, 1)
        seconds, solution = solve(sample, min(workers, 2))
        solved = instance_count(sample)
        bookkeeping, _ = _timed(device, lambda: (solution.operator(), solution.kept()))
        regenerate, _ = _timed(
            device, masked_pair_operator, solution.spec, solution.masks(), device
        )
    scale = instances / solved
    per_instance = seconds / solved
    grown = solution.spec.neurons_per_input < max(solution.spec.block_neurons)
    return LayerTime(
        solve=seconds * scale / _parallel_gain(layer, sample, n, device, workers),
        setup=max(first - per_instance * instance_count(tiny), 0.0),
        bookkeeping=bookkeeping * scale,
        regenerate=regenerate * scale,
        sample=solved,
        per_instance=per_instance,
        refinable=layer.d_out * layer.kind.taps * (2 * layer.d_in + 1) <= REFINE_MAX_INSTANCES,
        note=(
            "some sampled blocks had fewer than k neurons of a sign: the prune grows them"
            if grown
            else ""
        ),
    )


def refine_steps(layer: TargetLayer, n: int, density: float) -> int:
    """How many smaller n refine can try on a layer: up to ``REFINE_STEPS``, while k stays
    possible (refine also stops at the first n that fails, which only running tells)."""
    steps = 0
    while steps < REFINE_STEPS:
        n -= max(1, n // SHRINK)
        k = choose_k(layer, n, density) if n >= 1 else 0
        if n < 1 or k < 1 or k > n:
            break
        steps += 1
    return steps


def certificate_seconds(target: Target, device: torch.device) -> float:
    """Seconds of one certificate's operator norms (of W, and of the (d_out, 2·d_in) error
    matrix), timed on the target's own weights."""
    seconds = 0.0
    with intra_op_threads(1):
        for layer in target.layers:
            weight = layer.weight.to(device)
            seconds += _timed(device, layer.kind.operator_norm, weight)[0]
            doubled = torch.cat([weight, weight], dim=1)
            seconds += _timed(device, layer.kind.operator_norm, doubled)[0]
    return seconds


def _stand_in(target: Target, device: torch.device) -> list[PairOperator]:
    """A ticket of the target's shapes whose forward costs what any ticket's does: the exact
    one, A = B = W."""
    return [
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


def empirical_seconds(target: Target, options: PruneOptions, device: torch.device) -> float:
    """Estimated time of the report's empirical check (:func:`sslth.certificate.empirical_error`
    on a stand-in ticket of the same shapes, which costs what any ticket does): the gap
    ||f(x) − g(x)|| timed on one batch of ``PROBE_POINTS`` points and scaled to the check's
    points (its landmarks and ``empirical_samples`` random ones), plus ``ASCENT_PROBE`` steps of
    its gradient ascent scaled to ``ASCENT_STEPS``. Each timing follows a warm-up on two points
    (autograd's and the kernels' lazy initializations)."""
    operators = _stand_in(target, device)
    dim = target.input_size
    generator = torch.Generator().manual_seed(0)

    def points(count: int) -> torch.Tensor:
        return torch.randn(count, dim, generator=generator, dtype=torch.float64).to(device)

    def gap(x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(
            target.forward(x) - ticket_forward(target, operators, x), dim=1
        )

    def ascent(x: torch.Tensor, steps: int) -> None:
        x.requires_grad_(True)
        for _ in range(steps):
            torch.autograd.grad(gap(x).sum(), x)

    checked = len(_landmarks(dim, 1.0)) + 2 * max(1, options.empirical_samples // 2)
    probe = min(PROBE_POINTS, checked, empirical_batch(options.empirical_samples, target))
    with intra_op_threads(1):
        with torch.no_grad():
            gap(points(2))
            batch, _ = _timed(device, gap, points(probe))
        ascent(points(2), 1)
        steps, _ = _timed(device, ascent, points(ASCENT_POINTS), ASCENT_PROBE)
    return batch * checked / probe + steps * ASCENT_STEPS / ASCENT_PROBE


# ------------------------------------------------------------------------------ memory


def _fat_block(n: int, blocks: int) -> int:
    """Neurons of one sign in the fullest of ``blocks`` blocks (Binomial(2n, 1/2) each): the
    padded width of a layer's instance batches. Mirrors ``thin_block_neurons``."""
    return min(2 * n, int(math.ceil(n + math.sqrt(2 * math.log(2 * blocks)) * math.sqrt(n / 2))))


def layer_memory(
    layer: TargetLayer, n: int, k: int, workers: int = 1, device: torch.device | None = None
) -> tuple[int, int]:
    """Estimated bytes a layer's solution keeps, and the most its solve adds while it runs.

    Args:
        layer: the target layer.
        n: neurons per input.
        k: picks per instance.
        workers: the prune's worker threads (each holds a chunk in flight).
        device: where the prune solves (the chunks' size; default the CPU).

    Returns:
        (kept, transient): kept is what the search holds while the layer has a solution (per
        instance slot its picks, V's drawn columns and U's diagonal, the V mask, the float64
        operators A and B with their magnitudes); transient is what the solve holds on top
        (every instance's laid-out batch until the picks are stored, one chunk's layout and
        solver temporaries per worker). Byte counts are :mod:`sslth.search.layer`'s.
    """
    has_bias = layer.bias is not None
    blocks = layer.d_in + int(has_bias)
    hidden = 2 * n * blocks
    rows = layer.d_out * layer.kind.taps
    kept = (
        rows * (blocks + layer.d_in) * picks_bytes(k)  # the positive sign has the bias block
        + draw_bytes(rows, hidden)
        + masks_bytes(rows, hidden)
        + 4 * 8 * rows * layer.d_in  # A, B and their magnitudes, float64
    )
    width = _fat_block(n, blocks)
    instances = instance_count(layer)
    chunks = chunk_bytes(device or torch.device("cpu"), width, instances, workers)
    transient = instances * held_bytes(width) + chunks
    return kept, transient


# bytes per point and per activation entry of the largest layer (float64) that the empirical
# check holds at once: its input (the random directions, the points) about 4 times, its output
# (both networks' outputs, their ReLUs and pools, the two halves of each pair) about 6 times;
# fitted to peaks measured on LeNet-5 (1.0 GiB) and 784-500-10 (256 MiB), batches of 5,000 points
CHECK_INPUT_COPIES, CHECK_OUTPUT_COPIES = 4, 6


def report_memory(target: Target, samples: int) -> int:
    """Estimated bytes the report's empirical check holds at once: a batch of
    :func:`sslth.certificate.empirical_batch` points through the layer with the most entries."""
    points = min(empirical_batch(samples, target), max(1, samples // 2))
    widest = max(
        CHECK_INPUT_COPIES * layer.d_in * layer.kind.in_positions
        + CHECK_OUTPUT_COPIES * layer.d_out * layer.kind.positions
        for layer in target.layers
    )
    return 8 * points * widest


def peak_memory(layers: list[tuple[int, int]], report: int = 0) -> int:
    """The prune's peak from each layer's (kept, transient), solved in order with every
    solution kept, and the report's transient bytes (while every solution is still held)."""
    peak, held = 0, 0
    for kept, transient in layers:
        peak = max(peak, held + kept + transient)
        held += kept
    return max(peak, held + report)


def memory_limit(device: torch.device) -> tuple[int | None, str]:
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


def process_bytes() -> int:
    """Resident memory of this process now (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


__all__ = [
    "LayerTime",
    "certificate_seconds",
    "empirical_seconds",
    "layer_memory",
    "memory_limit",
    "peak_memory",
    "report_memory",
    "process_bytes",
    "refine_steps",
    "time_layer",
]
