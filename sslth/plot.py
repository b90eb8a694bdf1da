"""Figures of a ticket: its masks, its outputs against the target's, its weight errors.

Every function returns a :class:`matplotlib.figure.Figure` and also saves it when given a path.
The figures are built without ``pyplot``, so calling them neither switches the backend of an
interactive session nor leaves figures registered in pyplot's state; in a notebook the returned
figure displays itself.

matplotlib is an optional extra: ``pip install 'sslth[plots]'``.

Example::

    import sslth, sslth.plot

    ticket = sslth.prune(target, epsilon=0.05, density=0.3)
    sslth.plot.masks(ticket, "masks.png")
    sslth.plot.error_histogram(ticket, "weight_errors.png")
    sslth.plot.logits(target(x), ticket.network(x.to(ticket.dtype)), ticket.epsilon,
                      ticket.report.certified_error, "logits.png")
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sslth.construct import PairSpec
    from sslth.masks import PairMasks
    from sslth.ticket import Ticket

__all__ = ["error_histogram", "logits", "masks"]

# A mask image never has more cells than this along either axis: beyond a few hundred columns a
# binary image aliases into moiré at any printable size, so columns are averaged instead.
MAX_CELLS = 200
FONT_SIZE = 10
# Okabe–Ito: distinguishable by colour-blind readers and in greyscale print
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
KEPT_CMAP = "Greys"  # 0 = white = pruned, 1 = black = kept
NO_NEURON = "#F0E442"  # Okabe–Ito yellow: a cell past the end of a shorter block (no neuron)


def _figure(**kwargs: Any) -> Figure:
    """A new Figure with constrained layout, or an ImportError that names the extra."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "the figures need matplotlib: pip install 'sslth[plots]' (or pip install matplotlib)"
        ) from error
    return Figure(layout="constrained", **kwargs)


def wrap_to_width(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_inches`` at ``fontsize`` points (an average
    glyph is about 0.55 em wide), so a suptitle is never cut off by a narrow figure."""
    import textwrap

    return textwrap.fill(text, max(20, int(width_inches * 72 / (0.55 * fontsize))))


def _save(figure: Figure, path: str | os.PathLike | None, dpi: int = 120) -> None:
    if path is not None:
        figure.savefig(os.fspath(path), dpi=dpi, bbox_inches="tight")


def _style(ax: Axes) -> None:
    ax.tick_params(labelsize=FONT_SIZE)
    ax.xaxis.label.set_size(FONT_SIZE + 1)
    ax.yaxis.label.set_size(FONT_SIZE + 1)


# ---------------------------------------------------------------- masks
def bin_mean(
    array: np.ndarray, max_rows: int = MAX_CELLS, max_cols: int = MAX_CELLS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average ``array`` over groups of consecutive rows and columns so that it has at most
    ``max_rows`` × ``max_cols`` cells.

    Args:
        array: a 2-D array (a mask as 0/1, or fractions).
        max_rows: most rows of the result.
        max_cols: most columns of the result.

    Returns:
        ``(binned, row_edges, col_edges)``: the (r, c) array of group means and the group
        boundaries in the original indices (r + 1 and c + 1 of them), so an image drawn with
        ``extent`` keeps the original index on its axes.
    """
    binned = np.asarray(array, dtype=np.float64)
    edges = []
    for axis, limit in ((0, max_rows), (1, max_cols)):
        size = binned.shape[axis]
        groups = min(size, max(1, limit))
        bounds = np.linspace(0, size, groups + 1).round().astype(int)
        sums = np.add.reduceat(binned, bounds[:-1], axis=axis)
        counts = np.diff(bounds).reshape((-1, 1) if axis == 0 else (1, -1))
        binned = sums / counts
        edges.append(bounds)
    return binned, edges[0], edges[1]


def _mask_image(ax: Axes, values: np.ndarray, *, x_unit: int = 1, max_cells: int) -> Any:
    """Draw ``values`` (fractions kept, rows × columns; 0/1 for a raw mask) in at most
    ``max_cells`` × ``max_cells`` cells, on the original row and column indices (``x_unit``
    stretches columns that stand for blocks of that many neurons). Returns the image."""
    from matplotlib import colormaps

    binned, row_edges, col_edges = bin_mean(values, max_cells, max_cells)
    image = ax.imshow(
        binned,
        # NaN marks a cell with no neuron (past the end of a shorter block), never "pruned"
        cmap=colormaps[KEPT_CMAP].with_extremes(bad=NO_NEURON),
        vmin=0.0,
        vmax=1.0,
        aspect="auto",
        interpolation="nearest",
        # cell i covers [i − ½, i + ½], so integer ticks sit on cell centres
        extent=(-0.5, col_edges[-1] * x_unit - 0.5, row_edges[-1] - 0.5, -0.5),
    )
    ax.yaxis.set_major_locator(_integer_locator())
    return image


def _integer_locator(nbins: int | str = "auto") -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=nbins, integer=True)


