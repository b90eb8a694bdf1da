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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from sslth.certificate import PairOperator, PairStats
from sslth.construct import PairSpec, blocks_diagonal, blocks_second_t
from sslth.errors import SslthError
from sslth.masks import PairMasks
from sslth.progress import Progress
from sslth.search.instances import (
    CandidateTable,
    Instances,
    instance_rows,
    lay_out_blocks,
    target_values,
)
from sslth.subset_sum import Exact, Solver, solve
from sslth.subset_sum.api import default_memory_budget
from sslth.target import TargetLayer

REPAIR_MAX_WORK = 50_000_000  # subsets per row the exact search may enumerate on a repair
# a chunk of instances, laid out and solved in one batch: its float64 values, positions and the
# solver's whole-batch temporaries take about this much (on CUDA: the solver's memory budget)
CHUNK_BYTES = 64 * 1024**2
BYTES_PER_ENTRY = 128  # per (instance, candidate): layout (values, positions, neurons) + solver
MIN_BUDGET = 16 * 1024**2  # below this solver budget, running out of memory is an error
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


# ------------------------------------------------------------------------- bytes held
# What a layer's solve holds, for sslth.plan's memory estimate (sslth.search.estimate): kept
# here, beside the storage it describes, so that a change of the storage changes the estimate.


def picks_bytes(k: int) -> int:
    """Bytes :class:`SignPicks` keeps per (matrix-view row, block) slot of a sign, k picks."""
    empty = SignPicks.empty(1, 1, k)
    return sum(t.element_size() * t.numel() for t in vars(empty).values())


def held_bytes(width: int) -> int:
    """Bytes one instance of padded ``width`` candidates holds from its layout until its picks
    are stored: its :class:`Instances` (float64 values, int64 positions, bool valid; float64
    target, int64 row, block and id) and the solver's bool mask and float64 error.
    :meth:`LayerSolution._solve` stores the picks once every chunk is solved, so a solve holds
    this for all the instances it solves at once."""
    return width * (8 + 8 + 1 + 1) + 4 * 8 + 8


def chunk_bytes(device: torch.device, width: int, instances: int, workers: int) -> int:
    """Bytes of the chunks in flight while ``instances`` instances of padded ``width`` are
    solved on ``workers`` threads: each worker's chunk (its layout and the solver's
    temporaries, ``BYTES_PER_ENTRY`` per candidate), chunks cut as :meth:`LayerSolution._chunks`
    cuts them."""
    pieces = max(math.ceil(instances / chunk_instances(device, width)), 2 * workers - 1)
    size = math.ceil(instances / pieces)
    return min(workers, pieces) * size * BYTES_PER_ENTRY * max(width, 1)


def masks_bytes(rows: int, hidden: int) -> int:
    """Bytes of :meth:`LayerSolution.masks`' cached V mask: one byte per V entry (its pick
    counts, viewed as bool)."""
    return rows * hidden


def draw_bytes(rows: int, hidden: int) -> int:
    """Bytes of the drawn V a solution keeps (float32, the whole layer's while it fits
    ``DRAW_CACHE_BYTES``, else none: drawn again per chunk) and U's diagonal (float32)."""
    second = 4 * rows * hidden
    return (second if second <= DRAW_CACHE_BYTES else 0) + 4 * hidden


