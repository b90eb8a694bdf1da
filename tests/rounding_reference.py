"""An independent reference for the certificate's rounding term of a dense ticket network.

Written from docs/design.md §4 ("The certificate: rounding part"), not from sslth/: nothing here
imports ``sslth``. It reads the masked pairs with :func:`reference.ticket_pairs` (numpy float64,
plain loops over hidden neurons) and applies, pair after pair, with Z the bound on the exact
input's norm and Δ the deviation of the computed input:

    E   = γ_{m_U} (√2 M (Z + Δ) + C) + N_V · scale · underflow(m_U, hidden)
    Δ'  = S Δ + E + γ_{m_V} (M (Z + Δ) + C + E) + scale · underflow(m_V, d_out)
    Z'  = S Z + ‖offset‖

with S = ‖[A, −B]‖, M = ‖[|A|, |B|]‖ (|A|, |B| the sums of the picks' magnitudes |a_h V[i, h]|),
C = ‖|V| σ(c)‖, N_V = ‖|V|‖ over live neurons, m_U the non-zero terms (weights and bias) of one
hidden neuron, m_V the non-zero terms of one output of V over live neurons (a neuron is live
when it reads an input or has a positive bias), γ_m = m u / (1 − m u), underflow(m, n) =
(2m + 2) η √n and scale = max(1, largest |weight| of the pair).

Norms are exact (numpy SVD). sslth's own are upper bounds of the same quantities, so sslth's
rounding term must never be below this one: that is the property tests/test_rounding.py checks.
"""

from __future__ import annotations

import math

import numpy as np

from tests.reference import spectral_norm, ticket_pairs

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}
SMALLEST_NORMAL = {"float32": 2.0**-126, "float64": 2.0**-1022}


def _gamma(terms: int, unit: float) -> float:
    return terms * unit / (1.0 - terms * unit)


def _underflow(terms: int, outputs: int, eta: float) -> float:
    return (2 * terms + 2) * eta * math.sqrt(max(outputs, 1))


def _pair_figures(u: np.ndarray, c: np.ndarray, v: np.ndarray) -> dict:
    """S, M, C, N_V, m_U, m_V, the offset's norm and the scale of one masked pair."""
    hidden, d_in = u.shape
    d_out = v.shape[0]
    signed_pos, signed_neg = np.zeros((d_out, d_in)), np.zeros((d_out, d_in))
    abs_pos, abs_neg = np.zeros((d_out, d_in)), np.zeros((d_out, d_in))
    offset, abs_offset = np.zeros(d_out), np.zeros(d_out)
    live = np.zeros(hidden, dtype=bool)
    fan_in = 0
    for h in range(hidden):
        reads = np.flatnonzero(u[h])
        fan_in = max(fan_in, len(reads) + int(c[h] != 0))
        if len(reads):
            a = u[h, reads[0]]
            live[h] = True
            if a > 0:
                signed_pos[:, reads[0]] += a * v[:, h]
                abs_pos[:, reads[0]] += abs(a) * np.abs(v[:, h])
            else:
                signed_neg[:, reads[0]] -= abs(a) * v[:, h]
                abs_neg[:, reads[0]] += abs(a) * np.abs(v[:, h])
        elif c[h] > 0:
            live[h] = True
            offset += c[h] * v[:, h]
            abs_offset += c[h] * np.abs(v[:, h])
    v_live = np.abs(v[:, live])
    largest = max([1.0, float(np.abs(u).max(initial=0)), float(np.abs(c).max(initial=0))])
    return {
        "A": signed_pos,
        "B": signed_neg,
        "S": spectral_norm(np.hstack([signed_pos, -signed_neg])),
        "M": spectral_norm(np.hstack([abs_pos, abs_neg])),
        "C": float(np.linalg.norm(abs_offset)),
        "N_V": spectral_norm(v_live),
        "m_U": fan_in,
        "m_V": int((v_live != 0).sum(axis=1).max(initial=0)),
        "offset": float(np.linalg.norm(offset)),
        "scale": max(largest, float(v_live.max(initial=0))),
        "hidden": max(hidden, d_in),
        "d_out": d_out,
    }


def rounding_term(network, radius: float, dtype: str, weights=None) -> list[float]:
    """Δ after each pair of a dense ticket network (MLP layout: pair, ReLU, pair, …) run in
    ``dtype`` ("float32" or "float64") on inputs of norm at most ``radius``. With the target's
    ``weights`` (one (d_out, d_in) array per layer), S is capped at ‖W‖ + ‖[A − W, W − B]‖:
    A σ(x) − B σ(−x) = W x + [A − W, W − B] [σ(x); σ(−x)] grows by no more."""
    unit, eta = UNIT_ROUNDOFF[dtype], SMALLEST_NORMAL[dtype]
    z, delta, deltas = float(radius), 0.0, []
    for index, (first, second) in enumerate(ticket_pairs(network)):
        c = np.zeros(first.weight.shape[0]) if first.bias is None else first.bias
        f = _pair_figures(first.weight, c, second.weight)
        if weights is not None:
            w = np.asarray(weights[index], dtype=np.float64)
            error = spectral_norm(np.hstack([f["A"] - w, w - f["B"]]))
            f["S"] = min(f["S"], spectral_norm(w) + error)
        size = z + delta
        error = _gamma(f["m_U"], unit) * (math.sqrt(2.0) * f["M"] * size + f["C"]) + f["N_V"] * f[
            "scale"
        ] * _underflow(f["m_U"], f["hidden"], eta)
        delta = (
            f["S"] * delta
            + error
            + _gamma(f["m_V"], unit) * (f["M"] * size + f["C"] + error)
            + f["scale"] * _underflow(f["m_V"], f["d_out"], eta)
        )
        deltas.append(delta)
        z = f["S"] * z + f["offset"]
    return deltas
