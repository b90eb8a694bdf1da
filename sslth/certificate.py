"""The certificate: a bound on sup_{||x|| ≤ R} ||f(x) − g(x)|| for the module that runs, and an
empirical lower estimate of the error (docs/design.md, "The certificate").

**Exact part.** Each random pair computes x ↦ V σ(U x + c). When every neuron reads a single
input (which the ticket's masks guarantee, and which we check), this is exactly

    A σ(x) − B σ(−x) + c_out,

with A[:, j] the sum of u_h V[:, h] over neurons with u_h > 0 reading x_j, B[:, j] minus the sum
of |u_h| V[:, h] over those with u_h < 0, and c_out = Σ_h V[:, h] σ(c_h) over the neurons that
read only the constant (the bias block). Against the target layer W x + b, the error is

    ||[A − W, W − B] [σ(x); σ(−x)] + (c_out − b)|| ≤ E ||x|| + β,

since ||[σ(x); σ(−x)]|| = ||x||, with E = ||[A − W, W − B]||_2 and β = ||c_out − b||.
ReLU is 1-Lipschitz, so with P_i = ||W_i||_2, r_0 = R, err_0 = 0:

    err_i = P_i err_{i−1} + E_i (r_{i−1} + err_{i−1}) + β_i,   r_i = P_i r_{i−1} + ||b_i||,

and err_l bounds the error of the masked network in exact arithmetic. For a conv the norms are
operator norms on the layer's input shape, and a bias is added at every output position.

**Rounding part.** The module runs in floating point; :func:`rounding_bound` bounds how far its
output can be from the exact masked network's (see :mod:`sslth.rounding`). The certified
number is the sum of the two parts.

All of it is computed in float64 from the weights the network holds, and every norm is an
upper bound that includes the float64 rounding of its own computation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import partial

import torch

from sslth.errors import NotATicketError
from sslth.kinds import DENSE, LayerKind
from sslth.rounding import EXACT, Arithmetic
from sslth.target import Target

_U64 = 2.0**-53


@dataclass
class PairStats:
    """Magnitudes of a masked pair, for the rounding term and for the float64 rounding of A and
    B themselves."""

    abs_positive: torch.Tensor  # Σ |u_h V[:, h]| over neurons with u_h > 0, shaped like A
    abs_negative: torch.Tensor  # the same over u_h < 0, shaped like B
    abs_offset: torch.Tensor  # (d_out,) Σ σ(c_h) |V[:, h]| over the bias neurons
    first_norm: float  # ||U|| = || |U| || (one non-zero per row)
    first_bias_norm: float  # ||c|| over the hidden neurons, per position
    first_fan_in: int  # non-zero terms (weights and bias) of one hidden neuron, at most
    second_fan_in: int  # non-zero terms of one output of V over live neurons, at most
    second_norm: float  # upper bound on || |V| || over live neurons (≥ ||V||)
    terms_per_entry: int  # neurons summed into one entry of A or B, at most
    hidden: int = 0  # hidden neurons of the pair (per position), pruned ones included
    # largest |weight| of U, c and V: with flush-to-zero, one operation can lose |w|·η
    largest_weight: float = 1.0


@dataclass
class PairOperator:
    """A σ(x) − B σ(−x) + offset: what one masked random pair computes, exactly.

    A and B have the target layer's weight shape (d_out, d_in, *kernel); the offset is added at
    every output position.
    """

    positive: torch.Tensor  # A, (d_out, d_in, *kernel) float64
    negative: torch.Tensor  # B, (d_out, d_in, *kernel) float64
    offset: torch.Tensor  # (d_out,) float64
    kind: LayerKind = DENSE
    stats: PairStats | None = None
    norms: dict = field(default_factory=dict, repr=False, compare=False)  # computed once

    def norm(self, name: str, compute, *args) -> float:
        """``compute(*args)``, remembered under ``name`` (names carry a digest of the tensors
        they depend on, so an edited tensor is computed again)."""
        if name not in self.norms:
            self.norms[name] = compute(*args)
        return self.norms[name]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.kind.apply(torch.relu(x), self.positive, None) - self.kind.apply(
            torch.relu(-x), self.negative, None
        )
        if self.kind.positions == 1:
            return out + self.offset
        return out + self.offset.repeat_interleave(self.kind.positions)


def pair_operator(
    first_weight: torch.Tensor,
    first_bias: torch.Tensor | None,
    second_weight: torch.Tensor,
    kind: LayerKind = DENSE,
) -> PairOperator:
    """Reduce a masked pair (U, c, V) to (A, B, offset) and its magnitudes.

    Args:
        first_weight: U as the module holds it, (hidden, d_in) or (hidden, d_in, 1, 1).
        first_bias: c, (hidden,), or None.
        second_weight: V, (d_out, hidden, *kernel).
        kind: the layer kind the pair stands in for.

    Returns:
        The operator, with :class:`PairStats`.

    Raises:
        NotATicketError: a neuron reads two inputs, or both an input and the bias.

    Works on the weights in their own dtype and converts only per-neuron vectors and chunks of
    V to float64: at the published scale U alone is 45 M entries, and float64 copies of it and
    of V were most of the memory of a report.
    """
    u = first_weight.reshape(first_weight.shape[0], first_weight.shape[1])
    v = second_weight
    hidden, d_in = u.shape
    nonzero = u != 0
    reads = nonzero.sum(dim=1)
    if bool((reads > 1).any()):
        h = int((reads > 1).nonzero()[0])
        raise NotATicketError(
            f"hidden neuron {h} reads {int(reads[h])} inputs: not a ticket structure"
        )
    c = torch.zeros(hidden, dtype=torch.float64, device=u.device)
    if first_bias is not None:
        c = first_bias.to(device=u.device, dtype=torch.float64)
    both = (reads == 1) & (c != 0)
    if bool(both.any()):
        h = int(both.nonzero()[0])
        raise NotATicketError(
            f"hidden neuron {h} has both an input weight and a bias: not a ticket structure"
        )
    column = nonzero.to(torch.int8).argmax(dim=1)
    del nonzero
    a = u.gather(1, column[:, None]).squeeze(1).to(torch.float64)
    return _reduce(a, column, c, v, d_in, kind)


# (neuron, row) entries of V reduced at once: about 32 MiB of float64 per temporary
REDUCTION_ENTRIES = 1 << 22


def _reduce(
    a: torch.Tensor,
    column: torch.Tensor,
    c: torch.Tensor,
    v: torch.Tensor,
    d_in: int,
    kind: LayerKind = DENSE,
) -> PairOperator:
    """A, B, offset and their magnitudes from each neuron's input weight ``a`` (0 if pruned),
    the input it reads, its bias ``c`` and V (d_out, hidden, *kernel), in chunks of neurons."""
    reduction = _Reduction(d_in, v.shape[0], kind, v.device)
    rows = kind.to_rows(v)
    chunk = max(1, REDUCTION_ENTRIES // max(rows.shape[0], 1))
    for start in range(0, rows.shape[1], chunk):
        stop = min(rows.shape[1], start + chunk)
        reduction.add(a[start:stop], column[start:stop], c[start:stop], rows[:, start:stop])
    return reduction.result()


class _Reduction:
    """Accumulates A, B, the offset and the magnitudes of :class:`PairStats` over chunks of
    hidden neurons, so that V never needs to be held whole."""

    def __init__(self, d_in: int, d_out: int, kind: LayerKind, device) -> None:
        self.d_in, self.d_out, self.kind, self.device = d_in, d_out, kind, device
        rows = d_out * kind.taps
        zeros = torch.zeros(d_in, rows, dtype=torch.float64, device=device)
        self.positive, self.negative = zeros, zeros.clone()
        self.abs_positive, self.abs_negative = zeros.clone(), zeros.clone()
        self.offset = torch.zeros(rows, dtype=torch.float64, device=device)
        self.abs_offset = torch.zeros_like(self.offset)
        self.row_abs = torch.zeros_like(self.offset)
        self.row_terms = torch.zeros(rows, dtype=torch.int64, device=device)
        self.column_abs_max = torch.zeros(kind.taps, dtype=torch.float64, device=device)
        self.squares = torch.zeros(d_in, dtype=torch.float64, device=device)
        # live neurons per input, and (last slot) those that read only the constant: a bias
        # neuron is counted there whatever input column it is filed under
        self.counts = torch.zeros(d_in + 1, dtype=torch.int64, device=device)
        self.bias_squares = torch.zeros(1, dtype=torch.float64, device=device)
        self.fan_in = 0
        self.hidden = 0
        self.largest = 0.0
        # the offset is constant at every output position only through the constant taps
        self.moving_taps = ~kind.constant_taps().to(device)

    def add(self, a, column, c, v_rows) -> None:
        """Neurons with input weights ``a`` on inputs ``column``, biases ``c``, and V's columns
        ``v_rows`` (rows, chunk) in the matrix view."""
        device = self.device
        a = a.to(device=device, dtype=torch.float64)
        column, c = column.to(device), c.to(device=device, dtype=torch.float64)
        # a neuron with no input weight and no positive bias outputs exactly 0: its V entries
        # add exact zeros to every sum, so they count neither as terms nor in |V|
        live = (a != 0) | (c > 0)
        part = v_rows.to(device=device, dtype=torch.float64).T  # (chunk, rows)
        a_part = a[:, None]
        self.positive.index_add_(0, column, part * a_part.clamp(min=0))
        self.negative.index_add_(0, column, part * a_part.clamp(max=0))  # = −|a| V, a < 0
        bias = torch.relu(c)
        magnitude = part.abs() * live[:, None]
        self.abs_positive.index_add_(0, column, magnitude * a_part.clamp(min=0))
        self.abs_negative.index_add_(0, column, magnitude * (-a_part).clamp(min=0))
        # Every sum over neurons is a sequential index_add_ in neuron order, never a matmul or
        # a reduction whose association depends on the chunk, the threads or the SIMD width:
        # the network's pair and the compact masks (chunked differently) give the same bits,
        # so a report and its recomputation on load agree exactly (``sslth verify``).
        carriers = bias > 0
        self._sum_into(self.offset, bias[carriers, None] * part[carriers])
        self._sum_into(self.abs_offset, bias[carriers, None] * magnitude[carriers])
        self._sum_into(self.row_abs, magnitude)
        self.row_terms += (magnitude != 0).sum(dim=0)
        per_tap = magnitude.view(part.shape[0], self.d_out, self.kind.taps).sum(dim=1)
        if per_tap.numel():
            self.column_abs_max = torch.maximum(self.column_abs_max, per_tap.max(dim=0).values)
        if bool(self.moving_taps.any()):
            through = (bias[:, None] * magnitude).view(-1, self.d_out, self.kind.taps)
            if bool((through[:, :, self.moving_taps] != 0).any()):
                raise NotATicketError(
                    "a bias neuron reaches the output through a kernel position that leaves the "
                    "image at some output position: its contribution is not a constant offset, "
                    "not a ticket structure"
                )
        self.hidden += a.shape[0]
        self.squares.index_add_(0, column, a * a)
        slot = torch.where(a != 0, column, self.d_in)
        self.counts += torch.bincount(slot[live], minlength=self.d_in + 1)
        self._sum_into(self.bias_squares, (c * c)[:, None])
        if a.numel():
            self.fan_in = max(self.fan_in, int(((a != 0).to(torch.int64) + (c != 0)).max()))
            # V entries of dead neurons multiply an exact zero and lose nothing to underflow,
            # so |V| over the live ones (already in ``magnitude``) is the largest that matters
            self.largest = max(
                self.largest, float(a.abs().max()), float(c.abs().max()), float(magnitude.max())
            )

    @staticmethod
    def _sum_into(total: torch.Tensor, terms: torch.Tensor) -> None:
        """total += Σ_i terms[i], added one row at a time in order (torch's index_add_ on
        one index), so the rounding does not depend on how the neurons were chunked."""
        if terms.shape[0]:
            index = torch.zeros(terms.shape[0], dtype=torch.long, device=terms.device)
            total.view(1, -1).index_add_(0, index, terms.reshape(terms.shape[0], total.numel()))

    def result(self) -> PairOperator:
        kind, d_out, d_in = self.kind, self.d_out, self.d_in
        # ||T_|V||| <= Σ_taps || |V_t| || <= Σ_taps sqrt(max row sum · max column sum)
        row_abs_max = self.row_abs.view(d_out, kind.taps).max(dim=0).values
        second_norm = float((row_abs_max * self.column_abs_max).sqrt().sum())
        stats = PairStats(
            abs_positive=kind.from_rows(self.abs_positive.T.contiguous(), d_out),
            abs_negative=kind.from_rows(self.abs_negative.T.contiguous(), d_out),
            abs_offset=self.abs_offset.view(d_out, kind.taps).sum(dim=1),
            first_norm=float(self.squares.max().sqrt()) if d_in else 0.0,
            first_bias_norm=math.sqrt(float(self.bias_squares)),
            first_fan_in=self.fan_in,
            second_fan_in=int(self.row_terms.view(d_out, kind.taps).sum(dim=1).max()),
            second_norm=second_norm,
            terms_per_entry=int(self.counts.max()) + 1 if self.counts.numel() else 1,
            hidden=self.hidden,
            largest_weight=self.largest,
        )
        offset = self.offset.view(d_out, kind.taps).sum(dim=1) if kind.taps > 1 else self.offset
        return PairOperator(
            kind.from_rows(self.positive.T.contiguous(), d_out),
            kind.from_rows(self.negative.T.contiguous(), d_out),
            offset,
            kind,
            stats,
        )


def masked_pair_operator(spec, masks, device=None) -> PairOperator:
    """The operator of a ticket's pair from its compact masks, drawing V a run of blocks at a
    time from the seed (never the dense U, nor all of V at once). The same function as
    :func:`pair_operator` of the dense masked pair (which the tests check), and the same bits
    whatever the runs: every sum of :class:`_Reduction` is in neuron order."""
    from sslth.construct import blocks_diagonal, blocks_second_t, input_of_neuron

    device = device or torch.device("cpu")
    reduction = _Reduction(spec.d_in, spec.d_out, spec.kind, device)
    matrix = spec.kind.to_rows(masks.second)
    block_of = input_of_neuron(spec)
    for start, stop in _block_runs(spec.block_offsets, REDUCTION_ENTRIES // max(spec.rows, 1)):
        first, last = spec.block_offsets[start], spec.block_offsets[stop]
        kept = masks.kept_neurons[first:last]
        value = torch.where(kept, blocks_diagonal(spec, start, stop).to(torch.float64), 0.0)
        second = blocks_second_t(spec, start, stop).T * matrix[:, first:last]
        block = block_of[first:last]
        # a weight block's neuron reads its input with U's diagonal entry; the bias block's
        # neurons read only the constant, their U entry is a bias (filed under the last input)
        weight = block < spec.d_in
        zero = torch.zeros_like(value)
        column = block.clamp(max=spec.d_in - 1)
        reduction.add(
            torch.where(weight, value, zero), column, torch.where(weight, zero, value), second
        )
    return reduction.result()


def _block_runs(offsets: tuple[int, ...], neurons: int) -> list[tuple[int, int]]:
    """Consecutive blocks (start, stop) of at most ``neurons`` neurons together (a larger block
    alone), given the blocks' neuron offsets."""
    runs, start = [], 0
    blocks = len(offsets) - 1
    while start < blocks:
        stop = start + 1
        while stop < blocks and offsets[stop + 1] - offsets[start] <= neurons:
            stop += 1
        runs.append((start, stop))
        start = stop
    return runs


