"""Checks that an ``nn.Module`` computes exactly what its class and parameters say.

sslth reads networks (targets and tickets) layer by layer and certifies the function those
layers compute. The principle: certify what the module computes, never what its attributes
suggest. So a parameter is read only through the mechanism the forward pass uses (``module.weight``
as attribute lookup finds it, or ``weight_orig * weight_mask`` when torch's own pruning hook
recomputes ``weight`` before every call), and a module is refused, naming it and the reason,
whenever its forward cannot be shown to be that mechanism:

* a subclass that defines anything but ``__init__``/``reset_parameters``/``extra_repr`` (its own
  ``forward``, ``_conv_forward``, a ``weight`` property, ``__getattr__``, …), an instance
  ``forward`` or ``_call_impl``, a compiled module (``module.compile()``);
* a forward hook or pre-hook other than ``torch.nn.utils.prune``'s, a global hook, an active
  ``TorchFunctionMode``/``TorchDispatchMode``, ``torch.autocast``, or a patched
  ``torch.nn.functional`` entry point;
* a parametrization (``torch.nn.utils.parametrize``), a tensor subclass (whose
  ``__torch_function__`` can change ``F.linear``), a meta or sparse tensor;
* state named like pruning state (``weight_orig``, ``weight_mask``) without torch's pruning hook
  for it, a pruning hook without its state, or an instance attribute shadowing a registered
  parameter or buffer; a replaced ``_parameters``/``_buffers``/``_modules`` dict.

These read the module's structure. :mod:`sslth.probe` then runs it, which no dressing can fool
into agreeing with weights it does not use. A silent wrong certificate is the one outcome never
allowed.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional
from torch.nn.modules import module as module_globals
from torch.nn.utils import parametrize, prune

_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
)
# What a subclass of an accepted class may define: how it is built, never how it computes.
_SUBCLASS_MAY_DEFINE = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__init__",
        "__annotations__",
        "__dict__",
        "__weakref__",
        "__firstlineno__",
        "__static_attributes__",
        "__orig_bases__",
        "__parameters__",
        "reset_parameters",
        "extra_repr",
    }
)
# The containers nn.Module's attribute lookup and call read; replaced ones can answer anything.
_CONTAINERS = (
    "_parameters",
    "_buffers",
    "_modules",
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
)
# The functional entry points the accepted modules' forward passes call (and sslth's reference
# computations use): a patched one would change both sides of every check at once.
_FUNCTIONAL = {
    "linear": torch._C._nn.linear,
    "conv2d": torch.conv2d,
    "avg_pool2d": torch._C._nn.avg_pool2d,
}
_PRUNING_SUFFIXES = ("_orig", "_mask")


def _only_counting_modes() -> bool:
    """Whether every active dispatch mode is sslth's own operator counter, which passes each
    operator through unchanged (``bench_prune.py --count-ops`` counts a prune under it)."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    from sslth.opcount import is_plain_counter

    return all(is_plain_counter(mode) for mode in _get_current_dispatch_mode_stack())


def global_hook_problem() -> str | None:
    """Why global state of torch makes every module's forward differ from its layers (None
    when there is none): global forward hooks, an active torch function or dispatch mode, or
    a patched ``torch.nn.functional`` entry point."""
    for name in _GLOBAL_HOOKS:
        if getattr(module_globals, name, None):
            return (
                "a global forward hook is registered (torch.nn.modules.module."
                f"{name}): it runs inside every module's forward; remove it first"
            )
    if torch._C._len_torch_function_stack() or not _only_counting_modes():
        return (
            "a TorchFunctionMode or TorchDispatchMode is active (e.g. a `with torch.device(...)` "
            "block): it can change every operation the forward runs; certify outside it"
        )
    for device in ("cpu", "cuda"):
        if torch.is_autocast_enabled(device):
            return (
                f"autocast is active on {device} (torch.autocast): it runs float32 layers in "
                "lower precision; certify outside it"
            )
    for name, builtin in _FUNCTIONAL.items():
        if getattr(functional, name, None) is not builtin:
            return f"torch.nn.functional.{name} is replaced: every module's forward would change"
    return None


def _is_torch_pruning_hook(hook: object) -> bool:
    cls = type(hook)
    return (
        isinstance(hook, prune.BasePruningMethod)
        and cls.__module__ == prune.__name__
        and cls.apply_mask is prune.BasePruningMethod.apply_mask
        and cls.__call__ is prune.BasePruningMethod.__call__
        and isinstance(getattr(hook, "_tensor_name", None), str)
    )


def pruned_names(module: nn.Module) -> set[str]:
    """The tensor names torch's own pruning hooks recompute before each forward of ``module``."""
    return {
        hook._tensor_name
        for hook in module._forward_pre_hooks.values()
        if _is_torch_pruning_hook(hook)
    }


def tensor_problem(value: object) -> str | None:
    """Why ``value`` may not be a plain tensor whose values its operations use (None when it
    is one): a tensor subclass, a meta tensor, a sparse or other non-strided layout."""
    if type(value) not in (torch.Tensor, nn.Parameter):
        return (
            f"is a {type(value).__name__} (a torch.Tensor subclass, whose __torch_function__ "
            "can change what F.linear computes)"
        )
    if value.device.type == "meta":
        return "is on the meta device: it holds no values"
    if value.layout != torch.strided:
        return f"is a {value.layout} tensor: sslth reads dense tensors (use .to_dense())"
    return None


