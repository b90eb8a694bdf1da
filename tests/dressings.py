"""Dressings: ways to make a module compute something other than what its attributes suggest.

Each one triples what a Linear (or Conv2d) computes while something that looks like the original
weights stays in place. Shared by tests/test_modules.py and scripts/attack_dressings.py; imports
nothing from sslth, so the script can measure any checkout.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional
from torch.nn.utils import parametrize, prune


class _Tripling(torch.Tensor):
    """A weight whose F.linear is three times torch's."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out * 3 if func is functional.linear else out


class _Triple(nn.Module):
    def forward(self, weight):
        return 3 * weight


def dress_stray_buffers(module: nn.Module) -> None:
    module.register_buffer("weight_orig", module.weight.detach().clone())
    module.register_buffer("weight_mask", torch.ones_like(module.weight))
    with torch.no_grad():
        module.weight.mul_(3)


def dress_hook_removed(module: nn.Module) -> None:
    prune.identity(module, "weight")
    for key, hook in list(module._forward_pre_hooks.items()):
        if hook._tensor_name == "weight":
            del module._forward_pre_hooks[key]
    module.weight = module.weight_orig.detach() * 3


def dress_parametrized(module: nn.Module) -> None:
    parametrize.register_parametrization(module, "weight", _Triple())


def dress_subclass_weight(module: nn.Module) -> None:
    module.weight = nn.Parameter(module.weight.detach().as_subclass(_Tripling))


def dress_shadowed(module: nn.Module) -> None:
    module.__dict__["weight"] = module.weight.detach() * 3


def dress_replaced_parameters(module: nn.Module) -> None:
    class Lying(dict):
        def __getitem__(self, key):
            value = super().__getitem__(key)
            return value * 3 if key == "weight" else value

    module._parameters = Lying(module._parameters)


def dress_swapped_class(module: nn.Module) -> None:
    base = type(module)
    module.__class__ = type(
        "Swapped", (base,), {"forward": lambda self, x: 3 * base.forward(self, x)}
    )


def dress_weight_property(module: nn.Module) -> None:
    original = module.weight.detach().clone()
    del module.weight
    module.__class__ = type(
        "Propertied", (type(module),), {"weight": property(lambda self: 3 * original)}
    )


def dress_getattr_override(module: nn.Module) -> None:
    base = type(module)

    def lookup(self, name):
        value = base.__getattr__(self, name)
        return 3 * value if name == "weight" else value

    module.__class__ = type("Looked", (base,), {"__getattr__": lookup})


def dress_instance_call_impl(module: nn.Module) -> None:
    call = module._call_impl
    module._call_impl = lambda *args, **kwargs: 3 * call(*args, **kwargs)


def dress_compiled(module: nn.Module) -> None:
    module.compile()


def dress_subclass_mask(module: nn.Module) -> None:
    prune.identity(module, "weight")
    module.weight_mask = module.weight_mask.as_subclass(_Tripling)


def dress_forward_hook(module: nn.Module) -> None:
    module.register_forward_hook(lambda module, args, out: 3 * out)


def dress_forward_pre_hook(module: nn.Module) -> None:
    module.register_forward_pre_hook(lambda module, args: (3 * args[0],))


DRESSINGS = {
    "stray weight_orig/weight_mask buffers": (dress_stray_buffers, "holds weight_orig"),
    "pruning hook removed, weight set": (dress_hook_removed, "holds weight_orig"),
    "parametrize": (dress_parametrized, "parametrization"),
    "tensor subclass weight": (dress_subclass_weight, "torch.Tensor subclass"),
    "instance attribute shadowing weight": (dress_shadowed, "shadowing"),
    "replaced _parameters dict": (dress_replaced_parameters, "_parameters replaced"),
    "__class__ swapped": (dress_swapped_class, "own forward"),
    "weight property in a subclass": (dress_weight_property, "own weight"),
    "__getattr__ in a subclass": (dress_getattr_override, "own __getattr__"),
    "_call_impl on the instance": (dress_instance_call_impl, "_call_impl assigned"),
    "module.compile()": (dress_compiled, "compiled"),
    "tensor subclass mask": (dress_subclass_mask, "torch.Tensor subclass"),
    "forward hook": (dress_forward_hook, "forward hook"),
    "forward pre-hook": (dress_forward_pre_hook, "forward pre-hook"),
}
