"""One layer's solve: its instances, solved a group of blocks at a time, re-solved where they
are over tolerance, and grown block by block where a random draw left one out of reach
(docs/design.md, "The search", step 3).

A :class:`LayerSolution` keeps, per sign and per instance (matrix-view row, block), the k picked
positions and what the certificate needs of them (the signed sum, the sum of magnitudes, the
picked V entries, the error): never the candidate values, which are laid out again from the
seed when an instance is re-solved. Groups of blocks are independent, so they are solved by a
pool of worker threads; a pick depends only on its instance (the solver's randomness is keyed by
the instance's id), so the result is the same for any number of workers, on any device.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from sslth.certify import PairOperator, PairStats
from sslth.construct import PairSpec, block_diagonal, block_second
from sslth.errors import SslthError
from sslth.masks import PairMasks
from sslth.progress import Progress
from sslth.search.instances import (
    BlockDraw,
    Instances,
    candidates,
    instance_rows,
    lay_out,
    target_values,
)
from sslth.subset_sum import Exact, Solver, solve
from sslth.target import TargetLayer

REPAIR_MAX_WORK = 50_000_000  # subsets per row the exact search may enumerate on a repair
GROUP_INSTANCES = 16_384  # instances per solver call: enough to batch, small enough to share out
DRAW_CACHE_BYTES = 1 << 30  # a layer's drawn V columns are kept below this, else drawn again
BLOCK_GROWTH = 1.15  # a grown block gets at least this factor more neurons


class BlockTooSmall(SslthError, ValueError):
    """A block of the random pair has fewer than k neurons of a sign: no exact-k pick exists
    there (a larger n, a smaller k or another seed is needed)."""


@dataclass
class SignPicks:
    """The picks of one sign's instances, indexed by (matrix-view row, block)."""

    exists: torch.Tensor  # (rows, blocks) bool: the instance exists
    positions: torch.Tensor  # (rows, blocks, k) int32: picked positions in the block, −1 if none
    second: torch.Tensor  # (rows, blocks, k) float32: the picked V entries
    sums: torch.Tensor  # (rows, blocks) float64: Σ |a_h| V[r, h] over the picks
    magnitudes: torch.Tensor  # (rows, blocks) float64: Σ |a_h V[r, h]| over the picks
    errors: torch.Tensor  # (rows, blocks) float64: |sum − target|, 0 where no instance

    @classmethod
    def empty(cls, rows: int, blocks: int, k: int) -> SignPicks:
        zeros = torch.zeros(rows, blocks, dtype=torch.float64)
        return cls(
            torch.zeros(rows, blocks, dtype=torch.bool),
            torch.full((rows, blocks, k), -1, dtype=torch.int32),
            torch.zeros(rows, blocks, k, dtype=torch.float32),
            zeros,
            zeros.clone(),
            zeros.clone(),
        )


