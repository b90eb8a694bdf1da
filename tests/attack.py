"""A reusable attack on a certified error bound: search the ball for inputs where a float32 module
is farthest from a float64 reference.

``worst_gap(reference, module, radius, dim)`` looks for the largest

    ‖reference(x).double() − module(x.float()).double()‖₂   over float32 x with ‖x‖₂ ≤ radius,

so that a certificate claiming ``sup_{‖x‖≤R} ‖f(x) − g(x)‖ ≤ c`` for the module *as it runs* can be
tested: any returned gap above ``c`` is a counterexample (its point is returned too).

The search works in units of the radius (``z = x / R``, ``‖z‖ ≤ 1``), so radii from 1e-6 to 1e6
behave alike. It combines

* a screen of many random points: on the sphere, uniform in the ball, log-uniform radii down to
  1e-6·R, and copies with coordinates zeroed (the ticket's first ReLUs kink on coordinate planes);
* exact probes: 0 and ±R·e_i, and for dim ≤ 2 a dense grid (a line, or a polar grid of the disc)
  refined around its best points;
* kink probes: Newton projections of good points onto the nearest ReLU kinks (and intersections
  of up to three of them) of the reference and the module, for ``nn.Sequential`` networks;
* multi-start projected gradient ascent inside the ball (directions from autograd on float64
  copies, every iterate scored with the real float32 module), with restarts at smaller steps;
* a final local random search at scales from 0.1·R down to float32 ulps, which is what catches
  rounding error (invisible to gradients), then the same one row at a time: a module called on
  a single row rounds differently from a batch (other kernels, other summation order), and the
  returned gap is the larger of the two, each reproducible with :func:`replay`.

Everything is driven by one ``torch.Generator``, so a seed gives the same answer.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["QUICK", "Attack", "float64_copy", "gap_at", "replay", "worst_gap"]

# A smaller budget for sweeps over hundreds of targets (about half the defaults' time).
QUICK: dict[str, int] = {
    "starts": 16,
    "steps": 40,
    "restarts": 1,
    "screen": 1024,
    "grid": 4000,
    "jitter": 192,
    "alone": 32,
}

# Radii of the log-uniform screen go down to this fraction of R: a gap that peaks closer to 0
# than that is found by the probe at 0 and the gradient ascent instead.
_SMALLEST_RADIUS = 1e-6
# Scales (fractions of R) of the final local search; the last ones are float32 ulps of a point of
# the sphere, where only rounding changes the gap.
_JITTER_SCALES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 3e-8)
# Rows of the batch in which :func:`replay` measures the batched gap (enough for the matrix
# kernels a batch gets).
_REPLAY_ROWS = 64
# Scales (fractions of R) of the local search done one row at a time.
_ALONE_SCALES = (1e-4, 1e-5, 1e-6, 1e-7, 3e-8)
# Kink probes need the Jacobian of every pre-activation; above this many inputs they are skipped.
_KINK_MAX_DIM = 64
# Gradients smaller than this (relative) are treated as zero: the point is on a flat piece, or
# at a kink where autograd gives 0, and a random direction is used instead.
_TINY = 1e-300


@dataclass
class Attack:
    """The best input found.

    ``point`` is float32, shape ``(dim,)``, with ``‖point‖₂ ≤ radius`` as float32 values. The
    float32 module's rounding depends on how it is called (a single row goes through other
    kernels, with another summation order, than a batch), so the gap is measured both ways by
    :func:`replay`: ``gap_alone`` is ``module(point[None])``'s distance to the reference,
    ``gap_batched`` the same for the first row of a batch of copies of the point, and ``gap``
    the larger of the two (``mode`` says which). ``exact_gap`` is the gap with the module
    evaluated in float64 (its exact-arithmetic error, so ``gap − exact_gap`` is what rounding
    adds). ``source`` names the phase that found the point; ``evaluations`` counts points scored;
    ``sources`` gives the best gap each phase found (in batches).
    """

    gap: float
    point: torch.Tensor
    exact_gap: float
    gap_alone: float
    gap_batched: float
    mode: str
    radius: float
    source: str
    evaluations: int
    seconds: float
    sources: dict[str, float] = field(default_factory=dict)

    def ratio(self, bound: float) -> float:
        """gap / bound (inf where the bound is 0 and the gap is not)."""
        if bound > 0:
            return self.gap / bound
        return math.inf if self.gap > 0 else 0.0


# --------------------------------------------------------------------------- float64 copies


def _effective(module: nn.Module, name: str) -> torch.Tensor | None:
    """A parameter as the module uses it: ``name_orig * name_mask`` under torch.nn.utils.prune
    (the plain attribute is recomputed only in the next forward, so it can be stale)."""
    orig = getattr(module, name + "_orig", None)
    mask = getattr(module, name + "_mask", None)
    if orig is not None and mask is not None:
        return (orig.detach() * mask.detach()).to(torch.float64)
    value = getattr(module, name, None)
    return None if value is None else value.detach().to(torch.float64)


def float64_copy(module: nn.Module) -> nn.Module:
    """A float64 copy of ``module`` for gradients and exact-arithmetic values; ``module`` is not
    touched. Pruned ``nn.Linear`` layers (which ``copy.deepcopy`` refuses, their ``weight`` being
    a non-leaf tensor) are rebuilt as plain layers holding ``weight_orig * weight_mask``."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(float64_copy(child) for child in module))
    if isinstance(module, nn.Linear):
        weight = _effective(module, "weight")
        bias = _effective(module, "bias")
        assert weight is not None
        linear = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
        linear = linear.to(torch.float64)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        return linear.requires_grad_(False)
    if not any(True for _ in module.parameters()) and not any(True for _ in module.buffers()):
        return copy.deepcopy(module)
    try:
        return copy.deepcopy(module).to(torch.float64).requires_grad_(False)
    except RuntimeError as error:
        raise TypeError(
            f"cannot make a float64 copy of {type(module).__name__}; pass module64=…"
        ) from error


