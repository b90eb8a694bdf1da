"""Convolutional targets (Theorem 4 with G = Z²): construction, bias at every border position,
the certificate against a strong attack on image inputs, files, and refusals."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import sslth
from sslth.certificate import pair_operator
from sslth.convnorm import conv_norm_power
from sslth.kinds import Conv2d
from tests.attack import QUICK, float64_copy, worst_gap
from tests.conftest import first_fast

# (kernel, stride, padding, dilation, input H×W): borders where some taps fall outside
GEOMETRIES = [
    (3, 1, 1, 1, (6, 6)),
    (3, 2, 1, 1, (7, 5)),
    (3, 1, 2, 2, (6, 7)),
    ((2, 3), (1, 2), (0, 1), 1, (5, 6)),
    (5, 1, 2, 1, (5, 5)),
    (3, 3, 0, 1, (7, 7)),
    (1, 1, 0, 1, (3, 4)),
    ((3, 1), 1, (1, 0), (2, 1), (6, 3)),
]


def _conv_target(geometry, c_in=2, c_out=3, seed=0, bias=True) -> nn.Sequential:
    kernel, stride, padding, dilation, _ = geometry
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, bias=bias)
    with torch.no_grad():
        conv.weight.mul_(2.0)
        if bias:
            conv.bias.uniform_(-0.8, 0.8)
    return nn.Sequential(conv)


@pytest.mark.parametrize("geometry", first_fast(GEOMETRIES))
def test_bias_is_exact_at_every_output_position(geometry):
    """At x = 0 only the bias block speaks: the ticket must output one constant per channel at
    every output position, borders included (a bias channel seen through zero padding is not
    constant there unless it goes through a tap that stays inside the image)."""
    target = _conv_target(geometry)
    in_hw = geometry[-1]
    ticket = sslth.prune(
        target, 0.3, 0.5, input_shape=[2, *in_hw], progress=False, empirical_samples=200
    )
    with torch.no_grad():
        out = ticket.network(torch.zeros(1, 2, *in_hw, dtype=torch.float64))[0]
    flat = out.reshape(out.shape[0], -1)
    spread = (flat.max(dim=1).values - flat.min(dim=1).values).abs().max()
    assert float(spread) <= 1e-12 * (1 + float(flat.abs().max()))
    bias = target[0].bias.detach().double()
    beta = ticket.report.layers[0].bias_error
    # the offset approximates b within β / sqrt(positions) per channel (β counts every position)
    positions = flat.shape[1]
    assert float(torch.linalg.vector_norm(flat[:, 0] - bias)) * math.sqrt(positions) <= beta * (
        1 + 1e-9
    )
    assert ticket.report.certified_error <= 0.3


def test_a_conv_pair_computes_its_operator():
    """V * σ(U x) = A * σ(x) − B * σ(−x) + offset, exactly (up to float64 rounding)."""
    geometry = (3, 2, 1, 2, (7, 6))
    target = _conv_target(geometry)
    ticket = sslth.prune(
        target, 0.3, 0.5, input_shape=[2, 7, 6], progress=False, empirical_samples=200
    )
    network = ticket.export()
    first, second = network[0], network[2]
    kind = sslth.as_target(target, input_shape=[2, 7, 6]).layers[0].kind
    op = pair_operator(first.weight.detach(), first.bias.detach(), second.weight.detach(), kind)
    x = torch.randn(16, 2, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        pair = second(torch.relu(first(x))).reshape(16, -1)
    assert torch.allclose(pair, op(x.reshape(16, -1)), rtol=1e-12, atol=1e-12)


def _cnn(seed: int, bias: bool, pool: type[nn.Module]) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=bias),
        nn.ReLU(),
        pool(2),
        nn.Conv2d(3, 4, 3, padding=1, stride=1, bias=bias),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3, bias=bias),
    )
    with torch.no_grad():
        for module in model:
            if hasattr(module, "weight"):
                module.weight.mul_(0.7)
    return model


class _Images(nn.Module):
    """Flattened inputs → images, for the attack (which searches a flat ball)."""

    def __init__(self, network: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.network, self.shape = network, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.reshape(x.shape[0], *self.shape))


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed,bias,pool,dtype,radius",
    [
        (0, True, nn.MaxPool2d, "float64", 1.0),
        (1, False, nn.AvgPool2d, "float64", 3.0),
        (2, True, nn.AvgPool2d, "float32", 1.0),
        (3, True, nn.MaxPool2d, "float32", 0.5),
    ],
)
def test_cnn_certificate_holds_under_attack(seed, bias, pool, dtype, radius):
    target = _cnn(seed, bias, pool)
    shape = (1, 6, 6)
    try:
        ticket = sslth.prune(
            target,
            0.05,
            0.4,
            radius=radius,
            input_shape=list(shape),
            dtype=dtype,
            seed=seed,
            progress=False,
            empirical_samples=500,
        )
    except sslth.TicketNotFound as error:  # float32 rounding may leave no room: attack the best
        assert dtype == "float32" and error.best is not None
        ticket = error.best
    report = ticket.report
    assert report.empirical_error <= report.certified_error
    assert report.arithmetic.split(" ")[0] == dtype and report.rounding_error > 0
    reference = _Images(float64_copy(target), shape)
    # what the report certifies: the network in float64, the sparse export in float32
    deployed = ticket.network if dtype == "float64" else ticket.export(sparse=True)
    attack = worst_gap(
        reference,
        _Images(deployed, shape),
        radius,
        36,
        module64=_Images(float64_copy(ticket.export()), shape),
        kinks=False,
        seed=seed,
        **QUICK,
    )
    assert attack.gap <= report.certified_error
    bound = sslth.certify(target, deployed, radius, input_shape=list(shape))
    assert bound.bound == pytest.approx(report.certified_error, rel=1e-9)


@pytest.mark.slow
def test_weight_norms_are_upper_bounds_of_the_conv_operators():
    target = _cnn(4, True, nn.MaxPool2d)
    certificate = sslth.certify(
        target,
        sslth.prune(
            target, 0.1, 0.5, input_shape=[1, 6, 6], progress=False, empirical_samples=200
        ).network,
        1.0,
        input_shape=[1, 6, 6],
    )
    for layer, cert in zip(
        sslth.as_target(target, input_shape=[1, 6, 6]).layers[:2],
        certificate.layers[:2],
        strict=True,
    ):
        kind = layer.kind
        power = conv_norm_power(
            layer.weight, kind.in_hw, kind.stride, kind.padding, kind.dilation, iterations=500
        )
        assert power <= cert.weight_norm * (1 + 1e-9)
        assert cert.weight_norm <= 1.5 * power  # and not absurdly loose on these shapes


def test_density_counts_kernel_entries_and_the_network_is_a_cnn():
    target = _cnn(5, True, nn.MaxPool2d)
    ticket = sslth.prune(
        target, 0.1, 0.4, input_shape=[1, 6, 6], progress=False, empirical_samples=200
    )
    network = ticket.network
    convs = [m for m in network if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and [c.kernel_size for c in convs] == [(1, 1), (3, 3)] * 2
    assert [type(m).__name__ for m in network][4] == "MaxPool2d"
    weighted = [m for m in network if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(m.weight_orig.numel() for m in weighted) + sum(
        m.bias_orig.numel() for m in weighted if hasattr(m, "bias_orig")
    )
    kept = sum(int(m.weight_mask.sum()) for m in weighted) + sum(
        int(m.bias_mask.sum()) for m in weighted if hasattr(m, "bias_mask")
    )
    assert ticket.report.random_params == total
    assert ticket.report.ticket_params == kept
    assert ticket.report.density == pytest.approx(kept / total)
    assert ticket.report.density <= 0.4


@pytest.mark.slow
def test_cnn_ticket_save_load_verify_export(tmp_path):
    from sslth.cli import main

    target = _cnn(6, True, nn.AvgPool2d)
    ticket = sslth.prune(
        target, 0.1, 0.4, input_shape=[1, 6, 6], progress=False, empirical_samples=200
    )
    path = ticket.save(tmp_path / "cnn.pt")
    loaded = sslth.load(path, samples=200)
    assert loaded.report.certified_error == pytest.approx(ticket.report.certified_error)
    assert loaded.target.input_shape == (1, 6, 6)
    x = torch.randn(8, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(loaded.network(x), ticket.network(x))
        assert torch.equal(loaded.export()(x), ticket.network(x))
    assert main(["verify", str(path), "--samples", "200"]) == 0


@pytest.mark.parametrize(
    "model,shape,error,match",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3)), None, sslth.TargetError, "input_shape"),
        (nn.Sequential(nn.Conv2d(1, 2, 3)), [2, 6, 6], sslth.TargetError, "C=1"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(16, 2)),
            [1, 6, 6],
            sslth.TargetError,
            "insert nn.Flatten",
        ),
        (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), [2, 6, 6], TypeError, "groups"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
            [1, 6, 6],
            TypeError,
            "padding_mode",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, stride=2)),
            [1, 8, 8],
            TypeError,
            "overlap",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 1, 1)),
            [1, 6, 6],
            TypeError,
            "BatchNorm2d",
        ),
        (nn.Sequential(nn.Conv2d(1, 2, 4, padding="same")), [1, 6, 6], TypeError, "even"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding=2)), [1, 5, 5], TypeError, "bias"),
        (nn.Sequential(nn.Conv2d(1, 2, 7)), [1, 5, 5], sslth.TargetError, "empty"),
    ],
)
def test_unsupported_cnns_are_refused_by_name(model, shape, error, match):
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=match):
        sslth.prune(model, 0.1, 0.5, input_shape=shape, progress=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_conv_kind_constant_taps_and_bias_tap():
    kind = Conv2d((3, 3), 1, 1, 1, (8, 8))
    assert kind.constant_taps().view(3, 3).nonzero().tolist() == [[1, 1]]
    assert kind.bias_tap == 4
    valid = Conv2d((3, 3), 1, 0, 1, (8, 8))
    assert bool(valid.constant_taps().all()) and valid.bias_tap == 4
    with pytest.raises(ValueError, match="bias"):
        Conv2d((3, 3), 1, 2, 1, (8, 8)).bias_tap  # noqa: B018
