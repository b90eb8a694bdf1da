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

    def __len__(self) -> int:
        return self.row.shape[0]


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
