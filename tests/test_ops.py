"""The parameter-free operations between layers (sslth/ops.py): what each computes, the shapes,
the rounding they add, their file form, which modules they stand for and the one-line reason a
module is refused — and the two facts the certificate's recursion takes from them: each is
1-Lipschitz in ℓ2 and maps 0 to 0 (docs/design.md, "Layer kinds and operations")."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sslth.ops import AVGPOOL, FLATTEN, MAXPOOL, RELU, SUPPORTED_OPS, Op, op_of_module

SHAPE = (3, 6, 4)
OPS = [Op(RELU), Op(FLATTEN), Op(MAXPOOL, (2, 2)), Op(AVGPOOL, (3, 2)), Op(MAXPOOL, (1, 4))]


def test_an_unknown_operation_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown operation 'tanh'"):
        Op("tanh")


def test_the_kernel_is_a_tuple_of_ints():
    op = Op(MAXPOOL, [torch.tensor(2), 3.0])
    assert op.kernel == (2, 3) and all(type(k) is int for k in op.kernel)
    assert op == Op(MAXPOOL, (2, 3)) and hash(op) == hash(Op(MAXPOOL, (2, 3)))
    assert Op(RELU).kernel == (1, 1) and not Op(RELU).is_pool and Op(AVGPOOL, (2, 2)).is_pool


@pytest.mark.parametrize("op", OPS, ids=str)
def test_apply_and_module_compute_the_same(op):
    x = torch.randn(5, *SHAPE, dtype=torch.float64).reshape(5, -1)
    applied = op.apply(x, SHAPE)
    from_module = op.module()(x.reshape(5, *SHAPE) if op.name != RELU else x)
    expected = op.out_shape(SHAPE)
    assert applied.shape[1:].numel() == math.prod(expected)
    if op.is_pool:
        assert tuple(applied.shape[1:]) == expected
    torch.testing.assert_close(applied.reshape(5, -1), from_module.reshape(5, -1))


def test_apply_computes_what_each_operation_is():
    x = torch.arange(1.0, 25.0, dtype=torch.float64).reshape(1, 1, 4, 6) - 12
    flat, shape = x.reshape(1, -1), (1, 4, 6)
    assert torch.equal(Op(RELU).apply(flat, shape), flat.clamp(min=0))
    assert torch.equal(Op(FLATTEN).apply(x, shape), flat)
    windows = x.reshape(1, 1, 2, 2, 3, 2).permute(0, 1, 2, 4, 3, 5).reshape(1, 1, 2, 3, 4)
    assert torch.equal(Op(MAXPOOL, (2, 2)).apply(flat, shape), windows.amax(dim=-1))
    assert torch.equal(Op(AVGPOOL, (2, 2)).apply(flat, shape), windows.mean(dim=-1))


def test_out_shape():
    assert Op(RELU).out_shape(SHAPE) == SHAPE
    assert Op(FLATTEN).out_shape(SHAPE) == (72,)
    assert Op(MAXPOOL, (2, 2)).out_shape(SHAPE) == (3, 3, 2)
    assert Op(AVGPOOL, (4, 3)).out_shape(SHAPE) == (3, 1, 1)  # floor: rows 5 and 6 are dropped
    with pytest.raises(ValueError, match=r"maxpool needs a \(C, H, W\) input, got shape \(72,\)"):
        Op(MAXPOOL, (2, 2)).out_shape((72,))
    with pytest.raises(ValueError, match=r"avgpool \(7, 1\) does not fit an input of"):
        Op(AVGPOOL, (7, 1)).out_shape(SHAPE)


def test_only_average_pooling_rounds():
    # a sum of kh·kw terms and one division
    assert Op(AVGPOOL, (3, 2)).rounding_terms() == 7
    assert Op(AVGPOOL, (1, 1)).rounding_terms() == 2
    for op in (Op(RELU), Op(FLATTEN), Op(MAXPOOL, (3, 2))):
        assert op.rounding_terms() == 0


@pytest.mark.parametrize("op", OPS, ids=str)
def test_file_form_round_trips(op):
    data = op.to_dict()
    assert ("kernel" in data) == op.is_pool
    assert Op.from_dict(data) == op


@pytest.mark.parametrize("data", [None, [], {"op": "tanh"}, {"kernel": [2, 2]}, "relu"])
def test_a_file_form_that_is_not_an_operation_is_refused(data):
    with pytest.raises(ValueError, match="not an operation"):
        Op.from_dict(data)


@pytest.mark.parametrize("op", OPS, ids=str)
def test_one_lipschitz_and_zero_to_zero(op):
    """What the certificate's recursion passes through unchanged: ‖φ(u) − φ(v)‖ ≤ ‖u − v‖ and
    φ(0) = 0, on random pairs and on pairs a small step apart (exact for ReLU, max pooling and
    Flatten; average pooling up to its own rounding, which the certificate adds separately)."""
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(200, *SHAPE, generator=generator, dtype=torch.float64).reshape(200, -1)
    near = u + 1e-3 * torch.randn(u.shape, generator=generator, dtype=torch.float64)
    far = torch.randn(u.shape, generator=generator, dtype=torch.float64) * 3
    for v in (near, far):
        moved = (op.apply(u, SHAPE) - op.apply(v, SHAPE)).reshape(200, -1).norm(dim=1)
        assert torch.all(moved <= (u - v).norm(dim=1) * (1 + 1e-12))
    assert not op.apply(torch.zeros(1, 72, dtype=torch.float64), SHAPE).any()
    # the bound is reached: ReLU and Flatten keep the norm of a positive input
    if op.name in (RELU, FLATTEN):
        kept = op.apply(u.abs(), SHAPE).reshape(200, -1).norm(dim=1)
        torch.testing.assert_close(kept, u.abs().norm(dim=1))


@pytest.mark.parametrize(
    ("module", "op"),
    [
        (nn.ReLU(), Op(RELU)),
        (nn.ReLU(inplace=True), Op(RELU)),
        (nn.Flatten(), Op(FLATTEN)),
        (nn.MaxPool2d(2), Op(MAXPOOL, (2, 2))),
        (nn.MaxPool2d((2, 3), stride=(2, 3)), Op(MAXPOOL, (2, 3))),
        (nn.AvgPool2d(3, stride=None), Op(AVGPOOL, (3, 3))),
        (nn.AvgPool2d((1, 2)), Op(AVGPOOL, (1, 2))),
    ],
    ids=repr,
)
def test_modules_read_as_their_operation(module, op):
    assert op_of_module(module) == op
    assert isinstance(module, SUPPORTED_OPS)


@pytest.mark.parametrize(
    ("module", "words"),
    [
        (nn.Flatten(start_dim=2), "only nn.Flatten(start_dim=1, end_dim=-1)"),
        (nn.Flatten(end_dim=2), "only nn.Flatten(start_dim=1, end_dim=-1)"),
        (nn.MaxPool2d(2, stride=1), "MaxPool2d with stride (1, 1) != kernel (2, 2)"),
        (nn.AvgPool2d(2, stride=3), "AvgPool2d with stride (3, 3) != kernel (2, 2)"),
        (nn.MaxPool2d(2, padding=1), "MaxPool2d with padding or ceil_mode"),
        (nn.AvgPool2d(2, ceil_mode=True), "AvgPool2d with padding or ceil_mode"),
        (nn.MaxPool2d(2, dilation=2), "MaxPool2d with dilation or return_indices"),
        (nn.MaxPool2d(2, return_indices=True), "MaxPool2d with dilation or return_indices"),
        (nn.AvgPool2d(2, divisor_override=3), "AvgPool2d with divisor_override"),
        (nn.Sigmoid(), "Sigmoid is not supported"),
        (nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d is not supported"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_modules_it_cannot_take_get_a_reason(module, words):
    reason = op_of_module(module)
    assert isinstance(reason, str) and reason.startswith(words)
    assert "\n" not in reason
