"""A ticket for a small CNN trained on scikit-learn's handwritten digits.

The convolutional counterpart of :mod:`sslth.experiments.digits`, whose data, ε rule and
result structure it reuses: a CNN with biases, Conv(1→8, 3×3, pad 1) → ReLU → MaxPool 2 →
Conv(8→16, 3×3, pad 1) → ReLU → MaxPool 2 → Flatten → Linear(64→10), is trained on the 8×8
images (pixels in [0, 1]); :func:`sslth.prune` then builds a ticket over the ball of radius
R = the largest input norm of the data, with ε = half the smallest test margin (capped), so that
no test prediction can change.

Training is bit-for-bit reproducible whatever the number of CPU threads, because ε comes from
the smallest test margin and so from the last bits of the weights (the MLP demo's ε moved from
0.040 to 0.064 between a 1- and a 2-thread machine). Intra-op parallelism may split a float
reduction by thread, which changes the order of the additions. Measured on this CNN: in
float32 its weights differ between 1, 2 and 4 threads (torch 2.13, CPU build); in float64 they
agree there but differ between 1, 2 and 16 threads with torch 2.11's CUDA build on a 16-core
Xeon. So it is trained in float64 *and* on one thread for the duration
(:func:`single_thread`), which gave the same weights, bit for bit, with 1, 2 and 16 threads.
Other torch builds or CPUs may still round differently (another BLAS kernel): between the two
machines above the weights differed in the last bits, and ε, n, k, the density and every
prediction were the same (measured with an earlier schedule, 150 epochs at rate 0.02).

scikit-learn (and matplotlib for the figures) are optional: ``pip install sslth[digits]``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import sslth
from sslth.experiments import digits
from sslth.experiments.digits import (
    EPSILON_CAP,
    DigitsData,
    DigitsResult,
    choose_epsilon,
    compare_with_target,
    smallest_margin,
)
from sslth.experiments.digits import load_data as load_data  # re-exported: digits_cnn.load_data
from sslth.target import Target

INPUT_SHAPE = (1, 8, 8)  # the digits are 8×8 grey images, flattened by load_data
DEFAULT_CHANNELS = (8, 16)
# the smallest test margin, hence ε, jumps from epoch to epoch early on; with this rate it stays
# between 0.38 and 0.76 from epoch 90 to 150, so ε sits at its cap and does not hang on the choice
DEFAULT_EPOCHS = 100
DEFAULT_LR = 0.03
DEFAULT_DENSITY = digits.DEFAULT_DENSITY


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with torch on one intra-op thread, restoring the caller's count after.

    One thread fixes the order of every floating-point reduction, so the result no longer
    depends on how many cores the machine has (or on ``OMP_NUM_THREADS``).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def images(x: torch.Tensor) -> torch.Tensor:
    """(N, 64) flattened digits as (N, 1, 8, 8) images."""
    return x.reshape(-1, *INPUT_SHAPE)


def make_cnn(channels: Sequence[int] = DEFAULT_CHANNELS) -> nn.Sequential:
    """Conv(1→c₁, 3, pad 1) → ReLU → MaxPool 2 → Conv(c₁→c₂, 3, pad 1) → ReLU → MaxPool 2 →
    Flatten → Linear(c₂·2·2 → 10), with biases, initialised from torch's current RNG."""
    first, second = channels
    return nn.Sequential(
        nn.Conv2d(INPUT_SHAPE[0], first, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(first, second, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(second * (INPUT_SHAPE[1] // 4) * (INPUT_SHAPE[2] // 4), 10),
    )


def train_cnn(
    data: DigitsData,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    lr: float = DEFAULT_LR,
) -> nn.Sequential:
    """Full-batch Adam on the cross-entropy, in float64 on one thread: the same weights, bit for
    bit, for a seed whatever the thread count (see the module docstring). A float64 model."""
    with single_thread():
        torch.manual_seed(seed)
        model = make_cnn(channels).double()
        x = images(data.x_train).double()
        digits.adam_full_batch(model, x, data.y_train, epochs, lr)
    return model.eval()


@dataclass
class DigitsCNNResult(DigitsResult):
    """:class:`~sslth.experiments.digits.DigitsResult` for the CNN. ``hidden`` is the number of
    features entering the classifier (c₂·2·2), the counterpart of the MLP's hidden width."""

    channels: list[int] = field(default_factory=list)
    lr: float = DEFAULT_LR
    n: list[int] = field(default_factory=list)  # neurons per target input, per layer
    k: list[int] = field(default_factory=list)  # picks per (output, input, sign), per layer


def run(
    out: str | Path | None = None,
    *,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    density: float = DEFAULT_DENSITY,
    seed: int = 0,
    cap: float = EPSILON_CAP,
    device: str | None = None,
    figures: bool = True,
    progress: bool = False,
    **prune_options: Any,
) -> DigitsCNNResult:
    """Train, prune, compare on the test set; write ``report.json`` and figures to ``out``.

    Training is on the CPU; ``device`` is the prune's (None: CUDA if any, as in
    :func:`sslth.prune`), and the ticket is evaluated where it was built. Figures
    (``logits.png``, ``masks.png``) are written only when ``out`` is given and ``figures`` is
    true. ``prune_options`` go to :func:`sslth.prune` (e.g. ``refine=False`` or fewer
    ``empirical_samples`` for a quicker run).
    """
    data, target, timings = digits.trained(
        seed, lambda data: train_cnn(data, channels=channels, epochs=epochs, seed=seed, lr=lr)
    )
    ticket, target_logits, ticket_logits, fields = prune_and_compare(
        target, data, density, seed, cap, device, progress, timings, **prune_options
    )
    result = DigitsCNNResult(
        **fields,
        hidden=target[-1].in_features,
        epochs=epochs,
        channels=list(channels),
        lr=lr,
    )
    report, epsilon = ticket.report, result.epsilon
    folder = digits.write_report(out, result)
    if folder is not None and figures:
        from sslth import plot  # matplotlib is optional: only needed for figures

        plot.logits(
            target_logits, ticket_logits, epsilon, report.certified_error, folder / "logits.png"
        )
        plot.masks(ticket, folder / "masks.png")
    return result


def prune_and_compare(
    target: nn.Module,
    data: DigitsData,
    density: float,
    seed: int,
    cap: float,
    device: str | None,
    progress: bool,
    timings: dict[str, float],
    traced: Target | None = None,
    **prune_options: Any,
) -> tuple[sslth.Ticket, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Prune an image model of the digits (ε = half the smallest test margin, capped; R = the
    largest input norm) and compare it with the target on the test set (``traced``: the
    model already read by :func:`sslth.as_target`, pruned instead of reading it again).

    Returns:
        The ticket, the target's and the ticket's test logits, and the fields of
        :class:`DigitsCNNResult` that do not depend on the model's shape.
    """
    x_test = images(data.x_test).double()
    with torch.no_grad():
        target_logits = target(x_test)
    margin = smallest_margin(target_logits)
    epsilon = choose_epsilon(margin, cap)
    start = time.perf_counter()
    ticket = sslth.prune(
        target if traced is None else traced,
        epsilon,
        density,
        input_shape=list(INPUT_SHAPE),
        radius=data.radius,
        seed=seed,
        device=device,
        progress=progress,
        **prune_options,
    )
    timings["prune"] = time.perf_counter() - start
    start = time.perf_counter()
    ticket_logits, comparison = compare_with_target(ticket, target_logits, x_test, data.y_test)
    timings["compare"] = time.perf_counter() - start
    report = ticket.report
    fields = {
        **comparison,
        "certified_error": report.certified_error,
        "empirical_error": report.empirical_error,
        "density": report.density,
        "epsilon": epsilon,
        "radius": data.radius,
        "smallest_test_margin": margin,
        "seed": seed,
        "density_limit": density,
        # conv layers: a certified upper bound on the operator norm, not the exact norm
        "spectral_norms": [layer.weight_norm for layer in digits._certificate_layers(ticket)],
        "timings": timings,
        "report": report.to_dict(),
        "n": report.n,
        "k": report.k,
    }
    return ticket, target_logits, ticket_logits, fields