class LayerSolution:
    """The picks of every instance of one layer on one random pair.

    Args:
        spec: the random pair (its blocks may grow: ``spec`` is updated).
        layer: the target layer.
        k: picks per instance.
        tolerance: the per-weight tolerance the solver aims for.
        device: where instances are solved.
        solver: the subset-sum solver.
        workers: threads solving chunks of blocks at once.
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
        self.diagonal = blocks_diagonal(spec)
        self._second_t: torch.Tensor | None = None  # V transposed, kept while it fits
        self.signs = {
            +1: SignPicks.empty(spec.rows, spec.blocks, k),
            -1: SignPicks.empty(spec.rows, spec.d_in, k),
        }
        self.signs[+1].exists[:, : spec.d_in] = True
        self.signs[-1].exists[:] = True
        if spec.has_bias:
            self.signs[+1].exists[instance_rows(spec, spec.d_in, +1), spec.d_in] = True
        self._tables: dict[int, CandidateTable] = {}
        self._cache: dict[str, object] = {}

    # ---------------------------------------------------------------- blocks
    @property
    def diagonals(self) -> list[torch.Tensor]:
        """U's diagonal, one view per block."""
        return list(self.diagonal.split([2 * n for n in self.spec.block_neurons]))

    def table(self, sign: int) -> CandidateTable:
        """The sign's candidate table of every block (on the CPU)."""
        if sign not in self._tables:
            self._tables[sign] = CandidateTable.of(self.spec, self.diagonal, sign)
        return self._tables[sign]

    def short_blocks(self) -> list[int]:
        """Blocks with fewer than k neurons of a sign they serve (positive only for the bias
        block)."""
        short = self.table(+1).counts < self.k
        short[: self.spec.d_in] |= self.table(-1).counts < self.k
        return short.nonzero().squeeze(1).tolist()

    def grow(self, neurons: dict[int, int]) -> None:
        """Give the listed blocks n_j neurons per sign pair (more than now). A block's first
        neurons stay what they were (its random streams are drawn neuron by neuron), so its
        picks stay valid; only what is re-solved afterwards can use the new neurons."""
        old = self.spec
        self.spec = old.with_blocks(neurons)
        self.diagonal = self._splice(old, self.diagonal, blocks_diagonal)
        if self._second_t is not None:
            self._second_t = self._splice(old, self._second_t, blocks_second_t)
        self._tables.clear()
        self._cache.clear()

    def _splice(self, old: PairSpec, drawn: torch.Tensor, draw) -> torch.Tensor:
        """``drawn`` (block-major, for ``old``) with the grown blocks drawn again at their new
        size and every other block's part kept."""
        parts, run = [], None
        for j in range(self.spec.blocks):
            if self.spec.block_neurons[j] == old.block_neurons[j]:
                run = (run[0] if run else j, j + 1)
                continue
            if run:
                parts.append(drawn[old.block_offsets[run[0]] : old.block_offsets[run[1]]])
                run = None
            parts.append(draw(self.spec, j, j + 1))
        if run:
            parts.append(drawn[old.block_offsets[run[0]] : old.block_offsets[run[1]]])
        return torch.cat(parts)

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

    def _second(self, start: int, stop: int) -> torch.Tensor:
        """(neurons, rows) V's columns of blocks start..stop − 1, transposed: from the layer's
        draw while it fits ``DRAW_CACHE_BYTES``, else drawn for these blocks."""
        spec = self.spec
        if self._second_t is None and 4 * spec.hidden * spec.rows <= DRAW_CACHE_BYTES:
            self._second_t = blocks_second_t(spec)
        if self._second_t is not None:
            return self._second_t[spec.block_offsets[start] : spec.block_offsets[stop]]
        return blocks_second_t(spec, start, stop)

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
        over = torch.zeros(self.spec.blocks, dtype=torch.bool)
        for picks in self.signs.values():
            hit = (picks.exists & (picks.errors >= self.tolerance)).any(dim=0)
            over[: hit.shape[0]] |= hit
        blocks = over.nonzero().squeeze(1).tolist()
        before = {j: self.spec.block_neurons[j] for j in blocks}
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
        """Solve the instances ``todo`` marks (per sign, (rows, blocks) bool), both signs of a
        chunk of consecutive blocks in one batch, chunks in parallel on ``workers`` threads."""
        tolerance = self.tolerance if tolerance is None else tolerance
        solver = self.solver if solver is None else solver
        chunks = self._chunks(todo)
        if not chunks:
            return
        device_tables = {sign: self.table(sign) for sign in todo}
        if self.device.type != "cpu":
            device_tables = {
                sign: CandidateTable(t.positions.to(self.device), t.counts.to(self.device))
                for sign, t in device_tables.items()
            }
        targets = self.targets.to(self.device)

        def run(chunk: tuple[int, int], budget: int | None = None) -> list:
            start, stop = chunk
            try:
                batch = self._lay_out(todo, device_tables, targets, start, stop)
                result = solve(
                    batch.values,
                    batch.targets,
                    self.k,
                    tolerance,
                    valid=batch.valid,
                    method=solver,
                    seed=self.spec.seed % (2**31) + attempt,
                    row_ids=batch.ids,
                    memory_budget=budget,
                )
            except torch.OutOfMemoryError:
                # picks depend only on their instance: a smaller chunk gives the same ones
                batch = result = None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if stop - start > 1:
                    middle = (start + stop) // 2
                    return run((start, middle), budget) + run((middle, stop), budget)
                budget = (budget or default_memory_budget(self.device)) // 4
                if budget < MIN_BUDGET:
                    raise DeviceOutOfMemory(
                        f"{self.label}: {self.device} ran out of memory solving the instances "
                        f"of one block ({self.spec.rows:,} rows); lower max_random_params (or "
                        "n), or solve on device='cpu'"
                    ) from None
                return run(chunk, budget)
            if self.progress is not None:
                self.progress.update(len(batch))
            return [(batch, result.mask, result.error)]

        if self.workers > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(run, chunks))  # in chunk order: deterministic
        else:
            results = [run(chunk) for chunk in chunks]
        for batch, mask, error in (piece for pieces in results for piece in pieces):
            self._store(batch, mask, error, keep_better)
        self._cache.clear()

    def _chunks(self, todo: dict[int, torch.Tensor]) -> list[tuple[int, int]]:
        """Consecutive blocks in chunks of about ``chunk_instances`` instances to solve (at
        least two per worker when there are several), skipping blocks with none."""
        per_block = torch.zeros(self.spec.blocks, dtype=torch.int64)
        for mask in todo.values():
            per_block[: mask.shape[1]] += mask.sum(dim=0)
        total = int(per_block.sum())
        if total == 0:
            return []
        width = max(table.positions.shape[1] for table in (self.table(+1), self.table(-1)))
        pieces = max(math.ceil(total / chunk_instances(self.device, width)), 2 * self.workers - 1)
        size = math.ceil(total / pieces)
        # cut where the running count crosses a multiple of the chunk size
        running = per_block.cumsum(0)
        cut = torch.div(running - 1, size, rounding_mode="floor").tolist()
        counts = per_block.tolist()
        chunks, start = [], None
        for j in range(self.spec.blocks):
            if start is None:
                if counts[j] == 0:
                    continue
                start = j
            if j + 1 == self.spec.blocks or cut[j + 1] != cut[start] or counts[j + 1] == 0:
                chunks.append((start, j + 1))
                start = None
        return chunks

    def _lay_out(self, todo, tables, targets, start: int, stop: int) -> Instances:
        """Both signs' instances of blocks start..stop − 1 that ``todo`` marks, one batch."""
        spec, device = self.spec, self.device
        first, last = spec.block_offsets[start], spec.block_offsets[stop]
        diagonal = self.diagonal[first:last].to(device)
        second_t = self._second(start, stop).to(device)
        parts = []
        for sign, mask in todo.items():
            end = min(stop, mask.shape[1])
            if end <= start:
                continue
            chunk_todo = mask[:, start:end].T.contiguous().to(device)
            parts.append(
                lay_out_blocks(
                    spec, targets, sign, tables[sign], start, diagonal, second_t, chunk_todo
                )
            )
        return Instances.concat(parts)

    def _store(
        self, batch: Instances, mask: torch.Tensor, error: torch.Tensor, keep_better: bool
    ) -> None:
        """Write the picks of a solved batch into the per-sign tables, by scatter: the picked
        positions (in column order), their V entries, sums, magnitudes and errors."""
        k = self.k
        # the k picked columns of each row, in column order (a stable sort: no host sync)
        columns = torch.sort(mask.to(torch.uint8), dim=1, descending=True, stable=True)
        columns = columns.indices[:, :k]
        values = batch.values.gather(1, columns)
        positions = batch.positions.gather(1, columns)
        offsets = torch.tensor(self.spec.block_offsets[:-1], device=values.device)
        neurons = offsets[batch.block][:, None] + positions
        scale = self.diagonal.to(values.device, torch.float64)[neurons].abs()
        fields = {
            "positions": positions.to(torch.int32),
            "second": (values / scale).to(torch.float32),  # the product was exact
            "sums": values.sum(dim=1),
            "magnitudes": values.abs().sum(dim=1),
            "errors": error,
        }
        fields = {name: value.cpu() for name, value in fields.items()}
        row, block = batch.row.cpu(), batch.block.cpu()
        for sign, lo, hi in batch.spans:
            picks = self.signs[sign]
            flat = row[lo:hi] * picks.exists.shape[1] + block[lo:hi]
            new = {name: value[lo:hi] for name, value in fields.items()}
            if keep_better:
                better = new["errors"] < picks.errors.view(-1)[flat]
                for name, value in new.items():
                    old = getattr(picks, name).view(-1, *value.shape[1:])[flat]
                    keep = better.view(-1, *([1] * (value.dim() - 1)))
                    new[name] = torch.where(keep, value, old)
            for name, value in new.items():
                getattr(picks, name).view(-1, *value.shape[1:]).index_copy_(0, flat, value)

    # ---------------------------------------------------------------- what the picks give
    def errors(self) -> torch.Tensor:
        """The errors of every instance (both signs), flattened."""
        return torch.cat([p.errors[p.exists] for p in self.signs.values()])

    def unsolved_fraction(self) -> float:
        errors = self.errors()
        return float((errors >= self.tolerance).sum()) / max(errors.numel(), 1)

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


def chunk_instances(device: torch.device, width: int) -> int:
    """Instances per chunk on ``device`` for candidate lists ``width`` long: ``CHUNK_BYTES`` of
    layout and solver temporaries on the CPU (large enough that the operators are few, small
    enough to stay below the prune's former peak), half the solver's memory budget on CUDA."""
    # on CUDA the solver's budget is half the free memory; the layout gets as much again
    budget = CHUNK_BYTES if device.type == "cpu" else default_memory_budget(device) // 2
    return max(1, budget // (BYTES_PER_ENTRY * max(width, 1)))


class DeviceOutOfMemory(SslthError, RuntimeError):
    """The device ran out of memory on a chunk of a single block, at the smallest budget."""


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
        counts = [int(solution.table(s).counts[block]) for s in (+1, -1)]
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
