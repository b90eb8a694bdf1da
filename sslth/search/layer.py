"""One layer's solve: draw its random pair, lay out its instances, pick, and re-solve what is
left over its tolerance (docs/design.md, "The search", step 3)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sslth.certify import PairOperator, PairStats
from sslth.construct import PairSpec, RandomPair, SignInstances, subset_sum_instances
from sslth.errors import SslthError
from sslth.masks import PairMasks, masks_from_picks
from sslth.subset_sum import Exact, Solver, solve
from sslth.target import TargetLayer

REPAIR_MAX_WORK = 50_000_000  # subsets per row the exact search may enumerate on a repair


class BlockTooSmall(SslthError, ValueError):
    """A block of the random pair has fewer than k neurons of a sign: no exact-k pick exists
    there (a larger n, a smaller k or another seed is needed)."""


@dataclass
class LayerSolution:
    """The picks of one layer's instances, with their errors recomputed from the picks."""

    spec: PairSpec
    k: int
    tolerance: float
    pair: RandomPair
    positive: SignInstances
    negative: SignInstances
    picks: list[torch.Tensor]  # (B, m) bool per sign
    errors: list[torch.Tensor]  # (B,) float64 per sign, recomputed from picks
    _cache: dict = field(default_factory=dict, repr=False)

    def changed(self) -> None:
        """Forget what was derived from the picks (call after changing them)."""
        self._cache.clear()

    def operator(self) -> PairOperator:
        """A, B and the bias offset from the picked values (the same function the masked pair
        computes, which the final report re-derives from the masks), with the magnitudes the
        rounding term needs."""
        if "operator" not in self._cache:
            self._cache["operator"] = self._operator()
        return self._cache["operator"]

    def _place(self, per_instance: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Per-instance sums placed into (A-shaped, B-shaped, offset) tensors."""
        spec = self.spec
        device = self.positive.values.device
        positive = torch.zeros(spec.rows, spec.d_in, dtype=torch.float64, device=device)
        negative = torch.zeros_like(positive)
        offset = torch.zeros(spec.rows, dtype=torch.float64, device=device)
        row, block = self.positive.row_of.to(device), self.positive.block_of.to(device)
        weight = block < spec.d_in
        positive[row[weight], block[weight]] = per_instance[0][weight]
        offset[row[~weight]] = per_instance[0][~weight]
        row, block = self.negative.row_of.to(device), self.negative.block_of.to(device)
        negative[row, block] = per_instance[1]
        kind = spec.kind
        if kind.taps > 1:
            offset = offset.view(spec.d_out, kind.taps).sum(dim=1)
        return kind.from_rows(positive, spec.d_out), kind.from_rows(negative, spec.d_out), offset

    def _operator(self) -> PairOperator:
        instances = (self.positive, self.negative)
        sums = [
            torch.where(pick, inst.values, 0.0).sum(dim=1)
            for inst, pick in zip(instances, self.picks, strict=True)
        ]
        positive, negative, offset = self._place([sums[0], -sums[1]])
        magnitudes = [
            torch.where(pick, inst.values.abs(), 0.0).sum(dim=1)
            for inst, pick in zip(instances, self.picks, strict=True)
        ]
        abs_positive, abs_negative, abs_offset = self._place(magnitudes)
        return PairOperator(
            positive,
            negative,
            offset,
            self.spec.kind,
            self._stats(abs_positive, abs_negative, abs_offset),
        )

    def _stats(self, abs_positive, abs_negative, abs_offset) -> PairStats:
        """The magnitudes of :class:`PairStats` from the masks and the pair's weights (the same
        quantities :func:`sslth.certify.block_pair_operator` reads from a masked pair)."""
        spec, masks = self.spec, self.masks()
        kind = spec.kind
        diagonal = self.pair.diagonal.to(torch.float64)
        kept = masks.kept_neurons
        weight_rows = spec.block_size * spec.d_in
        squares = torch.where(kept, diagonal * diagonal, 0.0)[:weight_rows]
        first_norm = float(squares.view(spec.d_in, spec.block_size).sum(dim=1).max().sqrt())
        bias_values = torch.where(kept, diagonal, 0.0)[weight_rows:]
        matrix = kind.to_rows(masks.second)  # (rows, hidden) bool
        magnitude = kind.to_rows(self.pair.second).abs() * matrix
        row_abs = magnitude.sum(dim=1, dtype=torch.float64).view(spec.d_out, kind.taps)
        column_abs = magnitude.view(spec.d_out, kind.taps, spec.hidden).sum(
            dim=0, dtype=torch.float64
        )
        norm = (row_abs.max(dim=0).values * column_abs.max(dim=1).values).sqrt().sum()
        fan_in = matrix.sum(dim=1).view(spec.d_out, kind.taps).sum(dim=1)
        device = abs_positive.device
        return PairStats(
            abs_positive=abs_positive,
            abs_negative=abs_negative,
            abs_offset=abs_offset,
            first_norm=first_norm,
            first_bias_norm=float(torch.linalg.vector_norm(bias_values)),
            first_fan_in=int(bool(kept.any())),
            second_fan_in=int(fan_in.max()) if fan_in.numel() else 0,
            second_norm=float(norm.to(device)),
            terms_per_entry=spec.block_size + 1,
        )

    def masks(self) -> PairMasks:
        if "masks" not in self._cache:
            self._cache["masks"] = masks_from_picks(
                self.spec, [(self.positive, self.picks[0]), (self.negative, self.picks[1])]
            )
        return self._cache["masks"]

    def kept(self) -> int:
        """Weights the masks keep: the U entries of used neurons and the picked V entries."""
        masks = self.masks()
        return int(masks.kept_neurons.sum()) + int(masks.second.sum())

    def unsolved_fraction(self) -> float:
        total = sum(e.numel() for e in self.errors)
        bad = sum(int((e >= self.tolerance).sum()) for e in self.errors)
        return bad / max(total, 1)


def _check_counts(spec: PairSpec, instances: SignInstances, k: int, index: int) -> None:
    counts = instances.block_counts
    if int(counts.min()) < k:
        block = int(counts.argmin())
        sign = "positive" if instances.sign > 0 else "negative"
        raise BlockTooSmall(
            f"impossible k: layer {index + 1} needs k={k} {sign} neurons in every block, but "
            f"block {block} of its random network has only {int(counts[block])} (of "
            f"{spec.block_size}); increase n, decrease k, or try another seed"
        )


def _solve_rows(
    instances: SignInstances,
    rows,
    k: int,
    tolerance: float,
    solver: str | Solver,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    result = solve(
        instances.values[rows],
        instances.targets[rows],
        k,
        tolerance,
        valid=instances.valid[rows],
        method=solver,
        generator=generator,
    )
    return result.mask, result.error


def solve_layer(
    spec: PairSpec,
    layer: TargetLayer,
    k: int,
    tolerance: float,
    *,
    index: int,
    device: torch.device,
    solver: str | Solver,
) -> LayerSolution:
    """Draw the pair ``spec`` describes and solve every instance of ``layer`` on it.

    Args:
        spec: the random pair (shape, n, seed).
        layer: the target layer.
        k: picks per instance.
        tolerance: per-weight tolerance δ given to the solver.
        index: the layer's position (for messages).
        device: where the instances are solved.
        solver: the subset-sum solver.

    Returns:
        The solution, errors recomputed from the picks.

    Raises:
        BlockTooSmall: some block has fewer than k neurons of a sign.
    """
    pair = RandomPair.draw(spec)
    positive, negative = subset_sum_instances(pair, layer, device)
    for instances in (positive, negative):
        _check_counts(spec, instances, k, index)
    generator = torch.Generator(device=device).manual_seed(spec.seed % (2**31))
    picks, errors = [], []
    for instances in (positive, negative):
        mask, error = _solve_rows(instances, slice(None), k, tolerance, solver, generator)
        picks.append(mask)
        errors.append(error)
    return LayerSolution(spec, k, tolerance, pair, positive, negative, picks, errors)


def _resolve_over(
    solution: LayerSolution, tolerance: float, solver: str | Solver, salt: int
) -> None:
    """Re-solve the instances whose error is not below ``tolerance``; keep a new pick only
    where it is better than the old one."""
    generator = torch.Generator(device=solution.positive.values.device).manual_seed(
        solution.spec.seed % (2**31) + salt
    )
    for sign, instances in enumerate((solution.positive, solution.negative)):
        rows = (solution.errors[sign] >= tolerance).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        mask, error = _solve_rows(instances, rows, solution.k, tolerance, solver, generator)
        better = error < solution.errors[sign][rows]
        solution.picks[sign][rows[better]] = mask[better]
        solution.errors[sign][rows[better]] = error[better]
    solution.changed()


def repair(solution: LayerSolution) -> None:
    """Re-solve the instances left over their tolerance with the exact search and a larger work
    budget."""
    _resolve_over(solution, solution.tolerance, Exact(max_work=REPAIR_MAX_WORK), 2)


def tighten(solution: LayerSolution, tolerance: float, solver: str | Solver) -> None:
    """Re-solve, with a smaller tolerance, the instances whose error is not below it."""
    _resolve_over(solution, tolerance, solver, 1)
    solution.tolerance = tolerance
