"""Laying out a layer's subset-sum instances, a group of blocks at a time.

For a sign s, block j and matrix-view row r (output i, kernel position t), the instance picks
exactly k of block j's neurons whose U entry has sign s, with values |a_h|·V[r, h] and target
s·W[r, j] (the bias block: positive only, at the kind's bias tap, target b_i). Instances are
identified by ``instance_id`` — (row, block, sign) — which seeds the solver's per-row randomness,
so a pick never depends on which group or worker solved it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslth.construct import PairSpec, block_diagonal, block_second
from sslth.target import TargetLayer


def instance_rows(spec: PairSpec, block: int, sign: int) -> torch.Tensor:
    """Matrix-view rows that have an instance in ``block`` for ``sign``."""
    if block < spec.d_in:
        return torch.arange(spec.rows)
    if sign < 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.arange(spec.d_out) * spec.taps + spec.kind.bias_tap


def instance_id(spec: PairSpec, rows: torch.Tensor, block: int, sign: int) -> torch.Tensor:
    """Global ids of the instances (rows, block, sign) of a layer."""
    return (rows.to(torch.int64) * spec.blocks + block) * 2 + int(sign < 0)


def candidates(diagonal: torch.Tensor, sign: int) -> torch.Tensor:
    """Positions (within the block) of the neurons serving ``sign``, in order."""
    return ((diagonal > 0) if sign > 0 else (diagonal < 0)).nonzero().squeeze(1)


@dataclass
class BlockDraw:
    """A block's random weights the solve reads: U's diagonal and V's columns (matrix view)."""

    diagonal: torch.Tensor  # (2 n_j,) float32
    second: torch.Tensor  # (rows, 2 n_j) float32

    @classmethod
    def of(cls, spec: PairSpec, block: int) -> BlockDraw:
        return cls(block_diagonal(spec, block), block_second(spec, block))


@dataclass
class Instances:
    """A batch of instances of one sign over several blocks, ready for ``subset_sum.solve``.

    Instance b is row ``row[b]`` of block ``block[b]``; its column c is the neuron at position
    ``positions[b, c]`` of that block (−1 for padding, ``valid`` False).
    """

    sign: int
    row: torch.Tensor  # (B,) long
    block: torch.Tensor  # (B,) long
    positions: torch.Tensor  # (B, m) long
    valid: torch.Tensor  # (B, m) bool
    values: torch.Tensor  # (B, m) float64
    targets: torch.Tensor  # (B,) float64
    ids: torch.Tensor  # (B,) int64
    # (sign, first, stop) of each sign's instances when a batch holds both (``concat``)
    spans: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.spans:
            self.spans = ((self.sign, 0, len(self)),)

    def __len__(self) -> int:
        return self.row.shape[0]

    @classmethod
    def concat(cls, parts: list[Instances]) -> Instances:
        """One batch of several (one per sign): padded to the widest, ``spans`` says which
        instances are whose."""
        if len(parts) == 1:
            return parts[0]
        width = max(part.values.shape[1] for part in parts)

        def padded(tensor: torch.Tensor, fill) -> torch.Tensor:
            extra = width - tensor.shape[1]
            return torch.nn.functional.pad(tensor, (0, extra), value=fill) if extra else tensor

        spans, first = [], 0
        for part in parts:
            spans.append((part.sign, first, first + len(part)))
            first += len(part)
        return cls(
            sign=0,
            row=torch.cat([part.row for part in parts]),
            block=torch.cat([part.block for part in parts]),
            positions=torch.cat([padded(part.positions, -1) for part in parts]),
            valid=torch.cat([padded(part.valid, False) for part in parts]),
            values=torch.cat([padded(part.values, 0.0) for part in parts]),
            targets=torch.cat([part.targets for part in parts]),
            ids=torch.cat([part.ids for part in parts]),
            spans=tuple(spans),
        )


def target_values(layer: TargetLayer, spec: PairSpec) -> torch.Tensor:
    """(rows, blocks) float64: the target of every positive instance (W in the matrix view,
    then the bias at the bias tap); negate the weight columns for the negative sign."""
    weight = layer.kind.to_rows(layer.weight)
    if not spec.has_bias:
        return weight
    bias = torch.zeros(spec.rows, dtype=torch.float64)
    bias.view(spec.d_out, spec.taps)[:, spec.kind.bias_tap] = layer.bias
    return torch.cat([weight, bias[:, None]], dim=1)


