"""Experiment files for ``sslth prune --config``: TOML, validated into dataclasses.

Every problem (unknown key, wrong type, missing file) raises :class:`ConfigError` with one line
that names the key or path.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the key or path."""


@dataclass
class TargetConfig:
    """The target: a random family, or a saved ``state_dict`` with its layer sizes."""

    kind: str = "random"  # "random" | "state_dict"
    widths: list[int] = field(default_factory=lambda: [8, 16, 4])
    bias: bool = False
    spectral_norm: float = 1.0  # random family: every layer rescaled to this spectral norm
    seed: int = 0  # random family: seed of the target's weights
    path: str = ""  # state_dict: file written by torch.save(model.state_dict())


@dataclass
class PruneConfig:
    epsilon: float = 0.05
    density: float = 0.3
    radius: float = 1.0
    seed: int = 0
    device: str = ""  # "" picks CUDA when available, else CPU
    n: int | list[int] | None = None
    k: int | list[int] | None = None
    method: str = "auto"


@dataclass
class Config:
    target: TargetConfig = field(default_factory=TargetConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    source: str = ""  # the file this came from (not part of the settings)

    def settings(self) -> dict[str, Any]:
        return {"target": asdict(self.target), "prune": asdict(self.prune)}

    def run_name(self) -> str:
        """Folder name for this run's results: readable, and unique to its settings."""
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()
        widths = "-".join(str(w) for w in self.target.widths)
        return (
            f"{self.target.kind}-{widths}-eps{self.prune.epsilon:g}-dens{self.prune.density:g}"
            f"-seed{self.prune.seed}-{digest[:8]}"
        )


def _check_type(section: str, key: str, value: Any, expected: Any) -> Any:
    where = f"[{section}] {key}"
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if expected == "int-list":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: expected a non-empty list of integers, got {value!r}")
        for item in value:
            _check_type(section, key, item, int)
        return value
    if expected == "int-or-list":
        if isinstance(value, list):
            return _check_type(section, key, value, "int-list")
        return _check_type(section, key, value, int)
    raise AssertionError(expected)


_TYPES = {
    "target": {
        "kind": str,
        "widths": "int-list",
        "bias": bool,
        "spectral_norm": float,
        "seed": int,
        "path": str,
    },
    "prune": {
        "epsilon": float,
        "density": float,
        "radius": float,
        "seed": int,
        "device": str,
        "n": "int-or-list",
        "k": "int-or-list",
        "method": str,
    },
}


def _section(raw: dict, name: str, cls):
    values = raw.get(name, {})
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"[{name}] {key}: unknown key (known: {', '.join(sorted(known))})")
        values[key] = _check_type(name, key, value, _TYPES[name][key])
    return cls(**values)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML experiment file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    for key in raw:
        if key not in ("target", "prune"):
            raise ConfigError(f"{key}: unknown section (known: prune, target)")
    config = Config(
        _section(raw, "target", TargetConfig), _section(raw, "prune", PruneConfig), source=str(path)
    )
    target = config.target
    if target.kind not in ("random", "state_dict"):
        raise ConfigError(f"[target] kind: must be 'random' or 'state_dict', got {target.kind!r}")
    if len(target.widths) < 2 or min(target.widths) < 1:
        raise ConfigError("[target] widths: need at least two positive layer sizes")
    if target.kind == "state_dict":
        if not target.path:
            raise ConfigError("[target] path: required when kind = 'state_dict'")
        resolved = (
            (path.parent / target.path)
            if not Path(target.path).is_absolute()
            else Path(target.path)
        )
        if not resolved.is_file():
            raise ConfigError(f"[target] path: file not found: {resolved}")
        target.path = str(resolved)
    if target.spectral_norm <= 0:
        raise ConfigError("[target] spectral_norm: must be > 0")
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
        raise ConfigError(
            f"[target] path: {config.path} is not a loadable state_dict ({error})"
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
