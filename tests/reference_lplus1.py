"""An independent float64 reference for the certificate of an l+1 ticket (docs/design.md, "The l+1
construction").

Nothing here imports ``sslth``: it reads the masked ``nn.Sequential`` (Linear, ReLU, …, Linear
with l+1 Linear modules) and the target's weights, and recomputes with numpy, one neuron and one
copy at a time:

* module 0 and the copy rows of module 1 form a 2l pair (``tests.reference.pair_operator``):
  copy (i, c) computes A σ(x) − B σ(−x) + offset, compared with row i of W_1;
* a later module's copy row (i, c) sums, for each input j, its kept weights on the ρ copies of
  j (which must equal W_t[i, j]) and, through the constant neurons, relu(their bias)·weight
  (which must equal b_t[i]);
* δ_1 = E_1 R + β_1, δ_t = E_t r_{t−1} + P_t δ_{t−1} + β_t with P_t the norm of the kept
  copy-to-copy weights, r_t = ‖W_t‖ r_{t−1} + ‖b_t‖.

The widths give ρ: hidden_0 has 2ρ_0 (d_0 + [b_1]) neurons, hidden_t has ρ_t (d_t + 2[b_{t+1}]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from tests.reference import masked_linear, pair_operator, spectral_norm


def _copies(width: int, d: int, constants: bool) -> int:
    unit = d + (2 if constants else 0)
    if width % unit:
        raise ValueError(f"a hidden width of {width} is not ρ·{unit}")
    return width // unit


def reference_bound(
    network: nn.Sequential, layers: Sequence[tuple[np.ndarray, np.ndarray | None]], radius: float
) -> tuple[float, list[float]]:
    """The exact part of the certificate (δ_l) and the δ_t of every layer."""
    linears = [masked_linear(m) for m in network if isinstance(m, nn.Linear)]
    depth = len(layers)
    if len(linears) != depth + 1:
        raise ValueError(f"{len(linears)} Linear modules for {depth} target layers")
    rho = [1] * (depth + 1)
    for t in range(1, depth):
        rho[t] = _copies(
            linears[t].weight.shape[0], layers[t - 1][0].shape[0], layers[t][1] is not None
        )
    r, delta, deltas = float(radius), 0.0, []
    for t in range(1, depth + 1):
        weight, bias = layers[t - 1]
        d_out, d_in = weight.shape
        rows = rho[t] * d_out
        goal = np.repeat(weight, rho[t], axis=0)
        goal_bias = np.repeat(np.zeros(d_out) if bias is None else bias, rho[t])
        module = linears[t]
        own_bias = np.zeros(module.weight.shape[0]) if module.bias is None else module.bias
        if t == 1:
            first = linears[0]
            op = pair_operator(first.weight, first.bias, module.weight[:rows])
            error = spectral_norm(np.hstack([op.positive - goal, goal - op.negative]))
            beta = float(np.linalg.norm(op.offset + own_bias[:rows] - goal_bias))
            delta = error * r + beta
        else:
            previous = linears[t - 1]
            columns = rho[t - 1] * d_in
            kappa = np.zeros(previous.weight.shape[0] - columns)
            if kappa.size:
                if np.any(previous.weight[columns:] != 0):
                    raise ValueError("a constant neuron keeps an input weight")
                kappa = np.maximum(previous.bias[columns:], 0.0)
            achieved = np.zeros((rows, d_in))
            offset = own_bias[:rows].copy()
            for row in range(rows):
                for j in range(d_in):
                    for c in range(rho[t - 1]):
                        achieved[row, j] += module.weight[row, j * rho[t - 1] + c]
                for h, value in enumerate(kappa):
                    offset[row] += value * module.weight[row, columns + h]
            error = spectral_norm(achieved - goal)
            copy_norm = spectral_norm(module.weight[:rows, :columns])
            beta = float(np.linalg.norm(offset - goal_bias))
            delta = error * r + copy_norm * delta + beta
        deltas.append(delta)
        r = spectral_norm(weight) * r + (0.0 if bias is None else float(np.linalg.norm(bias)))
    return delta, deltas


def exact_forward(network: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """The masked network in float64 (numpy), module by module."""
    out = np.asarray(x, np.float64)
    for module in network:
        if isinstance(module, nn.Linear):
            linear = masked_linear(module)
            out = out @ linear.weight.T + (0.0 if linear.bias is None else linear.bias)
        else:
            out = np.maximum(out, 0.0)
    return out
