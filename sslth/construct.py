"""The random 2l-layer network of Pensia et al. (made fixed-size by Natale et al., 2024).

Every target layer W (d_out × d_in, or d_out × d_in × kernel for a conv) becomes a pair of random
layers

    U: d_in -> hidden,  hidden = 2 · neurons_per_input · blocks,   V: hidden -> d_out,

with every weight i.i.d. Uniform[-1, 1] (for a conv, U is a 1×1 conv and V has W's kernel).
Hidden neuron h belongs to the block of input ``h // (2 · neurons_per_input)``. A target with a
bias gets one extra block whose neurons read the constant 1 through a (random, Uniform[-1, 1])
bias of U: homogeneous coordinates without an extra input, so the ticket takes the same input as
the target (docs/design.md, "Construction").

We implement the *sign split*: in block j a neuron with a = U[h, j] > 0 serves the positive
part σ(x_j), one with a < 0 the negative part σ(−x_j); all 2n neurons of a block are used.
For every row r of the matrix view (output i, kernel position t; see :mod:`sslth.kinds.base`)
and input j there are two fixed-size subset-sum instances:

    positive: values {a_h V_r[h] : a_h > 0},   target  W_r[j]
    negative: values {|a_h| V_r[h] : a_h < 0}, target −W_r[j]

The bias block only has positive instances, one per output, at the kind's bias tap (its input is
the constant 1, so σ(−1) = 0).

Randomness: layer i draws from its own generators, seeded from ``(seed, i)``, so that the
weights of one layer do not depend on the size chosen for another; U is drawn in chunks of
``ROWS_PER_DRAW`` rows, which lets us read its block diagonal without holding the dense matrix.
All draws are made by CPU ``torch.Generator`` s (Philox-free, the CPU Mersenne Twister), then
moved: the same seed gives the same network on every device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from sslth.kinds import DENSE, LayerKind
from sslth.target import Target, TargetLayer

ROWS_PER_DRAW = 4096  # part of the definition of the random stream: do not change
SEED_LIMIT = 2**62  # layer seeds are taken modulo 2^62: larger seeds would repeat smaller ones
_STREAM_U, _STREAM_U_BIAS, _STREAM_V = 0, 1, 2


@dataclass(frozen=True)
class PairSpec:
    """Shape and seed of the random pair of layers that stands in for one target layer."""

    d_in: int
    d_out: int
    neurons_per_input: int
    has_bias: bool
    seed: int
    kind: LayerKind = field(default=DENSE)

    @property
    def blocks(self) -> int:
        return self.d_in + int(self.has_bias)

    @property
    def block_size(self) -> int:
        return 2 * self.neurons_per_input

    @property
    def hidden(self) -> int:
        return self.block_size * self.blocks

    @property
    def taps(self) -> int:
        return self.kind.taps

    @property
    def rows(self) -> int:
        """Rows of the matrix view: outputs × kernel positions."""
        return self.d_out * self.kind.taps

    @property
    def dense_params(self) -> int:
        """Weights of the two dense random layers (U, its bias if any, V): the paper's count."""
        return (
            self.hidden * self.d_in
            + (self.hidden if self.has_bias else 0)
            + self.rows * self.hidden
        )

    @property
    def block_params(self) -> int:
        """Entries that survive preprocessing (one per hidden neuron in U) plus all of V."""
        return self.hidden + self.rows * self.hidden

    def to_dict(self) -> dict:
        return {
            "d_in": self.d_in,
            "d_out": self.d_out,
            "neurons_per_input": self.neurons_per_input,
            "has_bias": self.has_bias,
            "seed": self.seed,
            "kind": self.kind.to_dict(),
        }


def layer_seed(seed: int, layer: int) -> int:
    """The seed of target layer ``layer``'s random pair, derived from the ticket seed."""
    return (int(seed) * 1_000_003 + 7919 * (layer + 1)) % (2**62)


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed * 4 + stream)


def _uniform(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, dtype=torch.float32).mul_(2).sub_(1)


def _u_chunks(spec: PairSpec):
    generator = _generator(spec.seed, _STREAM_U)
    for start in range(0, spec.hidden, ROWS_PER_DRAW):
        rows = min(ROWS_PER_DRAW, spec.hidden - start)
        yield start, _uniform(generator, rows, spec.d_in)