# --------------------------------------------------------------------------- scoring


def _to_float32_in_ball(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Round points to float32, shrinking (by factors just below 1) the few that rounding pushed
    outside the ball: a point outside does not count."""
    x32 = x.to(torch.float32)
    shrink = 2.0**-22
    for _ in range(40):
        norms = torch.linalg.vector_norm(x32.to(torch.float64), dim=1)
        outside = norms > radius
        if not bool(outside.any()):
            return x32
        scale = (radius / norms[outside]) * (1.0 - shrink)
        x32[outside] = (x32[outside].to(torch.float64) * scale[:, None]).to(torch.float32)
        shrink *= 2.0
    raise AssertionError("could not round points into the ball")  # pragma: no cover


def _flat(y: torch.Tensor, count: int) -> torch.Tensor:
    return y.reshape(count, -1).to(torch.float64)


def gap_at(
    reference: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, x32: torch.Tensor
) -> torch.Tensor:
    """‖reference(x) − module(x)‖₂ per row of the float32 points ``x32``: the module runs on
    those values in its own dtype and device (float32 for a float32 module; a float32 point is
    exact in float64 too), the reference on the same values in float64. NaN counts as an
    infinite gap."""
    with torch.no_grad():
        count = x32.shape[0]
        param = next((p for p in module.parameters() if p.is_floating_point()), None)
        dtype = torch.float32 if param is None else param.dtype
        device = x32.device if param is None else param.device
        got = _flat(module(x32.to(device=device, dtype=dtype)), count).cpu()
        want = _flat(reference(x32.to(torch.float64)), count)
        gap = torch.linalg.vector_norm(want - got, dim=1)
    return torch.nan_to_num(gap, nan=math.inf)


def replay(
    reference: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, point: torch.Tensor
) -> tuple[float, float]:
    """The gap at the float32 ``point`` (shape ``(dim,)``) with the module called on that row
    alone, and as the first row of a batch of ``_REPLAY_ROWS`` copies of it."""
    alone = float(gap_at(reference, module, point[None]))
    batched = float(gap_at(reference, module, point.expand(_REPLAY_ROWS, -1).contiguous())[0])
    return alone, batched


class _Search:
    """State shared by the phases: the scorer, the best point so far and a pool of good points."""

    def __init__(
        self,
        reference: Callable[[torch.Tensor], torch.Tensor],
        module: nn.Module,
        module64: Callable[[torch.Tensor], torch.Tensor],
        radius: float,
        dim: int,
        interior: bool,
        batch: int,
        generator: torch.Generator,
    ) -> None:
        self.reference = reference
        self.module = module
        self.module64 = module64
        self.radius = radius
        self.dim = dim
        self.interior = interior
        self.batch = batch
        self.generator = generator
        self.evaluations = 0
        self.best_gap = -math.inf
        self.best_x32 = torch.zeros(dim, dtype=torch.float32)
        self.best_source = "none"
        self.alone_gap = -math.inf
        self.alone_x32 = self.best_x32  # 0, which the axes probe scores first
        self.alone_source = "axes"
        self.sources: dict[str, float] = {}
        self.pool_z = torch.zeros(0, dim, dtype=torch.float64)
        self.pool_gap = torch.zeros(0, dtype=torch.float64)
        self.use_gradient = True

    # -- geometry (unit ball) ------------------------------------------------------------------

    def directions(self, count: int) -> torch.Tensor:
        z = torch.randn(count, self.dim, generator=self.generator, dtype=torch.float64)
        norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        # a zero Gaussian vector has probability 0, but keep the division safe anyway
        z[norms[:, 0] == 0, 0] = 1.0
        return z / torch.linalg.vector_norm(z, dim=1, keepdim=True)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Onto the unit ball (or, for a sphere-only search, onto the sphere)."""
        norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        if self.interior:
            return z / norms.clamp_min(1.0)
        zero = norms[:, 0] == 0
        if bool(zero.any()):
            z = z.clone()
            z[zero] = self.directions(int(zero.sum()))
            norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        return z / norms

    # -- scoring ---------------------------------------------------------------------------------

    def score(self, z: torch.Tensor, source: str) -> torch.Tensor:
        """Gap of the float32 module at the float32 rounding of ``R·z``; updates the best."""
        z = self.project(z.to(torch.float64))
        gaps = []
        for start in range(0, z.shape[0], self.batch):
            chunk = z[start : start + self.batch]
            x32 = _to_float32_in_ball(chunk * self.radius, self.radius)
            gap = gap_at(self.reference, self.module, x32)
            self.evaluations += chunk.shape[0]
            top = int(torch.argmax(gap))
            if float(gap[top]) > self.best_gap:
                self.best_gap = float(gap[top])
                self.best_x32 = x32[top].clone()
                self.best_source = source
            gaps.append(gap)
        gap = torch.cat(gaps) if gaps else torch.zeros(0, dtype=torch.float64)
        if gap.numel():
            self.sources[source] = max(self.sources.get(source, -math.inf), float(gap.max()))
        return gap

    def score_alone(self, z: torch.Tensor, source: str) -> torch.Tensor:
        """Like :meth:`score`, with the module called on one row at a time (its rounding
        differs from a batch's); updates the best single-row point."""
        x32 = _to_float32_in_ball(self.project(z.to(torch.float64)) * self.radius, self.radius)
        gap = torch.cat([gap_at(self.reference, self.module, row[None]) for row in x32])
        self.evaluations += x32.shape[0]
        if gap.numel():
            top = int(torch.argmax(gap))
            if float(gap[top]) > self.alone_gap:
                self.alone_gap = float(gap[top])
                self.alone_x32 = x32[top].clone()
                self.alone_source = source
        return gap

    def offer(self, z: torch.Tensor, gap: torch.Tensor, keep: int = 64) -> None:
        """Add scored points to the pool of good points (kept to the ``keep`` best)."""
        z = torch.cat([self.pool_z, self.project(z)])
        gap = torch.cat([self.pool_gap, gap])
        order = torch.argsort(gap, descending=True, stable=True)[:keep]
        self.pool_z, self.pool_gap = z[order], gap[order]

    def top(self, count: int) -> torch.Tensor:
        """The ``count`` best pool points, skipping exact duplicates."""
        if count <= 0 or self.pool_z.shape[0] == 0:
            return torch.zeros(0, self.dim, dtype=torch.float64)
        unique: list[torch.Tensor] = []
        for row in self.pool_z:
            if not any(torch.equal(row, other) for other in unique):
                unique.append(row)
            if len(unique) == count:
                break
        return torch.stack(unique)

    # -- gradients ---------------------------------------------------------------------------

    def ascent_directions(self, z: torch.Tensor) -> torch.Tensor:
        """Unit ascent directions of the exact (float64) gap at ``R·z``; random where the
        gradient vanishes or cannot be computed."""
        directions = torch.zeros_like(z)
        if self.use_gradient:
            x = (z * self.radius).detach().requires_grad_(True)
            with torch.enable_grad():
                count = x.shape[0]
                diff = _flat(self.reference(x), count) - _flat(self.module64(x), count)
                gap = torch.linalg.vector_norm(diff, dim=1)
                if gap.requires_grad:
                    # rows are independent, so the gradient of the sum is the per-row gradient
                    (grad,) = torch.autograd.grad(gap.sum(), x, allow_unused=True)
                    if grad is not None:
                        directions = grad.detach()
                else:
                    self.use_gradient = False
        norms = torch.linalg.vector_norm(directions, dim=1, keepdim=True)
        flat = ~torch.isfinite(norms[:, 0]) | (norms[:, 0] <= _TINY)
        directions = directions / norms.clamp_min(_TINY)
        if bool(flat.any()):
            directions[flat] = self.directions(int(flat.sum()))
        return directions


# --------------------------------------------------------------------------- phases


def _screen_points(search: _Search, count: int) -> torch.Tensor:
    """Random points of the unit ball: half on the sphere, a quarter uniform in the ball, a
    quarter at log-uniform radii down to ``_SMALLEST_RADIUS``; a quarter of each with random
    coordinates zeroed (kinks of the ticket's first ReLUs), at the same norm."""
    if count <= 0:
        return torch.zeros(0, search.dim, dtype=torch.float64)
    g = search.generator
    z = search.directions(count)
    sphere = count // 2
    uniform = count // 4
    radii = torch.ones(count, dtype=torch.float64)
    radii[sphere : sphere + uniform] = torch.rand(uniform, generator=g, dtype=torch.float64) ** (
        1.0 / search.dim
    )
    logs = torch.rand(count - sphere - uniform, generator=g, dtype=torch.float64)
    radii[sphere + uniform :] = _SMALLEST_RADIUS**logs
    if search.dim >= 2:
        zeroed = torch.rand(count, generator=g) < 0.25
        keep = torch.rand(count, search.dim, generator=g) < 0.5
        keep[torch.arange(count), torch.randint(search.dim, (count,), generator=g)] = True
        masked = torch.where(keep, z, torch.zeros_like(z))
        masked /= torch.linalg.vector_norm(masked, dim=1, keepdim=True)
        z = torch.where(zeroed[:, None], masked, z)
    if not search.interior:
        return z
    return z * radii[:, None]


def _axis_points(dim: int, limit: int = 512) -> torch.Tensor:
    """0 and ±e_i (the first ``limit // 2`` axes)."""
    axes = min(dim, limit // 2)
    eye = torch.eye(dim, dtype=torch.float64)[:axes]
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), eye, -eye])


