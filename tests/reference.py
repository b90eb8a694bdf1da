"""An independent, deliberately simple float64 reference for a ticket's certificate.

Written apart from the package: nothing here imports ``sslth``. It reads only torch modules
(the ticket's masked ``nn.Sequential``) and the target's weights, converts everything to numpy
float64 and recomputes, with plain loops over hidden neurons, what docs/design.md §2–§3 and the
README ("What is certified") say a ticket is:

* each masked pair (U with its optional bias, ReLU, V) computes exactly
  ``A σ(x) − B σ(−x) + c`` with
  ``A[i, j] = Σ_{h reads j, u_h > 0} u_h V[i, h]``,
  ``B[i, j] = −Σ_{h reads j, u_h < 0} |u_h| V[i, h]``,
  ``c[i] = Σ_{h reads only its bias} relu(b_h) V[i, h]``;
* the certificate recursion, with P_i = ‖W_i‖₂, E_i = ‖[A_i − W_i, W_i − B_i]‖₂,
  β_i = ‖c_i − b_i‖₂, r_0 = R, err_0 = 0:
  ``err_i = P_i err_{i−1} + E_i (r_{i−1} + err_{i−1}) + β_i``,
  ``r_i = P_i r_{i−1} + ‖b_i‖``;
* the kept and dense weight counts (density) and, per subset-sum instance, the number of kept
  V entries (the ticket's k).

Spectral norms come from numpy's SVD, not torch. It is slow on purpose and meant for small
tickets only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

# --------------------------------------------------------------------------- reading modules


@dataclass
class MaskedLinear:
    """One ``nn.Linear`` of the ticket, as float64 arrays.

    ``weight``/``bias`` are what the forward pass uses (``*_orig * *_mask`` when masked);
    ``weight_orig``/``bias_orig`` are the untouched random values; the masks are 0/1 arrays
    (all ones for an unmasked tensor).
    """

    weight: np.ndarray
    weight_orig: np.ndarray
    weight_mask: np.ndarray
    bias: np.ndarray | None
    bias_orig: np.ndarray | None
    bias_mask: np.ndarray | None


def _array(tensor: torch.Tensor) -> np.ndarray:
    # float32 -> float64 is exact, so these arrays hold exactly what the module holds
    return tensor.detach().cpu().to(torch.float64).numpy().copy()


def _masked(module: nn.Module, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(effective, orig, mask) of parameter ``name`` (``weight`` or ``bias``), or None."""
    if hasattr(module, f"{name}_orig") and hasattr(module, f"{name}_mask"):
        orig = _array(getattr(module, f"{name}_orig"))
        mask = _array(getattr(module, f"{name}_mask"))
        # the product of a float32 number and 0/1 is exact in float64
        return orig * mask, orig, mask
    value = getattr(module, name)
    if value is None:
        return None
    plain = _array(value)
    return plain, plain, np.ones_like(plain)


def masked_linear(module: nn.Linear) -> MaskedLinear:
    """The float64 effective weights of a (possibly pruned) ``nn.Linear``."""
    weight = _masked(module, "weight")
    assert weight is not None
    bias = _masked(module, "bias")
    return MaskedLinear(
        weight=weight[0],
        weight_orig=weight[1],
        weight_mask=weight[2],
        bias=None if bias is None else bias[0],
        bias_orig=None if bias is None else bias[1],
        bias_mask=None if bias is None else bias[2],
    )


def _check_flatten(module: nn.Flatten) -> None:
    if module.start_dim != 1 or module.end_dim != -1:
        raise ValueError("only nn.Flatten(start_dim=1, end_dim=-1) is supported")


