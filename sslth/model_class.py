"""A config's target given as a model class and its saved ``state_dict``::

    [target]
    kind = "state_dict"
    path = "resnet.pt"                  # torch.save(model.state_dict())
    module = "mymodels.resnet:ResNet"   # the class, "package.module:ClassName"
    kwargs = { channels = 8 }           # its constructor's keyword arguments

The class is imported (its module's top-level code runs, as any ``import`` does: the config
names code the user chose to run) and constructed with ``kwargs``; the file is read with the safe
loader (``torch.load(weights_only=True)``, which never runs code from the file). Every key of the
file must be a key of the model's ``state_dict`` with the same shape, and every key of the model
must be in the file; values must fit the model's dtype exactly (a float64 file is not rounded
into a float32 model). The model is then put in eval mode (it is sslth's own instance, nobody
else's) and read as a graph target by :mod:`sslth.trace`. Each problem raises a one-line
:class:`~sslth.errors.ConfigError`, before anything is written.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslth.errors import ConfigError

_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_SHOWN = 3  # keys named in a message before "…"


def check_spec(spec: str) -> None:
    """Refuse a ``module`` value that is not ``"package.module:ClassName"``.

    Raises:
        ConfigError: naming the value and the expected form.
    """
    if not _SPEC.match(spec):
        raise ConfigError(
            f"module: expected 'package.module:ClassName', e.g. 'mymodels.resnet:ResNet', "
            f"got {spec!r}"
        )


def _message(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def import_class(spec: str, folder: str | Path | None = None) -> type[nn.Module]:
    """The ``nn.Module`` subclass named by ``spec`` (``"package.module:ClassName"``).

    Args:
        spec: where the class is.
        folder: also searched for the module (the config's folder), ahead of ``sys.path``,
            for the duration of the import only.

    Returns:
        The class.

    Raises:
        ConfigError: the module is not found or fails to import, has no such name, or the name
            is not an ``nn.Module`` subclass; one line.
    """
    check_spec(spec)
    module_name, class_name = spec.split(":")
    where = f"[target] module: {spec!r}"
    added = folder is not None and str(folder) not in sys.path
    if added:
        sys.path.insert(0, str(folder))
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            searched = f" (searched the config's folder {folder} and sys.path)" if folder else ""
            raise ConfigError(f"{where}: no module named {error.name!r}{searched}") from None
        raise ConfigError(f"{where}: importing {module_name!r} failed: {_message(error)}") from None
    except Exception as error:  # noqa: BLE001  (the user's module may raise anything)
        raise ConfigError(f"{where}: importing {module_name!r} failed: {_message(error)}") from None
    finally:
        if added:
            sys.path.remove(str(folder))
    found = getattr(module, class_name, None)
    if found is None:
        classes = sorted(
            name
            for name, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, nn.Module) and not name.startswith("_")
        )
        known = f" (its nn.Module classes: {', '.join(classes)})" if classes else ""
        raise ConfigError(f"{where}: {module_name!r} has no {class_name!r}{known}")
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise ConfigError(
            f"{where}: {class_name!r} is not an nn.Module class (it is a {type(found).__name__})"
        )
    return found


def _keys(keys: list[str]) -> str:
    shown = ", ".join(repr(key) for key in keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _changes(value: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether copying ``value`` into a tensor of ``dtype`` (as load_state_dict does) changes
    it: a float into an integer, or a value the narrower float rounds."""
    if value.dtype.is_floating_point != dtype.is_floating_point:
        return True
    if value.dtype == dtype or not dtype.is_floating_point:
        return False
    back = value.to(dtype).to(value.dtype)
    return not torch.allclose(back, value, rtol=0.0, atol=0.0, equal_nan=True)


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse a state_dict that does not fill ``model`` exactly: a missing or unexpected key, a
    shape, or a value the model's dtype would round.

    Raises:
        ConfigError: one line naming the first keys concerned.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise ConfigError(f"{where}: the model has {_keys(missing)}, which the file lacks")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise ConfigError(
            f"{where}: the file has {_keys(unexpected)}, which the model does not (every "
            "tensor must belong to the model)"
        )
    for key, value in state.items():
        mine = expected[key]
        if tuple(value.shape) != tuple(mine.shape):
            raise ConfigError(
                f"{where}: {key!r} has shape {tuple(value.shape)}, the model's {tuple(mine.shape)}"
            )
        if _changes(value, mine.dtype):
            raise ConfigError(
                f"{where}: {key!r} is {value.dtype}, which the model's {mine.dtype} would "
                "change; build the model in the file's dtype (e.g. through kwargs) or save it "
                "in the model's"
            )


def load_model(
    spec: str,
    kwargs: dict[str, Any] | None,
    state: dict[str, torch.Tensor],
    *,
    where: str,
    folder: str | Path | None = None,
) -> nn.Module:
    """The model class ``spec`` built with ``kwargs``, filled with ``state``, in eval mode.

    Args:
        spec: ``"package.module:ClassName"``.
        kwargs: the constructor's keyword arguments (None: none).
        state: the file's tensors (read with the safe loader).
        where: the file, for messages.
        folder: the config's folder, searched for the module first.

    Returns:
        The model (sslth's own instance, on the CPU, in eval mode).

    Raises:
        ConfigError: one line (see :func:`import_class`, :func:`check_state_dict`).
    """
    cls = import_class(spec, folder)
    try:
        model = cls(**(kwargs or {}))
    except Exception as error:  # noqa: BLE001  (the user's constructor may raise anything)
        raise ConfigError(
            f"[target] module: {cls.__name__}(**kwargs) raised {_message(error)}"
        ) from None
    check_state_dict(model, state, where)
    model.load_state_dict(state, strict=True)
    return model.eval()
