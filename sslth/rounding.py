"""Floating-point arithmetic of the module users run, and the rounding term of the certificate.

A dot product of n terms computed in floating point, in any summation order, with or without
FMA, satisfies (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1)

    |fl(wᵀx + b) − (wᵀx + b)| ≤ γ_{m} (|w|ᵀ|x| + |b|),   γ_m = m·u / (1 − m·u),

where m counts the terms that are not exactly zero (a product with a zero weight is exactly
zero and adding it is exact, so masked weights cost nothing) plus one for a non-zero bias, and
u is the unit roundoff of the arithmetic. Underflow adds at most ``eta`` per multiplication and
addition (``eta`` = the smallest normal number, which also covers flush-to-zero modes).

The propagation through a ticket's pairs is in :func:`sslth.certify.rounding_bound`
(docs/design.md, "The rounding term").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sslth.errors import NotATicketError

_UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
_SMALLEST_NORMAL = {torch.float32: 2.0**-126, torch.float64: 2.0**-1022}
_LARGEST = {torch.float32: float(torch.finfo(torch.float32).max), torch.float64: 1.7e308}
TF32_UNIT_ROUNDOFF = 2.0**-11  # TF32 keeps 10 explicit mantissa bits


@dataclass(frozen=True)
class Arithmetic:
    """The floating-point arithmetic a module runs in.

    Attributes:
        name: e.g. ``"float32"``, ``"float64"`` or ``"float32 with TF32 matmul"``.
        unit_roundoff: u of the products and sums.
        eta: bound on the absolute error one operation can add through underflow.
        largest: values beyond ``largest / 8`` are refused (they could overflow).
    """

    name: str
    unit_roundoff: float
    eta: float
    largest: float

    def gamma(self, terms: int) -> float:
        """γ_m = m u / (1 − m u); infinite when m u ≥ 1/2 (no useful bound)."""
        mu = terms * self.unit_roundoff
        return math.inf if mu >= 0.5 else mu / (1.0 - mu)

    def underflow(self, terms: int, outputs: int) -> float:
        """ℓ2 bound on what underflow can add to ``outputs`` dot products of ``terms`` terms."""
        return (2 * terms + 2) * self.eta * math.sqrt(max(outputs, 1))

    @property
    def exact(self) -> bool:
        return self.unit_roundoff == 0.0


EXACT = Arithmetic("exact", 0.0, 0.0, math.inf)


def arithmetic_of(dtype: torch.dtype, device: torch.device | str, *, convolution: bool = False):
    """The arithmetic of a module holding ``dtype`` weights on ``device``.

    On CUDA, float32 matrix products (and, for ``convolution``, cuDNN convolutions) may use
    TF32 when torch allows it at certification time; the certificate then uses TF32's unit
    roundoff. Only float32 and float64 are certified.

    Raises:
        NotATicketError: another dtype (half precision is not certified).
    """
    dtype = torch.float32 if dtype is None else dtype
    if dtype not in _UNIT_ROUNDOFF:
        raise NotATicketError(
            f"a module in {dtype} cannot be certified: sslth certifies float32 and float64 "
            "modules only"
        )
    name = str(dtype).replace("torch.", "")
    u = _UNIT_ROUNDOFF[dtype]
    if torch.device(device).type == "cuda" and dtype == torch.float32:
        tf32 = torch.backends.cuda.matmul.allow_tf32 or (
            torch.get_float32_matmul_precision() != "highest"
        )
        if convolution and torch.backends.cudnn.allow_tf32:
            tf32 = True
        if tf32:
            name, u = "float32 with TF32", TF32_UNIT_ROUNDOFF
    return Arithmetic(name, u, _SMALLEST_NORMAL[dtype], _LARGEST[dtype])


DTYPES = {"float32": torch.float32, "float64": torch.float64}
