"""Shared pieces of the experiments: TOML configs, the per-point cache, CSV, plotting import."""

from __future__ import annotations

import csv
import json
import math
import os
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from sslth.errors import ConfigError, TicketNotFound
from sslth.fields import from_mapping

C = TypeVar("C")


def load_config(path: str | os.PathLike, cls: type[C]) -> C:
    """Read a TOML file into the config dataclass ``cls`` (see :func:`sslth.fields.from_mapping`;
    ``cls.validate()`` does the range checks)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return from_mapping(cls, data, where=f"{path}: ")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def prune_outcome(prune: Callable[[], Any]) -> tuple[Any, bool, str | None]:
    """Run ``prune`` (a call of :func:`sslth.prune`) for a sweep point.

    Returns:
        The report of the ticket it returned, ``True`` and ``None``; or, when it raised
        :class:`~sslth.errors.TicketNotFound`, the report of the best ticket the error carries
        (``None`` if it carries none), ``False`` and the error's first sentence (at most 160
        characters) as the reason.
    """
    try:
        return prune().report, True, None
    except TicketNotFound as error:
        report = None if error.best is None else error.best.report
        return report, False, str(error).split(".")[0][:160]


# ---------------------------------------------------------------- the per-point cache
def point_name(**settings: Any) -> str:
    """A file-name-safe, stable name for a sweep point built from its settings."""
    parts = []
    for key, value in settings.items():
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}{text}")
    return "_".join(parts).replace("/", "-").replace(" ", "")


class PointCache:
    """One small JSON file per finished sweep point under ``DIR/points``.

    A point is written only once it is complete (through a temporary file and a rename), so
    an interrupted sweep leaves no half-written point and resumes where it stopped.
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.dir = Path(out_dir) / "points"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:  # a point from a crashed writer: measure it again
            return None

    def put(self, name: str, record: dict[str, Any]) -> None:
        tmp = self.path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.replace(self.path(name))


def sweep(
    points: Iterable[tuple[str, dict[str, Any]]],
    measure: Callable[[dict[str, Any]], dict[str, Any]],
    cache: PointCache,
    *,
    total: int | None = None,
    desc: str = "points",
    progress: bool = True,
    stop: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None,
    cached_only: bool = False,
) -> list[dict[str, Any]]:
    """Measure every point not yet in ``cache``; return all records (settings merged in).

    ``points`` may be a generator that looks at earlier results (through ``stop``'s side
    effects) to decide what to yield next. With ``cached_only`` nothing is measured: missing
    points are left out, so a partial (or still running) sweep can be reported as it stands.
    """
    records = []
    bar = tqdm(total=total, desc=desc, disable=not progress, unit="pt")
    for name, settings in points:
        record = cache.get(name)
        if record is None and cached_only:
            bar.update(1)
            continue
        if record is None:
            record = {**settings, **measure(settings)}
            cache.put(name, record)
        records.append(record)
        bar.update(1)
        if stop is not None:
            stop(settings, record)
    bar.close()
    return records


# ---------------------------------------------------------------- output
def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write dict rows (keys of the first row, in order, plus any later keys) as CSV."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in keys})


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return value


def pyplot():
    """matplotlib.pyplot with a headless backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "the figures need matplotlib: pip install 'sslth[plots]' (or pip install matplotlib)"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) for a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # min/max with p: at p = 0 or 1 the bound equals p up to rounding, and must not cross it
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def crossing(xs: list[float], ys: list[float], level: float) -> float | None:
    """First x at which the piecewise-linear curve (sorted by x) reaches ``level``."""
    pairs = sorted(zip(xs, ys, strict=True))
    if not pairs or pairs[0][1] >= level:
        return None  # already above at the first point: the crossing is not bracketed
    for (x0, y0), (x1, y1) in zip(pairs, pairs[1:], strict=False):
        if y1 >= level:
            return x0 + (level - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x1
    return None