@dataclass
class LayerCertificate:
    weight_norm: float  # P_i = ||W_i||_2
    pair_error_norm: float  # E_i = ||[A − W, W − B]||_2
    bias_error: float  # β_i = ||offset − b||
    max_weight_error: float  # max |A − W|, |B − W| entrywise
    input_radius: float  # r_{i−1}
    error_bound: float  # err_i (exact arithmetic)
    rounding_bound: float = 0.0  # Δ_i: the module's output after pair i vs. exact arithmetic
    input_error: float | None = None  # err at the layer's input (graph targets; chains: err_{i−1})


@dataclass
class Certificate:
    radius: float
    exact: float  # err_l: the masked network in exact arithmetic
    rounding: float  # Δ_l: the module's floating-point rounding
    arithmetic: str = "exact"
    layers: list[LayerCertificate] = field(default_factory=list)
    # graph targets: per layer, the bound's growth per unit of the layer's own error (a chain
    # leaves it None: Π_{j>i} (P_j + E_j))
    gains: list[float] | None = None

    @property
    def bound(self) -> float:
        """The certified error: exact part plus rounding part."""
        return self.exact + self.rounding


# The relative error the certificate allows a float64 operator norm computed by torch's
# linear algebra (SVD, FFT), and adds to every norm it uses.
NORM_RELATIVE_ERROR = 1e-9