def _radius_spread(search: _Search, count: int) -> torch.Tensor:
    """Random directions at radii spread geometrically over (0, 1], the sphere included."""
    if count <= 0:
        return torch.zeros(0, search.dim, dtype=torch.float64)
    exponents = torch.linspace(0.0, 1.0, count, dtype=torch.float64)
    radii = 1e-4**exponents
    return search.directions(count) * radii[:, None]


def _grid_1d(search: _Search, size: int) -> None:
    """A fine grid of [−1, 1] (both ends and 0 exactly), then finer grids around its best."""
    if not search.interior:
        z = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
        search.offer(z, search.score(z, "grid"))
        return
    size = max(size, 3) | 1  # odd, so that 0 is on the grid
    z = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)[:, None]
    gap = search.score(z, "grid")
    search.offer(z, gap)
    step = 2.0 / (size - 1)
    centers = z[torch.argsort(gap, descending=True, stable=True)[:8]]
    for _ in range(3):
        offsets = torch.linspace(-step, step, 201, dtype=torch.float64)
        local = (centers + offsets[None, :]).reshape(-1, 1).clamp(-1.0, 1.0)
        gap = search.score(local, "grid")
        search.offer(local, gap)
        centers = local[torch.argsort(gap, descending=True, stable=True)[:8]]
        step /= 100.0


