"""Does training find the ticket? Edge-popup against sslth on the same random network (issue 21).

The digits MLP of :mod:`sslth.experiments.digits` is the target; sslth builds its certified 2l
ticket (same seed, same ε rule, same radius). Then, on *the same random network* (the ticket's
unmasked weights) and at *exactly the ticket's kept count*, edge-popup scores are trained:

- **task**: cross-entropy on the digits training set (what a practitioner would do);
- **planted**: regression on the target's outputs at points drawn uniformly from the ball of
  radius R that the certificate covers (Fischer & Burkholz's planted setting: a ticket within ε
  is known to exist in this network, since sslth found one).

Both tickets' sup errors are estimated by the same gradient ascent
(:func:`sslth.certificate.empirical_error`: random points in the ball and on the sphere, then
projected gradient ascent), beside sslth's certified bound. Deterministic: float64, one thread,
seeded batches. scikit-learn is needed (``pip install sslth[digits]``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

import sslth
from sslth.certificate import empirical_error
from sslth.device import intra_op_threads
from sslth.edge_popup import EdgePopup
from sslth.experiments import digits
from sslth.masks import plain_copy


@dataclass
class EdgePopupResult:
    target_accuracy: float
    sslth_ticket_accuracy: float
    edge_popup_accuracy: float
    sup_error: dict[str, float]  # sslth_certified, sslth_ascent, edge_popup_ascent
    density: float
    kept: int
    random_params: int
    mask_overlap: float  # fraction of sslth's kept entries edge-popup keeps too
    train_seconds: float
    planted: dict[str, float | bool]
    losses: dict[str, float]  # the task's cross-entropy, means of its first and last 10 steps
    epsilon: float
    radius: float
    settings: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def random_network(ticket: sslth.Ticket) -> nn.Sequential:
    """The ticket's random network without its masks (``weight_orig`` of every module)."""
    modules = []
    for module in ticket.network:
        copy = plain_copy(module)
        for name in ("weight", "bias"):
            original = getattr(module, name + "_orig", None)
            if original is not None:
                with torch.no_grad():
                    getattr(copy, name).copy_(original)
        modules.append(copy)
    return nn.Sequential(*modules)


def ticket_masks(ticket: sslth.Ticket) -> list[torch.Tensor | None]:
    """sslth's masks in :class:`EdgePopup`'s order (weight, bias per Linear; None: no bias)."""
    out = []
    for module in ticket.network:
        if isinstance(module, nn.Linear):
            out.append(module.weight_mask.bool())
            out.append(None if module.bias is None else module.bias_mask.bool())
    return out


def overlap(reference: list, other: list) -> float:
    """Fraction of ``reference``'s kept entries that ``other`` keeps too."""
    both = sum(int((a & b).sum()) for a, b in zip(reference, other, strict=True) if a is not None)
    return both / max(1, sum(int(a.sum()) for a in reference if a is not None))


def class_batches(data: digits.DigitsData, size: int, seed: int):
    """Endless shuffled mini-batches of the training set (float64), from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    x, y = data.x_train.double(), data.y_train
    while True:
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y) - size + 1, size):
            rows = order[start : start + size]
            yield x[rows], y[rows]


def ball_batches(target: nn.Module, dim: int, radius: float, size: int, seed: int):
    """Endless batches of points uniform in the ball of ``radius`` and the target's outputs."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(size, dim, generator=generator, dtype=torch.float64)
        x /= torch.linalg.vector_norm(x, dim=1, keepdim=True)
        x *= radius * torch.rand(size, 1, generator=generator, dtype=torch.float64) ** (1 / dim)
        with torch.no_grad():
            y = target(x)
        yield x, y  # outside no_grad: a generator suspended inside it would leave it on


def _sup(target, forward, radius: float, samples: int, seed: int) -> float:
    with torch.enable_grad():
        return empirical_error(
            sslth.as_target(target),
            [],
            radius,
            samples=samples,
            seed=seed,
            device="cpu",
            forward=forward,
        )


def _accuracy(model, data: digits.DigitsData) -> float:
    with torch.no_grad():
        return float((model(data.x_test.double()).argmax(1) == data.y_test).double().mean())


