"""The subset-sum instances of the l+1 construction, and the masks their picks give.

Target layer t (1-based) is approximated by module t. Every copy (i, c) of a neuron of layer t
(row i·ρ_t + c of module t) and every input j of the layer give instances that pick **exactly
k_t** candidates:

- t = 1: block j of module 0 holds 2ρ_0 univariate neurons h with weight a_h; the candidates
  are |a_h| · M_1[(i, c), h], one instance over the neurons with a_h > 0 (target W_1[i, j]) and
  one over those with a_h < 0 (target −W_1[i, j]): the sign split of the 2l construction.
- t ≥ 2: the candidates are the ρ_{t−1} weights M_t[(i, c), (j, c′)] themselves (each copy
  already outputs ≈ a_j at scale 1), target W_t[i, j].
- a bias b_t[i]: the candidates are σ(β_h) · M_t[(i, c), h] over the constant neurons h of
  hidden_{t−1} with β_h > 0 (their random bias), target b_t[i].

A *group* is one family of instances sharing their candidate columns: (columns, scale, valid,
targets per row); the values of row r are ``M_t[r, columns] · scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslth.lplus1.layout import LPlus1Spec, copy_rows, module_bias, module_weight
from sslth.subset_sum import solve
from sslth.target import Target


@dataclass
class Group:
    columns: torch.Tensor  # (m,) candidate columns of module t
    scale: torch.Tensor  # (m,) float64 factor of each column (|a_h|, σ(β_h) or 1)
    valid: torch.Tensor  # (m,) bool
    targets: torch.Tensor  # (rows,) float64: the target value of each copy row


@dataclass
class LayerPicks:
    """The picks of one target layer: module t's weight mask on its copy rows, the previous
    module's neurons (or constant biases) that some pick uses, and the achieved errors."""

    weight_mask: torch.Tensor  # (copy rows, in) bool
    used_inputs: torch.Tensor  # (width of hidden_{t−1},) bool
    errors: torch.Tensor  # (instances,) float64
    solved: torch.Tensor  # (instances,) bool


class TooFewCandidates(Exception):
    """A group has fewer than k valid candidates (a sign or a positive bias left too few)."""


def groups(spec: LPlus1Spec, target: Target, t: int) -> list[Group]:
    """The instance groups of target layer t (1-based)."""
    layer = target.layers[t - 1]
    weight = copy_rows(layer.weight, spec.rho(t))
    d_in = spec.dims[t - 1]
    out: list[Group] = []
    if t == 1:
        rho0 = spec.copies[0]
        first = module_weight(spec, 0).to(torch.float64)
        for j in range(d_in):
            columns = torch.arange(2 * rho0 * j, 2 * rho0 * (j + 1))
            a = first[columns, j]
            out.append(Group(columns, a.abs(), a > 0, weight[:, j]))
            out.append(Group(columns, a.abs(), a < 0, -weight[:, j]))
    else:
        rho = spec.rho(t - 1)
        ones = torch.ones(rho, dtype=torch.float64)
        for j in range(d_in):
            columns = torch.arange(rho * j, rho * (j + 1))
            out.append(Group(columns, ones, ones > 0, weight[:, j]))
    if layer.bias is not None:
        start = spec.copy_width(t - 1)
        columns = torch.arange(start, start + spec.constant_width(t - 1))
        beta = module_bias(spec, t - 1).to(torch.float64)[columns]
        bias = copy_rows(layer.bias[:, None], spec.rho(t))[:, 0]
        out.append(Group(columns, beta.clamp(min=0), beta > 0, bias))
    return out


def solve_layer(
    spec: LPlus1Spec,
    target: Target,
    t: int,
    k: int,
    tolerance: float,
    *,
    method,
    seed: int,
) -> LayerPicks:
    """Solve every instance of target layer t with exactly ``k`` picks within ``tolerance``.

    Raises:
        TooFewCandidates: some group has fewer than ``k`` valid candidates.
    """
    family = groups(spec, target, t)
    if min(int(g.valid.sum()) for g in family) < k:
        raise TooFewCandidates(t)
    rows = spec.copy_width(t)
    weight = module_weight(spec, t)[:rows].to(torch.float64)
    mask = torch.zeros(rows, weight.shape[1], dtype=torch.bool)
    used = torch.zeros(weight.shape[1], dtype=torch.bool)
    errors, solved = [], []
    for index, group in enumerate(family):
        values = weight[:, group.columns] * group.scale
        valid = group.valid.expand(rows, -1).clone()
        result = solve(
            values,
            group.targets,
            k,
            tolerance,
            valid=valid,
            method=method,
            seed=seed,
            row_ids=torch.arange(rows) + index * rows + (t << 40),
        )
        mask[:, group.columns] |= result.mask
        used[group.columns] |= result.mask.any(dim=0)
        errors.append(result.error)
        solved.append(result.solved)
    return LayerPicks(mask, used, torch.cat(errors), torch.cat(solved))
