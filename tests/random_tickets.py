"""Random tickets for the verify-agreement tests: random dense and conv targets (with and
without biases), random masks of the ticket structure, random grown blocks. The masks need
not make good tickets: what is tested is that a report and its recomputation agree."""

from __future__ import annotations

import random

import torch
from torch import nn

import sslth
from sslth.construct import specs_for
from sslth.masks import PairMasks


def random_model(rng: random.Random) -> tuple[nn.Sequential, list[int] | None]:
    """A random dense or conv ReLU network and its input shape (None for dense)."""
    bias = rng.random() < 0.6
    depth = rng.randint(1, 3)
    torch.manual_seed(rng.randrange(2**31))
    if rng.random() < 0.7:
        widths = [rng.randint(1, 7) for _ in range(depth + 1)]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(widths[i], widths[i + 1], bias=bias), nn.ReLU()]
        return nn.Sequential(*layers[:-1]).double(), None
    channels = [rng.randint(1, 3) for _ in range(depth + 1)]
    side = rng.randint(3, 6)
    layers = []
    for i in range(depth):
        layers += [nn.Conv2d(channels[i], channels[i + 1], 3, padding=1, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double(), [channels[0], side, side]


def random_ticket(rng: random.Random) -> sslth.Ticket:
    """A ticket of random masks (and sometimes grown blocks) for a random target, with an ε
    and a density limit it meets, in float64 or float32."""
    model, shape = random_model(rng)
    target = sslth.as_target(model, input_shape=shape)
    seed = rng.randrange(10**6)
    specs = specs_for(target, [rng.randint(1, 3) for _ in target.layers], seed)
    masks = []
    for index, spec in enumerate(specs):
        if rng.random() < 0.3:
            block = rng.randrange(spec.blocks)
            spec = spec.with_blocks({block: spec.neurons_per_input + rng.randint(1, 3)})
            specs[index] = spec
        generator = torch.Generator().manual_seed(rng.randrange(2**31))
        kept = torch.rand(spec.hidden, generator=generator) < rng.uniform(0.2, 1.0)
        second = torch.rand(spec.d_out, spec.hidden, *spec.kind.kernel_shape, generator=generator)
        used = kept.view(1, -1, *[1] * len(spec.kind.kernel_shape))
        chosen = (second < rng.uniform(0.1, 0.9)) & used
        if spec.kind.kernel_shape:  # a bias neuron reaches the output through constant taps
            constant = spec.kind.constant_taps().view(spec.kind.kernel_shape)
            chosen[:, spec.weight_neurons :] &= constant
        masks.append(PairMasks(spec, kept, chosen))
    return sslth.Ticket(
        target,
        specs,
        masks,
        seed=seed,
        epsilon=1e300,
        radius=rng.choice([1e-3, 0.5, 1.0, 7.0, 300.0]),
        tolerances=[0.1] * len(specs),
        dtype=rng.choice([torch.float64, torch.float32]),
    )
