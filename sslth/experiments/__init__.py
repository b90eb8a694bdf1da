"""Empirical reproductions of the paper's theorems: Theorem 2/5, Theorem 3 / Figure 1, and
Theorem 4 on CNN targets.

Each experiment module exposes ``Config`` (a dataclass loaded from TOML) and
``run(config, out_dir, progress=True)``; :mod:`scripts/reproduce.py` is the command line.
"""

from sslth.experiments.common import ConfigError, load_config

EXPERIMENTS = ("theorem2", "theorem3", "theorem4", "lplus1")

__all__ = ["EXPERIMENTS", "ConfigError", "load_config"]