def _grid_2d(search: _Search, size: int) -> None:
    """A polar grid of the disc (linear radii, geometric ones down to ``_SMALLEST_RADIUS``, 4× as
    many angles as linear radii), then finer Cartesian grids around its best points, each sized
    to its own grid cell (small near 0)."""
    rings = max(4, int(math.sqrt(size / 6)))
    angles = 4 * rings
    dtheta = 2 * math.pi / angles
    theta = torch.arange(angles, dtype=torch.float64) * dtheta
    circle = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    if search.interior:
        linear = torch.arange(1, rings + 1, dtype=torch.float64) / rings
        small = torch.logspace(
            math.log10(_SMALLEST_RADIUS),
            math.log10(1.0 / rings),
            rings // 2 + 1,
            dtype=torch.float64,
        )[:-1]
        radii = torch.cat([small, linear])
    else:
        radii = torch.ones(1, dtype=torch.float64)
    # half-width of the cell around each ring: the gap to the neighbouring ring or the arc
    # between neighbouring angles, whichever is larger
    gaps = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), radii]))
    cells = torch.maximum(gaps, radii * dtheta)
    z = (radii[:, None, None] * circle[None, :, :]).reshape(-1, 2)
    cell = cells[:, None].expand(-1, angles).reshape(-1)
    z = torch.cat([torch.zeros(1, 2, dtype=torch.float64), z])
    cell = torch.cat([torch.full((1,), _SMALLEST_RADIUS, dtype=torch.float64), cell])
    gap = search.score(z, "grid")
    search.offer(z, gap)
    order = torch.argsort(gap, descending=True, stable=True)[:8]
    centers, steps = z[order], cell[order]
    ticks = torch.linspace(-1.0, 1.0, 21, dtype=torch.float64)
    offsets = torch.cartesian_prod(ticks, ticks)
    for _ in range(3):
        local = (centers[:, None, :] + steps[:, None, None] * offsets[None, :, :]).reshape(-1, 2)
        local = search.project(local)
        step = steps[:, None].expand(-1, offsets.shape[0]).reshape(-1)
        gap = search.score(local, "grid")
        search.offer(local, gap)
        order = torch.argsort(gap, descending=True, stable=True)[:8]
        centers, steps = local[order], step[order] / 10.0


