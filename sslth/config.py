"""Experiment files for ``sslth prune --config``: a ``[target]`` table and a ``[prune]`` table.

``[prune]`` holds the fields of :class:`sslth.PruneOptions` (the same definition as the Python
API and the CLI flags); ``[target]`` is :class:`TargetConfig`. Every problem (unknown key, wrong
type, value out of range, missing file) raises :class:`~sslth.errors.ConfigError` with one line
that names the key or path.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import sslth
from sslth.errors import ConfigError
from sslth.options import from_mapping, option
from sslth.search.options import PruneOptions
from sslth.target import Target

TARGET_KINDS = ("random", "state_dict")


@dataclass
class TargetConfig:
    """The target: a random family, or a saved ``state_dict`` with its layer sizes."""

    kind: str = option(
        "random", help="'random' (a random family) or 'state_dict' (a saved model's weights)"
    )
    widths: list[int] = option(
        default_factory=lambda: [8, 16, 4], help="layer sizes, input first, e.g. [784, 500, 10]"
    )
    bias: bool = option(False, help="the layers have biases")
    spectral_norm: float = option(
        1.0, help="random family: every layer rescaled to this spectral norm"
    )
    seed: int = option(0, help="random family: seed of the target's weights")
    path: str = option("", help="state_dict: a file written by torch.save(model.state_dict())")

    def validate(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ConfigError(f"kind: must be one of {TARGET_KINDS}, got {self.kind!r}")
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ConfigError(f"widths: need at least two positive layer sizes, got {self.widths}")
        if not self.spectral_norm > 0:
            raise ConfigError(f"spectral_norm: must be > 0, got {self.spectral_norm}")
        if self.kind == "state_dict" and not self.path:
            raise ConfigError("path: required when kind = 'state_dict'")


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
    return {"target": target.digest(), "prune": settings, "sslth": sslth.__version__}


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
    config = Config(target, dict(tables["prune"]), source=str(path))
    config.options()  # the table alone must be valid: report its errors now
    return config


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


def build_target(config: TargetConfig) -> nn.Sequential:
    """The target network a config describes."""
    if config.kind == "random":
        return random_target(
            config.widths, spectral_norm=config.spectral_norm, bias=config.bias, seed=config.seed
        )
    model = random_target(config.widths, bias=config.bias)
    try:
        state = torch.load(config.path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (any failure of the safe loader is a bad file)
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"[target] path: {config.path} is not a loadable state_dict ({detail})"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"[target] path: {config.path} does not hold a state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ConfigError(
            f"[target] path: {config.path} does not match widths {config.widths} "
            f"(bias = {str(config.bias).lower()}): {detail}"
        ) from None
    return model


def settings(config: Config, options: PruneOptions) -> dict[str, Any]:
    """The settings of a run as written to its ``settings.json``."""
    return {"target": asdict(config.target), "prune": options.settings(), "source": config.source}
