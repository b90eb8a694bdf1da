"""sslth.masks: plain copies of pruned modules and of parameter-free ones.

Tests that name a mutant were written against mutants that survived the mutation run of
docs/testing.md (mutmut 3 names: module, function, number).
"""

from __future__ import annotations

import pytest
import torch

from sslth.masks import plain_copy


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2),
        torch.nn.Conv2d(2, 3, (3, 1), padding=(1, 0), padding_mode="circular"),
    ],
    ids=["padding-dilation", "circular"],
)
def test_plain_copy_keeps_a_pruned_convs_geometry(module):
    """masks.plain_copy__mutmut_18, _19, _31 (padding, dilation or padding_mode dropped): the
    copy computes what the pruned module computes, on an image where borders matter."""
    module = module.double()
    mask = torch.rand(module.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    torch.nn.utils.prune.custom_from_mask(module, "weight", mask)
    copy = plain_copy(module)
    assert not hasattr(copy, "weight_mask")
    for name in ("padding", "dilation", "stride", "padding_mode", "kernel_size"):
        assert getattr(copy, name) == getattr(module, name), name
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(copy(x), module(x))


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.Flatten(),
        torch.nn.Flatten(start_dim=2),
        torch.nn.MaxPool2d(2, ceil_mode=True),
        torch.nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        torch.nn.ReLU(),
    ],
    ids=["flatten", "flatten-2", "maxpool-ceil", "avgpool-ceil", "relu"],
)
def test_plain_copy_rebuilds_parameter_free_modules(module):
    """masks._constructor_arguments__mutmut_1, _12 (a misspelt argument): a parameter-free
    module is rebuilt with the same arguments and computes the same."""
    copy = plain_copy(module)
    assert type(copy) is type(module) and copy is not module
    assert repr(copy) == repr(module)
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(copy(x), module(x))