def _preactivations(net: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations of every ReLU of a Linear/ReLU/Flatten/Identity ``nn.Sequential`` at ``x``
    (B, H) and their gradients with respect to x (B, H, dim), by forward-mode propagation of the
    identity (the network is linear on the piece containing x)."""
    count, dim = x.shape
    h = x
    tangent = torch.eye(dim, dtype=x.dtype).expand(count, dim, dim)  # (B, dim, features)
    values, grads = [], []
    for layer in net:
        if isinstance(layer, nn.Linear):
            weight = _effective(layer, "weight")
            bias = _effective(layer, "bias")
            assert weight is not None
            h = h @ weight.T + (0.0 if bias is None else bias)
            tangent = tangent @ weight.T
        elif isinstance(layer, nn.ReLU):
            values.append(h)
            grads.append(tangent.transpose(1, 2))
            active = (h > 0).to(h.dtype)
            h = h * active
            tangent = tangent * active[:, None, :]
        elif isinstance(layer, (nn.Flatten, nn.Identity)):
            continue
        else:
            raise TypeError(type(layer).__name__)
    if not values:
        return torch.zeros(count, 0, dtype=x.dtype), torch.zeros(count, 0, dim, dtype=x.dtype)
    return torch.cat(values, dim=1), torch.cat(grads, dim=1)


def _kink_points(
    search: _Search, nets: list[nn.Module], z: torch.Tensor, most: int = 3, alternatives: int = 3
) -> torch.Tensor:
    """Newton projections of ``z`` onto its nearest ReLU kinks: for m = 1…``most``, the point of
    the intersection of m nearby kink hyperplanes (linearised at z) closest to z, the m-th being
    any of the ``alternatives`` nearest independent ones. The gap is convex on each linear piece,
    so its maximum over the ball sits on the sphere or on kinks. Skipped above
    ``_KINK_MAX_DIM`` inputs, where the Jacobians of all pre-activations get large."""
    out = []
    if search.dim > _KINK_MAX_DIM:
        return torch.zeros(0, search.dim, dtype=torch.float64)
    for net in nets:
        if not isinstance(net, nn.Sequential):
            continue
        width = sum(layer.out_features for layer in net if isinstance(layer, nn.Linear))
        # points per chunk, so that the Jacobians (points × features × dim) stay near 2²² floats
        chunk = max(1, 2**22 // max(1, width * search.dim))
        for begin in range(0, z.shape[0], chunk):
            out += _kinks_of(search, net, z[begin : begin + chunk], most, alternatives)
    if not out:
        return torch.zeros(0, search.dim, dtype=torch.float64)
    return search.project(torch.cat(out))


def _kinks_of(
    search: _Search, net: nn.Sequential, z: torch.Tensor, most: int, alternatives: int
) -> list[torch.Tensor]:
    """:func:`_kink_points` for one network and a few points."""
    try:
        values, grads = _preactivations(net, (z * search.radius).to(torch.float64))
    except TypeError:
        return []
    if values.shape[1] == 0:
        return []
    out = []
    # in units of R: p(z) = values, ∂p/∂z = R·grads
    grads = grads * search.radius
    norms = torch.linalg.vector_norm(grads, dim=2)
    distance = values.abs() / norms
    distance = torch.where(norms > 0, distance, torch.full_like(distance, math.inf))
    units = grads / norms.clamp_min(_TINY)[:, :, None]
    rows = torch.arange(z.shape[0])
    basis = torch.zeros(z.shape[0], 0, search.dim, dtype=torch.float64)
    chosen: list[torch.Tensor] = []
    for _ in range(min(most, search.dim, values.shape[1])):
        # the nearest kinks whose normals are not (nearly) in the span of those already chosen:
        # parallel kinks (the two sides of a bump) have no common point
        inside = (units @ basis.transpose(1, 2)).square().sum(dim=2)
        allowed = torch.where(inside < 1 - 1e-6, distance, math.inf)
        near = torch.topk(allowed, min(alternatives, allowed.shape[1]), largest=False)
        # try the few nearest as the last kink, but go on with the nearest only
        for rank in range(near.indices.shape[1]):
            pick = near.indices[:, rank]
            index = torch.stack([*chosen, pick], dim=1)
            jac = torch.gather(grads, 1, index[:, :, None].expand(-1, -1, search.dim))
            val = torch.gather(values, 1, index)  # (B, m)
            # the closest point of the m kink hyperplanes (linearised at z)
            step = (torch.linalg.pinv(jac) @ val[:, :, None])[:, :, 0]
            candidate = z - step
            good = torch.isfinite(near.values[:, rank]) & torch.isfinite(candidate).all(dim=1)
            out.append(candidate[good])
        pick = near.indices[:, 0]
        normal = units[rows, pick] - (basis @ units[rows, pick][:, :, None] * basis).sum(dim=1)
        normal = normal / torch.linalg.vector_norm(normal, dim=1, keepdim=True).clamp_min(_TINY)
        basis = torch.cat([basis, normal[:, None, :]], dim=1)
        chosen.append(pick)
    return out


def _ascent(search: _Search, z: torch.Tensor, steps: int, first: float, last: float, name: str):
    """Projected normalized gradient ascent from every row of ``z`` with the step size going
    geometrically from ``first`` to ``last`` times the start's radius (in units of R, at least
    1e-4): a start near 0 looks for a bump near 0, and a full-size first step would throw it
    onto flat ground it cannot climb back from. Each iterate is scored in float32 and the best
    of each run goes to the pool."""
    if z.shape[0] == 0 or steps <= 0:
        return
    z = search.project(z)
    best_z = z.clone()
    best_gap = search.score(z, name)
    ratio = (last / first) ** (1.0 / max(steps - 1, 1))
    eta = first * torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp(1e-4, 1.0)
    for _ in range(steps):
        z = search.project(z + eta * search.ascent_directions(z))
        gap = search.score(z, name)
        better = gap > best_gap
        best_z[better], best_gap[better] = z[better], gap[better]
        eta *= ratio
    search.offer(best_z, best_gap)


def _jitter(search: _Search, centers: torch.Tensor, count: int, rounds: int = 2) -> None:
    """Local random search around ``centers`` at scales from 0.1·R down to float32 ulps: rounding
    error is not seen by gradients, only by trying nearby float32 points."""
    if centers.shape[0] == 0 or count <= 0:
        return
    per_scale = max(1, count // len(_JITTER_SCALES))
    for _ in range(rounds):
        for center in centers:
            noise = torch.randn(
                len(_JITTER_SCALES), per_scale, search.dim, generator=search.generator
            ).to(torch.float64)
            scales = torch.tensor(_JITTER_SCALES, dtype=torch.float64)[:, None, None]
            # relative noise per coordinate as well, so that ulps of large coordinates move
            relative = center.abs().clamp_min(1.0 / math.sqrt(search.dim))
            local = (center + scales * noise * relative).reshape(-1, search.dim)
            search.offer(local, search.score(local, "jitter"))
        centers = search.top(centers.shape[0])


def _alone(search: _Search, count: int) -> None:
    """The best points again, one row at a time, then a local search at the smallest scales
    around the best of them, also one row at a time."""
    if count <= 0:
        return
    top = search.top(min(16, count))
    if top.shape[0] == 0:
        return
    gap = search.score_alone(top, "alone")
    center = top[int(torch.argmax(gap))]
    remaining = count - top.shape[0]
    per_scale = max(1, remaining // len(_ALONE_SCALES))
    if remaining <= 0:
        return
    noise = torch.randn(len(_ALONE_SCALES), per_scale, search.dim, generator=search.generator)
    scales = torch.tensor(_ALONE_SCALES, dtype=torch.float64)[:, None, None]
    relative = center.abs().clamp_min(1.0 / math.sqrt(search.dim))
    local = (center + scales * noise.to(torch.float64) * relative).reshape(-1, search.dim)
    search.score_alone(local[:remaining], "alone")


# --------------------------------------------------------------------------- the attack


def worst_gap(
    reference: Callable[[torch.Tensor], torch.Tensor],
    module: nn.Module,
    radius: float,
    dim: int,
    *,
    starts: int = 32,
    steps: int = 60,
    restarts: int = 2,
    screen: int = 4096,
    grid: int = 20_000,
    jitter: int = 512,
    alone: int = 128,
    kinks: bool = True,
    interior: bool = True,
    seed: int = 0,
    module64: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch: int = 4096,
    threads: int | None = 1,
) -> Attack:
    """Search ``‖x‖₂ ≤ radius`` for the largest ``‖reference(x) − module(x)‖₂``.

    ``reference`` maps float64 inputs (B, dim) to float64 outputs and should be differentiable
    by autograd (e.g. ``float64_copy(target)``); ``module`` is the float32 module users run,
    called on float32 inputs and never modified; ``module64`` (default ``float64_copy(module)``)
    gives the ascent directions and the exact-arithmetic gap. Knobs: ``starts`` gradient-ascent
    starts of ``steps`` steps, then ``restarts`` shorter runs from the best points; ``screen``
    random points; ``grid`` points of the dense grid for dim ≤ 2 (0 disables it); ``jitter``
    local samples per centre of the final search; ``alone`` points scored one row at a time
    (the module's rounding differs there); ``kinks`` the Newton kink probes;
    ``interior=False`` restricts everything to the sphere (for comparisons only). ``QUICK`` is a
    cheaper set of knobs. ``threads`` sets torch's intra-op threads for the duration of the call
    (restored after; ``None`` leaves them): the batches are small, and on a shared CPU several
    threads per process slow each call down many times over.
    """
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _attack(
            reference,
            module,
            float(radius),
            dim,
            starts,
            steps,
            restarts,
            screen,
            grid,
            jitter,
            alone,
            kinks,
            interior,
            seed,
            module64,
            batch,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _attack(
    reference: Callable[[torch.Tensor], torch.Tensor],
    module: nn.Module,
    radius: float,
    dim: int,
    starts: int,
    steps: int,
    restarts: int,
    screen: int,
    grid: int,
    jitter: int,
    alone: int,
    kinks: bool,
    interior: bool,
    seed: int,
    module64: Callable[[torch.Tensor], torch.Tensor] | None,
    batch: int,
) -> Attack:
    """The phases of :func:`worst_gap`, in order."""
    began = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    if module64 is None:
        module64 = float64_copy(module)
    search = _Search(reference, module, module64, radius, dim, interior, batch, generator)

    # exact probes: 0 and ±R·e_i
    axes = _axis_points(dim)
    search.offer(axes, search.score(axes, "axes"))

    # the random screen
    points = _screen_points(search, screen)
    screened = search.score(points, "screen")
    search.offer(points, screened)
    screen_top = points[torch.argsort(screened, descending=True, stable=True)[: max(starts, 8)]]

    if grid > 0 and dim == 1:
        _grid_1d(search, grid)
    elif grid > 0 and dim == 2:
        _grid_2d(search, grid)

    nets = [module64]
    if isinstance(reference, nn.Module):
        nets.insert(0, reference)
    if kinks:
        kinked = _kink_points(search, nets, torch.cat([screen_top, search.top(8)]))
        search.offer(kinked, search.score(kinked, "kinks"))

    # gradient ascent: half from the best points so far (mostly the screen's, whose best are
    # spread out, plus a few from the pool: grid and kink points), a quarter from 0 and axes, the
    # rest from random directions at radii spread over (0, 1]
    starts = max(starts, 0)
    from_pool = search.top(starts // 8)
    from_screen = screen_top[: (starts + 1) // 2 - from_pool.shape[0]]
    order = torch.randperm(axes.shape[0] - 1, generator=generator) + 1
    structured = axes[torch.cat([torch.zeros(1, dtype=torch.long), order])][: starts // 4]
    used = from_pool.shape[0] + from_screen.shape[0] + structured.shape[0]
    spread = _radius_spread(search, starts - used)
    z0 = torch.cat([from_pool, from_screen, structured, spread])[:starts]
    _ascent(search, z0, steps, 0.3, 1e-4, "ascent")
    for round_ in range(restarts):
        centers = search.top(max(2, starts // 4))
        scale = 0.1**round_
        _ascent(search, centers, max(steps // 2, 1), 0.05 * scale, 1e-6 * scale, "restart")

    if kinks:
        kinked = _kink_points(search, nets, search.top(16))
        search.offer(kinked, search.score(kinked, "kinks"))

    _jitter(search, search.top(8), jitter)
    _alone(search, alone)

    # measure the best batched and the best single-row point both ways; keep the larger
    finals = []
    for x32, source in (
        (search.best_x32, search.best_source),
        (search.alone_x32, search.alone_source),
    ):
        gap_alone, gap_batched = replay(reference, module, x32)
        finals.append((max(gap_alone, gap_batched), gap_alone, gap_batched, x32, source))
    gap, gap_alone, gap_batched, x32, source = max(finals, key=lambda final: final[0])
    with torch.no_grad():
        exact = float(
            torch.linalg.vector_norm(
                _flat(reference(x32[None].to(torch.float64)), 1)
                - _flat(module64(x32[None].to(torch.float64)), 1)
            )
        )
    return Attack(
        gap=gap,
        point=x32,
        exact_gap=exact,
        gap_alone=gap_alone,
        gap_batched=gap_batched,
        mode="alone" if gap_alone >= gap_batched else "batched",
        radius=radius,
        source=source,
        evaluations=search.evaluations,
        seconds=time.perf_counter() - began,
        sources=dict(search.sources),
    )
