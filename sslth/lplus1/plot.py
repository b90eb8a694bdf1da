"""The masks of an l+1 ticket, one panel per module (what :func:`sslth.plot.masks` draws for
an l+1 ticket)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sslth.lplus1.ticket import LPlus1Ticket


def masks(ticket: LPlus1Ticket, path: str | os.PathLike | None = None, *, max_cells: int) -> Figure:
    """Each module's weight mask (outputs × inputs; black kept, white pruned, grey the fraction
    kept in an averaged cell), titled with its kept count and density.

    Args:
        ticket: an l+1 ticket (only its masks and sizes are read).
        path: where to save the figure; not saved if None.
        max_cells: most image cells along each axis of a panel.

    Returns:
        The matplotlib Figure.
    """
    from sslth.plot import FONT_SIZE, _figure, _mask_image, _save, _style

    spec, module_masks = ticket.spec, ticket.lplus1_masks
    count = spec.depth + 1
    figure = _figure(figsize=(4.4 * count, 4.2))
    axes = figure.subplots(1, count, squeeze=False)[0]
    image = None
    for t, (ax, weight) in enumerate(zip(axes, module_masks.weights, strict=True)):
        out, inp = spec.module_shape(t)
        kept = int(weight.count_nonzero())
        image = _mask_image(ax, weight.double().numpy(), max_cells=max_cells)
        role = (
            "univariate" if t == 0 else ("output" if t == spec.depth else f"copies ×{spec.rho(t)}")
        )
        ax.set_title(
            f"module {t} ({role}): {inp} → {out}\n{kept:,} of {out * inp:,} weights kept "
            f"({100 * kept / (out * inp):.2g}%)",
            fontsize=FONT_SIZE,
            loc="left",
        )
        ax.set_xlabel("input neuron")
        ax.set_ylabel("output neuron")
        _style(ax)
    colorbar = figure.colorbar(image, ax=list(axes), fraction=0.03, pad=0.015)
    colorbar.set_ticks([0.0, 0.5, 1.0], labels=["0 pruned", "0.5", "1 kept"])
    report = ticket.report
    density = "" if report is None else f": density {report.density:.3g}"
    figure.suptitle(f"l+1 ticket masks{density}, ρ = {list(spec.copies)}", fontsize=FONT_SIZE + 2)
    _save(figure, path)
    return figure
