"""The certified error bound of DESIGN §3, and an empirical lower estimate of the error.

Each random pair computes x ↦ V σ(U x + c). When every neuron reads a single input (which the
ticket's masks guarantee, and which we check), this is exactly

    A σ(x) − B σ(−x) + c_out,

with A[:, j] the sum of u_h V[:, h] over neurons with u_h > 0 reading x_j, B[:, j] minus the sum
of |u_h| V[:, h] over those with u_h < 0, and c_out = Σ_h V[:, h] σ(c_h) over the neurons that
read only the constant (the bias block). Against the target layer W x + b, the error is

    ||[A − W, W − B] [σ(x); σ(−x)] + (c_out − b)|| ≤ E ||x|| + β,

since ||[σ(x); σ(−x)]|| = ||x||, with E = ||[A − W, W − B]||_2 and β = ||c_out − b||.
ReLU is 1-Lipschitz, so with P_i = ||W_i||_2, r_0 = R, err_0 = 0:

    err_i = P_i err_{i−1} + E_i (r_{i−1} + err_{i−1}) + β_i,   r_i = P_i r_{i−1} + ||b_i||,

and err_l bounds sup_{||x|| ≤ R} ||f(x) − g(x)||. All in float64 from the float32 weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sslth.kinds import DENSE, LayerKind
from sslth.target import Target


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
    """Reduce a masked pair (U, c, V) to (A, B, offset); raises if a neuron reads two inputs.

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
        raise ValueError(f"hidden neuron {h} reads {int(reads[h])} inputs: not a ticket structure")
    c = torch.zeros(hidden, dtype=torch.float64, device=u.device)
    if first_bias is not None:
        c = first_bias.to(device=u.device, dtype=torch.float64)
    both = (reads == 1) & (c != 0)
    if bool(both.any()):
        h = int(both.nonzero()[0])
        raise ValueError(f"hidden neuron {h} has both an input weight and a bias: not a ticket")
    column = nonzero.to(torch.int8).argmax(dim=1)
    del nonzero
    a = u.gather(1, column[:, None]).squeeze(1).to(torch.float64)
    return _reduce(a, column, c, v, d_in, kind)