def ticket_pairs(network: nn.Sequential) -> list[tuple[MaskedLinear, MaskedLinear]]:
    """The (U, V) pairs of a ticket network laid out as
    ``[Flatten], (Linear, ReLU, Linear, [ReLU between pairs])*``; raises on any other layout."""
    modules = list(network)
    if modules and isinstance(modules[0], nn.Flatten):
        _check_flatten(modules[0])
        modules = modules[1:]
    pairs = []
    position = 0
    while position < len(modules):
        block = modules[position : position + 3]
        if (
            len(block) != 3
            or not isinstance(block[0], nn.Linear)
            or not isinstance(block[1], nn.ReLU)
            or not isinstance(block[2], nn.Linear)
        ):
            raise ValueError(f"module {position}: expected Linear, ReLU, Linear")
        pairs.append((masked_linear(block[0]), masked_linear(block[2])))
        position += 3
        if position < len(modules):
            if not isinstance(modules[position], nn.ReLU):
                raise ValueError(f"module {position}: expected the ReLU between two pairs")
            position += 1
            if position == len(modules):
                raise ValueError("the network ends with a ReLU")
    return pairs


def target_layers(target: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(W, b) per ``nn.Linear`` of a target ``nn.Sequential``, in float64 (b is None without a
    bias)."""
    layers = []
    for module in target:
        if isinstance(module, nn.Linear):
            bias = None if module.bias is None else _array(module.bias)
            layers.append((_array(module.weight), bias))
    return layers


# --------------------------------------------------------------------------- forward passes


def exact_forward(network: nn.Sequential, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Evaluate the masked network in float64 with numpy, module by module, from the effective
    weights ``orig * mask``; raises on a module other than Flatten, Linear or ReLU."""
    out = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
    for module in network:
        if isinstance(module, nn.Flatten):
            _check_flatten(module)
            out = out.reshape(out.shape[0], -1)
        elif isinstance(module, nn.Linear):
            linear = masked_linear(module)
            out = out @ linear.weight.T
            if linear.bias is not None:
                out = out + linear.bias
        elif isinstance(module, nn.ReLU):
            out = np.maximum(out, 0.0)
        else:
            raise TypeError(f"exact_forward does not know {type(module).__name__}")
    return out


def target_forward(
    layers: Sequence[tuple[np.ndarray, np.ndarray | None]], x: np.ndarray
) -> np.ndarray:
    """f(x) = W_l σ(… σ(W_1 x + b_1) …) + b_l in float64, for a (N, d_in) batch."""
    out = np.asarray(x, np.float64).reshape(len(x), -1)
    for index, (weight, bias) in enumerate(layers):
        out = out @ weight.T
        if bias is not None:
            out = out + bias
        if index < len(layers) - 1:
            out = np.maximum(out, 0.0)
    return out


# --------------------------------------------------------------------------- one pair


@dataclass
class PairOperator:
    """x ↦ A σ(x) − B σ(−x) + offset: what a masked pair computes (float64)."""

    positive: np.ndarray  # A, (d_out, d_in)
    negative: np.ndarray  # B, (d_out, d_in)
    offset: np.ndarray  # c, (d_out,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (
            np.maximum(x, 0.0) @ self.positive.T
            - np.maximum(-x, 0.0) @ self.negative.T
            + self.offset
        )


def pair_operator(
    u: np.ndarray, c: np.ndarray | None, v: np.ndarray, v_bias: np.ndarray | None = None
) -> PairOperator:
    """(A, B, offset) of the masked pair x ↦ V σ(U x + c), one hidden neuron at a time.

    Raises ValueError if a neuron reads two inputs, or an input and its bias, or if V has a
    nonzero bias: the pair would then not compute A σ(x) − B σ(−x) + offset.
    """
    hidden, d_in = u.shape
    d_out = v.shape[0]
    if v.shape[1] != hidden:
        raise ValueError(f"V has {v.shape[1]} columns for {hidden} hidden neurons")
    if v_bias is not None and np.any(v_bias != 0):
        raise ValueError("the second layer of a pair has a nonzero bias")
    c = np.zeros(hidden) if c is None else c
    positive = np.zeros((d_out, d_in))
    negative = np.zeros((d_out, d_in))
    offset = np.zeros(d_out)
    for h in range(hidden):
        reads = [j for j in range(d_in) if u[h, j] != 0.0]
        if len(reads) > 1:
            raise ValueError(f"hidden neuron {h} reads inputs {reads}")
        if reads and c[h] != 0.0:
            raise ValueError(f"hidden neuron {h} reads input {reads[0]} and a bias")
        if reads:
            j = reads[0]
            a = u[h, j]
            if a > 0:  # σ(a x_j) = a σ(x_j)
                positive[:, j] += a * v[:, h]
            else:  # σ(a x_j) = |a| σ(−x_j), which enters with a minus sign: B = −Σ |a| V
                negative[:, j] -= abs(a) * v[:, h]
        elif c[h] > 0:  # a constant σ(c_h) = c_h; a neuron with c_h ≤ 0 outputs 0
            offset += c[h] * v[:, h]
    return PairOperator(positive, negative, offset)


