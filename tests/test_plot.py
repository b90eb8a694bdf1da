"""sslth.plot: the figures of a ticket, and scripts/replot.py on the committed CSVs."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytest.importorskip("matplotlib")

import sslth  # noqa: E402
from sslth import plot  # noqa: E402
from sslth.construct import PairSpec  # noqa: E402
from sslth.masks import PairMasks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"


@pytest.fixture(scope="module")
def ticket() -> sslth.Ticket:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    return sslth.prune(target, 0.05, 0.3, progress=False, empirical_samples=500)


def _axes(figure) -> list:
    """Every Axes of a figure, those of its subfigures included."""
    found = list(figure.axes)
    for sub in getattr(figure, "subfigs", []):
        found += _axes(sub)
    return found


def _texts(figure) -> str:
    parts = [figure._suptitle.get_text() if figure._suptitle else ""]
    for sub in getattr(figure, "subfigs", []):
        parts.append(_texts(sub))
    for ax in figure.axes:
        parts += [ax.get_title(loc) for loc in ("left", "center", "right")]
        parts += [ax.get_xlabel(), ax.get_ylabel()]
        parts += [label.get_text() for label in ax.get_yticklabels()]
    return "\n".join(parts)


def _colorbars(figure) -> list:
    return [ax for ax in _axes(figure) if ax.get_label() == "<colorbar>"]


def _images(figure) -> list:
    return [image.get_array() for ax in _axes(figure) for image in ax.get_images()]


def test_masks_of_a_real_ticket(ticket) -> None:
    figure = plot.masks(ticket)  # not saved: drawing is most of the time (see test_logits)
    assert _colorbars(figure), "the mask picture needs a colour key"
    text = _texts(figure)
    assert "black: kept, white: pruned" in text
    # the counts are named, and the overall figure is the report's density (the paper's count)
    assert "paper's count" in text and "entries kept" in text
    assert f"density {ticket.report.density:.3g}" in text
    for index, layer in enumerate(ticket.report.layers, start=1):
        assert f"Pair {index}: density {layer.density:.3g}" in text


def test_masks_draw_every_entry_when_few(ticket) -> None:
    figure = plot.masks(ticket, max_cells=10_000)
    hidden = max(spec.hidden for spec in ticket.specs)
    assert max(image.shape[1] for image in _images(figure)) == hidden
    labels = {t.get_text() for ax in _colorbars(figure) for t in ax.get_yticklabels()}
    assert {"0 pruned", "1 kept"} <= labels


def _synthetic_pair(d_in: int, d_out: int, n: int, kind=None) -> PairMasks:
    spec = PairSpec(d_in, d_out, n, True, seed=0, **({} if kind is None else {"kind": kind}))
    generator = torch.Generator().manual_seed(1)
    shape = (d_out, spec.hidden, *spec.kind.kernel_shape)
    second = torch.rand(shape, generator=generator) < 0.1
    return PairMasks(spec, torch.rand(spec.hidden, generator=generator) < 0.9, second)


@dataclass(frozen=True)
class _ConvLike:
    """Stands in for a conv layer kind: only the kernel's shape matters to the figure."""

    kernel_shape: tuple[int, ...] = (3, 3)

    @property
    def taps(self) -> int:
        return math.prod(self.kernel_shape)


def test_masks_aggregate_thousands_of_columns() -> None:
    pairs = [_synthetic_pair(300, 12, 10), _synthetic_pair(12, 700, 20, kind=_ConvLike())]
    assert pairs[0].spec.hidden > 5000
    figure = plot.masks(SimpleNamespace(masks=pairs))
    images = _images(figure)
    assert images and all(max(image.shape) <= plot.MAX_CELLS for image in images)
    assert "fraction kept" in _texts(figure) or _colorbars(figure)
    # the per-block view of a random mask keeps its average: nothing is lost but resolution
    first = images[0]
    assert abs(float(first.mean()) - float(pairs[0].second.double().mean())) < 0.01


def test_conv_mask_cells_say_what_they_count() -> None:
    # a conv V cell averages an (output, hidden) channel pair's kernel taps: the figure must
    # say so (issue 14: "say which count it uses"), not call the cell "every entry"
    pair = _synthetic_pair(2, 3, 4, kind=_ConvLike())
    assert pair.spec.hidden <= plot.MAX_CELLS
    figure = plot.masks(SimpleNamespace(masks=[pair]))
    text = _texts(figure)
    assert "3×3 = 9 kernel taps" in text and "every entry" not in text
    assert "output channel" in text and "hidden channel" in text
    keys = [ax.get_ylabel() for ax in _colorbars(figure)]
    assert keys and all("fraction of kernel taps kept" in key for key in keys)
    # the drawn cell is that fraction, not a single tap
    v = pair.second.reshape(3, pair.spec.hidden, 9).double().mean(dim=2).numpy()
    assert (_images(figure)[0] == v).all()
    # with thousands of hidden channels (per-block view and zoom) the cells still say so
    wide = plot.masks(SimpleNamespace(masks=[_synthetic_pair(12, 5, 20, kind=_ConvLike())]))
    text = _texts(wide)
    assert "3×3-tap entries" in text and "kernel taps kept" in text and "every entry" not in text
    # a dense pair keeps its own words
    dense = plot.masks(SimpleNamespace(masks=[_synthetic_pair(2, 3, 4)]))
    assert "every entry" in _texts(dense) and "kernel taps" not in _texts(dense)