def _norm_upper(kind: LayerKind, weight: torch.Tensor) -> float:
    """The kind's operator norm, raised by the float64 rounding of the norm computation."""
    return kind.operator_norm(weight) * (1 + NORM_RELATIVE_ERROR)


def recomputation_tolerance(layers: int) -> float:
    """How far (relative) two computations of one ticket's certified error can differ.

    sslth's own sums are done in a fixed order (:class:`_Reduction`), so on one machine the
    report and its recomputation agree to the bit. The norms come from torch's linear algebra,
    whose rounding may differ between machines, thread counts and devices, by at most
    ``NORM_RELATIVE_ERROR`` relative (the certificate's own assumption: it raises every norm by
    that much to stay an upper bound). Each term of the certified error is a product of at
    most one norm per layer (err_i and Δ_i are degree i in them) with non-negative
    coefficients, so two computations differ by at most a factor ((1 + s) / (1 − s))^layers.
    """
    s = NORM_RELATIVE_ERROR
    return ((1 + s) / (1 - s)) ** max(int(layers), 1) - 1


_TARGET_NORMS: dict[tuple, float] = {}


def _fingerprint(tensor: torch.Tensor) -> str:
    """A digest of a tensor's content: a cached norm is reused only for the same values."""
    data = tensor.detach().cpu().contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _target_norm(layer) -> float:
    """P_i, computed once per target weight (the search certifies the same target many
    times); keyed by the weight's content and kind, so an edited weight is computed again."""
    key = (_fingerprint(layer.weight), tuple(layer.weight.shape), layer.kind)
    if key not in _TARGET_NORMS:
        if len(_TARGET_NORMS) > 256:
            _TARGET_NORMS.clear()
        _TARGET_NORMS[key] = _norm_upper(layer.kind, layer.weight)
    return _TARGET_NORMS[key]


