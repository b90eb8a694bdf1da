"""Closed forms of the paper and of docs/design.md §5 (fixed-size subset sum), used to seed
searches and to draw predictions.

Binary entropy, the Poisson heuristic for fixed-size random subset sum (the expected number of
k-subsets within δ of z is λ = C(n, k) · 2δ · f_k(z), with f_k the density of a sum of k
candidates, computed from the characteristic function), and Eq. 28/29 of Theorem 3.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

UNIFORM = "uniform"  # Uniform[-1, 1]: φ(t) = sin(t)/t
PRODUCT = "product"  # product of two Uniform[-1, 1]: φ(t) = Si(t)/t
DISTRIBUTIONS = (UNIFORM, PRODUCT)


def binary_entropy(x: float) -> float:
    """H2(x) = −x log2 x − (1 − x) log2(1 − x), with H2(0) = H2(1) = 0."""
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x)


def log_binomial(n: float, k: float) -> float:
    """Natural log of C(n, k), for real arguments through the gamma function."""
    if k < 0 or k > n:
        return -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@lru_cache(maxsize=4)
def _grid(distribution: str) -> tuple[np.ndarray, np.ndarray]:
    # φ(t)^k decays like t^-k (uniform) or (log t / t)^k (product); t up to 400 with a fine
    # step is enough for k >= 2; k = 1 is handled in closed form.
    t = np.linspace(0.0, 400.0, 400_001)
    safe = np.where(t == 0, 1.0, t)
    if distribution == UNIFORM:
        phi = np.where(t == 0, 1.0, np.sin(safe) / safe)
    elif distribution == PRODUCT:
        integrand = np.where(t == 0, 1.0, np.sin(safe) / safe)
        step = t[1] - t[0]
        si = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) * step / 2)])
        phi = np.where(t == 0, 1.0, si / safe)
    else:
        raise ValueError(f"unknown distribution {distribution!r}; choose from {DISTRIBUTIONS}")
    return t, phi


def sum_density(k: int, z: float, distribution: str = PRODUCT) -> float:
    """Density at z of the sum of k i.i.d. candidates of the given distribution."""
    if k < 1:
        raise ValueError("k must be >= 1")
    z = abs(float(z))
    if k == 1:
        if distribution == UNIFORM:
            return 0.5 if z <= 1 else 0.0
        return -0.5 * math.log(z) if 0 < z < 1 else (math.inf if z == 0 else 0.0)
    variance = k / (3.0 if distribution == UNIFORM else 9.0)
    if k > 60:  # the local limit theorem is then far more accurate than the quadrature
        return math.exp(-z * z / (2 * variance)) / math.sqrt(2 * math.pi * variance)
    t, phi = _grid(distribution)
    # at z = 0 the cosine is 1 everywhere and the product phi**k exactly: not computed
    values = phi**k if z == 0 else phi**k * np.cos(t * z)
    step = t[1] - t[0]
    return float(max(np.trapezoid(values, dx=step) / math.pi, 0.0))


@lru_cache(maxsize=64)
def peak_density(k: int, distribution: str = PRODUCT) -> float:
    """f_k(0), :func:`sum_density` at 0: the largest value of the density of a sum of k >= 2
    candidates (each candidate's density is symmetric and unimodal, so is their sum's; the
    quadrature keeps the order exactly, as cos(t·z) <= 1 = cos(0) term by term)."""
    return sum_density(k, 0.0, distribution)


def window_probability(k: int, z: float, delta: float, distribution: str = PRODUCT) -> float:
    """P(|S − z| < δ) for S a sum of k candidates: exact for k = 1 (where the product density
    −ln|x|/2 is infinite at 0, so density × 2δ would be meaningless near z = 0), density × 2δ
    beyond."""
    if k != 1:
        return 2.0 * delta * sum_density(k, z, distribution)
    low, high = max(z - delta, -1.0), min(z + delta, 1.0)
    if high <= low:
        return 0.0
    return _single_cdf(high, distribution) - _single_cdf(low, distribution)


def _single_cdf(x: float, distribution: str) -> float:
    """CDF on [−1, 1] of one candidate: Uniform[−1, 1] or the product of two."""
    if distribution == UNIFORM:
        return (x + 1.0) / 2.0
    magnitude = abs(x)
    half = 0.0 if magnitude == 0 else magnitude * (1.0 - math.log(magnitude)) / 2.0
    return 0.5 + math.copysign(half, x)


def theorem2_ratio(n: int, k: int, delta: float) -> float:
    """x = n·H2(k/n) / log2(k/δ): Theorem 2 asks for x >= c_hyp."""
    return n * binary_entropy(k / n) / math.log2(k / delta)


def theorem5_necessary(n: int, k: int, delta: float, interval: float = 1.0) -> bool:
    """Counting bound behind Theorem 5: the C(n, k) subset sums cover at most C(n, k)·2δ of the
    line, so every target of an interval of length ``interval`` can be within δ only if
    C(n, k)·2δ >= interval. The default 1 is the per-unit-length form the reproduction marks
    (for targets uniform in [−1, 1], pass 2)."""
    return log_binomial(n, k) + math.log(2 * delta) >= math.log(interval)


def paper_neurons_per_input(
    c_amp: float, depth: int, d_in: int, d_out: int, epsilon: float, density: float
) -> float:
    """Eq. 29: n* = c_amp · log2²(2 l d_{i−1} d_i / ε) / H2(γ')."""
    return c_amp * math.log2(2 * depth * d_in * d_out / epsilon) ** 2 / binary_entropy(density)