def run(
    out: str | Path | None = None,
    *,
    hidden: int = 32,
    epochs: int = 300,
    density: float = digits.DEFAULT_DENSITY,
    seed: int = 0,
    steps: int = 300,
    batch: int = 128,
    lr: float = 0.01,
    samples: int = 2000,
    epsilon: float | None = None,
) -> EdgePopupResult:
    """The whole comparison (see the module docstring); writes ``out/report.json``.
    ``epsilon`` replaces the digits demo's rule (half the smallest test margin, capped)."""
    timings: dict[str, float] = {}
    with intra_op_threads(1):
        start = time.perf_counter()
        data = digits.load_data(seed)
        radius = data.radius
        target, ticket, epsilon = _target_and_ticket(data, hidden, epochs, density, seed, epsilon)
        timings["target and sslth ticket"] = time.perf_counter() - start
        random = random_network(ticket).double()
        kept = ticket.report.ticket_params
        sslth_masks = ticket_masks(ticket)
        # a fixed logit temperature: the random network's outputs are ~20 at the start, and
        # unscaled losses drive the scores to dead ReLUs (chance accuracy); argmax is unchanged
        scale = _output_scale(random, kept, seed, data.x_train.double())
        (task, task_seconds), (planted, planted_seconds) = _train_task_and_planted(
            random, kept, seed, scale, data, target, radius, batch, steps, lr
        )
        start = time.perf_counter()
        ticket_exact = nn.Sequential(*[plain_copy(m) for m in ticket.network]).double()
        sup = {
            "sslth_certified": ticket.report.certified_error,
            "sslth_ascent": _sup(target, ticket_exact, radius, samples, seed),
            "edge_popup_ascent": _sup(target, task, radius, samples, seed),
        }
        planted_sup = _sup(target, planted, radius, samples, seed)
        timings["ascent"] = time.perf_counter() - start
        result = EdgePopupResult(
            target_accuracy=_accuracy(target, data),
            sslth_ticket_accuracy=_accuracy(ticket_exact, data),
            edge_popup_accuracy=_accuracy(task, data),
            sup_error=sup,
            density=task.kept / task.total,
            kept=task.kept,
            random_params=task.total,
            mask_overlap=overlap(sslth_masks, task.masks()),
            train_seconds=task_seconds,
            planted=_planted_summary(
                planted, planted_sup, planted_seconds, epsilon, sslth_masks, data
            ),
            losses={"first_steps": task.loss_first, "last_steps": task.loss_last},
            epsilon=epsilon,
            radius=radius,
            settings=dict(
                output_scale=scale,
                hidden=hidden,
                epochs=epochs,
                density_limit=density,
                seed=seed,
                steps=steps,
                batch=batch,
                lr=lr,
                samples=samples,
                n=ticket.report.n,
                k=ticket.report.k,
            ),
            timings=timings,
        )
    if out is not None:
        _write_report(Path(out), result)
    return result


def _target_and_ticket(
    data: digits.DigitsData,
    hidden: int,
    epochs: int,
    density: float,
    seed: int,
    epsilon: float | None,
) -> tuple[nn.Module, sslth.Ticket, float]:
    """The trained digits MLP (float64), sslth's ticket for it and the ε used (the digits
    demo's rule unless ``epsilon`` is given)."""
    target = digits.train_mlp(data, hidden=hidden, epochs=epochs, seed=seed).double()
    margin = digits.smallest_margin(target(data.x_test.double()).detach())
    epsilon = digits.choose_epsilon(margin) if epsilon is None else epsilon
    ticket = sslth.prune(
        target.float(), epsilon, density, radius=data.radius, seed=seed, progress=False
    )
    target.double()
    return target, ticket, epsilon


def _train_task_and_planted(
    random, kept, seed, scale, data, target, radius, batch, steps, lr
) -> tuple[tuple[EdgePopup, float], tuple[EdgePopup, float]]:
    """Edge-popup trained on the task (cross-entropy) and on the planted regression, in
    that order, each with its training seconds."""
    task = _train(
        random,
        kept,
        seed,
        lambda g, y: nn.functional.cross_entropy(g / scale, y),
        class_batches(data, batch, seed),
        steps,
        lr,
    )
    planted = _train(
        random,
        kept,
        seed,
        lambda g, f: (((g - f) / scale) ** 2).sum(1).mean(),
        ball_batches(target, data.x_train.shape[1], radius, batch, seed + 1),
        steps,
        lr,
    )
    return task, planted


def _planted_summary(
    planted: EdgePopup,
    planted_sup: float,
    planted_seconds: float,
    epsilon: float,
    sslth_masks: list,
    data: digits.DigitsData,
) -> dict[str, float | bool]:
    """The planted run's entry of the report."""
    return {
        "sup_error_ascent": planted_sup,
        "within_epsilon": planted_sup <= epsilon,
        "mask_overlap": overlap(sslth_masks, planted.masks()),
        "test_accuracy": _accuracy(planted, data),
        "train_seconds": planted_seconds,
        "loss_first_steps": planted.loss_first,  # mean of the first 10 steps
        "loss_last_steps": planted.loss_last,
    }


def _write_report(out: Path, result: EdgePopupResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(asdict(result), indent=2))


def _output_scale(random, kept: int, seed: int, x: torch.Tensor) -> float:
    """Standard deviation of the untrained edge-popup network's outputs on ``x``."""
    with torch.no_grad():
        return float(EdgePopup(random, kept, seed=seed)(x).std())


def _train(random, kept, seed, loss, batches, steps, lr) -> tuple[EdgePopup, float]:
    start = time.perf_counter()
    model = EdgePopup(random, kept, seed=seed)
    losses = model.train_scores(loss, batches, steps, lr=lr)
    tail = max(1, min(10, len(losses)))
    model.loss_first, model.loss_last = sum(losses[:tail]) / tail, sum(losses[-tail:]) / tail
    return model, time.perf_counter() - start