def certify_operators(
    target: Target,
    operators: list[PairOperator],
    radius: float,
    arithmetic: Arithmetic = EXACT,
) -> Certificate:
    """The certified bound from the per-pair operators.

    Args:
        target: the target.
        operators: one per target layer, with :class:`PairStats` unless ``arithmetic`` is
            exact.
        radius: R, the radius of the input ball.
        arithmetic: the arithmetic of the module that runs (see :mod:`sslth.rounding`).

    Returns:
        The certificate; ``bound`` is the certified error.
    """
    if len(operators) != len(target.layers):
        raise NotATicketError(
            f"{len(operators)} random pairs for {len(target.layers)} target layers"
        )
    if target.graph:
        from sslth.graph_certify import certify_graph

        return certify_graph(target, operators, float(radius), arithmetic)
    radius_in, error = float(radius), 0.0
    layers = []
    for layer, op in zip(target.layers, operators, strict=True):
        certificate, error, radius_in = layer_step(layer, op, radius_in, error)
        layers.append(certificate)
    rounding = rounding_bound(target, operators, radius, arithmetic, layers)
    return Certificate(float(radius), error, rounding, arithmetic.name, layers)


def layer_step(
    layer, op: PairOperator, radius_in: float, error: float
) -> tuple[LayerCertificate, float, float]:
    """One pair of the exact part: its :class:`LayerCertificate`, err_i and r_i from the bounds
    (r_{i−1}, err_{i−1}) on its input. A folded BatchNorm's rounding (``layer.fold_error``)
    widens P, E, β and the radius, so the bound holds for the model's exact function."""
    fold_weight, fold_bias = layer.fold_error
    w = layer.weight.to(op.positive.device)
    if op.positive.shape != w.shape:
        raise NotATicketError(
            f"pair of shape {tuple(op.positive.shape)} for a layer {tuple(w.shape)}"
        )
    kind = layer.kind
    # the model's exact weight is within fold_weight of W (adding 0.0 leaves a float unchanged)
    weight_norm = _target_norm(layer) + fold_weight
    stacked = torch.cat([op.positive - w, w - op.negative], dim=1)
    pair_error = op.norm(
        f"error:{_fingerprint(w)}:{_fingerprint(op.positive)}:{_fingerprint(op.negative)}",
        _error_norm,
        kind,
        op,
        stacked,
    )
    pair_error += math.sqrt(2.0) * fold_weight * (1 + 1e-12)  # ||[−ΔW, ΔW]|| = √2 ||ΔW||
    bias = torch.zeros_like(op.offset) if layer.bias is None else layer.bias.to(op.offset.device)
    # a bias is added at every output position: its norm grows with their square root
    spread = math.sqrt(kind.positions)
    bias_error = float(torch.linalg.vector_norm(op.offset - bias)) * spread * (1 + 1e-12)
    if op.stats is not None:
        bias_error += (
            _U64
            * op.stats.terms_per_entry
            * 2
            * float(torch.linalg.vector_norm(op.stats.abs_offset))
            * spread
        )
    bias_error += fold_bias * spread * (1 + 1e-12)
    new_error = weight_norm * error + pair_error * (radius_in + error) + bias_error
    certificate = LayerCertificate(
        weight_norm,
        pair_error,
        bias_error,
        float(stacked.abs().max()) if stacked.numel() else 0.0,
        radius_in,
        new_error * (1 + 1e-12),
    )
    error = new_error * (1 + 1e-12)  # the recursion's own float64 rounding
    bias_norm = float(torch.linalg.vector_norm(bias)) + fold_bias
    radius_out = (weight_norm * radius_in + bias_norm * spread) * (1 + 1e-12)
    return certificate, error, radius_out