def _reduce(
    a: torch.Tensor,
    column: torch.Tensor,
    c: torch.Tensor,
    v: torch.Tensor,
    d_in: int,
    kind: LayerKind = DENSE,
) -> PairOperator:
    """A, B, offset from each neuron's input weight ``a`` (0 if pruned), the input it reads,
    its bias ``c`` and V; float64 temporaries are bounded by chunking the hidden neurons."""
    d_out = v.shape[0]
    v = kind.to_rows(v)
    rows, hidden = v.shape
    device = v.device
    positive = torch.zeros(d_in, rows, dtype=torch.float64, device=device)
    negative = torch.zeros_like(positive)
    offset = torch.zeros(rows, dtype=torch.float64, device=device)
    a, column, c = a.to(device), column.to(device), c.to(device)
    chunk = max(1, (1 << 22) // max(rows, 1))  # about 32 MiB of float64 per temporary
    for start in range(0, hidden, chunk):
        stop = min(hidden, start + chunk)
        part = v[:, start:stop].to(torch.float64).T  # (chunk, rows)
        a_part, col = a[start:stop, None], column[start:stop]
        positive.index_add_(0, col, part * a_part.clamp(min=0))
        negative.index_add_(0, col, part * a_part.clamp(max=0))  # = −|a| V where a < 0
        offset += torch.relu(c[start:stop]) @ part
    return PairOperator(
        kind.from_rows(positive.T.contiguous(), d_out),
        kind.from_rows(negative.T.contiguous(), d_out),
        offset.view(d_out, kind.taps).sum(dim=1) if kind.taps > 1 else offset,
        kind,
    )


def block_pair_operator(
    spec, kept_neurons: torch.Tensor, diagonal: torch.Tensor, second: torch.Tensor
) -> PairOperator:
    """The operator of a pair given in compact form, without its dense U: neuron h keeps
    ``diagonal[h]`` (its U entry on input h // 2n, or its bias in the bias block) iff
    ``kept_neurons[h]``, and ``second`` is V already masked. The same function as
    :func:`pair_operator` of the dense masked pair (which is checked in the tests)."""
    from sslth.construct import input_of_neuron

    device = second.device
    kept = kept_neurons.to(device)
    value = torch.where(kept, diagonal.to(device=device, dtype=torch.float64), 0.0)
    block = input_of_neuron(spec).to(device)
    in_bias_block = block >= spec.d_in
    a = torch.where(in_bias_block, 0.0, value)
    c = torch.where(in_bias_block, value, 0.0)
    return _reduce(a, block.clamp(max=spec.d_in - 1), c, second, spec.d_in, spec.kind)


@dataclass
class LayerCertificate:
    weight_norm: float  # P_i = ||W_i||_2
    pair_error_norm: float  # E_i = ||[A − W, W − B]||_2
    bias_error: float  # β_i = ||offset − b||
    max_weight_error: float  # max |A − W|, |B − W| entrywise
    input_radius: float  # r_{i−1}
    error_bound: float  # err_i


@dataclass
class Certificate:
    radius: float
    bound: float
    layers: list[LayerCertificate] = field(default_factory=list)


def certify_operators(target: Target, operators: list[PairOperator], radius: float) -> Certificate:
    """The certified bound from the per-pair operators (DESIGN §3)."""
    if len(operators) != len(target.layers):
        raise ValueError(f"{len(operators)} random pairs for {len(target.layers)} target layers")
    radius_in, error = float(radius), 0.0
    layers = []
    for layer, op in zip(target.layers, operators, strict=True):
        w = layer.weight.to(op.positive.device)
        if op.positive.shape != w.shape:
            raise ValueError(
                f"pair of shape {tuple(op.positive.shape)} for a layer {tuple(w.shape)}"
            )
        kind = layer.kind
        weight_norm = kind.operator_norm(w)
        stacked = torch.cat([op.positive - w, w - op.negative], dim=1)
        pair_error = kind.operator_norm(stacked)
        bias = (
            torch.zeros_like(op.offset) if layer.bias is None else layer.bias.to(op.offset.device)
        )
        # a bias is added at every output position: its norm grows with their square root
        spread = math.sqrt(kind.positions)
        bias_error = float(torch.linalg.vector_norm(op.offset - bias)) * spread
        new_error = weight_norm * error + pair_error * (radius_in + error) + bias_error
        layers.append(
            LayerCertificate(
                weight_norm,
                pair_error,
                bias_error,
                float(stacked.abs().max()),
                radius_in,
                new_error,
            )
        )
        error = new_error
        radius_in = weight_norm * radius_in + float(torch.linalg.vector_norm(bias)) * spread
    return Certificate(float(radius), error, layers)


def network_operators(network: torch.nn.Sequential, device=None) -> list[PairOperator]:
    """The (A, B, offset) of each masked pair of ``network``, read from its weights."""
    linears = [module for module in network if hasattr(module, "weight")]
    if len(linears) % 2:
        raise ValueError("a ticket network has an even number of linear layers")
    operators = []
    for first, second in zip(linears[::2], linears[1::2], strict=True):
        if second.bias is not None and bool((second.bias != 0).any()):
            raise ValueError("the second layer of a random pair must have no bias")
        u, v = first.weight.detach(), second.weight.detach()
        c = None if first.bias is None else first.bias.detach()
        if device is not None:
            u, v = u.to(device), v.to(device)
            c = None if c is None else c.to(device)
        operators.append(pair_operator(u, c, v))
    return operators


def certify(target: Target, network: torch.nn.Sequential, radius: float = 1.0) -> Certificate:
    """Certified bound on sup_{||x|| ≤ radius} ||target(x) − network(x)||, from the weights and
    masks the network holds."""
    return certify_operators(target, network_operators(network), radius)


def ticket_forward(operators: list[PairOperator], x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.float64)
    for index, op in enumerate(operators):
        x = op(x)
        if index < len(operators) - 1:
            x = torch.relu(x)
    return x


def _sphere(count: int, dim: int, radius: float, generator: torch.Generator) -> torch.Tensor:
    x = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return x * (radius / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300))


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
) -> float:
    """max ||f(x) − g(x)|| over random points of the sphere of radius ``radius``, then
    projected gradient ascent inside the ball from the worst of them (float64)."""
    generator = torch.Generator().manual_seed(seed)
    dim = target.layers[0].d_in
    device = device or operators[0].positive.device

    def gap(x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(target.forward(x) - ticket_forward(operators, x), dim=1)

    worst = torch.zeros(0, dtype=torch.float64)
    best_points = []
    chunk = max(1, min(samples, 2**24 // max(dim, 1)))
    with torch.no_grad():
        for start in range(0, samples, chunk):
            x = _sphere(min(chunk, samples - start), dim, radius, generator).to(device)
            g = gap(x)
            worst = torch.cat([worst, g.cpu()])
            best_points.append(x.cpu())
    points = torch.cat(best_points)
    top = worst.topk(min(ascent_starts, len(worst))).indices
    x = points[top].clone().to(device).requires_grad_(True)
    best = float(worst.max())
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
