"""sslth.ticket: tickets built from masks, their export and their network.

Tests that name a mutant were written against mutants that survived the mutation run of
docs/testing.md (mutmut 3 names: module, function, number).
"""

from __future__ import annotations

import pytest
import torch

import sslth
from sslth.config import random_target
from sslth.masks import PairMasks
from sslth.ticket import Ticket


@pytest.fixture(scope="module")
def biased_ticket():
    target = random_target([3, 5, 2], bias=True, seed=4)
    return sslth.prune(target, 0.1, 0.5, progress=False, empirical_samples=200)


def test_compact_export_of_masks_that_keep_nothing(biased_ticket):
    """ticket.Ticket._compact_from_masks__mutmut_64: a pair whose masks keep no neuron has a
    (rows, 0) V block; the compact network then outputs exactly 0, as the dense one does."""
    t = biased_ticket
    empty = [
        PairMasks(m.spec, torch.zeros_like(m.kept_neurons), torch.zeros_like(m.second))
        for m in t.masks
    ]
    ticket = Ticket(
        t.target,
        t.specs,
        empty,
        seed=t.seed,
        epsilon=t.epsilon,
        radius=t.radius,
        tolerances=t.tolerances,
    )
    compact = ticket.export(compact=True)
    x = torch.randn(7, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(compact(x), torch.zeros(7, 2, dtype=torch.float64))
        assert torch.equal(ticket.export()(x), compact(x))


def test_a_ticket_needs_one_mask_per_pair(biased_ticket):
    """ticket.Ticket._build_network__mutmut_34 (zip without strict): a spare mask is an error,
    not silently dropped."""
    t = biased_ticket
    ticket = Ticket(
        t.target,
        t.specs,
        t.masks + t.masks[:1],
        seed=t.seed,
        epsilon=t.epsilon,
        radius=t.radius,
        tolerances=t.tolerances,
    )
    with pytest.raises(ValueError):
        ticket.network  # noqa: B018