def _error_norm(kind: LayerKind, op: PairOperator, stacked: torch.Tensor) -> float:
    """E: the norm of the stacked error weight, raised by the rounding of A and B."""
    return _norm_upper(kind, stacked) + _entry_rounding(op, stacked)


def _entry_rounding(op: PairOperator, stacked: torch.Tensor) -> float:
    """Bound on ||computed [A − W, W − B] − exact|| from the float64 sums that built A and B
    (each entry a sum of at most ``terms_per_entry`` products, then a subtraction)."""
    if op.stats is None:
        return 0.0
    gamma = 2 * (op.stats.terms_per_entry + 1) * _U64
    magnitude = torch.linalg.vector_norm(
        torch.cat([op.stats.abs_positive, op.stats.abs_negative], dim=1)
    )
    return gamma * float(magnitude) + 2 * _U64 * float(torch.linalg.vector_norm(stacked))


def rounding_bound(
    target: Target,
    operators: list[PairOperator],
    radius: float,
    arithmetic: Arithmetic,
    layers: list[LayerCertificate] | None = None,
) -> float:
    """Δ_l: how far the module's floating-point output can be from the exact masked network's,
    over the ball (docs/design.md, "The rounding term").

    With Z the norm bound on the exact input x of a pair, Δ ≥ ||x̃ − x|| the deviation of the
    computed input x̃, S = ||[A, −B]||, M = ||[|A|, |B|]||, C = || |V| σ(c) || and N_V ≥ || |V| ||:

        e:  E   = γ_{m_U} (√2 M (Z + Δ) + C) + N_V · underflow(U)     ≥ || |V| |h̃ − σ(U x̃ + c)| ||
        V:  Δ'  = S Δ + E + γ_{m_V} (M (Z + Δ) + C + E) + underflow(V)
        Z'  = S Z + ||offset||

    The exact pair is the map x ↦ A σ(x) − B σ(−x) + offset for every x, and (σ(x), σ(−x)) is
    1-Lipschitz, so the deviation carried in costs S Δ. S is the smaller of ||[A, −B]|| and
    P + E (the layer's certified weight and pair-error norms): A σ(x) − B σ(−x) =
    W x + [A − W, W − B] [σ(x); σ(−x)], so P + E bounds the same map's growth, and for a good
    ticket (A ≈ B ≈ W) it is about P where ||[A, −B]|| ≈ ||[W, −W]|| = √2 P: compounded over a
    ResNet-20's 22 pairs the √2 made its float64 rounding term 100 times larger (0.2 instead of
    0.002; docs/design.md, "The rounding term"). Only the roundings inside the pair go
    through the magnitudes (|V| |U| |x̃| = (|A| + |B|) |x̃|, whose norm is at most √2 M ||x̃||).
    Carrying Δ through ||U|| · N_V instead (a bound ~10³ per layer at d = 256) made a float64
    LeNet-5's rounding term 20 where its exact part was 0.008. ReLU, max pooling and Flatten are
    exact. Underflow adds :meth:`Arithmetic.underflow` per layer.

    Raises:
        NotATicketError: a value could overflow the arithmetic at this radius.
    """
    if arithmetic.exact:
        return 0.0
    own_scheme = getattr(arithmetic, "rounding_bound", None)
    if own_scheme is not None:  # a module with its own summation scheme (sslth.sparse_rounding)
        return own_scheme(target, operators, radius, layers)
    z, delta = float(radius), 0.0
    for index, (layer, op) in enumerate(zip(target.layers, operators, strict=True)):
        z, delta = _through_ops(target.ops[index], z, delta, arithmetic)
        certified = None if layers is None else layers[index]
        z, delta = pair_rounding(index, layer, op, z, delta, arithmetic, radius, certified)
        if layers is not None:
            layers[index].rounding_bound = delta
    _, delta = _through_ops(target.ops[len(target.layers)], z, delta, arithmetic)
    return delta