def _subclass_problem(module: nn.Module, base: type) -> str | None:
    cls = type(module)
    for klass in cls.__mro__:
        if klass is base:
            return None
        defined = sorted(set(vars(klass)) - _SUBCLASS_MAY_DEFINE)
        if defined:
            return f"is a subclass of {base.__name__} ({cls.__name__}) with its own {defined[0]}"
    return None


def _instance_problem(module: nn.Module) -> str | None:
    """Callables and replaced containers in the instance's own ``__dict__``."""
    if getattr(module, "_compiled_call_impl", None) is not None:
        return "is compiled (module.compile()): the compiled code is not what sslth reads"
    for key in _CONTAINERS:
        value = module.__dict__.get(key)
        if value is not None and type(value) not in (dict, OrderedDict):
            return f"has its {key} replaced by a {type(value).__name__}"
    for key, value in module.__dict__.items():
        # a callable that shadows a method (forward, _call_impl, _conv_forward, …) changes the
        # call; other callables (``self.activation = torch.relu``) are what a traced forward uses
        shadows = key in ("forward", "_call_impl", "_wrapped_call_impl") or hasattr(
            type(module), key
        )
        if shadows and callable(value) and not isinstance(value, (torch.Tensor, nn.Module)):
            return f"has a {key} assigned on the instance"
    return None


def _hook_problem(module: nn.Module) -> str | None:
    if module._forward_hooks or getattr(module, "_forward_hooks_always_called", None):
        return "has a forward hook"
    seen: set[str] = set()
    for hook in module._forward_pre_hooks.values():
        if not _is_torch_pruning_hook(hook):
            return f"has a forward pre-hook ({type(hook).__name__})"
        name = hook._tensor_name
        if name in seen:
            return f"has two pruning hooks for {name} (torch combines them into one)"
        seen.add(name)
        if (
            name + "_orig" not in module._parameters
            or name + "_mask" not in module._buffers
            or name in module._parameters
            or name in module._buffers
        ):
            return f"has torch's pruning hook for {name} without {name}_orig and {name}_mask"
    if getattr(module, "_forward_pre_hooks_with_kwargs", None) or getattr(
        module, "_forward_hooks_with_kwargs", None
    ):
        return "has a forward hook with keyword arguments"
    return None


def _state_problem(module: nn.Module) -> str | None:
    """Parametrizations, unusual tensors, stray pruning-named state and shadowed parameters."""
    if parametrize.is_parametrized(module) or "parametrizations" in module._modules:
        return "has a parametrization (torch.nn.utils.parametrize): its weight is computed"
    registered = {**module._parameters, **module._buffers}
    for key, value in module.__dict__.items():
        if key in registered or key in module._modules:
            return f"has an instance attribute {key} shadowing its registered {key}"
        if isinstance(value, torch.Tensor):
            registered.setdefault(key, value)
    pruned = pruned_names(module)
    for key, value in registered.items():
        if value is None:
            continue
        problem = tensor_problem(value)
        if problem:
            return f"has a {key} that {problem}"
        for suffix in _PRUNING_SUFFIXES:
            if key.endswith(suffix) and key[: -len(suffix)] not in pruned:
                name = key[: -len(suffix)]
                return (
                    f"holds {key} but no torch pruning hook for {name}: its forward uses "
                    f".{name}, not {name}_orig * {name}_mask; remove the stray state"
                )
    return None


def module_problem(module: nn.Module, expected: tuple[type, ...]) -> str | None:
    """Why ``module`` may compute something other than a plain instance of one of ``expected``
    (None when it is one): a foreign class, a subclass that defines how it computes, an instance
    ``forward``, a hook other than torch's pruning hooks, a parametrization, a tensor subclass,
    pruning-named state without its hook, or a shadowed parameter (see the module docstring)."""
    cls = type(module)
    base = next((t for t in expected if isinstance(module, t)), None)
    if base is None:
        return f"is a {cls.__name__}, not {' or '.join(t.__name__ for t in expected)}"
    if parametrize.is_parametrized(module):
        return "has a parametrization (torch.nn.utils.parametrize): its weight is computed"
    return (
        _subclass_problem(module, base)
        or _instance_problem(module)
        or _hook_problem(module)
        or _state_problem(module)
    )


def pruning_state(module: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(``<name>_orig``, ``<name>_mask``) when torch's pruning hook recomputes ``module.<name>``
    from them before every forward, else None (stray state named so is ignored: the forward
    does not use it, and :func:`module_problem` refuses it)."""
    if name not in pruned_names(module):
        return None
    return getattr(module, name + "_orig"), getattr(module, name + "_mask")


def effective_parameter(module: nn.Module, name: str) -> torch.Tensor | None:
    """What the forward pass uses for ``module.<name>``, detached: ``<name>_mask * <name>_orig``
    when torch's pruning hook recomputes it (the cached attribute can be stale after a mask is
    edited), else the attribute itself."""
    state = pruning_state(module, name)
    if state is not None:
        original, mask = state
        return (mask.to(dtype=original.dtype) * original).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()
