"""Dressings: a module whose attributes suggest one function while its forward computes another.

Certify what the module computes, never what its attributes suggest (issue 23). Each dressing
below changes what the first layer computes (×3) while leaving something that looks like the
original weights; before issue 23 the first five were certified with observed/certified of
14–240 (docs/reliability.md). Each is refused now, by name, for ticket networks and for targets;
the dressings that do not change the function (a plain-tensor weight, strided views) are
certified and the certificate holds.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional
from torch.nn.utils import parametrize, prune
from torch.overrides import TorchFunctionMode

import sslth
from sslth.config import random_target
from sslth.errors import UnsupportedTargetError
from sslth.kinds import DENSE
from sslth.modules import effective_parameter, module_problem, tensor_problem
from sslth.probe import affine_probe_problem
from tests.dressings import DRESSINGS, dress_stray_buffers

RADIUS = 1.5


def _ball(count: int, dim: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True) * RADIUS


def _observed(target: nn.Module, network: nn.Module) -> float:
    dtype = effective_parameter(network[0], "weight").dtype
    x = _ball(2000, 5)
    with torch.no_grad():
        exact = copy.deepcopy(target).double()(x)
        ran = network(x.to(dtype)).double()
    return float(torch.linalg.vector_norm(exact - ran, dim=1).max())


@pytest.fixture(scope="module")
def case():
    target = random_target([5, 8, 4], bias=True, seed=3)
    ticket = sslth.prune(target, 0.05, 0.5, radius=RADIUS, progress=False, empirical_samples=300)
    return target, ticket


@pytest.mark.parametrize("name", list(DRESSINGS))
def test_a_dressed_ticket_layer_is_refused(case, name):
    target, ticket = case
    dress, match = DRESSINGS[name]
    network = ticket.export()
    dress(network[0])
    with pytest.raises(sslth.NotATicketError, match=f"module 0 .*{match}"):
        sslth.certify(target, network, RADIUS)


@pytest.mark.parametrize("name", list(DRESSINGS))
def test_a_dressed_target_layer_is_refused(case, name):
    target, _ = case
    dress, match = DRESSINGS[name]
    dressed = copy.deepcopy(target).double()
    dress(dressed[0])
    with pytest.raises(UnsupportedTargetError, match=f"layer 0 .*{match}"):
        sslth.as_target(dressed)


def test_a_pruned_network_whose_hook_was_removed_is_refused(case):
    """Dressing 2 on ``ticket.network`` itself: the pruning hook deleted, .weight replaced."""
    target, ticket = case
    network = ticket._build_network()
    module = network[0]
    for key, hook in list(module._forward_pre_hooks.items()):
        if hook._tensor_name == "weight":
            del module._forward_pre_hooks[key]
    module.weight = module.weight_orig.detach() * module.weight_mask * 3
    with pytest.raises(sslth.NotATicketError, match="module 0 .*no torch pruning hook for weight"):
        sslth.certify(target, network, RADIUS)


def _suggested(module: nn.Module) -> torch.Tensor:
    """The weight a module's attributes suggest (what sslth read before issue 23): the pruning
    state when there is some, a parametrization's original, the registered parameter, with
    any tensor subclass stripped."""
    parameters, buffers = dict(dict.items(module._parameters)), module._buffers
    if "weight_orig" in parameters or "weight_orig" in buffers:
        original = parameters.get("weight_orig", buffers.get("weight_orig"))
        weight = original.as_subclass(torch.Tensor) * buffers["weight_mask"].as_subclass(
            torch.Tensor
        )
    elif parametrize.is_parametrized(module):
        weight = module.parametrizations.weight.original
    else:
        weight = parameters["weight"]
    return weight.detach().as_subclass(torch.Tensor)


# the dressings that change the function while the attributes suggest the original weight
# (a weight property or compile() leave no other weight to suggest)
_CHANGED = [
    name for name in DRESSINGS if name not in ("weight property in a subclass", "module.compile()")
]


@pytest.mark.parametrize("name", _CHANGED)
@pytest.mark.parametrize("side", ["ticket", "target"])
def test_the_probe_alone_refuses_what_the_attributes_suggest(case, name, side):
    """Without any structural check, running the dressed module on the probe inputs and
    comparing with the weights its attributes suggest refuses every dressing."""
    target, ticket = case
    dress, _ = DRESSINGS[name]
    module = ticket.export()[0] if side == "ticket" else copy.deepcopy(target[0]).double()
    suggested_bias = module.bias.detach().clone()
    dress(module)
    problem = affine_probe_problem(
        module, _suggested(module), suggested_bias, DENSE, (5,), torch.float64, "cpu"
    )
    assert problem is not None and ("does not compute" in problem or "returns a" in problem)


def test_the_probe_accepts_honest_layers_in_every_dtype():
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        module = nn.Linear(300, 7).to(dtype)
        with torch.no_grad():
            module.weight.copy_(torch.rand(7, 300, generator=generator) - 0.5)
        weight, bias = module.weight.detach(), module.bias.detach()
        assert affine_probe_problem(module, weight, bias, DENSE, (300,), dtype, "cpu") is None
        off = weight.clone()
        off[3, 4] += 0.5 if dtype in (torch.float64, torch.float32) else 5.0
        assert "does not compute" in affine_probe_problem(
            module, off, bias, DENSE, (300,), dtype, "cpu"
        )


def test_the_old_reading_was_a_false_certificate(case):
    """Dressing 1 read the old way (weight_orig * weight_mask, what the attributes suggest) gives
    a bound the module exceeds many times over: the reason the probe exists."""
    target, ticket = case
    network = ticket.export()
    honest = sslth.certify(target, network, RADIUS).bound
    dress_stray_buffers(network[0])
    assert _observed(target, network) > 10 * honest


@pytest.mark.parametrize("how", ["plain tensor", "strided view", "transposed"])
def test_weights_that_are_views_or_plain_tensors_are_certified_as_they_run(case, how):
    target, ticket = case
    network = ticket.export()
    module = network[0]
    weight = module.weight.detach().clone()
    del module.weight
    if how == "plain tensor":
        module.weight = weight
    elif how == "strided view":
        module.weight = nn.Parameter(torch.stack([weight, weight], dim=2)[:, :, 0])
    else:
        module.weight = nn.Parameter(weight.T.contiguous().T)
    assert not module.weight.is_contiguous() or how == "plain tensor"
    certificate = sslth.certify(target, network, RADIUS)
    assert certificate.bound == pytest.approx(sslth.certify(target, ticket.export(), RADIUS).bound)
    assert _observed(target, network) <= certificate.bound


def test_global_modes_and_patched_functionals_are_refused(case, monkeypatch):
    target, ticket = case
    network = ticket.export()

    class Tripling(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            return out * 3 if func is functional.linear else out

    readable = sslth.as_target(target)
    with Tripling(), pytest.raises(sslth.NotATicketError, match="TorchFunctionMode"):
        sslth.certify(readable, network, RADIUS)
    with pytest.raises(UnsupportedTargetError, match="TorchFunctionMode"), Tripling():
        sslth.as_target(target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(sslth.NotATicketError, match="autocast is active on cpu"):
            sslth.certify(readable, network, RADIUS)
        with pytest.raises(UnsupportedTargetError, match="autocast"):
            sslth.as_target(target)
    linear = functional.linear
    monkeypatch.setattr(functional, "linear", lambda x, w, b=None: 3 * linear(x, w, b))
    with pytest.raises(sslth.NotATicketError, match="functional.linear is replaced"):
        sslth.certify(readable, network, RADIUS)


def test_a_class_level_patch_of_linear_forward_is_caught_by_the_probe(case, monkeypatch):
    """Patching nn.Linear itself leaves every structural check satisfied (the module is a plain
    Linear); running it on the probe inputs shows that it computes something else."""
    target, ticket = case
    readable, network = sslth.as_target(target), ticket.export()
    forward = nn.Linear.forward
    monkeypatch.setattr(nn.Linear, "forward", lambda self, x: 3 * forward(self, x))
    with pytest.raises(sslth.NotATicketError, match="module 0 .*does not compute what its"):
        sslth.certify(readable, network, RADIUS)
    with pytest.raises(UnsupportedTargetError, match="layer 0 .*does not compute what its"):
        sslth.as_target(target)


def test_foreign_and_duplicate_pruning_hooks_are_refused(case):
    target, ticket = case

    class Mine(prune.BasePruningMethod):
        PRUNING_TYPE = "unstructured"

        def compute_mask(self, t, default_mask):
            return default_mask

    network = ticket.export()
    Mine.apply(network[0], "weight")
    with pytest.raises(sslth.NotATicketError, match="module 0 .*pre-hook \\(Mine\\)"):
        sslth.certify(target, network, RADIUS)
    network = ticket.export()
    prune.identity(network[0], "weight")
    hook = next(iter(network[0]._forward_pre_hooks.values()))
    network[0].register_forward_pre_hook(hook)
    with pytest.raises(sslth.NotATicketError, match="two pruning hooks"):
        sslth.certify(target, network, RADIUS)


def test_torch_pruning_applied_twice_is_read_as_it_runs(case):
    """torch combines two prunings into one PruningContainer hook: weight_orig * the combined
    mask, as the forward computes it."""
    target, ticket = case
    network = ticket.export()
    prune.l1_unstructured(network[2], "weight", amount=0.2)
    prune.random_unstructured(network[2], "weight", amount=0.2)
    certificate = sslth.certify(target, network, RADIUS)
    assert _observed(target, network) <= certificate.bound


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: nn.Linear(3, 0), "empty weight of shape \\(0, 3\\)"),
        (lambda: nn.Linear(3, 2, device="meta"), "meta device"),
    ],
)
def test_degenerate_target_layers_get_one_line(make, match):
    with pytest.raises(sslth.TargetError, match=match):
        sslth.as_target(nn.Sequential(make()))
    with pytest.raises(sslth.TargetError, match=match):
        sslth.prune(nn.Sequential(make()), 0.1, 0.5, progress=False)


def test_sparse_and_meta_weight_lists_get_one_line():
    dense = torch.randn(2, 3)
    with pytest.raises(UnsupportedTargetError, match="sparse_coo tensor.*to_dense"):
        sslth.as_target([dense.to_sparse()])
    with pytest.raises(UnsupportedTargetError, match="meta device"):
        sslth.as_target([dense.to("meta")])
    module = nn.Linear(3, 2)
    module.weight = nn.Parameter(dense.to_sparse())
    with pytest.raises(UnsupportedTargetError, match="layer 0 .*sparse_coo"):
        sslth.as_target(nn.Sequential(module))


def test_a_plain_subclass_that_only_builds_differently_is_accepted():
    class Initialised(nn.Linear):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

        def reset_parameters(self):
            nn.init.zeros_(self.weight)

    assert module_problem(Initialised(3, 2), (nn.Linear,)) is None
    assert tensor_problem(nn.Parameter(torch.ones(2))) is None


def test_effective_parameter_reads_what_the_forward_uses():
    """Stray pruning-named state is not read: the forward uses .weight (only torch's own hook
    makes it weight_orig * weight_mask)."""
    module = nn.Linear(3, 2)
    dress_stray_buffers(module)
    assert torch.equal(effective_parameter(module, "weight"), module.weight.detach())
    pruned = nn.Linear(3, 2)
    prune.random_unstructured(pruned, "weight", amount=0.5)
    with torch.no_grad():
        pruned.weight_mask.fill_(1.0)  # the cached .weight is stale until the next forward
    assert torch.equal(effective_parameter(pruned, "weight"), pruned.weight_orig.detach())