def pair_rounding(
    index: int,
    layer,
    op: PairOperator,
    z: float,
    delta: float,
    arithmetic: Arithmetic,
    radius,
    certified: LayerCertificate | None = None,
) -> tuple[float, float]:
    """(Z', Δ') after pair ``index`` from (Z, Δ) at its input (see :func:`rounding_bound`);
    ``certified``, the pair's exact-part certificate, caps S at P + E.

    Raises:
        NotATicketError: a value could overflow the arithmetic at this radius.
    """
    stats = op.stats
    if stats is None:
        raise ValueError("a rounding bound needs the pair's magnitudes (PairStats)")
    kind = layer.kind
    in_positions = getattr(kind, "in_positions", 1)
    spread = math.sqrt(kind.positions)
    hidden_magnitude = stats.first_norm * (z + delta) + stats.first_bias_norm * math.sqrt(
        in_positions
    )
    abs_norm, signed = pair_norms(op, kind)
    if certified is not None:
        signed = min(signed, (certified.weight_norm + certified.pair_error_norm) * (1 + 1e-12))
    bias_magnitude = float(torch.linalg.vector_norm(stats.abs_offset)) * spread
    hidden_count = max(stats.hidden, layer.d_in) * in_positions
    # flush-to-zero also zeroes subnormal operands, so an operation can lose |w|·η, not η
    scale = max(1.0, stats.largest_weight)
    hidden_error = (
        arithmetic.gamma(stats.first_fan_in)
        * (math.sqrt(2.0) * abs_norm * (z + delta) + bias_magnitude)
        + stats.second_norm * scale * arithmetic.underflow(stats.first_fan_in, hidden_count)
    ) * (1 + 1e-12)
    output_magnitude = abs_norm * (z + delta) + bias_magnitude + hidden_error
    largest = max(hidden_magnitude, output_magnitude)
    if not largest < arithmetic.largest / 8:
        raise NotATicketError(
            f"pair {index + 1}: values up to {largest:.3g} could overflow {arithmetic.name} "
            f"at radius {radius:g}; use float64 or a smaller radius"
        )
    delta = (
        signed * delta
        + hidden_error
        + arithmetic.gamma(stats.second_fan_in) * output_magnitude
        + scale * arithmetic.underflow(stats.second_fan_in, layer.d_out * kind.positions)
    ) * (1 + 1e-12)
    offset = float(torch.linalg.vector_norm(op.offset)) * spread
    return (signed * z + offset) * (1 + 1e-12), delta


