"""A ticket for a classifier trained on real data: scikit-learn's handwritten digits (issue 6).

A small MLP with biases (64-hidden-10) is trained on ``sklearn.datasets.load_digits`` (8×8
images, pixels scaled to [0, 1]); then :func:`sslth.prune` builds a ticket over the ball of
radius R = the largest input norm of the data, with ε chosen so that no test prediction can
change: if every logit vector moves by at most ε in ℓ2, the top-1 minus top-2 gap shrinks by at
most 2ε, so ε below half the smallest test margin keeps every top-1 class.

scikit-learn (and matplotlib for the figures) are optional: ``pip install sslth[digits]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import sslth
from sslth.device import intra_op_threads

EPSILON_CAP = 0.1  # margins can be large; beyond this a smaller ε costs little and reads better
# The published experiment's density; the ticket keeps about a tenth of the random weights.
DEFAULT_DENSITY = 0.1


@dataclass
class DigitsData:
    x_train: torch.Tensor  # (N, 64) float32 in [0, 1]
    y_train: torch.Tensor  # (N,) long
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def radius(self) -> float:
        """Largest input norm over train and test: the ball the certificate must cover."""
        return float(torch.linalg.vector_norm(torch.cat([self.x_train, self.x_test]), dim=1).max())


def load_data(seed: int = 0, test_size: float = 0.25) -> DigitsData:
    """The digits dataset bundled with scikit-learn (no download), split with ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype("float32") / 16.0  # pixels are integers 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=test_size, random_state=seed, stratify=digits.target
    )
    return DigitsData(
        torch.from_numpy(x_train),
        torch.from_numpy(y_train).long(),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test).long(),
    )


def train_mlp(
    data: DigitsData, hidden: int = 32, epochs: int = 300, seed: int = 0, lr: float = 0.01
) -> nn.Sequential:
    """Full-batch Adam on the cross-entropy, a few seconds on a CPU.

    Trained in float64 on one intra-op thread: with several threads the reductions' order
    depends on the thread count, and after 300 epochs the margins (hence ε) differed between
    a 1-thread and a 2-thread machine (ε 0.040 against 0.064). The model returned is float32.
    """
    with intra_op_threads(1):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).double()
        adam_full_batch(model, data.x_train.double(), data.y_train, epochs, lr)
    return model.float().eval()


def adam_full_batch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float
) -> None:
    """Train ``model`` in place: ``epochs`` full-batch Adam steps (weight decay 1e-4) on the
    cross-entropy of ``model(x)`` against the labels ``y``. The digits MLP, CNN and ResNet all
    train this way; the caller fixes the seed and the thread count."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()


def smallest_margin(logits: torch.Tensor) -> float:
    """Smallest top-1 minus top-2 logit gap over the rows."""
    top = logits.topk(2, dim=1).values
    return float((top[:, 0] - top[:, 1]).min())


def choose_epsilon(margin: float, cap: float = EPSILON_CAP) -> float:
    """Half the smallest margin (strictly below it keeps every top-1 class), capped."""
    return min(cap, 0.5 * margin)


# test examples per forward of a ticket: its dense random network has 2n(d_in + 1) hidden
# channels per target input channel, so the digits ResNet's whole test set at once held 3.5 GB
# (the same logits, batch by batch, in a fraction of that)
_BATCH = 64


def _in_batches(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([module(x[i : i + _BATCH]) for i in range(0, x.shape[0], _BATCH)])


def compare_with_target(
    ticket: sslth.Ticket, target_logits: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float | bool]]:
    """The ticket against the target on the test set.

    The ticket runs as it was certified (its dtype, float64 unless asked otherwise, on its
    device); for information, the same masks also run in float32, which is not what was
    certified. Returns the ticket's float64 logits on the CPU and the comparison fields of
    :class:`DigitsResult` (accuracies, equal predictions, largest logit deviations).
    """
    with torch.no_grad():
        x = x_test.to(device=ticket.device, dtype=ticket.dtype)
        ticket_logits = _in_batches(ticket.network, x).double().cpu()
        ticket_logits32 = _in_batches(ticket.export().float(), x.float()).cpu()
    target_pred = target_logits.argmax(dim=1)
    ticket_pred = ticket_logits.argmax(dim=1)
    difference = target_logits - ticket_logits
    return ticket_logits, {
        "target_accuracy": float((target_pred == y_test).double().mean()),
        "ticket_accuracy": float((ticket_pred == y_test).double().mean()),
        "ticket_accuracy_float32": float((ticket_logits32.argmax(dim=1) == y_test).double().mean()),
        "predictions_equal": bool((target_pred == ticket_pred).all()),
        "max_logit_deviation": float(torch.linalg.vector_norm(difference, dim=1).max()),
        "max_logit_deviation_entry": float(difference.abs().max()),
    }


@dataclass
class DigitsResult:
    target_accuracy: float
    ticket_accuracy: float
    ticket_accuracy_float32: float
    predictions_equal: bool
    max_logit_deviation: float  # max over the test set of ||f(x) − g(x)||₂
    max_logit_deviation_entry: float  # max over the test set of ||f(x) − g(x)||_∞
    certified_error: float
    empirical_error: float
    density: float
    epsilon: float
    radius: float
    smallest_test_margin: float
    hidden: int
    epochs: int
    seed: int
    density_limit: float
    spectral_norms: list[float]
    timings: dict[str, float] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def trained(
    seed: int, train: Callable[[DigitsData], nn.Module]
) -> tuple[DigitsData, nn.Module, dict[str, float]]:
    """The digits split of ``seed`` and the model ``train`` returns for it, with the seconds both
    took as the timings' ``train`` entry (the first of a demo's timings)."""
    start = time.perf_counter()
    data = load_data(seed)
    target = train(data)
    return data, target, {"train": time.perf_counter() - start}


def write_report(out: str | Path | None, result: DigitsResult) -> Path | None:
    """Write ``report.json`` (the result, indented JSON) to the folder ``out``, made if needed.

    Returns:
        The folder, or ``None`` (nothing written) when ``out`` is ``None``.
    """
    if out is None:
        return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result.to_dict(), indent=2))
    return out


def run(
    out: str | Path | None = None,
    *,
    hidden: int = 32,
    epochs: int = 300,
    density: float = DEFAULT_DENSITY,
    seed: int = 0,
    cap: float = EPSILON_CAP,
    figures: bool = True,
    progress: bool = False,
    device: str | None = None,
) -> DigitsResult:
    """Train (on the CPU), prune on ``device`` (default: CUDA if any), compare on the test set;
    write ``report.json`` and figures to ``out``."""
    data, target, timings = trained(
        seed, lambda data: train_mlp(data, hidden=hidden, epochs=epochs, seed=seed)
    )

    with torch.no_grad():
        target_logits = target.double()(data.x_test.double())
    target.float()
    margin = smallest_margin(target_logits)
    epsilon = choose_epsilon(margin, cap)
    radius = data.radius

    start = time.perf_counter()
    ticket = sslth.prune(
        target, epsilon, density, radius=radius, seed=seed, progress=progress, device=device
    )
    timings["prune"] = time.perf_counter() - start

    ticket_logits, comparison = compare_with_target(ticket, target_logits, data.x_test, data.y_test)
    report = ticket.report
    result = DigitsResult(
        **comparison,
        certified_error=report.certified_error,
        empirical_error=report.empirical_error,
        density=report.density,
        epsilon=epsilon,
        radius=radius,
        smallest_test_margin=margin,
        hidden=hidden,
        epochs=epochs,
        seed=seed,
        density_limit=density,
        spectral_norms=[layer.weight_norm for layer in _certificate_layers(ticket)],
        timings=timings,
        report=report.to_dict(),
    )
    folder = write_report(out, result)
    if folder is not None and figures:
        plot_logits(
            target_logits, ticket_logits, epsilon, report.certified_error, folder / "logits.png"
        )
        plot_masks(ticket, folder / "masks.png")
    return result


def _certificate_layers(ticket: sslth.Ticket):
    return sslth.certify(ticket.target, ticket.network, ticket.radius).layers


def plot_logits(
    target_logits: torch.Tensor,
    ticket_logits: torch.Tensor,
    epsilon: float,
    certified: float,
    path: Path,
) -> None:
    """Per-example logit deviation against ε and the certified bound: see
    :func:`sslth.plot.logits`."""
    from sslth import plot

    plot.logits(target_logits, ticket_logits, epsilon, certified, path)


def plot_masks(ticket: sslth.Ticket, path: Path) -> None:
    """Each pair's masks with a colour key: see :func:`sslth.plot.masks`."""
    from sslth import plot

    plot.masks(ticket, path)