def lay_out(
    spec: PairSpec,
    targets: torch.Tensor,
    sign: int,
    rows_of_block: dict[int, torch.Tensor],
    draws: dict[int, BlockDraw],
    device: torch.device,
) -> Instances:
    """The instances of ``sign`` for the given rows of each block.

    Args:
        spec: the random pair.
        targets: :func:`target_values` of the layer.
        sign: +1 or −1.
        rows_of_block: block → the matrix-view rows whose instance to lay out.
        draws: block → its :class:`BlockDraw`.
        device: where the batch goes.

    Returns:
        The batch, blocks in the order of ``rows_of_block``.
    """
    blocks = list(rows_of_block)
    picks = [candidates(draws[j].diagonal, sign) for j in blocks]
    width = max([int(p.numel()) for p in picks] + [1])
    parts_values, parts_positions, rows_all, blocks_all = [], [], [], []
    for (
        j,
        cand,
    ) in zip(blocks, picks, strict=True):
        rows = rows_of_block[j]
        scale = draws[j].diagonal.to(torch.float64)[cand].abs()
        # gather from float32 V first: the product of two float32 is exact in float64
        values = torch.zeros(rows.numel(), width, dtype=torch.float64)
        values[:, : cand.numel()] = draws[j].second[rows][:, cand].to(torch.float64) * scale
        positions = torch.full((rows.numel(), width), -1, dtype=torch.long)
        positions[:, : cand.numel()] = cand
        parts_values.append(values)
        parts_positions.append(positions)
        rows_all.append(rows)
        blocks_all.append(torch.full((rows.numel(),), j, dtype=torch.long))
    row = torch.cat(rows_all)
    block = torch.cat(blocks_all)
    positions = torch.cat(parts_positions)
    target = targets[row, block] * (1.0 if sign > 0 else -1.0)
    ids = (row.to(torch.int64) * spec.blocks + block) * 2 + int(sign < 0)
    return Instances(
        sign=sign,
        row=row,
        block=block,
        positions=positions,
        valid=(positions >= 0).to(device),
        values=torch.cat(parts_values).to(device),
        targets=target.to(device),
        ids=ids.to(device),
    )


@dataclass
class CandidateTable:
    """Per block, the positions of the neurons serving one sign, in order, padded with −1.

    ``positions[j, c]`` is the c-th such neuron of block j (its position within the block);
    ``counts[j]`` how many there are. Built for all blocks at once from U's diagonal, in a
    handful of operators (:func:`candidates` does one block).
    """

    positions: torch.Tensor  # (blocks, width) long, −1 padding
    counts: torch.Tensor  # (blocks,) long

    @classmethod
    def of(cls, spec: PairSpec, diagonal: torch.Tensor, sign: int) -> CandidateTable:
        """The table of ``sign`` over every block of ``spec`` (the negative sign: the weight
        blocks only), from the layer's (hidden,) ``diagonal``."""
        blocks = spec.blocks if sign > 0 else spec.d_in
        neurons = spec.block_offsets[blocks]
        device = diagonal.device
        offsets = torch.tensor(spec.block_offsets[: blocks + 1], device=device)
        sizes = offsets.diff()
        block = torch.repeat_interleave(
            torch.arange(blocks, device=device), sizes, output_size=neurons
        )
        diagonal = diagonal[:neurons]
        chosen = (diagonal > 0) if sign > 0 else (diagonal < 0)
        before = chosen.cumsum(0) - chosen.to(torch.int64)  # chosen neurons before this one
        first = before[offsets[:-1]]  # ... before each block
        rank = before - first[block]
        counts = torch.zeros(blocks, dtype=torch.int64, device=device)
        counts.index_add_(0, block, chosen.to(torch.int64))
        width = max(int(counts.max()) if blocks else 0, 1)
        # chosen neurons land at (block, rank); the others in a spare slot dropped after
        dest = torch.where(chosen, block * width + rank, blocks * width)
        local = torch.arange(neurons, device=device) - offsets[:-1][block]
        table = torch.full((blocks * width + 1,), -1, dtype=torch.int64, device=device)
        table.scatter_(0, dest, local)
        return cls(table[:-1].view(blocks, width), counts)


def lay_out_blocks(
    spec: PairSpec,
    targets: torch.Tensor,
    sign: int,
    table: CandidateTable,
    start: int,
    diagonal: torch.Tensor,
    second_t: torch.Tensor,
    todo: torch.Tensor,
) -> Instances:
    """The instances of ``sign`` of consecutive blocks from ``start``, those ``todo`` marks,
    in a few operators whatever the number of blocks (block-major, rows ascending).

    Args:
        spec: the random pair.
        targets: :func:`target_values` of the layer, on the device.
        sign: +1 or −1.
        table: the sign's :class:`CandidateTable` of the layer, on the device.
        start: the first block.
        diagonal: U's diagonal of the blocks, from ``start``'s first neuron (on the device).
        second_t: (neurons, rows) V's columns of the blocks, transposed (on the device).
        todo: (blocks here, rows) bool: the instances to lay out.

    Returns:
        The batch; ``values`` in float64 (the product of two float32 is exact).
    """
    count, rows = todo.shape
    positions = table.positions[start : start + count]
    valid = positions >= 0
    first = spec.block_offsets[start]
    offsets = torch.tensor(spec.block_offsets[start : start + count], device=todo.device) - first
    neurons = offsets[:, None] + positions.clamp(min=0)  # (count, width), within the chunk
    flat = todo.reshape(-1).nonzero().squeeze(1)  # instance = local block * rows + row
    local, row = flat // rows, flat % rows
    neurons, valid = neurons[local], valid[local]
    scale = diagonal.to(torch.float64)[neurons].abs()
    values = second_t[neurons, row[:, None]].to(torch.float64) * scale
    block = local + start
    return Instances(
        sign=sign,
        row=row,
        block=block,
        positions=positions[local],
        valid=valid,
        values=torch.where(valid, values, 0.0),
        targets=targets[row, block] * (1.0 if sign > 0 else -1.0),
        ids=(row * spec.blocks + block) * 2 + int(sign < 0),
    )