def pair_norms(op: PairOperator, kind: LayerKind) -> tuple[float, float]:
    """(M, S) of a pair, computed once per content: M = ‖[|A|, |B|]‖ (the kept magnitudes) and
    S = ‖[A, −B]‖ (the exact pair's Lipschitz constant), as operator norms of ``kind``."""
    stats = op.stats
    magnitudes = op.norm(
        f"magnitudes:{_fingerprint(stats.abs_positive)}:{_fingerprint(stats.abs_negative)}",
        _norm_upper,
        kind,
        torch.cat([stats.abs_positive, stats.abs_negative], dim=1),
    )
    signed = op.norm(
        f"signed:{_fingerprint(op.positive)}:{_fingerprint(op.negative)}",
        _norm_upper,
        kind,
        torch.cat([op.positive, -op.negative], dim=1),
    )
    return magnitudes, signed


def _through_ops(ops, z: float, delta: float, arithmetic: Arithmetic) -> tuple[float, float]:
    """(Z, Δ) after parameter-free operations: all 1-Lipschitz and norm-non-increasing, and
    exact but for average pooling, whose sum and division round (γ_{s+1} of the window's mean
    magnitude, whose norm is at most the input's)."""
    for op in ops:
        terms = op.rounding_terms()
        if terms:
            delta += arithmetic.gamma(terms) * (z + delta)
    return z, delta


def ticket_forward(target: Target, operators: list[PairOperator], x: torch.Tensor) -> torch.Tensor:
    """The exact masked network (each pair as its operator) in the target's structure."""
    return target.run(x.to(torch.float64), lambda index, values: operators[index](values))