def _v_fractions(pair: PairMasks) -> np.ndarray:
    """V as (d_out, hidden) fractions of kernel positions kept (0/1 for a dense layer)."""
    spec = pair.spec
    second = pair.second.detach().cpu()
    return second.reshape(spec.d_out, spec.hidden, -1).double().mean(dim=2).numpy()


def masks(
    ticket: Ticket,
    path: str | os.PathLike | None = None,
    *,
    max_cells: int = MAX_CELLS,
) -> Figure:
    """The ticket's masks, one row of panels per random pair (V, then U).

    V, the pair's second layer, is (d_out × hidden). For a conv pair V is
    (c_out × hidden channels × kh × kw) and one cell is an (output channel, hidden channel)
    pair: its grey level is the fraction of its kh·kw kernel taps kept (black: every tap kept,
    white: none), and the titles say so. With at most ``max_cells`` hidden neurons every
    (output, hidden) cell is drawn.
    With more, thousands of one-pixel columns would alias into moiré, so V is drawn as the
    fraction of each input block's 2n neurons that each output keeps, beside a zoom that shows
    every neuron of the first blocks. The U panel shows which hidden neurons keep their single
    U weight, one row per input block (the bias block last). Any axis longer than
    ``max_cells`` is averaged over consecutive groups. One colour key: black is kept, white
    pruned, grey the fraction kept in an averaged cell (or of a conv cell's kernel taps); in
    the U panel, yellow marks cells past the end of a block shorter than the widest (grown
    blocks are wider), where there is no neuron at all.

    Titles name the counts they use: a pair's *density* is the paper's count (kept U and V
    weights over all random weights of the pair, including the dense U that preprocessing
    prunes), while "% of entries kept" for V counts V's entries alone, hence larger.

    Args:
        ticket: a :class:`sslth.Ticket` (only ``ticket.masks`` is read).
        path: where to save the figure (PNG, PDF, … by extension); not saved if None.
        max_cells: most image cells along each axis of a panel.

    Returns:
        The matplotlib Figure.
    """
    if getattr(ticket, "construction", "2l") == "l+1":
        from sslth.lplus1.plot import masks as lplus1_masks

        return lplus1_masks(ticket, path, max_cells=max_cells)
    pairs = list(ticket.masks)
    figure = _figure(figsize=(13, 3.9 * len(pairs) + 0.5))
    rows = figure.subfigures(len(pairs), 1, squeeze=False)[:, 0]
    kept_total = random_total = 0
    for index, (pair, row) in enumerate(zip(pairs, rows, strict=True)):
        spec = pair.spec
        v = _v_fractions(pair)
        kept_v = int(pair.second.count_nonzero())
        kept_u = int(pair.kept_neurons.count_nonzero())
        kept, random = kept_u + kept_v, spec.dense_params
        kept_total += kept
        random_total += random
        row.suptitle(
            f"Pair {index + 1}: density {kept / random:.3g} = {kept:,} kept U+V weights / "
            f"{random:,} random weights of the pair (the paper's count)",
            fontsize=FONT_SIZE + 1,
            x=0.01,
            ha="left",
        )
        shape = " × ".join(str(s) for s in (spec.d_out, spec.hidden, *spec.kind.kernel_shape))
        words = _Words.of(spec)
        v_kept = (
            f"V ({shape}): {100 * kept_v / (v.size * spec.taps):.1f}% of its "
            f"{v.size * spec.taps:,} entries kept"
        )
        panels = []
        if spec.hidden <= max_cells:
            grid = row.add_gridspec(1, 2, width_ratios=[2.6, 1])
            ax = row.add_subplot(grid[0, 0])
            image = _mask_image(ax, v, max_cells=max_cells)
            _block_lines(ax, spec.block_offsets)
            ax.set_xlabel(f"hidden {words.unit} (blue lines: input blocks of 2n {words.units})")
            _panel_title(
                ax, f"{v_kept}{';' if words.taps else ','}\n{words.cells(spec.d_out, max_cells)}"
            )
            ax.set_ylabel(words.output)
            panels.append(ax)
        else:
            grid = row.add_gridspec(1, 3, width_ratios=[1.3, 1.3, 1])
            ax = row.add_subplot(grid[0, 0])
            offsets = np.array(spec.block_offsets)
            sizes = np.diff(offsets)
            per_block = np.add.reduceat(v, offsets[:-1], axis=1) / sizes
            block = int(sizes[0])
            image = _mask_image(ax, per_block, x_unit=block, max_cells=max_cells)
            if spec.blocks <= max_cells:
                grown = "" if spec.uniform_blocks else ", some grown"
                ax.set_xlabel(f"hidden {words.unit} (a cell: one input's block of {block}{grown})")
            else:
                per_cell = spec.blocks / max_cells
                ax.set_xlabel(f"hidden {words.unit} (a cell: about {per_cell:.2g} input blocks)")
            _panel_title(ax, f"{v_kept};\n{words.per_block}\n({_block_range(per_block, spec)})")
            ax.set_ylabel(words.output)
            panels.append(ax)

            ax = row.add_subplot(grid[0, 1])
            shown = max(1, int((offsets <= max_cells).sum()) - 1)
            columns = min(int(offsets[shown]), max_cells)
            _mask_image(ax, v[:, :columns], max_cells=max_cells)
            _block_lines(ax, spec.block_offsets[: shown + 1])
            last = shown - 1
            blocks = "input block 0" if last == 0 else f"input blocks 0–{last}"
            _panel_title(
                ax, f"zoom: V on {blocks}\n{words.cells(spec.d_out, max_cells, wide=False)}"
            )
            ax.set_xlabel(f"hidden {words.unit}")
            panels.append(ax)

        ax = row.add_subplot(grid[0, -1])
        kept = pair.kept_neurons.detach().cpu().double().numpy()
        widest = max(2 * n for n in spec.block_neurons)
        u = np.full((spec.blocks, widest), np.nan)  # a grown block is wider than the others
        for block in range(spec.blocks):
            start, stop = spec.block_offsets[block], spec.block_offsets[block + 1]
            u[block, : stop - start] = kept[start:stop]
        _mask_image(ax, u, max_cells=max_cells)
        ragged = f"\n(yellow: no {words.unit}, the block is shorter)" if np.isnan(u).any() else ""
        ax.set_xlabel(f"{words.unit} within its block{ragged}")
        ax.set_ylabel("input block" + (" (last: bias)" if spec.has_bias else ""))
        _panel_title(
            ax,
            f"U: {kept_u:,} of {spec.hidden:,} {words.units} keep\ntheir one weight "
            f"({100 * kept_u / spec.hidden:.1f}%)",
        )
        panels.append(ax)
        for ax in panels:
            ax.xaxis.set_major_locator(_integer_locator(5))
            _style(ax)
        colorbar = row.colorbar(image, ax=panels, fraction=0.03, pad=0.015, aspect=25)
        colorbar.set_ticks([0.0, 0.5, 1.0], labels=["0 pruned", "0.5", "1 kept"])
        colorbar.set_label(words.key)
        colorbar.ax.tick_params(labelsize=FONT_SIZE)
        colorbar.ax.yaxis.label.set_size(FONT_SIZE)
    figure.suptitle(
        f"Ticket masks: density {kept_total / random_total:.3g} = {kept_total:,} kept / "
        f"{random_total:,} random weights (the paper's count)",
        fontsize=FONT_SIZE + 2,
    )
    _save(figure, path)
    return figure


