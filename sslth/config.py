"""Experiment files for ``sslth prune --config`` and ``sslth plan --config``: a ``[target]``
table and a ``[prune]`` table.

``[prune]`` holds the fields of :class:`sslth.PruneOptions` (the same definition as the Python
API and the CLI flags); ``[target]`` is :class:`TargetConfig`. Every problem (unknown key, wrong
type, value out of range, missing file, a layer entry that does not parse, a state_dict that does
not fit the architecture) raises :class:`~sslth.errors.ConfigError` with one line that names the
key, the entry or the file.

The architecture is written by hand, either as ``widths`` (an MLP: Linear layers with one ReLU
between) or as ``layers``, one string per module, in forward order::

    layers = ["conv 1 8 3 padding=1", "relu", "maxpool 2", "flatten", "linear 392 10"]

(grammar: :data:`LAYER_GRAMMAR`). A ``state_dict`` file supplies the weights: its tensors are
mapped onto the architecture's Linear/Conv2d layers **by order** (see :func:`state_dict_layers`),
so the key names do not matter (``0.weight``, ``1.weight`` after a Flatten, ``fc1.weight`` …),
only their order and shapes; ``keys`` names the layers' prefixes where the file's order is not
the forward order.

Or the architecture is the model's own class, ``module = "package.module:ClassName"`` with
``kwargs`` for its constructor: the file fills it through ``load_state_dict`` and the model is
traced as a graph target (BatchNorm, residual adds, global pooling; :mod:`sslth.model_class`).
Importing the class runs its module's code, which the config names; the file itself is read
with the safe loader and never runs code.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslth._version import __version__
from sslth.errors import ConfigError, TargetError
from sslth.fields import from_mapping, option
from sslth.model_class import check_spec, load_model
from sslth.search.options import PruneOptions
from sslth.sizes import check_random_params, layer_sizes
from sslth.target import Target, as_target

TARGET_KINDS = ("random", "state_dict")
DEFAULT_WIDTHS = [8, 16, 4]
LAYER_GRAMMAR = (
    "'linear IN OUT', 'conv IN OUT KERNEL [stride=S] [padding=P] [dilation=D]' (each size an "
    "int or HxW, e.g. 3x3), 'relu', 'flatten', 'maxpool K', 'avgpool K' (window = stride); "
    "linear and conv take an optional bias=true|false"
)
_AFFINE = (nn.Linear, nn.Conv2d)
_NEEDS_SHAPE = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class TargetConfig:
    """The target: a random family, or a saved ``state_dict``, with its architecture."""

    kind: str = option(
        "random", help="'random' (a random family) or 'state_dict' (a saved model's weights)"
    )
    widths: list[int] | None = option(
        None,
        help="an MLP's layer sizes, input first, e.g. [784, 500, 10] (default for a random "
        f"target without layers: {DEFAULT_WIDTHS})",
    )
    layers: list[str] | None = option(
        None,
        help="the architecture, one module per string in forward order, e.g. ['conv 1 8 3 "
        "padding=1', 'relu', 'maxpool 2', 'flatten', 'linear 392 10']; convs need "
        "[prune] input_shape",
    )
    bias: bool | None = option(
        None,
        help="the layers have biases (default: random, false; state_dict, as the file has "
        "them, checked when given)",
    )
    spectral_norm: float = option(
        1.0, help="random family: every layer rescaled to this operator norm (a bound for convs)"
    )
    seed: int = option(0, help="random family: seed of the target's weights")
    path: str = option("", help="state_dict: a file written by torch.save(model.state_dict())")
    keys: list[str] | None = option(
        None,
        help="state_dict: the key prefix of each Linear/Conv2d layer in forward order, e.g. "
        "['fc1', 'fc2'] (default: the file's order)",
    )
    module: str = option(
        "",
        help="state_dict: the model's class instead of widths or layers, "
        "'package.module:ClassName' (imported from the config's folder or sys.path: its "
        "module's code runs), filled with the file by load_state_dict",
    )
    kwargs: dict | None = option(
        None, help="module: the class's constructor keyword arguments, e.g. {channels = 8}"
    )

    def validate(self) -> None:
        """Check the table's values (each layer entry parses); a ConfigError names the key."""
        if self.kind not in TARGET_KINDS:
            raise ConfigError(f"kind: must be one of {TARGET_KINDS}, got {self.kind!r}")
        if self.widths is not None and self.layers is not None:
            raise ConfigError("widths and layers: give one architecture, not both")
        if self.widths is not None and (len(self.widths) < 2 or min(self.widths) < 1):
            raise ConfigError(f"widths: need at least two positive layer sizes, got {self.widths}")
        if self.layers is not None:
            parse_layers(self.layers)  # each entry reports its own error
        if not self.spectral_norm > 0:
            raise ConfigError(f"spectral_norm: must be > 0, got {self.spectral_norm}")
        if self.kind == "state_dict":
            if not self.path:
                raise ConfigError("path: required when kind = 'state_dict'")
        elif self.keys is not None:
            raise ConfigError("keys: only for kind = 'state_dict'")
        self._validate_module()

    def _validate_module(self) -> None:
        """``module`` replaces the hand-written architecture of a state_dict target."""
        if self.kwargs is not None and not self.module:
            raise ConfigError("kwargs: only with module (the class's constructor arguments)")
        if not self.module:
            return
        if self.kind != "state_dict":
            raise ConfigError("module: only for kind = 'state_dict' (the class's weights)")
        check_spec(self.module)
        given = [
            name for name in ("widths", "layers", "keys", "bias") if getattr(self, name) is not None
        ]
        if given:
            raise ConfigError(
                f"{given[0]}: not with module (the class is the architecture and "
                "load_state_dict maps the file's keys)"
            )
        try:
            json.dumps(self.kwargs, allow_nan=False)
        except (TypeError, ValueError):
            raise ConfigError(
                f"kwargs: values must be strings, numbers, booleans, arrays or tables, got "
                f"{self.kwargs!r}"
            ) from None

    def check_architecture(self) -> None:
        """A state_dict needs its architecture described (checked after its file exists, so
        that a missing file is what a config with neither reports first)."""
        if (
            self.kind == "state_dict"
            and self.widths is None
            and self.layers is None
            and not self.module
        ):
            raise ConfigError(
                "[target] widths, layers or module: required when kind = 'state_dict' (the "
                "file holds weights, not the architecture), e.g. widths = [784, 500, 10] or "
                "module = 'mymodels.resnet:ResNet'"
            )

    def architecture(self) -> list[LayerEntry]:
        """The described modules in forward order (``widths`` expanded to its MLP)."""
        if self.layers is not None:
            return parse_layers(self.layers)
        widths = self.widths if self.widths is not None else DEFAULT_WIDTHS
        entries = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if i:
                entries.append(LayerEntry("relu", (), text="relu", label=f"widths {widths}"))
            entries.append(
                LayerEntry(
                    "linear",
                    (d_in, d_out),
                    text=f"linear {d_in} {d_out}",
                    label=f"layer {i + 1} of widths {widths}",
                )
            )
        return entries


