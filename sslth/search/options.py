"""The options of :func:`sslth.prune`: one definition for the Python API, TOML and CLI flags."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from sslth.construct import SEED_LIMIT
from sslth.errors import ConfigError
from sslth.fields import check_positive, check_value, option
from sslth.rounding import DTYPES
from sslth.subset_sum import SOLVERS, Solver

DEFAULT_MAX_RANDOM_PARAMS = 200_000_000
CONSTRUCTIONS = ("2l", "l+1")


@dataclass
class PruneOptions:
    """What to prune for: ε and density, and how the search may get there.

    Construction validates every field (type and range) and raises
    :class:`~sslth.errors.ConfigError` naming the first bad one.
    """

    epsilon: float = option(
        help="certified error to reach: sup over the ball of ||target(x) - ticket(x)||_2"
    )
    density: float = option(help="largest fraction of the random network's weights kept")
    radius: float = option(1.0, help="radius R of the input ball the certificate covers")
    seed: int = option(0, help="seed of the random network and the search, in [0, 2^62)")
    device: str | None = option(
        None, help="torch device of the solve, e.g. 'cpu' or 'cuda' (default: cuda if any)"
    )
    n: int | list[int] | None = option(
        None, help="neurons per target input (an int or one per layer); default: searched"
    )
    k: int | list[int] | None = option(
        None, help="picks per weight and sign (an int or one per layer); default: searched"
    )
    method: str | Solver = option(
        "auto", help="subset-sum solver: 'auto', 'exact', 'fast', or a subset_sum.Solver"
    )
    max_random_params: int = option(
        DEFAULT_MAX_RANDOM_PARAMS, help="largest random network the search may draw"
    )
    empirical_samples: int = option(
        10_000,
        help="random points for the report's empirical error (half on the sphere, half in "
        "the ball), then gradient ascent",
    )
    refine: bool = option(True, help="after a first success, shrink n of small layers")
    input_shape: list[int] | None = option(
        None,
        help="shape of one example, e.g. [C, H, W]; required when the target has a conv or "
        "a pooling layer",
    )
    threads: int | None = option(
        None,
        help="worker threads solving chunks of instances in parallel (default: the CPU cores "
        "this process may use; 1 on CUDA); torch's own intra-op pool is held at one thread "
        "meanwhile",
    )
    dtype: str = option(
        "float64",
        help="dtype of the ticket, whose floating-point rounding the certificate covers: "
        "'float64' (ticket.network; rounding negligible) or 'float32' (certified as "
        "ticket(x) runs it: the sparse export, float32 weights and activations, float64 "
        "accumulation)",
    )
    construction: str = option(
        "2l",
        help="the random network: '2l' (a pair of layers per target layer, the paper's) or "
        "'l+1' (Burkholz 2022: one layer more than the target, with copies of every neuron; "
        "dense targets only)",
    )
    progress: bool = option(True, help="show progress bars", cli=False)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = check_value(field.name, getattr(self, field.name), hints[field.name])
            setattr(self, field.name, value)
        check_positive("epsilon", self.epsilon)
        check_positive("density", self.density, upper=1.0)
        check_positive("radius", self.radius)
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(
                f"seed must be in [0, 2^62) (larger seeds repeat smaller ones); got {self.seed}"
            )
        for name in ("n", "k"):
            value = getattr(self, name)
            for v in [value] if isinstance(value, int) else value or []:
                if v < 1:
                    raise ConfigError(f"{name} must be positive integers, got {v!r}")
        if self.max_random_params < 1:
            raise ConfigError(f"max_random_params must be >= 1, got {self.max_random_params}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.construction not in CONSTRUCTIONS:
            raise ConfigError(
                f"construction must be one of {list(CONSTRUCTIONS)}, got {self.construction!r}"
            )
        if self.empirical_samples < 1:
            raise ConfigError(f"empirical_samples must be >= 1, got {self.empirical_samples}")
        if not isinstance(self.method, Solver) and self.method not in SOLVERS:
            raise ConfigError(
                f"method must be one of {sorted(SOLVERS)} or a subset_sum.Solver, "
                f"got {self.method!r}"
            )

    def per_layer(self, name: str, depth: int) -> list[int] | None:
        """``n`` or ``k`` as one int per layer of a target of ``depth`` layers (None: searched)."""
        value = getattr(self, name)
        if value is None:
            return None
        values = [value] * depth if isinstance(value, int) else list(value)
        if len(values) != depth:
            raise ConfigError(f"{name} has {len(values)} entries for a target of {depth} layers")
        return values

    def settings(self) -> dict[str, Any]:
        """The options as plain data (a solver object as its description)."""
        data = dataclasses.asdict(self)
        if not isinstance(self.method, str):
            data["method"] = repr(self.method)
        return data


def as_options(
    epsilon: float | PruneOptions,
    density: float | None,
    keywords: dict[str, Any],
    *,
    caller: str,
    extra: tuple[str, ...] = (),
) -> PruneOptions:
    """The one request of ``prune`` and ``plan``: a :class:`PruneOptions` passed whole, or
    ε, the density and keywords built into one (the one check of unknown keywords).

    Args:
        epsilon: ε, or a whole :class:`PruneOptions` (then ``density`` and ``keywords`` must
            be empty).
        density: the density limit (with a float ε).
        keywords: the other fields of :class:`PruneOptions`.
        caller: the function's name, for the messages.
        extra: the caller's own keywords, named in the message of an unknown one.

    Returns:
        The validated options.

    Raises:
        ConfigError: a keyword that is no option, a PruneOptions mixed with other arguments,
            or an invalid value (the message names it).
    """
    if isinstance(epsilon, PruneOptions):
        if density is not None or keywords:
            raise ConfigError(
                f"{caller}: pass either a PruneOptions or epsilon, density and keywords, not both"
            )
        return epsilon
    known = set(PruneOptions.__dataclass_fields__)
    unknown = sorted(set(keywords) - known)
    if unknown:
        names = sorted(known - {"epsilon", "density"}) + list(extra)
        raise ConfigError(
            f"unknown {caller} option {', '.join(map(repr, unknown))} (options: {', '.join(names)})"
        )
    return PruneOptions(epsilon=epsilon, density=density, **keywords)
