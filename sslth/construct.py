"""The random 2l-layer network of Pensia et al. (made fixed-size by Natale et al., 2024).

Every target layer W (d_out × d_in) becomes a pair of random layers

    U: d_in -> hidden,  hidden = 2 · neurons_per_input · blocks,   V: hidden -> d_out,

with every weight i.i.d. Uniform[-1, 1]. Hidden neuron h belongs to the block of input
``h // (2 · neurons_per_input)``. A target with a bias gets one extra block whose neurons read
the constant 1 through a (random, Uniform[-1, 1]) bias of U: homogeneous coordinates without an
extra input, so the ticket takes the same input as the target.

We implement the *sign split*: in block j a neuron with a = U[h, j] > 0 serves the positive
part σ(x_j), one with a < 0 the negative part σ(−x_j); all 2n neurons of a block are used.
For every output i and input j there are two fixed-size subset-sum instances:

    positive: values {a_h V[i, h] : a_h > 0},   target  W[i, j]
    negative: values {|a_h| V[i, h] : a_h < 0}, target −W[i, j]

The bias block only has a positive instance (its input is the constant 1, so σ(−1) = 0).

Randomness: layer i draws from its own generators, seeded from ``(seed, i)``, so that the
weights of one layer do not depend on the size chosen for another; U is drawn in chunks of
``ROWS_PER_DRAW`` rows, which lets us read its block diagonal without holding the dense matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslth.target import Target, TargetLayer

ROWS_PER_DRAW = 4096  # part of the definition of the random stream: do not change
_STREAM_U, _STREAM_U_BIAS, _STREAM_V = 0, 1, 2


@dataclass(frozen=True)
class PairSpec:
    """Shape and seed of the random pair of layers that stands in for one target layer."""

    d_in: int
    d_out: int
    neurons_per_input: int
    has_bias: bool
    seed: int

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
    def dense_params(self) -> int:
        """Weights of the two dense random layers (U, its bias if any, V): the paper's count."""
        return (
            self.hidden * self.d_in
            + (self.hidden if self.has_bias else 0)
            + self.d_out * self.hidden
        )

    @property
    def block_params(self) -> int:
        """Entries that survive preprocessing (one per hidden neuron in U) plus all of V."""
        return self.hidden + self.d_out * self.hidden


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
    return _uniform(_generator(spec.seed, _STREAM_V), spec.d_out, spec.hidden)


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
    second: torch.Tensor  # (d_out, hidden) float32, V

    @classmethod
    def draw(cls, spec: PairSpec) -> RandomPair:
        return cls(spec, first_layer_diagonal(spec), second_layer_weight(spec))


@dataclass
class SignInstances:
    """The subset-sum instances of one sign of one pair, ready for ``subset_sum.solve``.

    Row ``i * len(blocks) + b`` is output i, input ``blocks[b]``. Column t of that row is hidden
    neuron ``neuron[b, t]``; positions past the number of neurons of the right sign are padding
    (``valid`` False).
    """

    sign: int  # +1 or -1
    blocks: torch.Tensor  # (n_blocks,) which input each block of rows serves
    neuron: torch.Tensor  # (n_blocks, m) long, hidden neuron of each candidate column
    valid: torch.Tensor  # (B, m) bool
    values: torch.Tensor  # (B, m) float64
    targets: torch.Tensor  # (B,) float64

    @property
    def num_valid_per_block(self) -> torch.Tensor:
        return self.valid[: len(self.blocks)].sum(dim=1)


def _sign_instances(
    pair: RandomPair, layer: TargetLayer, sign: int, device: torch.device | str
) -> SignInstances:
    spec = pair.spec
    a = pair.diagonal.to(torch.float64)
    n_blocks = spec.d_in + int(spec.has_bias and sign > 0)
    per_block = a[: n_blocks * spec.block_size].view(n_blocks, spec.block_size)
    right_sign = per_block > 0 if sign > 0 else per_block < 0
    # stable sort brings the neurons of the right sign to the front of each block, in order
    order = torch.argsort((~right_sign).to(torch.int8), dim=1, stable=True)
    counts = right_sign.sum(dim=1)
    width = max(int(counts.max()), 1)
    neuron = order[:, :width] + (torch.arange(n_blocks) * spec.block_size)[:, None]
    block_valid = torch.arange(width)[None, :] < counts[:, None]

    # gather from the float32 V before widening: a float64 copy of all of V (d_out × hidden)
    # per sign was the largest temporary; the product of two float32 is exact in float64
    v = pair.second.to(device=device)
    neuron_d = neuron.to(device)
    values = v[:, neuron_d.reshape(-1)].view(spec.d_out, n_blocks, width).to(torch.float64)
    values.mul_(a.to(device)[neuron_d].abs())
    weight = layer.weight.to(device)
    if sign > 0:
        targets = (
            weight if layer.bias is None else torch.cat([weight, layer.bias.to(device)[:, None]], 1)
        )
    else:
        targets = -weight
    valid = block_valid.to(device).expand(spec.d_out, n_blocks, width)
    return SignInstances(
        sign=sign,
        blocks=torch.arange(n_blocks),
        neuron=neuron,
        valid=valid.reshape(-1, width),
        values=values.reshape(-1, width),
        targets=targets.reshape(-1).contiguous(),
    )


def subset_sum_instances(
    pair: RandomPair, layer: TargetLayer, device: torch.device | str = "cpu"
) -> tuple[SignInstances, SignInstances]:
    """Lay out every instance of a pair as batched tensors: (positive, negative)."""
    spec = pair.spec
    if (layer.d_in, layer.d_out, layer.bias is not None) != (spec.d_in, spec.d_out, spec.has_bias):
        raise ValueError("the random pair does not match the target layer's shape")
    return _sign_instances(pair, layer, +1, device), _sign_instances(pair, layer, -1, device)


def specs_for(target: Target, neurons_per_input: list[int], seed: int) -> list[PairSpec]:
    return [
        PairSpec(layer.d_in, layer.d_out, n, layer.bias is not None, layer_seed(seed, index))
        for index, (layer, n) in enumerate(zip(target.layers, neurons_per_input, strict=True))
    ]


def construct(target, neurons_per_input: int | list[int], seed: int = 0) -> torch.nn.Sequential:
    """The dense random 2l-layer network for ``target`` (no masks): Linear, ReLU, Linear, …

    ``neurons_per_input`` is n per target layer (hidden width 2·n·d_in, plus one block of 2n for
    a bias). Same seed, same network.
    """
    from sslth.target import as_target

    target = as_target(target)
    if isinstance(neurons_per_input, int):
        neurons_per_input = [neurons_per_input] * len(target.layers)
    modules: list[torch.nn.Module] = [torch.nn.Flatten()] if target.flatten_input else []
    for index, spec in enumerate(specs_for(target, list(neurons_per_input), seed)):
        first, second = dense_pair_modules(spec)
        modules += [first, torch.nn.ReLU(), second]
        if index < len(target.layers) - 1:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


def dense_pair_modules(spec: PairSpec) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """The two ``nn.Linear`` layers of a pair, with their random weights."""
    if spec.neurons_per_input < 1:
        raise ValueError(f"neurons_per_input must be >= 1, got {spec.neurons_per_input}")
    first = torch.nn.Linear(spec.d_in, spec.hidden, bias=spec.has_bias)
    second = torch.nn.Linear(spec.hidden, spec.d_out, bias=False)
    with torch.no_grad():
        first.weight.copy_(first_layer_weight(spec))
        if spec.has_bias:
            first.bias.copy_(first_layer_bias(spec))
        second.weight.copy_(second_layer_weight(spec))
    return first, second