# ---------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerEntry:
    """One parsed entry of ``layers``: the module kind, its sizes and its options."""

    name: str  # linear, conv, relu, flatten, maxpool, avgpool
    sizes: tuple[Any, ...]  # linear (IN, OUT); conv (IN, OUT, KERNEL); pools (KERNEL,)
    options: tuple[tuple[str, Any], ...] = ()
    bias: bool | None = None  # None: from [target] bias or the file
    text: str = ""
    label: str = ""  # how messages name it, e.g. "layers[3]"

    @property
    def is_affine(self) -> bool:
        return self.name in ("linear", "conv")

    def weight_shape(self) -> tuple[int, ...]:
        """The shape of the layer's weight: (OUT, IN), or (OUT, IN, KH, KW) for a conv."""
        if self.name == "linear":
            return (self.sizes[1], self.sizes[0])
        kernel = self.sizes[2]
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        return (self.sizes[1], self.sizes[0], *kernel)

    def module(self, bias: bool) -> nn.Module:
        """A fresh module (float64 for the affine layers: any float weight fits it exactly)."""
        if self.name == "linear":
            return nn.Linear(*self.sizes, bias=bias, dtype=torch.float64)
        if self.name == "conv":
            return nn.Conv2d(*self.sizes, **dict(self.options), bias=bias, dtype=torch.float64)
        if self.name == "relu":
            return nn.ReLU()
        if self.name == "flatten":
            return nn.Flatten()
        pool = nn.MaxPool2d if self.name == "maxpool" else nn.AvgPool2d
        return pool(self.sizes[0], stride=self.sizes[0])