def first_layer_weight(spec: PairSpec) -> torch.Tensor:
    """The dense (hidden, d_in) weight of U, regenerated from the seed (float32, CPU)."""
    return torch.cat([chunk for _, chunk in _u_chunks(spec)], dim=0)


def first_layer_bias(spec: PairSpec) -> torch.Tensor | None:
    if not spec.has_bias:
        return None
    return _uniform(_generator(spec.seed, _STREAM_U_BIAS), spec.hidden)


def second_layer_weight(spec: PairSpec) -> torch.Tensor:
    """V, (d_out, hidden, *kernel), regenerated from the seed (float32, CPU)."""
    weight = _uniform(_generator(spec.seed, _STREAM_V), spec.d_out, spec.hidden * spec.taps)
    return weight.view(spec.d_out, spec.hidden, *spec.kind.kernel_shape)


def input_of_neuron(spec: PairSpec) -> torch.Tensor:
    """(hidden,) index of the block each hidden neuron belongs to (d_in for the bias block)."""
    return torch.arange(spec.hidden) // spec.block_size


def first_layer_diagonal(spec: PairSpec) -> torch.Tensor:
    """(hidden,) the only U entries preprocessing keeps: U[h, h // 2n], or the bias of U for
    the bias block. Streams U in chunks, never holding the dense matrix."""
    diagonal = torch.empty(spec.hidden, dtype=torch.float32)
    block_of = input_of_neuron(spec)
    n_weight_rows = spec.block_size * spec.d_in
    for start, chunk in _u_chunks(spec):
        stop = min(start + chunk.shape[0], n_weight_rows)
        if stop <= start:
            continue
        rows = torch.arange(stop - start)
        diagonal[start:stop] = chunk[rows, block_of[start:stop]]
    if spec.has_bias:
        diagonal[n_weight_rows:] = first_layer_bias(spec)[n_weight_rows:]
    return diagonal


@dataclass
class RandomPair:
    """The parts of one random pair needed to solve for its masks."""

    spec: PairSpec
    diagonal: torch.Tensor  # (hidden,) float32, see first_layer_diagonal
    second: torch.Tensor  # (d_out, hidden, *kernel) float32, V

    @classmethod
    def draw(cls, spec: PairSpec) -> RandomPair:
        return cls(spec, first_layer_diagonal(spec), second_layer_weight(spec))


@dataclass
class SignInstances:
    """The subset-sum instances of one sign of one pair, ready for ``subset_sum.solve``.

    Row b is matrix-view row ``row_of[b]`` and block ``block_of[b]``; column t of that row is
    hidden neuron ``neuron[block_of[b], t]``. Positions past the number of neurons of the right
    sign are padding (``valid`` False). The rows are ordered by matrix-view row, then block.
    """

    sign: int  # +1 or -1
    neuron: torch.Tensor  # (n_blocks, m) long, hidden neuron of each candidate column
    block_counts: torch.Tensor  # (n_blocks,) neurons of the right sign per block
    row_of: torch.Tensor  # (B,) long, matrix-view row of each instance
    block_of: torch.Tensor  # (B,) long, block of each instance (d_in for the bias block)
    valid: torch.Tensor  # (B, m) bool
    values: torch.Tensor  # (B, m) float64
    targets: torch.Tensor  # (B,) float64


