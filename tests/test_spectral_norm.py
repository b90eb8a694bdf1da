"""The dense operator norm the certificate uses (``sslth.kinds.dense.spectral_norm``), on both of
its routes: an SVD below ``GRAM_MIN_SIDE`` rows or columns, the largest eigenvalue of the smaller
Gram matrix from there on. Checked against ``torch.linalg.matrix_norm(ord=2)`` in float64."""

from __future__ import annotations

import pytest
import torch

from sslth.kinds import DENSE, spectral_norm
from sslth.kinds.dense import GRAM_MIN_SIDE


def _with_singular_values(rows: int, cols: int, values: torch.Tensor, seed: int) -> torch.Tensor:
    """A rows × cols float64 matrix Q1 diag(values) Q2ᵀ with random orthonormal Q1, Q2."""
    g = torch.Generator().manual_seed(seed)
    r = values.numel()
    q1, _ = torch.linalg.qr(torch.randn(rows, r, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(cols, r, generator=g, dtype=torch.float64))
    return q1 @ torch.diag(values.to(torch.float64)) @ q2.T


@pytest.fixture
def eigvalsh_calls(monkeypatch):
    """Counts the Gram route's eigensolver calls (the SVD route makes none)."""
    calls = []
    original = torch.linalg.eigvalsh

    def counting(matrix, *args, **kwargs):
        calls.append(tuple(matrix.shape))
        return original(matrix, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigvalsh", counting)
    return calls


@pytest.mark.parametrize(
    "rows, cols, dtype",
    [
        (GRAM_MIN_SIDE, GRAM_MIN_SIDE, torch.float64),
        (64, 200, torch.float32),  # wide: the Gram matrix M Mᵀ is 64 × 64
        (300, 70, torch.float64),  # tall: MᵀM is 70 × 70
        (128, 128, torch.float32),
    ],
)
def test_gram_route_is_an_upper_bound_within_rounding(rows, cols, dtype, eigvalsh_calls):
    g = torch.Generator().manual_seed(rows * 1000 + cols)
    matrix = torch.randn(rows, cols, generator=g, dtype=dtype)
    exact = float(torch.linalg.matrix_norm(matrix.to(torch.float64), ord=2))
    got = spectral_norm(matrix)
    assert eigvalsh_calls == [(min(rows, cols), min(rows, cols))]  # the Gram branch ran
    assert exact <= got <= exact * (1 + 1e-9)
    assert DENSE.operator_norm(matrix) == got  # what the certificate's P_i and E_i use


@pytest.mark.parametrize("rows, cols", [(80, 96), (96, 80), (64, 64)])
def test_gram_route_takes_the_largest_eigenvalue(rows, cols, eigvalsh_calls):
    """Singular values spread from 0.01 to 5 (and zeros: rank-deficient): the smallest or a
    middle eigenvalue of the Gram matrix would give a norm far below 5."""
    values = torch.cat([torch.tensor([5.0]), torch.linspace(0.01, 1.0, 40)])
    matrix = _with_singular_values(rows, cols, values, seed=rows + cols)
    got = spectral_norm(matrix)
    assert len(eigvalsh_calls) == 1
    assert got == pytest.approx(5.0, rel=1e-9)
    assert got >= float(torch.linalg.matrix_norm(matrix, ord=2))


def test_both_routes_agree_at_the_threshold(eigvalsh_calls):
    g = torch.Generator().manual_seed(7)
    big = torch.randn(GRAM_MIN_SIDE, GRAM_MIN_SIDE + 9, generator=g, dtype=torch.float64)
    small = big[: GRAM_MIN_SIDE - 1]  # one row fewer: the SVD route
    for matrix, gram in ((small, False), (big, True)):
        eigvalsh_calls.clear()
        exact = float(torch.linalg.matrix_norm(matrix, ord=2))
        got = spectral_norm(matrix)
        assert bool(eigvalsh_calls) == gram
        assert exact <= got <= exact * (1 + 1e-9)


def test_zero_and_empty_matrices():
    assert spectral_norm(torch.zeros(0, 5)) == 0.0
    assert spectral_norm(torch.zeros(70, 70)) == 0.0  # the Gram route on a zero matrix
    one = torch.zeros(65, 66, dtype=torch.float64)
    one[3, 4] = -2.5
    assert spectral_norm(one) == pytest.approx(2.5, rel=1e-12)
