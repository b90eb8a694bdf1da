"""Checks that an ``nn.Module`` computes exactly what its class and parameters say.

sslth reads networks (targets and tickets) layer by layer and certifies the function those
layers compute. That is only the function the model computes when nothing else runs in its
forward pass: no subclass with its own ``forward``, no forward hook or pre-hook (other than
``torch.nn.utils.prune``'s own, which recompute ``weight = weight_orig * weight_mask``), no
``forward`` assigned on an instance, and no global hook. Anything else is refused, naming the
module and the reason: a silent wrong certificate is the one outcome never allowed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.utils import prune

_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
)


def global_hook_problem() -> str | None:
    """Why the global hooks of ``torch.nn`` make every module's forward differ from its layers
    (None when there are none)."""
    for name in _GLOBAL_HOOKS:
        if getattr(module_globals, name, None):
            return (
                "a global forward hook is registered (torch.nn.modules.module."
                f"{name}): it runs inside every module's forward; remove it first"
            )
    return None


def _is_torch_pruning_hook(hook: object) -> bool:
    cls = type(hook)
    return (
        isinstance(hook, prune.BasePruningMethod)
        and cls.__module__ == prune.__name__
        and cls.apply_mask is prune.BasePruningMethod.apply_mask
        and cls.__call__ is prune.BasePruningMethod.__call__
    )


def module_problem(module: nn.Module, expected: tuple[type, ...]) -> str | None:
    """Why ``module`` may compute something other than a plain instance of one of
    ``expected`` (None when it is one): a foreign class, a subclass whose forward or call
    differs, an instance ``forward``, or a forward hook other than torch's pruning hooks."""
    cls = type(module)
    base = next((t for t in expected if isinstance(module, t)), None)
    if base is None:
        return f"is a {cls.__name__}, not {' or '.join(t.__name__ for t in expected)}"
    if cls is not base:
        for name in ("forward", "__call__", "_call_impl", "_conv_forward"):
            if getattr(cls, name, None) is not getattr(base, name, None):
                return f"is a subclass of {base.__name__} ({cls.__name__}) with its own {name}"
    if "forward" in module.__dict__:
        return "has a forward assigned on the instance"
    if module._forward_hooks or getattr(module, "_forward_hooks_always_called", None):
        return "has a forward hook"
    for hook in module._forward_pre_hooks.values():
        if not _is_torch_pruning_hook(hook):
            return f"has a forward pre-hook ({type(hook).__name__})"
    if getattr(module, "_forward_pre_hooks_with_kwargs", None) or getattr(
        module, "_forward_hooks_with_kwargs", None
    ):
        return "has a forward hook with keyword arguments"
    return None


def effective_parameter(module: nn.Module, name: str) -> torch.Tensor | None:
    """What the forward pass uses for ``module.<name>``: ``<name>_orig * <name>_mask`` for a
    tensor pruned with ``torch.nn.utils.prune`` (the cached attribute can be stale after a mask
    is edited), else the parameter itself; detached."""
    original = getattr(module, name + "_orig", None)
    if original is not None:
        mask = getattr(module, name + "_mask")
        return (original * mask.to(dtype=original.dtype)).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()