def operator_forward(operators: Sequence[PairOperator], x: np.ndarray) -> np.ndarray:
    """The ticket's function from its pair operators, with the ReLU between pairs."""
    out = np.asarray(x, np.float64).reshape(len(x), -1)
    for index, op in enumerate(operators):
        out = op(out)
        if index < len(operators) - 1:
            out = np.maximum(out, 0.0)
    return out


def spectral_norm(matrix: np.ndarray) -> float:
    """Largest singular value (numpy SVD); 0 for an empty matrix."""
    if matrix.size == 0:
        return 0.0
    return float(np.linalg.svd(matrix, compute_uv=False)[0])


# --------------------------------------------------------------------------- certificate


@dataclass
class LayerFigures:
    """The certificate's figures for one target layer."""

    weight_norm: float  # P_i
    pair_error_norm: float  # E_i
    bias_error: float  # β_i
    bias_norm: float  # ‖b_i‖
    input_radius: float  # r_{i−1}
    error_bound: float  # err_i


def recursion(
    weight_norms: Sequence[float],
    pair_errors: Sequence[float],
    bias_errors: Sequence[float],
    bias_norms: Sequence[float],
    radius: float,
) -> list[tuple[float, float]]:
    """(r_{i−1}, err_i) per layer of
    ``err_i = P_i err_{i−1} + E_i (r_{i−1} + err_{i−1}) + β_i``, ``r_i = P_i r_{i−1} + ‖b_i‖``.

    Takes the per-layer figures as plain numbers so that a test can feed it deliberately wrong
    ones and show that the comparison with the report notices.
    """
    r, err = float(radius), 0.0
    out = []
    for p, e, beta, b in zip(weight_norms, pair_errors, bias_errors, bias_norms, strict=True):
        new_err = p * err + e * (r + err) + beta
        out.append((r, new_err))
        err = new_err
        r = p * r + b
    return out


@dataclass
class ReferenceCertificate:
    """The reference's certificate and counts for one ticket."""

    radius: float
    bound: float
    layers: list[LayerFigures]
    operators: list[PairOperator]
    kept_params: list[int]  # per pair: nonzero masks of U, its bias and V
    dense_params: list[int]  # per pair: every entry of U, its bias and V
    picks: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def ticket_params(self) -> int:
        return sum(self.kept_params)

    @property
    def random_params(self) -> int:
        return sum(self.dense_params)

    @property
    def density(self) -> float:
        return self.ticket_params / self.random_params