def test_ragged_blocks_are_not_drawn_as_pruned() -> None:
    pair = _synthetic_pair(2, 3, 4)
    grown = PairMasks(
        pair.spec.with_blocks({0: 6}),
        torch.ones(pair.spec.hidden + 4, dtype=torch.bool),
        torch.zeros(3, pair.spec.hidden + 4, dtype=torch.bool),
    )
    figure = plot.masks(SimpleNamespace(masks=[grown]))
    assert "yellow: no neuron" in "\n".join(ax.get_xlabel() for ax in _axes(figure))


def test_bin_mean() -> None:
    array = torch.arange(12.0).reshape(3, 4).numpy()
    binned, rows, cols = plot.bin_mean(array, 3, 2)
    assert binned.tolist() == [[0.5, 2.5], [4.5, 6.5], [8.5, 10.5]]
    assert rows.tolist() == [0, 1, 2, 3] and cols.tolist() == [0, 2, 4]


@pytest.mark.slow
def test_logits(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(200, 10, generator=generator) * 5
    ticket_logits = target + 1e-3 * torch.randn(200, 10, generator=generator)
    ticket_logits[0] = target[0]  # an exact example must not break the log axis
    path = tmp_path / "logits.png"
    figure = plot.logits(target, ticket_logits, 0.05, 0.02, path)
    assert path.stat().st_size > 0
    histogram, scatter = figure.axes[:2]
    assert histogram.get_xscale() == "log" and scatter.get_yscale() == "log"
    legend = " ".join(t.get_text() for t in histogram.get_legend().get_texts())
    assert "ε = 0.05" in legend and "certified bound 0.02" in legend
    assert "margin / √2" in [t.get_text() for t in scatter.get_legend().get_texts()]
    with pytest.raises(ValueError):
        plot.logits(target, ticket_logits[:, :3], 0.05, 0.02)


def test_error_histogram(ticket) -> None:
    figure = plot.error_histogram(ticket)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == len(ticket.report.layers)
    for ax, layer in zip(panels, ticket.report.layers, strict=True):
        assert f"tolerance {layer.tolerance:.3g}" in ax.get_title()
        assert f"largest {layer.max_weight_error / layer.tolerance:.4g}×" in ax.get_title()


def test_digits_wrappers_use_the_api(monkeypatch, tmp_path) -> None:
    from sslth.experiments import digits

    calls = []
    monkeypatch.setattr(plot, "masks", lambda *args: calls.append(("masks", args)))
    monkeypatch.setattr(plot, "logits", lambda *args: calls.append(("logits", args)))
    digits.plot_masks("a ticket", tmp_path / "masks.png")
    digits.plot_logits("target", "ticket", 0.05, 0.02, tmp_path / "logits.png")
    assert calls == [
        ("masks", ("a ticket", tmp_path / "masks.png")),
        ("logits", ("target", "ticket", 0.05, 0.02, tmp_path / "logits.png")),
    ]


def test_missing_matplotlib_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"sslth\[plots\]"):
        plot.logits(torch.zeros(2, 3), torch.zeros(2, 3), 0.1, 0.1)


# ---------------------------------------------------------------- scripts/replot.py
def _replot_module():
    spec = importlib.util.spec_from_file_location("replot", ROOT / "scripts" / "replot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replot_reads_the_committed_csvs() -> None:
    replot = _replot_module()
    t2 = replot.read_records(FIGURES / "theorem2_points.csv", replot.THEOREM2_COLUMNS)
    assert len(t2) == 384
    row = t2[0]
    assert isinstance(row["n"], int) and isinstance(row["k"], int)
    assert isinstance(row["theorem5_counting"], bool) and isinstance(row["ratio"], float)
    assert {r["ratio"] for r in t2} == {1 / 16, 1 / 8, 1 / 4, 1 / 2}
    t3 = replot.read_records(FIGURES / "theorem3_points.csv", replot.THEOREM3_COLUMNS)
    assert len(t3) == 720
    assert all(isinstance(r["found"], bool) for r in t3)
    found = [r for r in t3 if r["found"]]
    assert found and all(
        isinstance(r["n"], list) and len(r["n"]) == r["depth"] and isinstance(r["n"][0], int)
        for r in found
    )


def _copy_rows(source: Path, destination: Path, keep) -> None:
    with source.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if keep(row)]
        fields = reader.fieldnames
    with destination.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_replot_script_on_the_committed_csvs(tmp_path) -> None:
    # a corner of each sweep: drawing the whole figures takes longer than this test file may
    source = tmp_path / "csv"
    source.mkdir()
    _copy_rows(
        FIGURES / "theorem2_points.csv",
        source / "theorem2_points.csv",
        lambda row: (
            (row["distribution"], row["target_range"], row["ratio"]) == ("product", "sqrt_k", "0.5")
        ),
    )
    _copy_rows(
        FIGURES / "theorem3_points.csv",
        source / "theorem3_points.csv",
        lambda row: row["epsilon"] == "0.01" and row["width"] == "4",
    )
    _copy_rows(
        FIGURES / "theorem4_points.csv",
        source / "theorem4_points.csv",
        lambda row: row["epsilon"] == "0.1" and row["bias"] == "False",
    )
    out = tmp_path / "figures"
    assert _replot_module().main(["--csv", str(source), "--out", str(out)]) == 0
    for name in (
        "theorem2_vs_x.png",
        "theorem2_vs_n.png",
        "theorem3_density.png",
        "theorem4_density.png",
    ):
        assert (out / name).stat().st_size > 0, name
