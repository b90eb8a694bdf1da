"""The random 2l-layer network of Pensia et al. (made fixed-size by Natale et al., 2024).

Every target layer W (d_out × d_in, or d_out × d_in × kernel for a conv) becomes a pair of random
layers

    U: d_in -> hidden,   V: hidden -> d_out,

with every weight i.i.d. Uniform[-1, 1] (for a conv, U is a 1×1 conv and V has W's kernel). The
hidden neurons come in blocks, one per input j (2·n_j neurons) and, for a target with a bias, one
more block whose neurons read the constant 1 through U's (random) bias: homogeneous coordinates
without an extra input, so the ticket takes the same input as the target (docs/design.md,
"Construction"). Every block has the planned n_j = n, except blocks the search *grew* because a
random draw left some instance out of reach there (``PairSpec.grown``).

We implement the *sign split*: in block j a neuron with a = U[h, j] > 0 serves the positive part
σ(x_j), one with a < 0 the negative part σ(−x_j); all 2n_j neurons of a block are used.

**Randomness.** Each block has its own random streams, seeded from (layer seed, block, stream)
and drawn by CPU ``torch.Generator`` s (the Mersenne Twister), then moved: the same seed gives the
same network on every device. A block's streams hold, in this order,

- ``DIAGONAL``: U[h, j] for its 2n_j neurons (for the bias block, their U biases);
- ``SECOND``: V's columns of the block, neuron by neuron (each neuron's d_out·taps entries);
- ``FIRST``: the rest of U's rows of the block (and ``FIRST_BIAS``, the U biases of a weight block),
  which preprocessing always masks: drawn only when the dense network is built.

Drawing neuron by neuron makes a grown block's first 2n_j neurons identical to the block before it
grew, and reading U's block diagonal costs 2n_j draws per block, never the dense U.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
from torch import nn

from sslth.kinds import DENSE, LayerKind
from sslth.target import Target, TargetLayer

SEED_LIMIT = 2**62  # layer seeds are taken modulo 2^62: larger seeds would repeat smaller ones
_DIAGONAL, _SECOND, _FIRST, _FIRST_BIAS = 0, 1, 2, 3
_MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """SplitMix64's finalizer: a bijection of 64-bit integers that scatters nearby seeds."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


@dataclass(frozen=True)
class PairSpec:
    """Shape and seed of the random pair of layers that stands in for one target layer.

    ``neurons_per_input`` is the planned n; ``grown`` lists (block, n_j) for the blocks the
    search gave more neurons.
    """

    d_in: int
    d_out: int
    neurons_per_input: int
    has_bias: bool
    seed: int
    kind: LayerKind = field(default=DENSE)
    grown: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "grown", tuple(sorted((int(j), int(n)) for j, n in dict(self.grown).items()))
        )

    @classmethod
    def for_layer(cls, layer: TargetLayer, n: int, seed: int, index: int) -> PairSpec:
        """The pair that stands in for target layer ``index`` (its ``layer``) with n neurons
        per input, drawn from the ticket seed ``seed`` (the one way a layer's spec is made).

        Args:
            layer: the target layer.
            n: neurons per input.
            seed: the ticket's seed (the layer's own is :func:`layer_seed` of it).
            index: the layer's position in the target.

        Returns:
            The spec, with no grown blocks.
        """
        return cls(
            layer.d_in, layer.d_out, n, layer.bias is not None, layer_seed(seed, index), layer.kind
        )

    @property
    def blocks(self) -> int:
        return self.d_in + int(self.has_bias)

    @cached_property
    def block_neurons(self) -> tuple[int, ...]:
        """n_j per block: a block holds 2 n_j hidden neurons."""
        sizes = [self.neurons_per_input] * self.blocks
        for block, n in self.grown:
            sizes[block] = n
        return tuple(sizes)

    @cached_property
    def block_offsets(self) -> tuple[int, ...]:
        """Index of each block's first hidden neuron, and the hidden width last."""
        offsets = [0]
        for n in self.block_neurons:
            offsets.append(offsets[-1] + 2 * n)
        return tuple(offsets)

    @property
    def hidden(self) -> int:
        return self.block_offsets[-1]

    @property
    def uniform_blocks(self) -> bool:
        """Every block has the planned n (none grew)."""
        return all(n == self.neurons_per_input for n in self.block_neurons)

    @property
    def taps(self) -> int:
        return self.kind.taps

    @property
    def rows(self) -> int:
        """Rows of the matrix view: outputs × kernel positions."""
        return self.d_out * self.kind.taps

    @property
    def weight_neurons(self) -> int:
        """Hidden neurons of the input blocks (the bias block's follow them)."""
        return self.block_offsets[self.d_in]

    @property
    def dense_params(self) -> int:
        """Weights of the two dense random layers (U, its bias if any, V): the paper's count."""
        first = self.hidden * self.d_in + (self.hidden if self.has_bias else 0)
        return first + self.rows * self.hidden

    @property
    def block_params(self) -> int:
        """Entries that survive preprocessing (one per hidden neuron in U) plus all of V."""
        return self.hidden + self.rows * self.hidden

    def with_blocks(self, neurons: dict[int, int]) -> PairSpec:
        """This spec with the given blocks at the given n_j (never smaller than now)."""
        grown = dict(self.grown)
        for block, n in neurons.items():
            if n < self.block_neurons[block]:
                raise ValueError(f"block {block} cannot shrink from {self.block_neurons[block]}")
            grown[block] = n
        return replace(self, grown=tuple(grown.items()))

    def to_dict(self) -> dict:
        return {
            "d_in": self.d_in,
            "d_out": self.d_out,
            "neurons_per_input": self.neurons_per_input,
            "has_bias": self.has_bias,
            "seed": self.seed,
            "kind": self.kind.to_dict(),
            "grown": [list(pair) for pair in self.grown],
        }