# positional sizes and the options each entry kind takes
_FORMS = {
    "linear": (("IN", "OUT"), ("bias",)),
    "conv": (("IN", "OUT", "KERNEL"), ("stride", "padding", "dilation", "bias")),
    "relu": ((), ()),
    "flatten": ((), ()),
    "maxpool": (("K",), ()),
    "avgpool": (("K",), ()),
}
_USAGE = {
    "linear": "'linear IN OUT [bias=true|false]', e.g. 'linear 784 10'",
    "conv": "'conv IN OUT KERNEL [stride=S] [padding=P] [dilation=D] [bias=true|false]', "
    "e.g. 'conv 1 8 3 padding=1' (sizes an int or HxW)",
    "relu": "'relu'",
    "flatten": "'flatten'",
    "maxpool": "'maxpool K' (window K = stride), e.g. 'maxpool 2'",
    "avgpool": "'avgpool K' (window K = stride), e.g. 'avgpool 2'",
}
_ALIASES = {"conv2d": "conv", "dense": "linear", "maxpool2d": "maxpool", "avgpool2d": "avgpool"}
_PAIRS = ("KERNEL", "K", "stride", "padding", "dilation")  # an int or HxW


def _size(word: str, what: str, *, low: int) -> int | tuple[int, int]:
    parts = word.lower().split("x") if what in _PAIRS else [word]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or (len(values) == 2 and what not in _PAIRS):
        form = "an int or HxW" if what in _PAIRS else "an int"
        raise ValueError(f"{what} must be {form}, got {word!r}")
    if min(values) < low:
        raise ValueError(f"{what} must be >= {low}, got {word!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def parse_layer(text: str, label: str) -> LayerEntry:
    """One ``layers`` entry, e.g. ``"conv 1 8 3 padding=1"``.

    Args:
        text: the entry.
        label: how the error names it, e.g. ``"layers[3]"``.

    Returns:
        The parsed entry.

    Raises:
        ConfigError: one line naming ``label`` and what is wrong.
    """
    words = text.split()
    try:
        if not words:
            raise ValueError("empty entry")
        name = _ALIASES.get(words[0].lower(), words[0].lower())
        if name not in _FORMS:
            raise ValueError(f"unknown layer {words[0]!r}")
        positional, allowed = _FORMS[name]
        given = [w for w in words[1:] if "=" not in w]
        if len(given) != len(positional):
            usage = " ".join([name, *positional])
            raise ValueError(f"{name} takes {len(positional)} sizes ({usage}), got {len(given)}")
        if words[1 : 1 + len(given)] != given:
            raise ValueError("sizes come before key=value options")
        sizes = tuple(
            _size(word, what, low=1) for word, what in zip(given, positional, strict=True)
        )
        options: dict[str, Any] = {}
        bias = None
        for word in words[1 + len(given) :]:
            key, _, value = word.partition("=")
            if key not in allowed:
                known = ", ".join(allowed) if allowed else "none"
                raise ValueError(f"{name} has no option {key!r} (options: {known})")
            if key in options or (key == "bias" and bias is not None):
                raise ValueError(f"option {key!r} given twice")
            if key == "bias":
                if value.lower() not in ("true", "false"):
                    raise ValueError(f"bias must be true or false, got {value!r}")
                bias = value.lower() == "true"
            else:
                options[key] = _size(value, key, low=0 if key == "padding" else 1)
    except ValueError as error:
        known = words and _ALIASES.get(words[0].lower(), words[0].lower()) in _FORMS
        usage = f"usage: {_USAGE[name]}" if known else f"entries are {LAYER_GRAMMAR}"
        raise ConfigError(f"{label}: {text!r}: {error} ({usage})") from None
    return LayerEntry(name, sizes, tuple(options.items()), bias, text, label)


def parse_layers(texts: list[str]) -> list[LayerEntry]:
    """Every ``layers`` entry parsed (the first bad one raises, named ``layers[i]``; a config
    file's loader adds the ``[target]`` prefix)."""
    return [parse_layer(text, f"layers[{i}]") for i, text in enumerate(texts)]


# ------------------------------------------------------------------------------ state_dict


@dataclass(frozen=True)
class FileLayer:
    """One Linear/Conv2d layer read from a state_dict: its key prefix and tensors."""

    prefix: str
    weight: torch.Tensor
    bias: torch.Tensor | None

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name


def _one_line(error: BaseException) -> str:
    """The first non-empty line of an error's message, without terminal escape codes."""
    lines = [_ANSI.sub("", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    return lines[0] if lines else type(error).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save(model.state_dict())`` file, read with the safe loader
    (``weights_only=True``: a file that would run code is refused without running it).

    Raises:
        ConfigError: not a loadable file, pickled objects (a whole model), or not a dict of
            tensors; one line naming the file.
    """
    where = f"[target] path: {path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (any failure of the safe loader is a bad file)
        if "weights only load failed" in str(error).lower():
            # torch's own message is many lines with terminal escapes about unsafe loading
            raise ConfigError(
                f"{where} holds pickled Python objects (a whole model saved with "
                "torch.save(model)?), which the safe loader refuses to run; save "
                "model.state_dict() instead"
            ) from None
        raise ConfigError(f"{where} is not a loadable state_dict ({_one_line(error)})") from None
    if not isinstance(state, dict):
        raise ConfigError(
            f"{where} holds a {type(state).__name__}, not a state_dict (a dict of tensors)"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            hint = (
                "; save the model's state_dict() alone, not a checkpoint"
                if isinstance(value, dict)
                else ""
            )
            raise ConfigError(
                f"{where}: entry {key!r} is not a tensor ({type(value).__name__}){hint}"
            )
    return state


def state_dict_layers(
    state: dict[str, torch.Tensor], where: str, keys: list[str] | None = None
) -> list[FileLayer]:
    """The Linear/Conv2d layers of a state_dict, in order.

    Every key must be ``<prefix>.weight`` or ``<prefix>.bias``; a layer is a prefix with a 2-D
    (Linear) or 4-D (Conv2d) weight and, optionally, a bias. Nothing is skipped: a key of another
    kind (a BatchNorm's ``running_mean``, a pruning mask ``weight_mask``, …) or a 1-D weight (a
    normalization layer's) means the saved model computes something the architecture does not
    describe, so it is refused rather than ignored.

    Args:
        state: the file's tensors.
        where: the file, for messages.
        keys: the prefixes of the layers in forward order (None: the file's order).

    Returns:
        One :class:`FileLayer` per prefix.

    Raises:
        ConfigError: one line naming the key.
    """
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        if name not in ("weight", "bias"):
            raise ConfigError(
                f"{where}: entry {key!r} is neither a weight nor a bias; sslth reads only "
                "Linear/Conv2d weights and biases, and refuses other state (a BatchNorm's "
                "running statistics, a pruning mask, …) rather than ignore part of the model"
            )
        groups.setdefault(prefix, {})[name] = value
    layers = []
    for prefix, tensors in groups.items():
        name = f"{prefix}.weight" if prefix else "weight"
        if "weight" not in tensors:
            raise ConfigError(f"{where}: {prefix + '.bias'!r} has no {name!r} beside it")
        weight, bias = tensors["weight"], tensors.get("bias")
        if weight.dim() not in (2, 4):
            raise ConfigError(
                f"{where}: {name!r} has shape {tuple(weight.shape)}; a Linear weight is 2-D "
                "(d_out, d_in) and a Conv2d weight 4-D (a 1-D weight is a normalization "
                "layer's, which a target cannot have)"
            )
        for tensor, key in ((weight, name), (bias, prefix + ".bias")):
            if tensor is not None and not tensor.dtype.is_floating_point:
                raise ConfigError(f"{where}: {key!r} has dtype {tensor.dtype}, not a float")
        layers.append(FileLayer(prefix, weight, bias))
    if keys is None:
        return layers
    if len(set(keys)) != len(keys):
        raise ConfigError("[target] keys: a prefix is named twice")
    by_prefix = {layer.prefix: layer for layer in layers}
    missing = [key for key in keys if key not in by_prefix]
    if missing:
        raise ConfigError(
            f"{where}: keys names {missing[0]!r}, which the file does not have (its layers: "
            f"{', '.join(repr(p) for p in by_prefix)})"
        )
    unused = [prefix for prefix in by_prefix if prefix not in keys]
    if unused:
        raise ConfigError(
            f"{where}: layer {unused[0]!r} of the file is not in keys; every tensor must "
            "belong to the described architecture"
        )
    return [by_prefix[key] for key in keys]


def _shapes(layers: list[FileLayer]) -> str:
    return ", ".join(f"{layer.key('weight')} {tuple(layer.weight.shape)}" for layer in layers)


def _from_state_dict(config: TargetConfig, entries: list[LayerEntry]) -> nn.Sequential:
    where = f"[target] path: {config.path}"
    described = f"widths {config.widths}" if config.layers is None else "the [target] layers"
    mismatch = f"{where} does not match {described}"
    file_layers = state_dict_layers(read_state_dict(config.path), where, config.keys)
    affine = [entry for entry in entries if entry.is_affine]
    if len(file_layers) != len(affine):
        raise ConfigError(
            f"{mismatch}: the file has {len(file_layers)} Linear/Conv2d layers "
            f"({_shapes(file_layers)}), the architecture {len(affine)}"
        )
    modules: list[nn.Module] = []
    layers = iter(file_layers)
    for entry in entries:
        if not entry.is_affine:
            modules.append(entry.module(False))
            continue
        found = next(layers)
        expected = entry.weight_shape()
        if tuple(found.weight.shape) != expected:
            raise ConfigError(
                f"{mismatch}: {found.key('weight')!r} has shape {tuple(found.weight.shape)}, "
                f"{entry.label} ({entry.text!r}) expects {expected} (weights are (d_out, d_in, "
                "…), as in torch)"
            )
        has_bias = found.bias is not None
        wanted = entry.bias if entry.bias is not None else config.bias
        if wanted is not None and wanted != has_bias:
            raise ConfigError(
                f"{mismatch}: {entry.label} ({entry.text!r}) is described "
                f"{'with' if wanted else 'without'} a bias, but the file has "
                f"{'a bias ' + repr(found.key('bias')) if has_bias else 'none'}"
            )
        if has_bias and tuple(found.bias.shape) != (expected[0],):
            raise ConfigError(
                f"{mismatch}: {found.key('bias')!r} has shape {tuple(found.bias.shape)}, "
                f"{entry.label} expects ({expected[0]},)"
            )
        module = entry.module(has_bias)
        with torch.no_grad():
            module.weight.copy_(found.weight)  # float64 holds every float weight exactly
            if has_bias:
                module.bias.copy_(found.bias)
        modules.append(module)
    return nn.Sequential(*modules)


# ---------------------------------------------------------------------------------- random


def random_target(
    widths: list[int], *, spectral_norm: float = 1.0, bias: bool = False, seed: int = 0
) -> nn.Sequential:
    """A random ReLU network whose layers have the given spectral norm (Gaussian, rescaled)."""
    generator = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    for index, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        linear = nn.Linear(d_in, d_out, bias=bias)
        with torch.no_grad():
            weight = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64)
            weight *= spectral_norm / torch.linalg.matrix_norm(weight, ord=2)
            linear.weight.copy_(weight)
            if bias:
                linear.bias.copy_(0.1 * torch.randn(d_out, generator=generator))
        modules.append(linear)
        if index < len(widths) - 2:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def _random_layers(
    config: TargetConfig, entries: list[LayerEntry], input_shape: list[int] | None
) -> nn.Sequential:
    """A random network of the described architecture: Gaussian weights rescaled so that each
    layer's operator norm (for a conv, sslth's provable upper bound on it) is
    ``spectral_norm``, biases 0.1 × Gaussian; drawn in the order of :func:`random_target`, so
    an MLP written as ``layers`` is the same network as its ``widths``."""
    modules = [
        entry.module(entry.bias if entry.bias is not None else bool(config.bias))
        for entry in entries
    ]
    model = nn.Sequential(*modules)
    shapes = _target_of(model, input_shape, "layers")  # the geometry each conv sees
    generator = torch.Generator().manual_seed(config.seed)
    affine = [m for m in modules if isinstance(m, _AFFINE)]
    for module, layer in zip(affine, shapes.layers, strict=True):
        with torch.no_grad():
            weight = torch.randn(module.weight.shape, generator=generator, dtype=torch.float64)
            # the dense norm exactly as random_target computes it (same network bit for bit)
            if isinstance(module, nn.Linear):
                norm = float(torch.linalg.matrix_norm(weight, ord=2))
            else:
                norm = layer.kind.operator_norm(weight)
            if norm > 0:
                weight *= config.spectral_norm / norm
            module.weight.copy_(weight.to(torch.float32))
            if module.bias is not None:
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return model.float()


# ----------------------------------------------------------------------------------- build


def _target_of(model: nn.Sequential, input_shape: list[int] | None, what: str) -> Target:
    """``as_target`` of the built model, its errors as one ConfigError line; for ``layers``,
    module position i is ``layers[i]``, and the messages say so."""
    if input_shape is None and any(isinstance(m, _NEEDS_SHAPE) for m in model):
        raise ConfigError(
            f"[prune] input_shape: required, the [target] {what} have a conv or pooling layer "
            "(the shape of one example, e.g. input_shape = [1, 28, 28])"
        )
    try:
        return as_target(model, input_shape=input_shape)
    except TargetError as error:
        message = str(error)
        if what == "layers":
            message = re.sub(r"\blayers (\d+) and (\d+)", r"layers[\1] and layers[\2]", message)
            message = re.sub(r"\blayer (\d+)", r"layers[\1]", message)
        raise ConfigError(f"[target] {what}: {message}") from None


def _from_module_class(
    config: TargetConfig, input_shape: list[int] | None, folder: Path | None
) -> tuple[nn.Module, Target]:
    """The model class of ``module`` filled with the file, and its traced target."""
    model = load_model(
        config.module,
        config.kwargs,
        read_state_dict(config.path),
        where=f"[target] path: {config.path}",
        folder=folder,
    )
    try:
        return model, as_target(model, input_shape=input_shape)
    except TargetError as error:
        raise ConfigError(f"[target] module {config.module!r}: {error}") from None


def build_target(
    config: TargetConfig, input_shape: list[int] | None = None, folder: Path | None = None
) -> nn.Module:
    """The target network a config describes (a state_dict's layers in float64, so that the
    file's weights are kept exactly whatever their float dtype; a ``module``'s class as the
    file fills it, in eval mode).

    Args:
        config: the ``[target]`` table.
        input_shape: ``[prune] input_shape`` (required by convs and pools).
        folder: the config file's folder (searched first for a ``module``).

    Returns:
        The model, validated by :func:`sslth.as_target`.

    Raises:
        ConfigError: one line naming the key, the layer entry or the file.
    """
    config.check_architecture()
    if config.module:
        return _from_module_class(config, input_shape, folder)[0]
    entries = config.architecture()
    if config.kind == "state_dict":
        model = _from_state_dict(config, entries)
    elif config.layers is None:
        widths = config.widths if config.widths is not None else DEFAULT_WIDTHS
        model = random_target(
            widths, spectral_norm=config.spectral_norm, bias=bool(config.bias), seed=config.seed
        )
    else:
        model = _random_layers(config, entries, input_shape)
    _target_of(model, input_shape, "layers" if config.layers is not None else "widths")
    return model


def _check_sizes(sizes: list, options: PruneOptions) -> None:
    try:
        check_random_params(sizes, options.max_random_params, options.construction)
    except TargetError as error:
        raise ConfigError(f"[target] {error}") from None


def load_target(config: Config, options: PruneOptions) -> tuple[nn.Module, Target]:
    """The model a config describes and its validated :class:`~sslth.target.Target`; an
    architecture whose smallest random network is over ``max_random_params`` is refused from
    its sizes, before any weight is drawn (a ``module``'s, once the file has filled it)."""
    if config.target.module:
        folder = Path(config.source).parent if config.source else None
        model, target = _from_module_class(config.target, options.input_shape, folder)
        _check_sizes(layer_sizes(target), options)
        return model, target
    _check_sizes(_entry_sizes(config.target), options)
    model = build_target(config.target, options.input_shape)
    what = "layers" if config.target.layers is not None else "widths"
    return model, _target_of(model, options.input_shape, what)


def _entry_sizes(config: TargetConfig) -> list[tuple[str, int, int, int, bool]]:
    """(name, d_in, d_out, taps, has_bias) of each affine entry, from the config alone."""
    config.check_architecture()
    sizes = []
    for entry in config.architecture():
        if entry.is_affine:
            out, inp, *kernel = entry.weight_shape()
            bias = entry.bias if entry.bias is not None else bool(config.bias)
            sizes.append((entry.label or entry.text, inp, out, math.prod(kernel), bias))
    return sizes


# ---------------------------------------------------------------------------------- config


@dataclass
class Config:
    """A config file: its target, its ``[prune]`` table (options not yet combined with the
    command line's), and where it came from."""

    target: TargetConfig
    prune: dict[str, Any]
    source: str = ""

    def options(self, overrides: dict[str, Any] | None = None) -> PruneOptions:
        """The prune options of the file, with ``overrides`` (e.g. CLI flags) on top."""
        return from_mapping(PruneOptions, {**self.prune, **(overrides or {})}, where="[prune] ")


def run_key(target: Target, options: PruneOptions) -> dict[str, Any]:
    """What a run's result depends on: the target's content, the options that shape the ticket,
    and the sslth version. Two runs with the same key give the same ticket."""
    settings = options.settings()
    settings.pop("progress")
    return {"target": target.digest(), "prune": settings, "sslth": __version__}


def run_name(config: Config, target: Target, options: PruneOptions) -> str:
    """Folder name for a run: readable, and unique to :func:`run_key`."""
    key = json.dumps(run_key(target, options), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()
    widths = "-".join(str(w) for w in target.widths)
    return (
        f"{config.target.kind}-{widths}-eps{options.epsilon:g}-dens{options.density:g}"
        f"-seed{options.seed}-{digest[:12]}"
    )


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML experiment file (the ``[prune]`` table is checked too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    for key in raw:
        if key not in ("target", "prune"):
            raise ConfigError(f"{key}: unknown section (known: prune, target)")
    tables = {}
    for name in ("target", "prune"):
        tables[name] = raw.get(name, {})
        if not isinstance(tables[name], dict):
            raise ConfigError(f"[{name}] must be a table")
    target = from_mapping(TargetConfig, tables["target"], where="[target] ")
    if target.kind == "state_dict":
        resolved = Path(target.path)
        if not resolved.is_absolute():
            resolved = path.parent / resolved
        if not resolved.is_file():
            raise ConfigError(f"[target] path: file not found: {resolved}")
        target.path = str(resolved)
        target.check_architecture()
    config = Config(target, dict(tables["prune"]), source=str(path))
    config.options()  # the table alone must be valid: report its errors now
    return config


def settings(config: Config, options: PruneOptions) -> dict[str, Any]:
    """The settings of a run as written to its ``settings.json``."""
    return {"target": asdict(config.target), "prune": options.settings(), "source": config.source}