def _block_of(hidden: int, blocks: int, offsets: Sequence[int] | None) -> list[int]:
    """The block of every hidden neuron: from the blocks' first neurons ``offsets`` (the
    search may give some blocks more neurons), or equal blocks of hidden / blocks."""
    if offsets is None:
        if hidden % blocks:
            raise ValueError(f"{hidden} hidden neurons do not split into {blocks} equal blocks")
        offsets = [j * (hidden // blocks) for j in range(blocks + 1)]
    if len(offsets) != blocks + 1 or offsets[-1] != hidden:
        raise ValueError(f"block offsets {list(offsets)} do not cover {hidden} neurons")
    return [j for j in range(blocks) for _ in range(offsets[j], offsets[j + 1])]


def picks_per_instance(
    u: MaskedLinear, v: MaskedLinear, d_in: int, offsets: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Kept V entries per subset-sum instance, from the masks.

    Hidden neuron h belongs to its block (``offsets``: each block's first neuron, the hidden
    width last; by default equal blocks of 2n = hidden / (d_in + has_bias)), the last block
    being the bias block (docs/design.md §2). Instance (i, j, +) counts the kept V[i, h] of block
    j's neurons with U[h, j] > 0 (the random, unmasked value), (i, j, −) those with
    U[h, j] < 0, and the bias instance (i, +) those of the bias block with a positive random
    bias. Returns ``positive``, ``negative`` (d_out, d_in) and ``bias`` (d_out,) when U has a
    bias.
    """
    hidden = u.weight.shape[0]
    d_out = v.weight.shape[0]
    block_of = _block_of(hidden, d_in + (u.bias is not None), offsets)
    positive = np.zeros((d_out, d_in), dtype=np.int64)
    negative = np.zeros((d_out, d_in), dtype=np.int64)
    bias = np.zeros(d_out, dtype=np.int64)
    for h in range(hidden):
        j = block_of[h]
        sign = u.weight_orig[h, j] if j < d_in else u.bias_orig[h]
        for i in range(d_out):
            if v.weight_mask[i, h] == 0:
                continue
            if j == d_in:
                bias[i] += sign > 0
            elif sign > 0:
                positive[i, j] += 1
            elif sign < 0:
                negative[i, j] += 1
    out = {"positive": positive, "negative": negative}
    if u.bias is not None:
        out["bias"] = bias
    return out


def layout_violations(
    u: MaskedLinear, d_in: int, offsets: Sequence[int] | None = None
) -> list[str]:
    """Kept U entries outside the block diagonal of docs/design.md §2 (neuron h may read only
    the input of its block, or only its bias in the bias block)."""
    hidden = u.weight.shape[0]
    block_of = _block_of(hidden, d_in + (u.bias is not None), offsets)
    problems = []
    for h in range(hidden):
        j = block_of[h]
        for col in range(d_in):
            if u.weight_mask[h, col] != 0 and col != j:
                problems.append(f"neuron {h} of block {j} keeps U[{h}, {col}]")
        if u.bias_mask is not None and u.bias_mask[h] != 0 and j != d_in:
            problems.append(f"neuron {h} of block {j} keeps its bias")
    return problems


def reference_certificate(
    network: nn.Sequential,
    layers: Sequence[tuple[np.ndarray, np.ndarray | None]],
    radius: float,
    offsets: Sequence[Sequence[int] | None] | None = None,
) -> ReferenceCertificate:
    """Recompute the whole certificate of a ticket network against target ``layers``
    (``offsets``: per pair, its blocks' first neurons, when the blocks are not all equal)."""
    pairs = ticket_pairs(network)
    if len(pairs) != len(layers):
        raise ValueError(f"{len(pairs)} pairs for {len(layers)} target layers")
    operators, figures, kept, dense, picks = [], [], [], [], []
    norms, errors, betas, bias_norms = [], [], [], []
    offsets = offsets or [None] * len(layers)
    for (u, v), (weight, bias), block_offsets in zip(pairs, layers, offsets, strict=True):
        op = pair_operator(u.weight, u.bias, v.weight, v.bias)
        if op.positive.shape != weight.shape:
            raise ValueError(f"pair of shape {op.positive.shape} for a layer {weight.shape}")
        b = np.zeros(weight.shape[0]) if bias is None else bias
        operators.append(op)
        norms.append(spectral_norm(weight))
        errors.append(spectral_norm(np.hstack([op.positive - weight, weight - op.negative])))
        betas.append(float(np.linalg.norm(op.offset - b)))
        bias_norms.append(float(np.linalg.norm(b)))
        count = int(np.count_nonzero(u.weight_mask)) + int(np.count_nonzero(v.weight_mask))
        size = u.weight_mask.size + v.weight_mask.size
        if u.bias_mask is not None:
            count += int(np.count_nonzero(u.bias_mask))
            size += u.bias_mask.size
        kept.append(count)
        dense.append(size)
        picks.append(picks_per_instance(u, v, weight.shape[1], block_offsets))
    steps = recursion(norms, errors, betas, bias_norms, radius)
    for index, (r_in, err) in enumerate(steps):
        figures.append(
            LayerFigures(norms[index], errors[index], betas[index], bias_norms[index], r_in, err)
        )
    return ReferenceCertificate(
        radius=float(radius),
        bound=steps[-1][1],
        layers=figures,
        operators=operators,
        kept_params=kept,
        dense_params=dense,
        picks=picks,
    )


# --------------------------------------------------------------------------- graph targets


def fold_batch_norm(linear: nn.Linear, norm: nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """(W′, b′) of ``linear`` followed by the eval-mode ``norm``, in numpy float64:
    s = γ/√(var + eps), W′ = diag(s) W, b′ = s (b − μ) + β."""
    weight = _array(linear.weight)
    bias = np.zeros(weight.shape[0]) if linear.bias is None else _array(linear.bias)
    scale = _array(norm.weight) / np.sqrt(_array(norm.running_var) + norm.eps)
    return scale[:, None] * weight, scale * (bias - _array(norm.running_mean)) + _array(norm.bias)


def graph_bound(
    layers: Sequence[tuple[np.ndarray, np.ndarray | None]],
    nodes: Sequence[tuple],
    steps: Sequence[nn.Module],
    radius: float,
) -> tuple[float, list[PairOperator]]:
    """The exact part of the certificate of a dense graph ticket, recomputed by hand.

    ``nodes`` lists ``("input",)``, ``("layer", i, source)``, ``("relu", source)``,
    ``("flatten", source)`` and ``("add", a, b)`` in order (sources are node positions);
    ``steps`` are the ticket network's modules in that order (Linear, ReLU, Linear per layer,
    one module per relu or flatten). At a layer node the chain's recursion applies
    (``err = P err + E (r + err) + β``, ``r = P r + ‖b‖``); relu and flatten keep (r, err); an
    add sums both. Returns the output's err and the pair operators by layer.
    """
    values: list[tuple[float, float]] = []
    operators: dict[int, PairOperator] = {}
    position = 0
    for node in nodes:
        if node[0] == "input":
            values.append((float(radius), 0.0))
        elif node[0] == "layer":
            first, relu, second = steps[position : position + 3]
            position += 3
            if not (isinstance(first, nn.Linear) and isinstance(relu, nn.ReLU)):
                raise ValueError(f"step {position - 3}: expected Linear, ReLU, Linear")
            u, v = masked_linear(first), masked_linear(second)
            op = pair_operator(u.weight, u.bias, v.weight, v.bias)
            operators[node[1]] = op
            weight, bias = layers[node[1]]
            bias = np.zeros(weight.shape[0]) if bias is None else bias
            p = spectral_norm(weight)
            e = spectral_norm(np.hstack([op.positive - weight, weight - op.negative]))
            beta = float(np.linalg.norm(op.offset - bias))
            r, err = values[node[2]]
            values.append((p * r + float(np.linalg.norm(bias)), p * err + e * (r + err) + beta))
        elif node[0] in ("relu", "flatten"):
            expected = nn.ReLU if node[0] == "relu" else nn.Flatten
            if not isinstance(steps[position], expected):
                raise ValueError(f"step {position}: expected {expected.__name__}")
            position += 1
            values.append(values[node[1]])
        elif node[0] == "add":
            (ra, ea), (rb, eb) = values[node[1]], values[node[2]]
            values.append((ra + rb, ea + eb))
        else:
            raise ValueError(f"unknown node {node!r}")
    if position != len(steps):
        raise ValueError(f"{len(steps) - position} steps left over")
    return values[-1][1], [operators[i] for i in range(len(operators))]
