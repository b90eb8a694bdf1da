"""sslth.construct: the pair specs, their blocks and the refusals of a bad n.

Tests that name a mutant were written against mutants that survived the mutation run of
docs/testing.md (mutmut 3 names: module, function, number).
"""

from __future__ import annotations

import pytest

from sslth.config import random_target
from sslth.construct import PairSpec, construct, specs_for
from sslth.target import as_target


def test_specs_for_refuses_a_list_of_the_wrong_length():
    """construct.specs_for__mutmut_24 (zip without strict): one n per target layer, no more,
    no fewer, else the pairs would silently not match the target's layers."""
    target = as_target(random_target([3, 4, 2]))
    assert len(specs_for(target, [2, 3], seed=0)) == 2
    for wrong in ([2], [2, 3, 4]):
        with pytest.raises(ValueError):
            specs_for(target, wrong, seed=0)


def test_a_block_cannot_shrink():
    """construct.PairSpec.with_blocks__mutmut_4: the error says which block and from what."""
    spec = specs_for(as_target(random_target([3, 2])), [4], seed=0)[0]
    grown = spec.with_blocks({1: 6})
    assert grown.block_neurons == (4, 6, 4)
    with pytest.raises(ValueError, match="block 1 cannot shrink from 6"):
        grown.with_blocks({1: 5})


def test_construct_refuses_empty_blocks():
    """construct.pair_modules__mutmut_4: the error names the bad n."""
    with pytest.raises(ValueError, match="neurons_per_input must be >= 1, got 0"):
        construct(random_target([3, 2]), 0)


def test_pair_spec_normalises_its_grown_blocks():
    """construct.PairSpec.__post_init____mutmut_8: ``grown`` is stored sorted, as ints, one
    entry per block, so equal specs compare and hash equal whatever order they grew in."""
    a = PairSpec(3, 2, 4, False, 7, grown=[(2, 6.0), (0, 5)])
    b = PairSpec(3, 2, 4, False, 7, grown=((0, 5), (2, 6)))
    assert a.grown == ((0, 5), (2, 6)) and all(type(n) is int for _, n in a.grown)
    assert a == b and hash(a) == hash(b)
    assert a.block_neurons == (5, 4, 6)