def _panel_title(ax, title: str) -> None:
    """A mask panel's title: left-aligned, in the figure's font size."""
    ax.set_title(title, fontsize=FONT_SIZE, loc="left")


def _block_range(per_block: np.ndarray, spec: PairSpec) -> str:
    """The values of the per-block image in words: it is often one flat grey (k of every
    block's 2n neurons for every output), which a reader cannot read off a grey level."""

    def span(values: np.ndarray) -> str:
        low, high = float(values.min()), float(values.max())
        return f"{low:.3g}" if math.isclose(low, high, abs_tol=5e-4) else f"{low:.3g}–{high:.3g}"

    text = f"input blocks {span(per_block[:, : spec.d_in])}"
    if spec.has_bias:
        text += f"; bias block {span(per_block[:, spec.d_in :])}"
    return text


@dataclass(frozen=True)
class _Words:
    """How a pair's mask panels name what a cell counts: a dense V cell is one weight, a conv
    V cell an (output channel, hidden channel) pair whose kh × kw kernel taps it averages."""

    unit: str  # "neuron" or "channel"
    output: str  # "output" or "output channel"
    taps: str  # "" (dense) or e.g. "3×3 = 9 kernel taps"

    @classmethod
    def of(cls, spec: PairSpec) -> _Words:
        kernel = tuple(spec.kind.kernel_shape)
        if not kernel:
            return cls("neuron", "output", "")
        size = math.prod(kernel)
        return cls(
            "channel", "output channel", f"{'×'.join(map(str, kernel))} = {size} kernel taps"
        )

    @property
    def units(self) -> str:
        return self.unit + "s"

    @property
    def per_block(self) -> str:
        """What a cell of the per-block V panel is (lines short enough for a third of the
        figure's width)."""
        if not self.taps:
            return f"each cell: fraction of a block kept by an {self.output}"
        kernel = self.taps.split()[0]
        return (
            f"each cell: fraction of a block's\nchannel × {kernel}-tap entries kept\n"
            f"by an {self.output}"
        )

    def cells(self, rows: int, max_cells: int, *, wide: bool = True) -> str:
        """What one cell of a V panel is, and whether rows are averaged, as lines (no leading
        punctuation); ``wide`` for a panel across most of the figure."""
        lines = []
        if self.taps:
            lines.append(
                f"each cell: fraction of an (output, hidden) channel pair's {self.taps} kept"
                if wide
                else f"each cell: fraction of the {self.taps.removesuffix(' kernel taps')}\n"
                "kernel taps kept"
            )
        elif rows <= max_cells:
            lines.append("every entry")
        if rows > max_cells:
            lines.append(f"{self.output}s averaged in groups of about {rows / max_cells:.2g}")
        return "\n".join(lines)

    @property
    def key(self) -> str:
        """The colour bar's label."""
        if self.taps:
            return (
                "black: kept, white: pruned\ngrey: fraction of kernel taps kept\n"
                "(or of an averaged cell)"
            )
        return "black: kept, white: pruned\ngrey: fraction kept (averaged cell)"


