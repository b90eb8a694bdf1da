"""An independent float64 reference for the rounding term of a float32 sparse ticket with float64
accumulation (docs/design.md §4b), for dense targets.

Nothing here imports ``sslth``: it reads the masked ``nn.Sequential`` (U, ReLU, V per pair, ReLU
between pairs) with numpy and follows the mathematics. Per pair, with A, B, c from
``tests.reference.pair_operator``, S = ‖[A, −B]‖₂, M = ‖[|A|, |B|]‖₂ (|A|, |B| the sums of the
magnitudes |u_h V_ih| of the kept terms), C = ‖Σ_h σ(c_h) |V_:h|‖₂ and L the most kept terms of
one output row:

* the products of float32 numbers are exact in float64, so the hidden units are exact;
* the float64 sum of L terms in any order errs by at most γ_L(2⁻⁵³) (M ‖x̃‖ + C), plus
  (2L + 2)·2⁻¹⁰²² per output for underflow;
* the one rounding to float32 errs by at most 2⁻²⁴ |ỹ| + 2⁻¹²⁶ per output;
* the exact pair is S-Lipschitz, and ‖x̃‖ ≤ Z + Δ.
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from tests.reference import pair_operator, spectral_norm


def _gamma(terms: int, unit: float) -> float:
    return terms * unit / (1 - terms * unit)


def _array(module: nn.Module, name: str) -> np.ndarray | None:
    original = getattr(module, name + "_orig", None)
    if original is not None:
        mask = getattr(module, name + "_mask")
        return (original * mask).detach().double().numpy()
    value = getattr(module, name, None)
    return None if value is None else value.detach().double().numpy()


def float32_sparse_rounding(network: nn.Sequential, radius: float) -> float:
    """Δ_l of the float32 sparse export (float64 accumulation) of a dense ticket network."""
    linears = [m for m in network if isinstance(m, nn.Linear)]
    z, delta = float(radius), 0.0
    for u_module, v_module in zip(linears[::2], linears[1::2], strict=True):
        u, c, v = _array(u_module, "weight"), _array(u_module, "bias"), _array(v_module, "weight")
        op = pair_operator(u, c, v)
        a_abs = np.zeros_like(op.positive)
        b_abs = np.zeros_like(op.negative)
        for h in range(u.shape[0]):
            for j in np.nonzero(u[h])[0]:
                target = a_abs if u[h, j] > 0 else b_abs
                target[:, j] += abs(u[h, j]) * np.abs(v[:, h])
        bias = np.zeros(u.shape[0]) if c is None else c
        live = (np.abs(u).sum(axis=1) > 0) | (bias > 0)
        constant = np.abs(v)[:, (np.abs(u).sum(axis=1) == 0)] @ np.maximum(
            bias[np.abs(u).sum(axis=1) == 0], 0.0
        )
        terms = int(((v != 0) & live[None, :]).sum(axis=1).max())
        signed = spectral_norm(np.hstack([op.positive, -op.negative]))
        magnitudes = spectral_norm(np.hstack([a_abs, b_abs]))
        offset = float(np.linalg.norm(op.offset))
        outputs = v.shape[0]
        x_norm = z + delta
        sum_error = _gamma(terms, 2.0**-53) * (
            magnitudes * x_norm + float(np.linalg.norm(constant))
        ) + (2 * terms + 2) * 2.0**-1022 * math.sqrt(outputs)
        store = 2.0**-24 * (signed * x_norm + offset + sum_error) + 2.0**-126 * math.sqrt(outputs)
        delta = signed * delta + sum_error + store
        z = signed * z + offset
    return delta
