"""The probe cross-check: run a module on a few fixed inputs and compare with what sslth read.

:mod:`sslth.modules` reads a module's structure and refuses whatever its forward pass might do
beyond its weights. This check does not rely on that reading: it calls the module as users call
it, on a few deterministic probe inputs (the zero input, then Gaussian rows, exactly
representable in the module's dtype), and compares the output with the operator the certificate
reasons about, evaluated in float64 from the weights sslth read. Both sides compute the same
dot products (m terms per output at most), each within Higham's bound γ_m(u) (|W| |x| + |b|)
of the exact value, so

    |module(x) − reference(x)| ≤ (γ_m(u_module) + γ_m(2⁻⁵³)) · (|W| |x| + |b|) + underflow

componentwise whenever the module computes the affine map of the weights read. A dressing that
changes what the module computes (another weight, a scaled output, another geometry) shows up
as a difference beyond that, and the module is refused by name. Probing cannot see a change that
is triggered only by inputs the probes miss; the structural checks are what exclude those.

The functions here take the module, the weights sslth will certify and the per-example input
shape, so a new reader (graph targets, sparse exports, other networks) calls them the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from sslth.kinds import Conv2d, LayerKind
from sslth.ops import Op
from sslth.rounding import float32_matmul_precision, fp32_precisions

PROBES = 4  # inputs per module: the zero input, then Gaussian rows
_SIDE = 16  # images are probed cropped to at most this side (the kernel's span if larger)
_MAX_HIDDEN = 1 << 22  # the whole-network probe is skipped above this many hidden values
_SEED = 0x5EED_5117
_U64 = 2.0**-53
_ETA64 = 2.0**-1022
_ROWS_PER_CHUNK = 1 << 22  # float64 entries of a weight chunk in the reference computation


def probe_inputs(
    shape: tuple[int, ...], dtype: torch.dtype, device, count: int = PROBES
) -> torch.Tensor:
    """``count`` inputs of per-example ``shape``, exactly representable in ``dtype``: the zero
    input, then standard Gaussian rows from a fixed seed (small integers for integer dtypes).
    The same on every call and device."""
    generator = torch.Generator().manual_seed(_SEED)
    x = torch.randn(count, math.prod(shape), generator=generator, dtype=torch.float64)
    x[0] = 0.0
    if not dtype.is_floating_point:
        x = (2 * x).round()
    return x.to(dtype).reshape(count, *shape).to(device)


def _accumulation_roundoff(dtype: torch.dtype, device: torch.device) -> tuple[float, float]:
    """(u of the dot products' accumulation, u of the stored output) a module in ``dtype`` on
    ``device`` may use. Generous where torch may lower precision: CUDA float32 may run TF32 (or
    cuDNN's FFT algorithms), CPU float32 may be allowed bfloat16; CPU half types accumulate in
    float32, CUDA ones may not."""
    if not dtype.is_floating_point:
        return 0.0, 0.0
    stored = torch.finfo(dtype).eps / 2
    if dtype == torch.float64:
        return stored, stored
    cuda = torch.device(device).type != "cpu"
    if dtype == torch.float32:
        if cuda:
            paths, lowest = ("", "cuda.matmul.", "cudnn.conv."), ("bf16",)
            reduced = float32_matmul_precision() in ("medium", "mixed")
        else:
            paths, lowest = ("", "mkldnn.", "mkldnn.matmul.", "mkldnn.conv."), ("bf16", "tf32")
            reduced = float32_matmul_precision() != "highest"
        reduced |= any(value in lowest for _, value in fp32_precisions(paths))
        if reduced:
            return 2.0**-8, stored
        return (2.0**-11 if cuda else stored), stored
    return (stored if cuda else 2.0**-24), stored


def _gamma(terms: int, unit: float) -> float:
    """γ_m = m u / (1 − m u), capped at 1 (a relative error of 100%) where it is vacuous, so the
    probe still catches gross changes in the lowest precisions."""
    mu = terms * unit
    return 1.0 if mu >= 0.5 else min(1.0, mu / (1.0 - mu))


def _chunked(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    apply: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    count: int,
) -> torch.Tensor:
    """``apply(W_chunk, b_chunk)`` over chunks of output channels, concatenated as one layer's
    output (count, d_out · positions): the float64 copies never hold the whole weight."""
    per_channel = max(1, weight[0].numel()) if weight.shape[0] else 1
    step = max(1, _ROWS_PER_CHUNK // per_channel)
    parts = []
    for start in range(0, weight.shape[0], step):
        w = weight[start : start + step].to(torch.float64)
        b = None if bias is None else bias[start : start + step].to(torch.float64)
        parts.append(apply(w, b).reshape(count, w.shape[0], -1))
    if not parts:
        return torch.zeros(count, 0, dtype=torch.float64)
    return torch.cat(parts, dim=1).reshape(count, -1)


def _cropped(kind: LayerKind, in_shape: tuple[int, ...]):
    """(kind, shape) on an image cropped to ``_SIDE`` (or the kernel's span): a conv module
    computes the same map, with the same weights and geometry, on any image size, and a probe
    of a large image would cost as much memory as the certificate."""
    if not isinstance(kind, Conv2d) or len(in_shape) != 3:
        return kind, in_shape
    side = [
        min(n, max(_SIDE, d * (k - 1) + 1))
        for n, k, d in zip(kind.in_hw, kind.kernel, kind.dilation, strict=True)
    ]
    return dataclasses.replace(kind, in_hw=tuple(side)), (in_shape[0], *side)


def _run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | None, str | None]:
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as error:  # the module cannot even run on inputs of its own kind
        return None, f"fails on probe inputs ({type(error).__name__}: {str(error)[:120]})"
    if not isinstance(out, torch.Tensor) or type(out) is not torch.Tensor:
        return None, f"returns a {type(out).__name__} on probe inputs, not a plain tensor"
    return out.detach().to(device="cpu", dtype=torch.float64).reshape(x.shape[0], -1), None


def _compare(out: torch.Tensor, reference: torch.Tensor, tolerance: torch.Tensor) -> str | None:
    if out.shape != reference.shape:
        return (
            f"gives {out.shape[1]} outputs per probe input where its weights give "
            f"{reference.shape[1]}"
        )
    excess = (out - reference).abs() - tolerance
    excess = torch.where(torch.isnan(excess), torch.inf, excess)
    excess = torch.where(torch.isinf(tolerance), -torch.inf, excess)  # nothing to compare
    if bool((excess > 0).any()):
        worst = int(excess.flatten().argmax())
        got, want = float(out.flatten()[worst]), float(reference.flatten()[worst])
        allowed = float(tolerance.flatten()[worst])
        return (
            f"computes {got:.6g} on a probe input where its weights give {want:.6g} (rounding "
            f"allows {allowed:.3g}): it does not compute what its weights say"
        )
    return None


def affine_probe_problem(
    module: nn.Module,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kind: LayerKind,
    in_shape: tuple[int, ...],
    dtype: torch.dtype,
    device,
) -> str | None:
    """Why ``module`` does not compute ``kind``'s affine map with ``weight`` and ``bias`` on the
    probe inputs (None when it does, within the rounding of both computations).

    Args:
        module: the module as users run it (hooks, subclasses and all).
        weight: the weight the certificate reasons about, (d_out, d_in, *kernel), any dtype.
        bias: its bias, or None.
        kind: the layer kind (its geometry gives the map).
        in_shape: the per-example input shape, e.g. (d_in,) or (C, H, W).
        dtype: the dtype the module runs in (its inputs are made in it).
        device: the device the module runs on.

    Returns:
        A message naming what differs (to follow the module's name), or None.
    """
    kind, in_shape = _cropped(kind, in_shape)
    x = probe_inputs(in_shape, dtype, device)
    count, flat = x.shape[0], x.reshape(x.shape[0], -1).to(device="cpu", dtype=torch.float64)
    out, problem = _run(module, x)  # after the copy: a module may write into its input
    if problem:
        return problem
    weight = weight.detach().to("cpu")
    bias = None if bias is None else bias.detach().to("cpu")
    reference = _chunked(weight, bias, lambda w, b: kind.apply(flat, w, b), count)
    magnitude = _chunked(
        weight,
        bias,
        lambda w, b: kind.apply(flat.abs(), w.abs(), None if b is None else b.abs()),
        count,
    )
    terms = (weight[0].numel() if weight.shape[0] else 0) + (bias is not None)
    accumulate, stored = _accumulation_roundoff(dtype, device)
    relative = _gamma(terms, accumulate) + stored + _gamma(terms + 2, _U64)
    largest = float(weight.abs().max()) if weight.numel() else 0.0
    eta = torch.finfo(dtype).tiny if dtype.is_floating_point else 0.0
    absolute = (2 * terms + 2) * (eta * max(1.0, largest) + _ETA64)
    tolerance = relative * magnitude * (1 + 1e-6) + absolute
    # where the weights' magnitudes could overflow the module's dtype, nothing can be compared
    if dtype.is_floating_point:
        tolerance = torch.where(magnitude < torch.finfo(dtype).max / 8, tolerance, torch.inf)
    return _compare(out, reference, tolerance)


def op_probe_problem(
    module: nn.Module, op: Op, in_shape: tuple[int, ...], dtype: torch.dtype, device
) -> str | None:
    """Why a parameter-free ``module`` does not compute ``op`` on the probe inputs (None when
    it does): exactly for ReLU, Flatten and max pooling, within γ_{s+1} for an average pool."""
    if len(in_shape) == 3:  # the same map on a smaller image: probes stay small
        span = [max(_SIDE, k) for k in op.kernel]
        in_shape = (in_shape[0], min(in_shape[1], span[0]), min(in_shape[2], span[1]))
    x = probe_inputs(in_shape, dtype, device)
    flat = x.reshape(x.shape[0], -1).to(device="cpu", dtype=torch.float64)
    out, problem = _run(module, x)  # after the copy: a module may write into its input
    if problem:
        return problem
    reference = op.apply(flat, in_shape).reshape(x.shape[0], -1)
    terms = op.rounding_terms()
    accumulate, stored = _accumulation_roundoff(dtype, device)
    magnitude = op.apply(flat.abs(), in_shape).reshape(x.shape[0], -1)
    relative = (_gamma(terms, accumulate) + stored + _gamma(terms, _U64)) if terms else 0.0
    return _compare(out, reference, relative * magnitude)


def ball_probes(shape: tuple[int, ...], radius: float, dtype: torch.dtype, device) -> torch.Tensor:
    """The probe inputs scaled into the ball of ``radius`` (the zero input, then points just
    inside the sphere), exactly representable in ``dtype``."""
    x = probe_inputs(shape, torch.float64, "cpu").reshape(PROBES, -1)
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300)
    x = x / norms * radius * (1 - 2.0**-20)
    return x.to(dtype).reshape(PROBES, *shape).to(device)


def _reference_rounding(target, operators, radius: float) -> list[float]:
    """Bound on how far the float64 evaluation of the operators (``ticket_forward``) can be
    from exact, after each pair: each output is a dot product of at most 2·d_in·taps + 2 terms
    over entries of A and B that carry their own sums' rounding, so it errs by γ_n (|A| σ(x) +
    |B| σ(−x) + |offset|); in norm at most γ_n (M (Z + δ) + ‖offset‖ √positions), M bounded by
    √taps ‖[|A|, |B|]‖_F (no eigen-solver needed), then amplified by the next pairs like any
    deviation (‖[A, −B]‖ ≤ M)."""
    z, delta, out = radius, 0.0, []
    for index, op in enumerate(operators):
        for item in target.ops[index]:
            delta += _gamma(item.rounding_terms(), _U64) * (z + delta)
        kind, stats = op.kind, op.stats
        magnitudes = torch.cat([stats.abs_positive, stats.abs_negative], dim=1)
        bound = math.sqrt(kind.taps) * float(torch.linalg.vector_norm(magnitudes))
        offset = float(torch.linalg.vector_norm(stats.abs_offset)) * math.sqrt(kind.positions)
        terms = 2 * op.positive[0].numel() + 2 + stats.terms_per_entry
        delta = bound * delta + _gamma(terms, _U64) * (bound * (z + delta) + offset)
        z = bound * z + offset
        out.append(delta)
    return out


def operator_probe_problem(
    target, network, operators, certificate, dtype, device, *, modules_per_pair: int = 3
):
    """Why ``network`` (a ticket's ``nn.Sequential``, already read) does not compute the
    operators the certificate reasons about on the probe points of the ball (None when it
    does): after each pair, ‖network(x) − operators(x)‖ must be within the certificate's
    rounding bound Δ_i for that pair plus the float64 rounding of the comparison itself.

    This checks the reduction of each pair to A σ(x) − B σ(−x) + offset (which the per-module
    probes take on trust) against the modules as they run, end to end. ``network`` is any
    sequence of callables laid out like the target: its operations, then ``modules_per_pair``
    steps per pair (3 for U, ReLU, V; 1 for a sparse export's pair).
    """
    hidden = max(op.stats.hidden * op.kind.in_positions for op in operators)
    if hidden * PROBES > _MAX_HIDDEN:
        return None  # too large to run here at no cost; the per-module probes still ran
    radius = certificate.radius
    slack = _reference_rounding(target, operators, radius)
    x = ball_probes(tuple(target.input_shape), radius, dtype, device)
    exact = x.reshape(PROBES, -1).to(device="cpu", dtype=torch.float64)
    modules, position, shape = list(network), 0, tuple(target.input_shape)
    with torch.no_grad():
        for index in range(len(target.layers) + 1):
            for op in target.ops[index]:
                x = modules[position](x)
                exact, shape, position = op.apply(exact, shape), op.out_shape(shape), position + 1
                exact = exact.reshape(PROBES, -1)
            if index == len(target.layers):
                return None
            for module in modules[position : position + modules_per_pair]:
                x = module(x)
            position += modules_per_pair
            exact = operators[index](exact.to(operators[index].positive.device)).cpu()
            shape = target.layers[index].out_shape
            gap = torch.linalg.vector_norm(x.reshape(PROBES, -1).cpu().double() - exact, dim=1)
            allowed = (certificate.layers[index].rounding_bound + slack[index]) * (1 + 1e-9)
            if not bool((gap <= allowed).all()):
                return (
                    f"pair {index + 1} (modules {position - modules_per_pair}-{position - 1}) "
                    "computes "
                    f"{float(gap.max()):.3g} away from the operator the certificate reasons about "
                    f"on a probe input (rounding allows {allowed:.3g})"
                )
    return None