def _sign_instances(
    pair: RandomPair, layer: TargetLayer, sign: int, device: torch.device | str
) -> SignInstances:
    spec = pair.spec
    a = pair.diagonal.to(torch.float64)
    with_bias = spec.has_bias and sign > 0
    n_blocks = spec.d_in + int(with_bias)
    per_block = a[: n_blocks * spec.block_size].view(n_blocks, spec.block_size)
    right_sign = per_block > 0 if sign > 0 else per_block < 0
    # stable sort brings the neurons of the right sign to the front of each block, in order
    order = torch.argsort((~right_sign).to(torch.int8), dim=1, stable=True)
    counts = right_sign.sum(dim=1)
    width = max(int(counts.max()), 1)
    neuron = order[:, :width] + (torch.arange(n_blocks) * spec.block_size)[:, None]
    block_valid = torch.arange(width)[None, :] < counts[:, None]

    # gather from the float32 V before widening: a float64 copy of all of V (rows × hidden)
    # per sign was the largest temporary; the product of two float32 is exact in float64
    v = spec.kind.to_rows(pair.second).to(device=device)
    neuron_d = neuron.to(device)
    values = v[:, neuron_d.reshape(-1)].view(spec.rows, n_blocks, width).to(torch.float64)
    values.mul_(a.to(device)[neuron_d].abs())
    weight = layer.kind.to_rows(layer.weight).to(device)
    if with_bias:
        bias_rows = torch.zeros(spec.rows, dtype=torch.float64, device=device)
        bias_rows.view(spec.d_out, spec.taps)[:, spec.kind.bias_tap] = layer.bias.to(device)
        targets = torch.cat([weight, bias_rows[:, None]], 1)
    else:
        targets = weight if sign > 0 else -weight
    row_of = torch.arange(spec.rows).repeat_interleave(n_blocks)
    block_of = torch.arange(n_blocks).repeat(spec.rows)
    valid = block_valid.to(device).expand(spec.rows, n_blocks, width).reshape(-1, width)
    values = values.reshape(-1, width)
    targets = targets.reshape(-1)
    if with_bias and spec.taps > 1:
        # the bias block has an instance only at the bias tap of each output
        keep = (block_of < spec.d_in) | (row_of % spec.taps == spec.kind.bias_tap)
        row_of, block_of = row_of[keep], block_of[keep]
        keep_d = keep.to(device)
        valid, values, targets = valid[keep_d], values[keep_d], targets[keep_d]
    return SignInstances(
        sign=sign,
        neuron=neuron,
        block_counts=counts,
        row_of=row_of,
        block_of=block_of,
        valid=valid,
        values=values,
        targets=targets.contiguous(),
    )


def subset_sum_instances(
    pair: RandomPair, layer: TargetLayer, device: torch.device | str = "cpu"
) -> tuple[SignInstances, SignInstances]:
    """Lay out every instance of a pair as batched tensors: (positive, negative)."""
    spec = pair.spec
    shape = (layer.d_in, layer.d_out, layer.bias is not None, layer.kind)
    if shape != (spec.d_in, spec.d_out, spec.has_bias, spec.kind):
        raise ValueError("the random pair does not match the target layer's shape")
    return _sign_instances(pair, layer, +1, device), _sign_instances(pair, layer, -1, device)


def specs_for(target: Target, neurons_per_input: list[int], seed: int) -> list[PairSpec]:
    return [
        PairSpec(
            layer.d_in,
            layer.d_out,
            n,
            layer.bias is not None,
            layer_seed(seed, index),
            layer.kind,
        )
        for index, (layer, n) in enumerate(zip(target.layers, neurons_per_input, strict=True))
    ]


def construct(target, neurons_per_input: int | list[int], seed: int = 0) -> nn.Sequential:
    """The dense random 2l-layer network for ``target`` (no masks): Linear, ReLU, Linear, …

    Args:
        target: anything :func:`sslth.as_target` accepts.
        neurons_per_input: n per target layer (hidden width 2·n·d_in, plus one block of 2n for
            a bias), an int or one per layer.
        seed: the ticket seed; same seed, same network.

    Returns:
        The unmasked random network, float32 on the CPU.
    """
    from sslth.target import as_target

    target = as_target(target)
    if isinstance(neurons_per_input, int):
        neurons_per_input = [neurons_per_input] * len(target.layers)
    return target.network(
        [pair_modules(spec) for spec in specs_for(target, list(neurons_per_input), seed)]
    )


def pair_modules(spec: PairSpec) -> tuple[nn.Module, nn.Module]:
    """The two modules of a pair, with their random weights."""
    if spec.neurons_per_input < 1:
        raise ValueError(f"neurons_per_input must be >= 1, got {spec.neurons_per_input}")
    first, second = spec.kind.pair_modules(spec.d_in, spec.d_out, spec.hidden, spec.has_bias)
    with torch.no_grad():
        first.weight.copy_(first_layer_weight(spec).view(first.weight.shape))
        if spec.has_bias:
            first.bias.copy_(first_layer_bias(spec))
        second.weight.copy_(second_layer_weight(spec))
    return first, second