def layer_seed(seed: int, layer: int) -> int:
    """The seed of target layer ``layer``'s random pair, derived from the ticket seed."""
    return (int(seed) * 1_000_003 + 7919 * (layer + 1)) % (2**62)


def _generator(seed: int, block: int, stream: int) -> torch.Generator:
    key = _mix(_mix(_mix(seed) ^ block) ^ stream) % (2**63)
    return torch.Generator(device="cpu").manual_seed(key)


def _uniform(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, dtype=torch.float32).mul_(2).sub_(1)


def block_diagonal(spec: PairSpec, block: int) -> torch.Tensor:
    """(2 n_j,) float32: U[h, j] for the neurons of block j (their U biases for the bias
    block): the only U entries preprocessing keeps."""
    return _uniform(_generator(spec.seed, block, _DIAGONAL), 2 * spec.block_neurons[block])


def block_second(spec: PairSpec, block: int) -> torch.Tensor:
    """(rows, 2 n_j) float32: V's columns of block j in the matrix view (row (i, t) holds
    kernel position t of output i)."""
    size = 2 * spec.block_neurons[block]
    return _uniform(_generator(spec.seed, block, _SECOND), size, spec.rows).T


def draw_blocks(spec: PairSpec, start: int, stop: int, stream: int) -> torch.Tensor:
    """Blocks ``start``..``stop − 1`` of one random stream, back to back (float32): the same
    numbers as drawing them block by block, in one operator per block and two for the lot."""
    per_neuron = 1 if stream == _DIAGONAL else spec.rows
    sizes = [2 * spec.block_neurons[j] * per_neuron for j in range(start, stop)]
    out = torch.empty(sum(sizes), dtype=torch.float32)
    for j, part in zip(range(start, stop), out.split(sizes), strict=True):
        part.uniform_(0, 1, generator=_generator(spec.seed, j, stream))  # = torch.rand
    return out.mul_(2).sub_(1)


def blocks_diagonal(spec: PairSpec, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """(Σ 2 n_j,) float32: :func:`block_diagonal` of blocks start..stop − 1, concatenated."""
    return draw_blocks(spec, start, spec.blocks if stop is None else stop, _DIAGONAL)


def blocks_second_t(spec: PairSpec, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """(Σ 2 n_j, rows) float32: :func:`block_second` of blocks ``start``..``stop − 1``,
    transposed and concatenated (a neuron's V entries are one row, as they are drawn)."""
    stop = spec.blocks if stop is None else stop
    return draw_blocks(spec, start, stop, _SECOND).view(-1, spec.rows)


def first_layer_diagonal(spec: PairSpec) -> torch.Tensor:
    """(hidden,) U's block diagonal (and the bias block's U biases), block by block."""
    return torch.cat([block_diagonal(spec, block) for block in range(spec.blocks)])


def first_layer_weight(spec: PairSpec) -> torch.Tensor:
    """The dense (hidden, d_in) weight of U, regenerated from the seed (float32, CPU)."""
    parts = []
    for block in range(spec.blocks):
        size = 2 * spec.block_neurons[block]
        rows = _uniform(_generator(spec.seed, block, _FIRST), size, spec.d_in)
        if block < spec.d_in:
            rows[:, block] = block_diagonal(spec, block)
        parts.append(rows)
    return torch.cat(parts)


def first_layer_bias(spec: PairSpec) -> torch.Tensor | None:
    """U's bias (hidden,): the bias block's are its diagonal, the others are always masked."""
    if not spec.has_bias:
        return None
    parts = [
        _uniform(_generator(spec.seed, block, _FIRST_BIAS), 2 * spec.block_neurons[block])
        for block in range(spec.d_in)
    ]
    parts.append(block_diagonal(spec, spec.d_in))
    return torch.cat(parts)


def second_layer_weight(spec: PairSpec) -> torch.Tensor:
    """V, (d_out, hidden, *kernel), regenerated from the seed (float32, CPU)."""
    matrix = torch.cat([block_second(spec, block) for block in range(spec.blocks)], dim=1)
    return spec.kind.from_rows(matrix, spec.d_out)


def input_of_neuron(spec: PairSpec) -> torch.Tensor:
    """(hidden,) index of the block each hidden neuron belongs to (d_in for the bias block)."""
    sizes = torch.tensor([2 * n for n in spec.block_neurons])
    return torch.repeat_interleave(torch.arange(spec.blocks), sizes)


def specs_for(target: Target, neurons_per_input: list[int], seed: int) -> list[PairSpec]:
    return [
        PairSpec.for_layer(layer, n, seed, index)
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
    if min(spec.block_neurons) < 1:
        raise ValueError(f"neurons_per_input must be >= 1, got {spec.neurons_per_input}")
    first, second = spec.kind.pair_modules(spec.d_in, spec.d_out, spec.hidden, spec.has_bias)
    with torch.no_grad():
        first.weight.copy_(first_layer_weight(spec).view(first.weight.shape))
        if spec.has_bias:
            first.bias.copy_(first_layer_bias(spec))
        second.weight.copy_(second_layer_weight(spec))
    return first, second
