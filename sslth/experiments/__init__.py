"""Empirical reproductions of the paper's theorems (Theorem 2/5 and Theorem 3 / Figure 1).

Each experiment module exposes ``Config`` (a dataclass loaded from TOML) and
``run(config, out_dir, progress=True)``; :mod:`scripts/reproduce.py` is the command line.
"""

from sslth.experiments.common import ConfigError, load_config

EXPERIMENTS = ("theorem2", "theorem3")

__all__ = ["EXPERIMENTS", "ConfigError", "load_config"]