# ---------------------------------------------------------------- the demo scripts
def demo_parser(doc: str, *, epochs: int, figures: bool) -> argparse.ArgumentParser:
    """The arguments every digits demo script (``scripts/digits*_demo.py``) takes: ``--out``,
    ``--epochs`` (default ``epochs``), ``--density``, ``--seed``, ``--cap``, ``--device`` and,
    for a demo that draws figures, ``--no-figures``; described by the first paragraph of the
    script's docstring ``doc``. The script adds its model's own (width, channels)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--density", type=float, default=DEFAULT_DENSITY)
    parser.add_argument("--seed", type=int, default=0, help="data split, training and ticket")
    parser.add_argument("--cap", type=float, default=EPSILON_CAP, help="largest ε")
    parser.add_argument("--device", help="device of the prune: cpu, cuda (default: cuda if any)")
    if figures:
        parser.add_argument("--no-figures", action="store_true", help="write report.json only")
    return parser


def demo_options(args: argparse.Namespace) -> dict:
    """The keywords of a demo's ``run`` that every demo script takes from :func:`demo_parser`'s
    arguments (with a progress bar); the script adds ``out`` and its model's own."""
    return {
        "epochs": args.epochs,
        "density": args.density,
        "seed": args.seed,
        "cap": args.cap,
        "device": args.device,
        "progress": True,
    }


def demo_summary(result: DigitsResult, out: str, cap: float, figures: bool) -> str:
    """What a demo script prints: accuracies, ε and how it was chosen, the certified error
    against the largest logit deviation, the density, n and k (when the result has them), the
    timings, and the files written to ``out`` (``report.json``, and the figures if drawn)."""
    written = ["report.json"] + (["logits.png", "masks.png"] if figures else [])
    sizes = f"n {result.n}, k {result.k}\n" if hasattr(result, "n") else ""
    return (
        f"target accuracy {result.target_accuracy:.4f}, ticket accuracy "
        f"{result.ticket_accuracy:.4f} (predictions equal: {result.predictions_equal}; "
        f"float32 ticket {result.ticket_accuracy_float32:.4f})\n"
        f"ε = {result.epsilon:.4g} (half the smallest test margin {result.smallest_test_margin:.4g}"
        f", capped at {cap:g}), radius {result.radius:.4g}\n"
        f"max logit deviation {result.max_logit_deviation:.4g} <= certified error "
        f"{result.certified_error:.4g} (empirical {result.empirical_error:.4g}); "
        f"density {result.density:.4g} (limit {result.density_limit:g})\n"
        f"{sizes}time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        + f"\nwrote {', '.join(f'{out}/{name}' for name in written)}"
    )