def _ball_points(
    count: int, dim: int, radius: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` points on the sphere and ``count`` uniform in the ball (float64): with biases
    the worst point is often inside, e.g. where the first pair's kinks are (x_j = 0)."""
    direction = torch.randn(2 * count, dim, generator=generator, dtype=torch.float64)
    direction /= torch.linalg.vector_norm(direction, dim=1, keepdim=True).clamp_min(1e-300)
    scale = torch.rand(count, 1, generator=generator, dtype=torch.float64) ** (1.0 / dim)
    return direction[:count] * radius, direction[count:] * (scale * radius)


def _landmarks(dim: int, radius: float) -> torch.Tensor:
    """x = 0 and ±R along the first axes: kinks and corners a random draw rarely hits
    (129 × dim values at most: the rows of eye(dim) it once built cost dim², 65 GB at 300²)."""
    count = min(dim, 64)
    axes = torch.zeros(count, dim, dtype=torch.float64)
    axes[torch.arange(count), torch.arange(count)] = radius
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), axes, -axes])


EMPIRICAL_BATCH_ENTRIES = 2**23  # values (64 MiB) per tensor of the empirical check


def _values_per_example(target: Target) -> int:
    """The most values one example takes in a tensor of the empirical check: the input, a
    layer's output, or a conv's unfolded input (c_in · taps per output position)."""
    sizes = [target.input_size]
    for layer in target.layers:
        out = math.prod(layer.out_shape)
        sizes += [out, out // layer.d_out * layer.d_in * layer.kind.taps]
    return max(sizes)


def empirical_batch(samples: int, target: Target) -> int:
    """Random points :func:`empirical_error` runs through both networks at once (of each kind,
    sphere and ball): ``EMPIRICAL_BATCH_ENTRIES`` values in its widest tensor (the input, a
    layer's output, or a conv's unfolded input)."""
    return max(1, min(samples, EMPIRICAL_BATCH_ENTRIES // _values_per_example(target)))


def empirical_error(
    target: Target,
    operators: list[PairOperator],
    radius: float = 1.0,
    *,
    samples: int = 10_000,
    ascent_starts: int = 8,
    ascent_steps: int = 100,
    seed: int = 0,
    device=None,
    forward=None,
) -> float:
    """A lower estimate of sup_{||x|| ≤ R} ||f(x) − g(x)|| for the exact masked network
    (float64): the worst of ``samples`` random points, half on the sphere and half uniform in
    the ball, x = 0 and the axis points ±R e_j, then projected gradient ascent inside the ball
    from the worst points of each kind. ``forward`` (a float64 callable) stands in for the
    pairs' operators when the ticket is not made of pairs (the l+1 construction)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    generator = torch.Generator().manual_seed(seed)
    dim = target.input_size
    device = device or operators[0].positive.device
    if forward is None:
        forward = partial(ticket_forward, target, operators)

    def gap(x: torch.Tensor) -> torch.Tensor:
        exact = target.forward(x) - forward(x)
        return torch.linalg.vector_norm(exact, dim=1)

    # points are drawn EMPIRICAL_BATCH_ENTRIES input values at a time (so the random stream
    # does not depend on the layers) and run empirical_batch points at a time
    chunk = max(1, min(samples, EMPIRICAL_BATCH_ENTRIES // max(dim, 1)))
    rows = empirical_batch(samples, target)

    def gaps(points: torch.Tensor) -> torch.Tensor:
        return torch.cat([gap(part.to(device)).cpu() for part in points.split(rows)])

    groups: list[tuple[torch.Tensor, torch.Tensor]] = []  # (worst gaps, their points) per kind
    best = 0.0
    with torch.no_grad():
        landmarks = _landmarks(dim, radius)
        groups.append((gaps(landmarks), landmarks))
        half = max(1, samples // 2)
        for start in range(0, half, chunk):
            for points in _ball_points(min(chunk, half - start), dim, radius, generator):
                values = gaps(points)
                top = values.topk(min(ascent_starts, len(values))).indices
                groups.append((values[top], points[top]))
    starts = []
    for kind in (slice(0, 1), slice(1, None, 2), slice(2, None, 2)):
        values = torch.cat([g[0] for g in groups[kind]])
        points = torch.cat([g[1] for g in groups[kind]])
        best = max(best, float(values.max()))
        starts.append(points[values.topk(min(max(ascent_starts // 3, 1), len(values))).indices])
    x = torch.cat(starts).to(device).requires_grad_(True)
    step = 0.1 * radius
    for _ in range(ascent_steps):
        g = gap(x)
        best = max(best, float(g.detach().max()))
        (grad,) = torch.autograd.grad(g.sum(), x)
        with torch.no_grad():
            norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min(1e-300)
            x += step * grad / norm
            length = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            x *= torch.clamp(radius / length.clamp_min(1e-300), max=1.0)
        step *= 0.96
    with torch.no_grad():
        best = max(best, float(gap(x).max()))
    return best if math.isfinite(best) else float("nan")