class LayerSolution:
    """The picks of every instance of one layer on one random pair.

    Args:
        spec: the random pair (its blocks may grow: ``spec`` is updated).
        layer: the target layer.
        k: picks per instance.
        tolerance: the per-weight tolerance the solver aims for.
        device: where instances are solved.
        solver: the subset-sum solver.
        workers: threads solving groups of blocks at once.
    """

    def __init__(
        self,
        spec: PairSpec,
        layer: TargetLayer,
        k: int,
        tolerance: float,
        *,
        device: torch.device,
        solver: str | Solver,
        workers: int = 1,
        progress: Progress | None = None,
        label: str = "layer",
    ) -> None:
        self.spec, self.layer, self.k, self.tolerance = spec, layer, k, tolerance
        self.device, self.solver, self.workers = device, solver, max(1, int(workers))
        self.progress, self.label = progress, label
        self.targets = target_values(layer, spec)
        self.diagonals = [block_diagonal(spec, j) for j in range(spec.blocks)]
        self.signs = {
            +1: SignPicks.empty(spec.rows, spec.blocks, k),
            -1: SignPicks.empty(spec.rows, spec.d_in, k),
        }
        for sign, picks in self.signs.items():
            for block in range(picks.exists.shape[1]):
                picks.exists[instance_rows(spec, block, sign), block] = True
        self._draws: dict[int, BlockDraw] = {}
        self._draw_bytes = 0
        self._lock = threading.Lock()  # worker threads share the draw cache
        self._cache: dict[str, object] = {}

    # ---------------------------------------------------------------- blocks
    def short_blocks(self) -> list[int]:
        """Blocks with fewer than k neurons of a sign they serve (positive only for the bias
        block)."""
        short = []
        for block, diagonal in enumerate(self.diagonals):
            signs = (+1, -1) if block < self.spec.d_in else (+1,)
            if any(candidates(diagonal, sign).numel() < self.k for sign in signs):
                short.append(block)
        return short

    def grow(self, neurons: dict[int, int]) -> None:
        """Give the listed blocks n_j neurons per sign pair (more than now). A block's first
        neurons stay what they were (its random streams are drawn neuron by neuron), so its
        picks stay valid; only what is re-solved afterwards can use the new neurons."""
        self.spec = self.spec.with_blocks(neurons)
        for block in neurons:
            self.diagonals[block] = block_diagonal(self.spec, block)
            dropped = self._draws.pop(block, None)
            if dropped is not None:
                self._draw_bytes -= dropped.second.numel() * 4
        self._cache.clear()

    def fill_short_blocks(self) -> dict[int, int]:
        """Grow every short block until it holds k neurons of each sign it serves; returns
        the blocks grown and their new n_j."""
        grown: dict[int, int] = {}
        while short := self.short_blocks():
            step = {
                j: self.spec.block_neurons[j] + max(1, self.spec.block_neurons[j] // 8)
                for j in short
            }
            self.grow(step)
            grown.update(step)
        return grown

    def _draw(self, block: int) -> BlockDraw:
        with self._lock:
            draw = self._draws.get(block)
        if draw is not None:
            return draw
        draw = BlockDraw(self.diagonals[block], block_second(self.spec, block))
        size = draw.second.numel() * 4
        with self._lock:
            if self._draw_bytes + size <= DRAW_CACHE_BYTES and block not in self._draws:
                self._draws[block] = draw
                self._draw_bytes += size
        return draw

    # ---------------------------------------------------------------- solving
    def solve_all(self) -> None:
        """Solve every instance of the layer."""
        todo = {sign: picks.exists for sign, picks in self.signs.items()}
        count = sum(int(mask.sum()) for mask in todo.values())
        self._announce(
            count,
            f"{self.label}: {count:,} instances (n = {self.spec.neurons_per_input}, "
            f"k = {self.k}, tolerance {self.tolerance:.3g})",
        )
        self._solve(todo, attempt=0)

    def resolve(self, over: float, solver: str | Solver, attempt: int, why: str = "") -> int:
        """Re-solve the instances whose error is not below ``over``; keep a new pick only
        where it is better. Returns how many were re-solved."""
        todo = {sign: picks.exists & (picks.errors >= over) for sign, picks in self.signs.items()}
        count = sum(int(mask.sum()) for mask in todo.values())
        if count:
            self._announce(count, f"{self.label}: {why or 're-solving'} {count:,} instances")
            self._solve(todo, attempt, solver=solver, keep_better=True, tolerance=over)
        return count

    def _announce(self, count: int, reason: str) -> None:
        if self.progress is not None:
            self.progress.add(count, reason)

    def grow_unsolved(self, factor: float = BLOCK_GROWTH) -> dict[int, int]:
        """Grow the blocks holding instances over tolerance, and re-solve those instances
        with the new neurons. Returns the blocks grown and their new n_j."""
        blocks = set()
        for picks in self.signs.values():
            over = picks.exists & (picks.errors >= self.tolerance)
            blocks.update(over.any(dim=0).nonzero().squeeze(1).tolist())
        before = {j: self.spec.block_neurons[j] for j in sorted(blocks)}
        neurons = {j: max(n + 1, math.ceil(n * factor)) for j, n in before.items()}
        if neurons:
            self.grow(neurons)
            low, high = min(before.values()), max(neurons.values())
            self.resolve(
                self.tolerance,
                self.solver,
                attempt=3,
                why=f"out of reach in {len(neurons)} block{'s' if len(neurons) > 1 else ''}, "
                f"grown (n {low} → {high}): re-solving",
            )
        return neurons

    def _solve(
        self,
        todo: dict[int, torch.Tensor],
        attempt: int,
        *,
        solver: str | Solver | None = None,
        keep_better: bool = False,
        tolerance: float | None = None,
    ) -> None:
        tolerance = self.tolerance if tolerance is None else tolerance
        solver = self.solver if solver is None else solver
        tasks = []
        for sign, mask in todo.items():
            for group in self._groups(mask):
                tasks.append((sign, group))
        if not tasks:
            return

        def run(task):
            sign, group = task
            draws = {j: self._draw(j) for j in group}
            instances = lay_out(self.spec, self.targets, sign, group, draws, self.device)
            result = solve(
                instances.values,
                instances.targets,
                self.k,
                tolerance,
                valid=instances.valid,
                method=solver,
                seed=self.spec.seed % (2**31) + attempt,
                row_ids=instances.ids,
            )
            return sign, instances, result.mask, result.error

        def counted(task):
            result = run(task)
            if self.progress is not None:
                self.progress.update(len(result[1]))
            return result

        if self.workers > 1 and len(tasks) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(counted, tasks))  # in task order: deterministic
        else:
            results = [counted(task) for task in tasks]
        for sign, instances, mask, error in results:
            self._store(sign, instances, mask, error, keep_better)
        self._cache.clear()

    def _groups(self, mask: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """Blocks (with their rows to solve) in groups of about ``GROUP_INSTANCES``."""
        groups, current, size = [], {}, 0
        for block in range(mask.shape[1]):
            rows = mask[:, block].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            current[block] = rows
            size += rows.numel()
            if size >= GROUP_INSTANCES:
                groups.append(current)
                current, size = {}, 0
        if current:
            groups.append(current)
        return groups

    def _store(
        self,
        sign: int,
        instances: Instances,
        mask: torch.Tensor,
        error: torch.Tensor,
        keep_better: bool,
    ) -> None:
        picks = self.signs[sign]
        row, block = instances.row, instances.block
        count = len(instances)
        columns = mask.nonzero()[:, 1].view(count, self.k).cpu()
        positions = instances.positions.gather(1, columns)
        values = instances.values.cpu().gather(1, columns)
        sums = values.sum(dim=1)
        magnitudes = values.abs().sum(dim=1)
        error = error.cpu()
        if keep_better:
            better = error < picks.errors[row, block]
            row, block = row[better], block[better]
            positions, values = positions[better], values[better]
            sums, magnitudes, error = sums[better], magnitudes[better], error[better]
        neurons = torch.tensor(self.spec.block_offsets[:-1])[block][:, None] + positions
        scale = torch.cat(self.diagonals).to(torch.float64).abs()[neurons]
        picks.positions[row, block] = positions.to(torch.int32)
        picks.second[row, block] = (values / scale).to(torch.float32)  # the product was exact
        picks.sums[row, block] = sums
        picks.magnitudes[row, block] = magnitudes
        picks.errors[row, block] = error

    # ---------------------------------------------------------------- what the picks give
    def errors(self) -> torch.Tensor:
        """The errors of every instance (both signs), flattened."""
        return torch.cat([p.errors[p.exists] for p in self.signs.values()])

    def unsolved_fraction(self) -> float:
        errors = self.errors()
        return float((errors >= self.tolerance).sum()) / max(errors.numel(), 1)

    def _neurons(self, picks: SignPicks) -> torch.Tensor:
        """(rows, blocks, k) absolute hidden index of each pick (−1 where none)."""
        offsets = torch.tensor(self.spec.block_offsets[: picks.exists.shape[1]])
        return torch.where(picks.positions >= 0, picks.positions + offsets[None, :, None], -1)

    def _picked(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per sign, the picks as flat (row, hidden neuron, V entry) tensors."""
        if "picked" not in self._cache:
            picked = []
            offsets = torch.tensor(self.spec.block_offsets)
            for picks in self.signs.values():
                # every instance has exactly k picks: index the instances, not the picks
                row, block = picks.exists.nonzero().unbind(dim=1)
                neurons = picks.positions[row, block].to(torch.int64) + offsets[block][:, None]
                neurons = neurons.reshape(-1)
                rows = row.to(torch.int32).repeat_interleave(self.k)
                picked.append((rows, neurons, picks.second[row, block].reshape(-1)))
            self._cache["picked"] = picked
        return self._cache["picked"]

    def used_neurons(self) -> torch.Tensor:
        """(hidden,) bool: the neurons some instance picked (U keeps exactly their entry)."""
        if "used" not in self._cache:
            used = torch.zeros(self.spec.hidden, dtype=torch.bool)
            for _, neurons, _ in self._picked():
                used[neurons] = True
            self._cache["used"] = used
        return self._cache["used"]

    def masks(self) -> PairMasks:
        """The ticket's masks of this pair: V's picked entries, U's used neurons."""
        if "masks" not in self._cache:
            spec = self.spec
            # one byte per V entry (a 2048-wide layer's V has 3.4e8): counts of 0, 1, or 2
            # when two instances overlap, which construction rules out and this checks
            counts = torch.zeros(spec.rows * spec.hidden, dtype=torch.uint8)
            for rows, neurons, _ in self._picked():
                flat = rows.to(torch.int64) * spec.hidden + neurons
                ones = torch.ones_like(flat, dtype=torch.uint8)
                counts.index_put_((flat,), ones, accumulate=True)
            if counts.numel() and int(counts.max()) > 1:
                raise RuntimeError("a weight of V was picked twice: the instances overlap")
            matrix = counts.view(torch.bool).view(spec.rows, spec.hidden)
            self._cache["masks"] = PairMasks(
                spec, matrix.any(dim=0), spec.kind.from_rows(matrix, spec.d_out)
            )
        return self._cache["masks"]

    def kept(self) -> int:
        """Weights the masks keep: the U entries of used neurons and the picked V entries (no
        V entry is picked twice: instances of one row use disjoint blocks and signs)."""
        picked = sum(rows.numel() for rows, _, _ in self._picked())
        return int(self.used_neurons().sum()) + picked

    def operator(self) -> PairOperator:
        """A, B and the bias offset from the picked sums (the same function the masked pair
        computes, which the final report re-derives from the masks), with the magnitudes the
        rounding term needs."""
        if "operator" not in self._cache:
            self._cache["operator"] = self._operator()
        return self._cache["operator"]

    def _operator(self) -> PairOperator:
        spec, kind = self.spec, self.spec.kind
        positive, negative = self.signs[+1], self.signs[-1]
        d_in = spec.d_in

        def offset(values: torch.Tensor) -> torch.Tensor:
            if not spec.has_bias:
                return torch.zeros(spec.d_out, dtype=torch.float64)
            return values[:, d_in].view(spec.d_out, spec.taps).sum(dim=1)

        return PairOperator(
            kind.from_rows(positive.sums[:, :d_in].contiguous(), spec.d_out).to(self.device),
            kind.from_rows(-negative.sums, spec.d_out).to(self.device),
            offset(positive.sums).to(self.device),
            kind,
            self._stats(),
        )

    def _stats(self) -> PairStats:
        spec, kind = self.spec, self.spec.kind
        positive, negative = self.signs[+1], self.signs[-1]
        d_in = spec.d_in
        diagonal = torch.cat(self.diagonals).to(torch.float64)
        kept = self.used_neurons()
        blocks = torch.repeat_interleave(
            torch.arange(spec.blocks), torch.tensor([2 * n for n in spec.block_neurons])
        )
        squares = torch.zeros(spec.blocks, dtype=torch.float64)
        squares.index_add_(0, blocks, torch.where(kept, diagonal * diagonal, 0.0))
        in_bias = blocks >= d_in
        row_abs = torch.zeros(spec.rows, dtype=torch.float64)
        column_abs = torch.zeros(kind.taps * spec.hidden, dtype=torch.float64)
        for rows, neurons, second in self._picked():
            magnitude = second.abs().to(torch.float64)
            row_abs.index_add_(0, rows, magnitude)
            index = neurons if kind.taps == 1 else (rows % kind.taps) * spec.hidden + neurons
            column_abs.index_add_(0, index, magnitude)
        row_max = row_abs.view(spec.d_out, kind.taps).max(dim=0).values
        column_max = column_abs.view(kind.taps, spec.hidden).max(dim=1).values
        norm = float((row_max * column_max).sqrt().sum())
        terms = positive.exists.sum(dim=1) + negative.exists.sum(dim=1)
        fan_in = (terms * self.k).view(spec.d_out, kind.taps).sum(dim=1)

        def to_kind(values: torch.Tensor) -> torch.Tensor:
            return kind.from_rows(values.contiguous(), spec.d_out).to(self.device)

        abs_offset = (
            positive.magnitudes[:, d_in].view(spec.d_out, kind.taps).sum(dim=1)
            if spec.has_bias
            else torch.zeros(spec.d_out, dtype=torch.float64)
        )
        return PairStats(
            abs_positive=to_kind(positive.magnitudes[:, :d_in]),
            abs_negative=to_kind(negative.magnitudes),
            abs_offset=abs_offset.to(self.device),
            first_norm=float(squares[:d_in].max().sqrt()) if d_in else 0.0,
            first_bias_norm=float(
                torch.linalg.vector_norm(torch.where(kept & in_bias, diagonal, 0.0))
            ),
            first_fan_in=int(bool(kept.any())),
            second_fan_in=int(fan_in.max()) if fan_in.numel() else 0,
            second_norm=norm,
            terms_per_entry=self.k + 1,
            hidden=spec.hidden,
        )


def solve_layer(
    spec: PairSpec,
    layer: TargetLayer,
    k: int,
    tolerance: float,
    *,
    index: int,
    device: torch.device,
    solver: str | Solver,
    workers: int = 1,
    grow_blocks: bool = True,
    progress: Progress | None = None,
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
        workers: threads solving groups of blocks at once.
        grow_blocks: give a block that lacks k neurons of a sign more neurons (else raise).

    Returns:
        The solution, errors recomputed from the picks.

    Raises:
        BlockTooSmall: some block has fewer than k neurons of a sign, and ``grow_blocks`` is
            False.
    """
    solution = LayerSolution(
        spec,
        layer,
        k,
        tolerance,
        device=device,
        solver=solver,
        workers=workers,
        progress=progress,
        label=f"layer {index + 1} ({layer.d_in}→{layer.d_out})",
    )
    short = solution.short_blocks()
    if short and not grow_blocks:
        block = short[0]
        counts = [candidates(solution.diagonals[block], s).numel() for s in (+1, -1)]
        raise BlockTooSmall(
            f"impossible k: layer {index + 1} needs k={k} neurons of each sign in every block, "
            f"but block {block} of its random network has {counts[0]} positive and "
            f"{counts[1]} negative (of {2 * spec.block_neurons[block]}); increase n, decrease "
            "k, or try another seed"
        )
    grown = solution.fill_short_blocks()
    if grown and progress is not None:
        progress.event(
            f"layer {index + 1}: {len(grown)} blocks had fewer than k = {k} neurons of a sign; "
            f"grown to n = {max(grown.values())}"
        )
    solution.solve_all()
    return solution


def repair(solution: LayerSolution) -> None:
    """Re-solve the instances left over their tolerance with the exact search and a larger work
    budget."""
    solution.resolve(
        solution.tolerance,
        Exact(max_work=REPAIR_MAX_WORK),
        attempt=2,
        why="over tolerance, exact search on",
    )


def tighten(solution: LayerSolution, tolerance: float, solver: str | Solver) -> None:
    """Re-solve, with a smaller tolerance, the instances whose error is not below it."""
    before = solution.tolerance
    solution.tolerance = tolerance
    solution.resolve(
        tolerance, solver, attempt=1, why=f"tolerance {before:.3g} → {tolerance:.3g}, re-solving"
    )
