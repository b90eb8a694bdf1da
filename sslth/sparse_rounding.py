"""Certifying a :class:`~sslth.sparse.SparseTicket` exactly as it computes (docs/design.md, "The
sparse export and its rounding term").

A sparse pair computes, for an input x̃ stored in the module's dtype,

    h̃_h = σ(fl(a_h · x̃_j(h)))        (weight units; the bias units give σ(c_h) exactly)
    ỹ_i = fl(Σ_{kept h} V_ih h̃_h)    (in the accumulation dtype, in any order)
    out_i = fl_storage(ỹ_i)            (rounded once, when storage and accumulation differ)

The scheme (:class:`SparseArithmetic`) names three unit roundoffs: ``product`` (0 when the
products are exact: two float32 numbers multiplied in float64), ``accumulation`` (γ over the L
kept terms of a row, any order) and ``storage`` (one rounding of each output). Against the exact
pair map g(x) = A σ(x) − B σ(−x) + offset, with Z ≥ ‖x‖ and Δ ≥ ‖x̃ − x‖:

    mag = M (Z + Δ) + C                      ≥ ‖ |V| h(x̃) ‖   (M = ‖[|A|, |B|]‖, C = ‖|V| σ(c)‖)
    e_h = u_product · M (Z + Δ) + N_V · underflow         (|h̃ − h| ≤ u h: σ after a rounding)
    e_s = γ_L(u_accumulation) · (mag + e_h) + underflow
    e_o = u_storage · (S (Z + Δ) + ‖offset‖ + e_h + e_s) + η_storage √outputs
    Δ'  = S Δ + e_h + e_s + e_o,      Z' = S Z + ‖offset‖,      S = ‖[A, −B]‖.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch

from sslth.certificate import (
    Certificate,
    PairOperator,
    _Reduction,
    _through_ops,
    certify_operators,
    pair_norms,
)
from sslth.errors import NotATicketError
from sslth.kinds import has_convolution
from sslth.modules import global_hook_problem, module_problem
from sslth.ops import op_of_module
from sslth.probe import operator_probe_problem
from sslth.rounding import Arithmetic, arithmetic_of
from sslth.sparse import ACCUMULATIONS, SparsePair, SparseTicket, target_digest
from sslth.target import Target

_UNIT = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
_ETA = {torch.float32: 2.0**-126, torch.float64: 2.0**-1022}


@dataclass(frozen=True)
class SparseArithmetic(Arithmetic):
    """The arithmetic of a sparse ticket: ``unit_roundoff``, ``eta`` and ``largest`` are the
    storage dtype's (the activations between pairs and the pools); products and sums inside a
    pair have their own unit roundoffs (see the module docstring)."""

    product_roundoff: float = 0.0
    accumulation_roundoff: float = 2.0**-53
    accumulation_eta: float = 2.0**-1022
    storage_rounds: bool = True  # outputs are rounded from the accumulation to the storage dtype

    def accumulation_gamma(self, terms: int) -> float:
        mu = terms * self.accumulation_roundoff
        return math.inf if mu >= 0.5 else mu / (1.0 - mu)

    def rounding_bound(self, target, operators, radius, layers=None) -> float:
        return sparse_rounding_bound(target, operators, radius, self, layers)


def sparse_arithmetic(
    dtype: torch.dtype, device, accumulate: str | None = None, *, convolution: bool = False
) -> SparseArithmetic:
    """The scheme of a sparse ticket holding ``dtype`` weights and accumulating in
    ``accumulate`` (default float64). Float32 accumulation is checked like a dense float32
    module (reduced-precision settings and NNPACK convolutions are refused)."""
    accumulate = accumulate or "float64"
    compute = ACCUMULATIONS[accumulate]
    base = arithmetic_of(compute, device, convolution=convolution)
    exact_products = dtype == torch.float32 and compute == torch.float64
    name = str(dtype).replace("torch.", "")
    if compute != dtype:
        name += f" (sparse, {accumulate} accumulation)"
    elif base.name != name:
        name = base.name + " (sparse)"
    else:
        name += " (sparse)"
    return SparseArithmetic(
        name=name,
        unit_roundoff=_UNIT[dtype],
        eta=_ETA[dtype],
        largest=float(torch.finfo(dtype).max),
        product_roundoff=0.0 if exact_products else base.unit_roundoff,
        accumulation_roundoff=base.unit_roundoff,
        accumulation_eta=_ETA[compute],
        storage_rounds=compute != dtype,
    )


def deployed_arithmetic(dtype: torch.dtype, device, target: Target) -> Arithmetic:
    """The arithmetic a ticket's report certifies: a float32 chain ticket deploys as its sparse
    export with float64 accumulation (``ticket.export(sparse=True)``, what ``ticket(x)`` runs);
    a float64 ticket, and a graph ticket (no sparse export yet), as its network."""
    convolution = has_convolution(layer.kind for layer in target.layers)
    if dtype == torch.float32 and not target.graph:
        return sparse_arithmetic(dtype, device, "float64", convolution=convolution)
    return arithmetic_of(dtype, device, convolution=convolution)


def sparse_rounding_bound(
    target: Target,
    operators: list[PairOperator],
    radius: float,
    scheme: SparseArithmetic,
    layers=None,
) -> float:
    """Δ_l of a sparse ticket computing in ``scheme`` (module docstring), layer by layer."""
    z, delta = float(radius), 0.0
    for index, (layer, op) in enumerate(zip(target.layers, operators, strict=True)):
        z, delta = _through_ops(target.ops[index], z, delta, scheme)
        stats = op.stats
        if stats is None:
            raise ValueError("a rounding bound needs the pair's magnitudes (PairStats)")
        kind = layer.kind
        spread = math.sqrt(kind.positions)
        abs_norm, signed = pair_norms(op, kind)
        bias_magnitude = float(torch.linalg.vector_norm(stats.abs_offset)) * spread
        offset = float(torch.linalg.vector_norm(op.offset)) * spread
        outputs = layer.d_out * kind.positions
        scale = max(1.0, stats.largest_weight)
        x_norm = z + delta
        hidden_error = scheme.product_roundoff * abs_norm * x_norm
        if scheme.product_roundoff:
            hidden_count = max(stats.hidden, layer.d_in) * kind.in_positions
            hidden_error += (
                stats.second_norm * scale * 4 * scheme.accumulation_eta * math.sqrt(hidden_count)
            )
        terms = stats.second_fan_in
        sum_error = scheme.accumulation_gamma(terms) * (
            abs_norm * x_norm + bias_magnitude + hidden_error
        ) + scale * (2 * terms + 2) * scheme.accumulation_eta * math.sqrt(outputs)
        computed = signed * x_norm + offset + hidden_error + sum_error
        # |h| ≤ |a| |x̃|: with float32 accumulation the hidden values are float32 too
        if not max(computed, scale * x_norm) < scheme.largest / 8:
            raise NotATicketError(
                f"pair {index + 1}: values up to {computed:.3g} could overflow {scheme.name} at "
                f"radius {radius:g}; use float64 or a smaller radius"
            )
        store_error = 0.0
        if scheme.storage_rounds:
            store_error = scheme.unit_roundoff * computed + scheme.eta * math.sqrt(outputs)
        delta = (signed * delta + hidden_error + sum_error + store_error) * (1 + 1e-12)
        if layers is not None:
            layers[index].rounding_bound = delta
        z = (signed * z + offset) * (1 + 1e-12)
    _, delta = _through_ops(target.ops[len(target.layers)], z, delta, scheme)
    return delta


# --------------------------------------------------------------------------- reading a module


def _shadowed_method(module: torch.nn.Module) -> str | None:
    """A method of the module's class replaced on the instance (its forward calls them)."""
    for name in vars(module):
        if callable(getattr(type(module), name, None)):
            return name
    return None


