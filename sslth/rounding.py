"""Floating-point arithmetic of the module users run, and the rounding term of the certificate.

A dot product of n terms computed in floating point, in any summation order, with or without
FMA, satisfies (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1)

    |fl(wᵀx + b) − (wᵀx + b)| ≤ γ_{m} (|w|ᵀ|x| + |b|),   γ_m = m·u / (1 − m·u),

where m counts the terms that are not exactly zero (a product with a zero weight is exactly
zero and adding it is exact, so masked weights cost nothing) plus one for a non-zero bias, and
u is the unit roundoff of the arithmetic. Underflow adds at most ``eta`` per multiplication and
addition (``eta`` = the smallest normal number, which also covers flush-to-zero modes).

The propagation through a ticket's pairs is in :func:`sslth.certificate.rounding_bound`
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
    if torch.device(device).type == "cpu" and dtype == torch.float32:
        _check_cpu_float32(convolution)
    if torch.device(device).type == "cuda" and dtype == torch.float32:
        if _cuda_tf32(convolution):
            name, u = "float32 with TF32", TF32_UNIT_ROUNDOFF
    return Arithmetic(name, u, _SMALLEST_NORMAL[dtype], _LARGEST[dtype])


def _check_cpu_float32(convolution: bool) -> None:
    """Refuse CPU float32 settings whose arithmetic the rounding term does not cover.

    * Reduced-precision float32 (``torch.set_float32_matmul_precision`` other than "highest",
      or an ``fp32_precision`` of oneDNN or of ``torch.backends`` set to bf16/tf32) may round
      operands to bfloat16. Settings torch itself cannot read (legacy and new APIs mixed) are
      refused too.
    * With oneDNN convolutions off (or absent), a float32 conv with a batch of 16 or more runs
      on NNPACK, whose fast (Winograd/FFT-type) algorithms are not dot products: an adversarial
      review measured 5.3x the certified error on a crafted ticket network.
    """
    paths = ("", "mkldnn.", "mkldnn.matmul.") + (("mkldnn.conv.",) if convolution else ())
    reduced = [
        f"torch.backends.{path} = {value!r}"
        for path, value in fp32_precisions(paths)
        if value not in ("none", "ieee")
    ]
    precision = float32_matmul_precision()
    if precision != "highest":
        reduced.append(f"float32 matmul precision {precision!r}")
    if reduced:
        raise NotATicketError(
            f"float32 on the CPU with reduced precision allowed ({'; '.join(reduced)}) is not "
            "certified: use torch.set_float32_matmul_precision('highest'), or float64"
        )
    mkldnn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    nnpack = torch.backends.nnpack.is_available() and torch._C._get_nnpack_enabled()
    if convolution and nnpack and not mkldnn:
        raise NotATicketError(
            "float32 convolutions on the CPU with oneDNN disabled run on NNPACK, whose fast "
            "convolution algorithms the rounding term does not cover: enable "
            "torch.backends.mkldnn (the default), disable NNPACK "
            "(torch.backends.nnpack.set_flags(False)), or use float64"
        )


def _cuda_tf32(convolution: bool) -> bool:
    """Whether CUDA float32 may run in TF32 (refused when it may run in bfloat16)."""
    paths = ("", "cuda.matmul.") + (("cudnn.", "cudnn.conv.") if convolution else ())
    values = dict(fp32_precisions(paths))
    precision = float32_matmul_precision()
    if precision in ("medium", "mixed") or "bf16" in values.values():
        raise NotATicketError(
            f"float32 on CUDA with matmul precision {precision!r} (or an fp32_precision of "
            "'bf16') may compute in bfloat16, which is not certified: use "
            "torch.set_float32_matmul_precision('highest') or 'high' (TF32, certified with its "
            "unit roundoff), or float64"
        )
    tf32 = precision != "highest" or "tf32" in values.values()
    tf32 |= _legacy_flag(lambda: torch.backends.cuda.matmul.allow_tf32)
    return tf32 or (convolution and _legacy_flag(lambda: torch.backends.cudnn.allow_tf32))


def _legacy_flag(read) -> bool:
    """A legacy TF32 flag; True where torch cannot say (legacy and new APIs mixed)."""
    try:
        return bool(read())
    except RuntimeError:
        return True


def float32_matmul_precision() -> str:
    """``torch.get_float32_matmul_precision()``, or "mixed" where torch raises because the
    legacy and the new precision APIs were both used (nothing can then be assumed)."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return "mixed"


def fp32_precisions(paths: tuple[str, ...]) -> list[tuple[str, str]]:
    """The ``fp32_precision`` settings of ``torch.backends.<path>`` that this torch has:
    (path + "fp32_precision", value); e.g. paths ("", "mkldnn.conv.")."""
    found = []
    for path in paths:
        owner = torch.backends
        for part in path.split(".")[:-1]:
            owner = getattr(owner, part, None)
        value = getattr(owner, "fp32_precision", None)
        if isinstance(value, str):
            found.append((path + "fp32_precision", value))
    return found


DTYPES = {"float32": torch.float32, "float64": torch.float64}