def _block_lines(ax: Axes, offsets) -> None:
    if len(offsets) <= 41:  # more lines than that would be a grey wash, not a guide
        for edge in offsets[1:-1]:
            ax.axvline(edge - 0.5, color=PALETTE[5], lw=1.2)


# ---------------------------------------------------------------- errors
def _log_bins(low: float, high: float, count: int = 40, anchor: float | None = None) -> np.ndarray:
    """About ``count`` log-spaced bins over [low, high]; with ``anchor``, one bin edge falls
    exactly on it, so no bar straddles a threshold and mixes entries on both sides."""
    if anchor is None:
        return np.geomspace(low, high, count + 1)
    step = math.log(high / low) / count
    first = math.floor(math.log(low / anchor) / step)
    last = math.ceil(math.log(high / anchor) / step)
    return anchor * np.exp(step * np.arange(first, last + 1))


def _positive_floor(values: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Zeros cannot be drawn on a log axis: draw them at half the smallest positive value."""
    positive = values[values > 0]
    floor = float(positive.min()) / 2 if positive.size else 1e-12
    zeros = int((values <= 0).sum())
    return np.maximum(values, floor), zeros, floor


def logits(
    target_logits: torch.Tensor,
    ticket_logits: torch.Tensor,
    epsilon: float,
    certified: float,
    path: str | os.PathLike | None = None,
) -> Figure:
    """How far the ticket's outputs are from the target's, example by example.

    Left: histogram of the per-example ℓ2 deviation ||f(x) − g(x)||₂ on a log axis, with the
    certified bound and ε marked. Right (two or more outputs): the deviation against the
    target's top-1 margin (top-1 minus top-2 logit). A deviation below margin/√2 cannot change
    the predicted class, so every point under that line keeps its prediction.

    Args:
        target_logits: (N, C) outputs of the target on N examples.
        ticket_logits: (N, C) outputs of the ticket on the same examples.
        epsilon: the requested tolerance ε.
        certified: the ticket's certified error (``ticket.report.certified_error``).
        path: where to save the figure; not saved if None.

    Returns:
        The matplotlib Figure.
    """
    t = torch.as_tensor(target_logits).detach().double().cpu()
    g = torch.as_tensor(ticket_logits).detach().double().cpu()
    if t.shape != g.shape:
        raise ValueError(f"target logits {tuple(t.shape)} and ticket logits {tuple(g.shape)}")
    t, g = t.reshape(t.shape[0], -1), g.reshape(g.shape[0], -1)
    deviation = torch.linalg.vector_norm(t - g, dim=1).numpy()
    drawn, zeros, floor = _positive_floor(deviation)
    with_margin = t.shape[1] >= 2
    figure = _figure(figsize=(11 if with_margin else 6, 4.4))
    axes = figure.subplots(1, 2 if with_margin else 1, squeeze=False)[0]

    ax = axes[0]
    high = max(float(drawn.max()), epsilon, certified) * 1.6
    ax.hist(drawn, bins=_log_bins(float(drawn.min()) / 1.2, high), color=PALETTE[0])
    _bound_lines(ax, epsilon, certified, vertical=True)
    ax.set_xscale("log")
    ax.set_xlabel("‖target − ticket‖₂ per example (log scale)")
    ax.set_ylabel("examples")
    ratio = float(deviation.max()) / certified if certified > 0 else math.inf
    note = f"; {zeros} equal outputs drawn at {floor:.2g}" if zeros else ""
    ax.set_title(
        f"{deviation.size:,} examples: largest deviation {deviation.max():.3g}\n"
        f"= {ratio:.2g} × the certified bound{note}",
        fontsize=FONT_SIZE,
    )
    ax.legend(fontsize=FONT_SIZE - 1, loc="upper left")
    _style(ax)

    if with_margin:
        ax = axes[1]
        top2 = t.topk(2, dim=1).values
        margin = (top2[:, 0] - top2[:, 1]).numpy()
        margin_drawn, _, _ = _positive_floor(margin)
        ax.scatter(margin_drawn, drawn, s=8, alpha=0.6, color=PALETTE[0], label="example")
        span = np.geomspace(margin_drawn.min() / 1.3, margin_drawn.max() * 1.3, 50)
        top = max(high, float(span[-1])) * 3
        ax.plot(span, span / math.sqrt(2), color="black", lw=1.2, label="margin / √2")
        ax.fill_between(
            span,
            span / math.sqrt(2),
            top,
            color=PALETTE[1],
            alpha=0.1,
            lw=0,
            label="top-1 class could change",
        )
        _bound_lines(ax, epsilon, certified, vertical=False)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(span[0], span[-1])
        ax.set_ylim(float(drawn.min()) / 2, top)
        ax.set_xlabel("target's top-1 − top-2 logit margin (log scale)")
        ax.set_ylabel("‖target − ticket‖₂ (log scale)")
        ax.set_title(
            "deviation against the margin: below margin/√2\nthe predicted class cannot change",
            fontsize=FONT_SIZE,
        )
        ax.legend(fontsize=FONT_SIZE - 1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        _style(ax)
    _save(figure, path)
    return figure


def _bound_lines(ax: Axes, epsilon: float, certified: float, *, vertical: bool) -> None:
    line = ax.axvline if vertical else ax.axhline
    line(certified, color=PALETTE[2], lw=1.6, label=f"certified bound {certified:.3g}")
    line(epsilon, color=PALETTE[1], lw=1.6, ls="--", label=f"ε = {epsilon:.3g}")


def _weight_errors(ticket: Ticket) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per pair: |A − W| and |B − W| (flattened) and |offset − b|, from the compact masks."""
    from sslth.certificate import masked_pair_operator

    if getattr(ticket, "construction", "2l") == "l+1":  # the copy recursion's achieved errors
        return [(f.weight_errors.numpy(), None) for f in ticket.certificate().layers]
    out = []
    for spec, pair, layer in zip(ticket.specs, ticket.masks, ticket.target.layers, strict=True):
        operator = masked_pair_operator(spec, pair)
        w = layer.weight.to(operator.positive)
        weights = torch.cat(
            [(operator.positive - w).abs().reshape(-1), (operator.negative - w).abs().reshape(-1)]
        )
        bias = None
        if layer.bias is not None:
            bias = (operator.offset - layer.bias.to(operator.offset)).abs().cpu().numpy()
        out.append((weights.cpu().numpy(), bias))
    return out


def error_histogram(ticket: Ticket, path: str | os.PathLike | None = None) -> Figure:
    """Histogram of the ticket's per-weight approximation errors, one panel per layer.

    Each random pair computes A σ(x) − B σ(−x) (+ a bias); the subset sums make every entry of
    A and of B approximate the target's W, and the bias block its b. The x-axis is the error
    |A − W|, |B − W| (and |offset − b|) in units of the per-weight tolerance the solver was
    given for that layer. The line at 1 is the tolerance the solver aimed for; the search may
    leave a few entries over it (the report's ``weights_over_tolerance``), which is allowed:
    the certificate uses the actual errors.

    Args:
        ticket: a :class:`sslth.Ticket`; its random weights are regenerated from the seed.
        path: where to save the figure; not saved if None.

    Returns:
        The matplotlib Figure.
    """
    errors = _weight_errors(ticket)
    columns = min(3, len(errors))
    rows = math.ceil(len(errors) / columns)
    figure = _figure(figsize=(4.6 * columns, 3.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for index, ((weights, bias), tolerance) in enumerate(
        zip(errors, ticket.tolerances, strict=True)
    ):
        ax = axes[index]
        scaled = weights / tolerance
        parts = [scaled] + ([bias / tolerance] if bias is not None else [])
        everything, zeros, _ = _positive_floor(np.concatenate(parts))
        bins = _log_bins(everything.min() / 1.2, max(everything.max(), 1.0) * 1.6, anchor=1.0)
        drawn, _, _ = _positive_floor(scaled)
        ax.hist(np.maximum(drawn, bins[0]), bins=bins, color=PALETTE[0], label="A, B entries")
        if bias is not None:
            ax.hist(
                np.maximum(bias / tolerance, bins[0]),
                bins=bins,
                color=PALETTE[1],
                label="bias entries",
            )
        ax.axvline(1.0, color="black", lw=1.4, ls="--", label="tolerance")
        ax.set_xscale("log")
        ax.set_xlabel("|A − W|, |B − W| / tolerance (log scale)")
        ax.set_ylabel("entries")
        over = int((everything >= 1.0).sum())
        ax.set_title(
            f"layer {index + 1}: {everything.size:,} entries, tolerance {tolerance:.3g}\n"
            f"largest {everything.max():.4g}× it; {over} at or over it"
            + (f"; {zeros} exact (drawn at left)" if zeros else ""),
            fontsize=FONT_SIZE,
        )
        ax.legend(fontsize=FONT_SIZE - 1, loc="upper left")
        _style(ax)
    for ax in axes[len(errors) :]:
        ax.set_visible(False)
    figure.suptitle("Subset-sum approximation error of every target weight", fontsize=FONT_SIZE + 1)
    _save(figure, path)
    return figure