def _check_pair(pair: SparsePair, layer, position: int, dtype: torch.dtype) -> None:
    """Refuse a pair whose buffers are not a well-formed sparse pair for ``layer``."""
    name = f"sparse pair {position}"
    if pair.kind != layer.kind or (pair.d_in, pair.d_out) != (layer.d_in, layer.d_out):
        raise NotATicketError(f"{name} is not shaped like target layer {position}")
    for buffer in ("inputs", "starts", "rows"):
        if getattr(pair, buffer).dtype != torch.int32:
            raise NotATicketError(f"{name}: {buffer} must be int32")
    for buffer in ("scales", "values"):
        tensor = getattr(pair, buffer)
        if tensor.dtype != dtype:
            raise NotATicketError(f"{name}: {buffer} is {tensor.dtype}, the module is {dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise NotATicketError(f"{name}: {buffer} has NaN or Inf entries")
    units, inputs, starts = pair.scales.numel(), pair.inputs.long(), pair.starts.long()
    rows, entries = pair.rows.long(), pair.values.numel()
    if inputs.numel() > units or starts.numel() != units + 1 or rows.numel() != entries:
        raise NotATicketError(f"{name}: its buffers' sizes do not agree")
    if inputs.numel() and not (0 <= int(inputs.min()) and int(inputs.max()) < layer.d_in):
        raise NotATicketError(f"{name}: a unit reads an input outside 0..{layer.d_in - 1}")
    if int(starts[0]) != 0 or int(starts[-1]) != entries or bool((starts.diff() < 0).any()):
        raise NotATicketError(f"{name}: its column starts are not 0 ≤ … ≤ {entries}")
    height = layer.d_out * layer.kind.taps
    if entries and not (0 <= int(rows.min()) and int(rows.max()) < height):
        raise NotATicketError(f"{name}: a V entry's row is outside 0..{height - 1}")
    column = torch.repeat_interleave(torch.arange(units), starts.diff())
    same = column[1:] == column[:-1]
    if bool((rows.diff()[same] <= 0).any()):
        raise NotATicketError(f"{name}: a unit's V rows are not strictly increasing")


def read_sparse_ticket(target: Target, module: SparseTicket) -> list[PairOperator]:
    """The (A, B, offset) and magnitudes of each pair of ``module``, read from its buffers,
    after checking that it is a plain sparse ticket for ``target``.

    Raises:
        NotATicketError: naming what is not (a hook, a subclass, another target, bad buffers).
    """
    problem = global_hook_problem() or module_problem(module, (SparseTicket,))
    for sub in [module, *module.layers]:
        name = _shadowed_method(sub)
        if name and not problem:
            problem = f"has {type(sub).__name__}.{name} replaced on the instance"
    if problem:
        raise NotATicketError(f"the sparse ticket cannot be certified: it {problem}")
    if not torch.equal(module.target_digest.cpu(), target_digest(target)):
        raise NotATicketError("the sparse ticket was exported for another target")
    if module.accumulate not in ACCUMULATIONS or module.dtype not in _UNIT:
        raise NotATicketError("the sparse ticket's dtype or accumulation is not certified")
    expected = []
    for index in range(len(target.layers) + 1):
        expected += [("op", op) for op in target.ops[index]]
        if index < len(target.layers):
            expected.append(("pair", target.layers[index]))
    if len(module.layers) != len(expected):
        raise NotATicketError("the sparse ticket's layout is not its target's")
    operators, devices = [], {module.target_digest.device}
    for position, (sub, (role, item)) in enumerate(zip(module.layers, expected, strict=True)):
        if role == "op":
            problem = module_problem(sub, (type(item.module()),))
            if problem or op_of_module(sub) != item:
                raise NotATicketError(f"module {position} of the sparse ticket is not {item}")
            continue
        problem = module_problem(sub, (SparsePair,))
        if problem:
            raise NotATicketError(f"module {position} of the sparse ticket {problem}")
        _check_pair(sub, item, len(operators) + 1, module.dtype)
        devices |= {b.device for b in sub.buffers()}
        operators.append(_pair_operator(sub))
    if len(devices) > 1:
        raise NotATicketError(f"the sparse ticket's buffers are on several devices {devices}")
    return operators


def _pair_operator(pair: SparsePair) -> PairOperator:
    """:class:`PairOperator` of a sparse pair, a chunk of units at a time."""
    device = pair.values.device
    reduction = _Reduction(pair.d_in, pair.d_out, pair.kind, device)
    weight_units = pair.inputs.numel()
    step = max(1, (1 << 22) // max(pair.d_out * pair.kind.taps, 1))
    for start in range(0, pair.units, step):
        stop = min(pair.units, start + step)
        scales = pair.scales[start:stop].to(torch.float64)
        is_weight = torch.arange(start, stop, device=device) < weight_units
        column = torch.zeros(stop - start, dtype=torch.long, device=device)
        column[: max(0, min(stop, weight_units) - start)] = pair.inputs[
            start : min(stop, weight_units)
        ].long()
        a = torch.where(is_weight, scales, 0.0)
        c = torch.where(is_weight, 0.0, scales)
        reduction.add(a, column, c, pair.block(start, stop, torch.float64))
    return reduction.result()


def certify_sparse(target: Target, module: SparseTicket, radius: float) -> Certificate:
    """The certificate of a sparse ticket as it computes: exact part from its kept weights,
    rounding part from its own scheme (:class:`SparseArithmetic`)."""
    operators = read_sparse_ticket(target, module)
    convolution = has_convolution(layer.kind for layer in target.layers)
    scheme = sparse_arithmetic(
        module.dtype, module.target_digest.device, module.accumulate, convolution=convolution
    )
    certificate = certify_operators(target, operators, radius, scheme)
    steps = [
        partial(module.run_pair, sub) if isinstance(sub, SparsePair) else sub
        for sub in module.layers
    ]
    problem = operator_probe_problem(
        target,
        steps,
        operators,
        certificate,
        module.dtype,
        module.target_digest.device,
        modules_per_pair=1,
    )
    if problem:
        raise NotATicketError(f"the sparse ticket's {problem}: not what its buffers say")
    return certificate


__all__ = [
    "SparseArithmetic",
    "certify_sparse",
    "deployed_arithmetic",
    "read_sparse_ticket",
    "sparse_arithmetic",
    "sparse_rounding_bound",
]
