r"""Provable upper bounds on the ℓ2 operator norm of 2-D convolutions (docs/design.md §3).

A conv layer is a kernel ``K`` of shape ``c_out × c_in × kh × kw`` with stride ``(sh, sw)``, zero
padding ``(ph, pw)``, dilation ``(dh, dw)`` and ``groups = 1``, acting on inputs of shape
``c_in × H × W`` exactly as :func:`torch.nn.functional.conv2d` does.  ``T`` is the linear map from
the flattened input to the flattened output, both with the Euclidean norm.  The certificate needs
an *upper* bound on ``‖T‖₂``; a value below the true norm is the one outcome never allowed.

**Notation (one axis).**  Output ``i`` reads, through tap ``t``, the input row
``u(i, t) = s·i − p + d·t`` (zero when ``u ∉ [0, H)``).  An output is *active* if it reads at least
one image row, a tap is *used* if some output reads an image row through it.  Inactive outputs are
identically zero rows of ``T`` and unused taps are zero operators, so dropping both changes nothing:
every bound below is computed for the kernel ``K'`` with unused taps zeroed.  The 2-D window is a
product, so an output (tap) is active (used) iff it is so along both axes.

**Triangle bound.**  ``T = Σ_t K_t ⊗ S_t`` where ``S_t`` copies input pixel ``u(i, t)`` to output
``i`` (or writes zero).  ``i ↦ u(i, t)`` is injective, so ``S_t`` is a partial selection with
``‖S_t‖ ≤ 1`` and ``‖T‖ ≤ Σ_t ‖K_t‖₂``.  It is loose by up to ``√(kh·kw)``.

**Torus bound (compression argument).**  Embed the image into the torus ``Z_N × Z_N'`` (pixels at
``[0, H) × [0, W)``, zeros elsewhere: an isometry ``x ↦ x̃``) and let ``C`` be the circular
correlation ``z[a] = Σ_t K_t x̃[a + d·t mod N]``.  Put output ``i`` at torus position
``a_i = s·i − p mod N``.  If, along each axis,

* (window) for every active ``i`` and used ``t``: ``u(i, t) ∉ [0, H) ⇒ u(i, t) mod N ∉ [0, H)``,
  so every window reads on the torus exactly what it reads in the zero-padded image, and
* (injective) the ``a_i`` of the active outputs are distinct,

then ``T x = P C x̃`` where ``P`` selects distinct coordinates, i.e. ``T`` is a compression of ``C``
and ``‖T‖ ≤ ‖C‖``.  The block-circulant ``C`` is block-diagonalised by the unitary DFT, so
``‖C‖ = max_ω σ_max(K̂(ω))`` over the ``N·N'`` frequencies, with
``K̂(ω) = Σ_{p,q} K[:, :, p, q] e^{−2πi(ω₁·dh·p/N + ω₂·dw·q/N')}`` (Sedghi, Gupta, Long 2019).

*Torus size.*  Any ``N`` meeting both conditions is safe, and ``N ≥ H`` is needed to hold the
image.  We use the smallest such ``N``, found by testing ``N = H, H + 1, …`` (both conditions are
finite checks).  The search stops at the closed form
``N_c = max(H, H − u_min, u_max + 1, a_max − a_min + 1)`` (min/max over active outputs and used
taps), which always satisfies both conditions: negative ``u`` land in ``[N_c + u_min, N_c) ⊂
[H, N_c)``, ``u ≥ H`` stay below ``N_c``, and the anchors span less than ``N_c``.  With zero padding
this gives ``N = H`` (the valid conv is a restriction of the circular conv on the image itself);
in general it is about ``H + p``, well below the naive ``H + 2p + d(kh − 1)``, and stride gaps
can make it smaller still.  Fewer frequencies make the bound cheaper; its value is the max of the
same trigonometric polynomial over an ``N × N'`` grid, which is not monotone in ``N`` (every safe
``N`` gives a valid bound).  The conditions also rule out two used taps landing on the same torus
offset, which the error analysis below relies on.

**Rigour in float64.**  ``K̂(ω) = K̂(−ω)*`` for real ``K``, so one frequency of each pair
``{ω, −ω}`` is visited.  With ``r = min(c_out, c_in)`` and ``m`` the larger side, the Hermitian
``G(ω) = K̂ᴴK̂`` (``r × r``) is formed by one of two routes, equivalent to ``torch.fft.fft2`` of the
zero-embedded dilated kernel (the tests check this):

* *direct:* ``K̂`` by a direct DFT (two real GEMMs against twiddles ``cos θ, sin θ`` whose phases
  are reduced exactly in integers, so each twiddle is off by ``≤ 16ε``), then ``K̂ᴴK̂``; chunked
  over frequencies;
* *autocorrelation:* ``G(ω) = Σ_Δ e^{−iθ_Δ(ω)} M_Δ`` with ``M_Δ = Σ_t K_tᵀK_{t+Δ}`` over tap
  offsets ``Δ``: ``T(T + 1)/2`` real GEMMs once, then one short sum per frequency.  Taken when it
  saves most of the flops (``512 × 512 × 3 × 3`` on ``8 × 8``: 45 real GEMMs instead of 34
  complex ones).

Then a level ``μ ≥ λ_max(G(ω))`` for every ``ω`` is *certified by Cholesky factorisations* of
``μI − G(ω)``.  ``μ`` starts slightly above an estimate (``eigvalsh`` for ``r ≤ 48``, Lanczos above:
batched complex eigensolvers and SVDs are 10–100× slower than Cholesky at ``r = 512``), and
frequencies are visited in decreasing ``‖K̂(ω)‖_F²`` so that most need one factorisation.  The
estimator never enters the proof.  Standard a-priori bounds (``ε = 2⁻⁵³``,
``γ_k = kε/(1 − kε)``, ``T`` used taps, ``D`` offsets) give the relative errors:

* Cholesky (Demmel): if it completes on ``fl(μI − G)`` then ``μI − G + ΔM ⪰ 0`` with
  ``|ΔM| ≤ γ_{r+1}|Rᴴ||R|``, so ``‖ΔM‖ ≤ γ_{r+1} tr(RᴴR) ≤ γ_{r+1}·r·μ(1 + O(ε))``.  With a ×4
  allowance for complex arithmetic: ``η_chol = 1.01 r γ_{4(r+1)} + 4ε`` on ``λ``.
* Parseval: used taps never alias on a safe torus, so ``‖K'‖_F² = mean_ω ‖K̂(ω)‖_F² ≤ r‖C‖²``;
  this turns the entrywise error bounds below into bounds relative to ``‖C‖``.
* direct: ``|ΔK̂| ≤ 1.5(T + 24)ε Σ_t|K_t|`` entrywise, so ``η_dft = 1.5(T + 24)√(Tr) ε`` on ``σ``;
  ``|ΔG| ≤ 2γ_{2m+4}|K̂|ᴴ|K̂|``, so ``η_gram = 2rγ_{2m+4}`` on ``λ``.
* autocorrelation: each product ``K_t[o, j]K_{t'}[o, k]`` enters one GEMM sum and one twiddle sum,
  so ``|ΔG| ≤ 2γ_{Tm+D+40}(Σ_t|K_t|)ᵀ(Σ_t|K_t|)``, whose norm is ``≤ T‖K'‖_F²``:
  ``η_gram = 2Trγ_{Tm+D+40}`` on ``λ``.

The returned value is ``sqrt(μ)·(1 + η)`` with
``η = max(1e-10, 1.01(η_dft + (η_gram + η_chol)/2) + 16ε)``, which dominates
``sqrt(μ(1 + η_chol)/(1 − η_gram))/(1 − η_dft)`` and the final roundings.  The triangle bound is
certified the same way (real Grams ``K_tᵀK_t``, ``η_gram = rγ_m``, plus ``(T + 4)ε`` for the sum).
On the direct route the ``1e-10`` floor is the margin for every ``r ≤ 400``, ``m ≤ 512``,
``T ≤ 49`` (``1.2e-10`` at ``r = m = 512``); on the autocorrelation route it is the margin up to
about ``T²·r·m ≤ 8·10⁵`` (e.g. ``64 × 32 × 3 × 3``), ``1.6e-10`` at ``128 × 128 × 3 × 3`` and
``2.5e-9`` at ``512 × 512 × 3 × 3``.  These are worst-case bounds; observed errors are about
``1e-15``.  Kernels whose largest entry lies outside ``[2⁻³⁰⁰, 2³⁰⁰]`` are first scaled by an
exact power of two, so Gram entries neither overflow nor underflow; underflow of products of much
smaller entries is far inside the floor.

:func:`conv_norm_power` is a power-iteration *lower* estimate on the real ``conv2d`` operator,
used to test the bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "MARGIN_FLOOR",
    "conv_norm_bound",
    "conv_norm_power",
    "conv_norm_torus",
    "conv_norm_triangle",
    "conv_output_shape",
    "torus_size",
]

MARGIN_FLOOR = 1e-10
"""Smallest relative inflation applied to every returned upper bound."""

_EPS = 2.0**-53
# Dense eigvalsh is fast only for small batched matrices (MKL's batched complex heevd collapses
# for n >= 64, and degrades badly under thread contention); above this, Lanczos estimates.
_EIG_MAX_DIM = 48
_LANCZOS_STEPS = 96
# Memory per frequency chunk; bounds the working set whatever the channel counts and torus.
_CHUNK_BYTES = 32 * 2**20

IntPair = int | Sequence[int]


def _gamma(k: float) -> float:
    return k * _EPS / (1.0 - k * _EPS)


# ---------------------------------------------------------------------------------------------
# Validation


def _pair(name: str, value: IntPair, minimum: int) -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        items = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if len(items) != 2:
            raise ValueError(f"{name} must have 2 entries (height, width), got {len(items)}")
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} entries must be ints, got {v!r}")
        if v < minimum:
            raise ValueError(f"{name} entries must be >= {minimum}, got {tuple(items)}")
        out.append(int(v))
    return out[0], out[1]


def _check_kernel(kernel: torch.Tensor) -> torch.Tensor:
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"kernel must be a torch.Tensor, got {type(kernel).__name__}")
    if kernel.dim() != 4:
        raise ValueError(
            f"kernel must be 4-D (c_out, c_in, kh, kw), got shape {tuple(kernel.shape)}"
        )
    if not kernel.dtype.is_floating_point:
        raise TypeError(f"kernel must be a real floating-point tensor, got dtype {kernel.dtype}")
    if kernel.numel() == 0:
        raise ValueError(f"kernel has an empty dimension: shape {tuple(kernel.shape)}")
    # float16/32 -> float64 is exact, so the bound is for the very kernel that was passed.
    k = kernel.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(k).all()):
        raise ValueError("kernel contains NaN or infinite entries")
    return k.contiguous()


def conv_output_shape(
    in_hw: IntPair,
    kernel_hw: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> tuple[int, int]:
    r"""Spatial output shape of ``conv2d``: ``floor((H + 2p − d(k − 1) − 1)/s) + 1`` per axis.

    Args:
        in_hw (int or pair of ints): input height and width, each ``>= 1``.
        kernel_hw (int or pair of ints): kernel height and width, each ``>= 1``.
        stride (int or pair of ints): stride, each ``>= 1``. Default: 1.
        padding (int or pair of ints): zero padding on both sides, each ``>= 0``. Default: 0.
        dilation (int or pair of ints): dilation, each ``>= 1``. Default: 1.

    Returns:
        tuple[int, int]: output height and width.

    Raises:
        TypeError: if an argument is not an int or a pair of ints.
        ValueError: if an argument is out of range or the output would be empty.
    """
    hw = _pair("in_hw", in_hw, 1)
    khw = _pair("kernel_hw", kernel_hw, 1)
    s = _pair("stride", stride, 1)
    p = _pair("padding", padding, 0)
    d = _pair("dilation", dilation, 1)
    out = []
    for axis, n, k, si, pi, di in zip(("height", "width"), hw, khw, s, p, d, strict=True):
        span = n + 2 * pi - di * (k - 1)  # padded extent minus dilated kernel extent, plus 1
        if span < 1:
            raise ValueError(
                f"conv output would be empty along {axis}: input {n} + 2*padding {pi} is "
                f"smaller than the dilated kernel extent {di * (k - 1) + 1}"
            )
        out.append((span - 1) // si + 1)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# Geometry of one axis


@dataclass(frozen=True)
class _Axis:
    size: int
    k: int
    s: int
    p: int
    d: int
    active: torch.Tensor  # output indices that read at least one image row
    used: torch.Tensor  # bool mask over taps that read at least one image row

    def offsets(self) -> tuple[torch.Tensor, torch.Tensor]:
        taps = torch.nonzero(self.used).flatten()
        u = self.s * self.active[:, None] - self.p + self.d * taps[None, :]
        anchors = self.s * self.active - self.p
        return u, anchors


def _axis(size: int, k: int, s: int, p: int, d: int) -> _Axis:
    n_out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    i = torch.arange(n_out)
    t = torch.arange(k)
    u = s * i[:, None] - p + d * t[None, :]
    inside = (u >= 0) & (u < size)
    return _Axis(size, k, s, p, d, torch.nonzero(inside.any(1)).flatten(), inside.any(0))


def _torus_ok(axis: _Axis, candidates: torch.Tensor) -> torch.Tensor:
    """Which candidate torus sizes satisfy the window and injectivity conditions."""
    u, anchors = axis.offsets()
    outside = (u < 0) | (u >= axis.size)
    wrapped = torch.remainder(u[None], candidates[:, None, None])
    window = ~(outside[None] & (wrapped < axis.size)).flatten(1).any(1)
    a = torch.remainder(anchors[None], candidates[:, None]).sort(dim=1).values
    injective = (a[:, 1:] != a[:, :-1]).all(1)
    return window & injective & (candidates >= axis.size)


def _min_torus(axis: _Axis) -> int:
    if axis.active.numel() == 0:
        return axis.size
    u, anchors = axis.offsets()
    closed = max(
        axis.size,
        axis.size - int(u.min()),
        int(u.max()) + 1,
        int(anchors.max() - anchors.min()) + 1,
    )
    for start in range(axis.size, closed + 1, 64):
        cands = torch.arange(start, min(start + 64, closed + 1))
        ok = torch.nonzero(_torus_ok(axis, cands)).flatten()
        if ok.numel():
            return int(cands[ok[0]])
    return closed  # unreachable: the closed form always passes (module docstring)


# ---------------------------------------------------------------------------------------------
# Problem set-up shared by the bounds


@dataclass(frozen=True)
class _Problem:
    taps: torch.Tensor  # (T, m, r) used nonzero taps, oriented so that r = min(c_out, c_in)
    pos: list[tuple[int, int]]  # (p, q) tap index of each of the T taps
    scale_exp: int  # taps = K * 2**-scale_exp exactly
    axes: tuple[_Axis, _Axis]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


def _setup(
    kernel: torch.Tensor,
    in_hw: IntPair,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
) -> tuple[torch.Tensor, _Problem]:
    k = _check_kernel(kernel)
    c_out, c_in, kh, kw = k.shape
    hw = _pair("in_hw", in_hw, 1)
    s = _pair("stride", stride, 1)
    p = _pair("padding", padding, 0)
    d = _pair("dilation", dilation, 1)
    conv_output_shape(hw, (kh, kw), s, p, d)
    ah = _axis(hw[0], kh, s[0], p[0], d[0])
    aw = _axis(hw[1], kw, s[1], p[1], d[1])
    used = ah.used[:, None] & aw.used[None, :]
    if ah.active.numel() == 0 or aw.active.numel() == 0:
        used = torch.zeros_like(used)
    idx = torch.nonzero(used)
    taps = k.permute(2, 3, 0, 1)[idx[:, 0], idx[:, 1]]  # (T, c_out, c_in), one gather
    peak = taps.abs().amax(dim=(1, 2)) if idx.numel() else taps.new_zeros(0)
    if bool((peak == 0).any()):
        # All-zero taps add nothing but offsets, pairs and summands: drop them.
        idx, taps, peak = idx[peak > 0], taps[peak > 0], peak[peak > 0]
    pos = [(int(a), int(b)) for a, b in idx.tolist()]
    if c_in > c_out:
        # σ(K̂) = σ(K̂ᵀ) and K̂ᵀ is the transform of the transposed taps, so the Gram matrices can
        # always be taken on the smaller channel side.
        taps = taps.transpose(1, 2).contiguous()
    scale_exp = 0
    if pos:
        exp = int(torch.frexp(peak.max()).exponent)
        if abs(exp) > 300:
            # Exact (a power of two): keeps Gram entries far from overflow and underflow.  In
            # range it is skipped; underflow of products of entries 2^300 below the largest is
            # far inside the 1e-10 floor.
            scale_exp = exp
            taps = torch.ldexp(taps, torch.tensor(-exp))
    if not pos:
        taps = k.new_zeros(0, 1, 1)
    return k, _Problem(taps.contiguous(), pos, scale_exp, (ah, aw), s, p, d)


def _margin(eta: float) -> float:
    return max(MARGIN_FLOOR, 1.01 * eta + 16 * _EPS)


def _chol_eta(r: int) -> float:
    return 1.01 * r * _gamma(4 * (r + 1)) + 4 * _EPS


# ---------------------------------------------------------------------------------------------
# Certified largest eigenvalues of Hermitian PSD matrices


def _lanczos_top(g: torch.Tensor, steps: int = _LANCZOS_STEPS) -> float:
    """Largest Ritz value of the Hermitian ``g``: an estimate, never used as a proof.

    Stops once the top Ritz value is stable to ``1e-14`` (typically 30–50 steps at ``n = 512``).
    """
    g = g.contiguous()  # a strided Gram view would be copied on every matvec
    n = g.shape[-1]
    k = min(n, steps)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(n, dtype=torch.float64, generator=gen).to(g.dtype)
    q = q / torch.linalg.vector_norm(q)
    basis = torch.empty(k, n, dtype=g.dtype)
    alphas: list[float] = []
    betas: list[float] = []
    top = -math.inf
    for j in range(k):
        basis[j] = q
        w = g @ q
        alphas.append(float(torch.vdot(q, w).real))
        # Full reorthogonalisation keeps the Ritz values free of ghost copies.
        w = w - basis[: j + 1].T @ (basis[: j + 1].conj() @ w)
        beta = float(torch.linalg.vector_norm(w))
        breakdown = beta <= 1e-13 * max(abs(a) for a in alphas)
        if j == k - 1 or breakdown or (j >= 15 and j % 4 == 3):
            new = _tridiag_top(alphas, betas)
            if j == k - 1 or breakdown or abs(new - top) <= 1e-14 * abs(new):
                return new
            top = new
        betas.append(beta)
        q = w / beta
    return _tridiag_top(alphas, betas)


def _tridiag_top(alphas: list[float], betas: list[float]) -> float:
    tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        tri = tri + torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(tri)[-1])


def _delta0(r: int) -> float:
    # Both estimators are accurate to ~r·ε·‖G‖ (LAPACK: backward stable; Lanczos: run to
    # convergence), and Cholesky of μ(1 + δ)I − G needs λ_min ≳ r·ε·‖G‖ to go through.  Less
    # headroom only makes the test fail and escalate.
    return max(64 * (r + 1) * _EPS, 1e-13)


def _factorable(g: torch.Tensor, level: float) -> bool:
    """Whether ``fl(level·I − g)`` admits a Cholesky factor (so ``λ_max(g) ≲ level``)."""
    m = -g
    m.diagonal().add_(level)
    return int(torch.linalg.cholesky_ex(m)[1]) == 0


def _certify(g: torch.Tensor, levels: torch.Tensor, delta0: float) -> torch.Tensor:
    """Per matrix, a level ``L >= levels`` at which ``fl(L·I − G)`` admits a Cholesky factor.

    The headroom grows tenfold on each failure; Gershgorin's row-sum bound (with its own
    rounding inflation) is the last resort, so this always returns valid levels.
    """
    out = torch.empty_like(levels)
    n = g.shape[-1]
    eye = torch.eye(n, dtype=g.dtype)
    pending = torch.arange(g.shape[0])
    # A strictly positive floor: an all-zero G needs L > 0 for the factorisation to exist.
    base = torch.clamp(levels, min=2.0**-900)
    delta = delta0
    while pending.numel() and delta <= 1.0:
        lv = base[pending] * (1.0 + delta)
        if n <= _EIG_MAX_DIM:
            ok = torch.linalg.cholesky_ex(lv[:, None, None] * eye - g[pending])[1] == 0
        else:
            # Batched Cholesky of large complex matrices is much slower than a loop here.
            pairs = zip(pending.tolist(), lv.tolist(), strict=True)
            ok = torch.tensor([_factorable(g[i], v) for i, v in pairs], dtype=torch.bool)
        out[pending[ok]] = lv[ok]
        pending = pending[~ok]
        delta *= 10.0
    if pending.numel():
        rows = g[pending].abs().sum(-1).amax(-1)
        out[pending] = rows * (1.0 + 4 * (n + 4) * _EPS)
    return out


def _certified_levels(g: torch.Tensor) -> torch.Tensor:
    """Certified upper levels on ``λ_max`` of each matrix in the batch ``g``."""
    n = g.shape[-1]
    if n <= _EIG_MAX_DIM:
        est = torch.linalg.eigvalsh(g)[:, -1]
        return _certify(g, est, _delta0(n))
    est = torch.tensor([_lanczos_top(gi) for gi in g], dtype=torch.float64)
    return _certify(g, est, _delta0(n))


# ---------------------------------------------------------------------------------------------
# Bounds


def _triangle(prob: _Problem) -> float:
    t, m, r = prob.taps.shape
    if not prob.pos:
        return 0.0
    g = prob.taps.mT @ prob.taps
    levels = _certified_levels(g)
    total = float(torch.sqrt(levels).sum())
    # Real Gram of inner length m (|ΔG| <= γ_m|K|ᵀ|K|), then a sum of T positive numbers.
    eta = 0.5 * (r * _gamma(m) + _chol_eta(r)) + (t + 4) * _EPS
    return math.ldexp(total * (1.0 + _margin(eta)), prob.scale_exp)


def _half_spectrum(nh: int, nw: int) -> torch.Tensor:
    """One representative of each pair ``{ω, −ω}`` of torus frequencies.

    ``K̂(−ω) = conj K̂(ω)`` for a real kernel, so both have the same singular values.
    """
    w1 = torch.arange(nh).repeat_interleave(nw // 2 + 1)
    w2 = torch.arange(nw // 2 + 1).repeat(nh)
    # On the lines ω₂ = 0 and ω₂ = N'/2, ω and −ω both have ω₂ <= N'/2: keep ω₁ <= −ω₁ mod N.
    edge = (w2 == 0) | (2 * w2 == nw)
    keep = ~edge | (w1 <= (-w1) % nh)
    return torch.stack([w1[keep], w2[keep]], 1)


def _phases(
    offsets: torch.Tensor, freqs: torch.Tensor, torus_hw: tuple[int, int], dilation: tuple[int, int]
) -> torch.Tensor:
    """``θ[ω, j] = 2π(ω₁·dh·δp/N + ω₂·dw·δq/N')`` for tap offsets ``(δp, δq)``, in ``[−π, π]``.

    The phase is reduced modulo ``2π`` in exact integer arithmetic, so the float error is a few
    ulps of a number at most π whatever the frequency and offset.
    """
    nh, nw = torus_hw
    period = nh * nw
    a = (dilation[0] * offsets[:, 0] * nw) % period
    b = (dilation[1] * offsets[:, 1] * nh) % period
    k = (freqs[:, :1] * a[None] + freqs[:, 1:] * b[None]) % period
    k = torch.where(2 * k > period, k - period, k)
    return k.to(torch.float64) * (2.0 * math.pi / period)


def _grams_direct(
    prob: _Problem, torus_hw: tuple[int, int], freqs: torch.Tensor
) -> tuple[torch.Tensor, Callable[[torch.Tensor], Iterator[torch.Tensor]], float]:
    """``K̂(ω)`` by a direct DFT, then ``G = K̂ᴴK̂``: cost ∝ frequencies · m · r².

    Returns the trace proxy ``‖K̂(ω)‖_F²``, a generator of Gram chunks for a given frequency
    order, and the relative error ``η`` on ``λ_max`` (DFT error counted twice, on ``σ``).
    """
    t, m, r = prob.taps.shape
    theta = _phases(torch.tensor(prob.pos).reshape(-1, 2), freqs, torus_hw, prob.dilation)
    cos, sin = torch.cos(theta), torch.sin(theta)
    flat = prob.taps.reshape(t, m * r)
    tap_gram = flat @ flat.T
    proxy = ((cos @ tap_gram) * cos).sum(1) + ((sin @ tap_gram) * sin).sum(1)
    chunk = max(1, _CHUNK_BYTES // (16 * (2 * m * r + 2 * r * r)))

    def chunks(order: torch.Tensor) -> Iterator[torch.Tensor]:
        for start in range(0, order.numel(), chunk):
            idx = order[start : start + chunk]
            khat = torch.complex(cos[idx] @ flat, -(sin[idx] @ flat)).reshape(-1, m, r)
            yield khat.mH @ khat

    eta_dft = 1.5 * (t + 24) * math.sqrt(t * r) * _EPS
    eta = 2.0 * eta_dft + 2 * r * _gamma(2 * m + 4)
    return proxy, chunks, eta


def _offsets(
    pos: list[tuple[int, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tap pairs ``(t, t')`` with offset ``pos[t'] − pos[t]`` in a half plane, grouped by offset."""
    p = torch.tensor(pos).reshape(-1, 2)
    diff = p[None, :, :] - p[:, None, :]  # diff[t, t'] = pos[t'] − pos[t]
    half = (diff[..., 0] > 0) | ((diff[..., 0] == 0) & (diff[..., 1] >= 0))
    first, second = torch.nonzero(half, as_tuple=True)
    offsets, group = torch.unique(diff[first, second], dim=0, return_inverse=True)
    return first, second, offsets, group


def _grams_autocorr(
    prob: _Problem, torus_hw: tuple[int, int], freqs: torch.Tensor
) -> tuple[torch.Tensor, Callable[[torch.Tensor], Iterator[torch.Tensor]], float]:
    """``G(ω) = Σ_Δ e^{−iθ_Δ(ω)} M_Δ`` from the tap autocorrelation ``M_Δ = Σ_t K_tᵀ K_{t+Δ}``.

    ``K̂ᴴK̂ = Σ_{t,t'} e^{−i(θ_{t'} − θ_t)} K_tᵀK_{t'}`` and the phase depends only on the tap
    offset ``Δ``.  Only half the offsets need GEMMs (``M_{−Δ} = M_Δᵀ``), their cost ``∝ T² m r²``
    does not grow with the torus, and each ``G(ω)`` is then a short sum.
    """
    t, m, r = prob.taps.shape
    first, second, offsets, group = _offsets(prob.pos)
    mats = []
    for j in range(offsets.shape[0]):
        sel = torch.nonzero(group == j).flatten()
        lhs = prob.taps[first[sel]].reshape(-1, r)
        rhs = prob.taps[second[sel]].reshape(-1, r)
        mats.append(lhs.T @ rhs)
    # Materialise M_{−Δ} = M_Δᵀ as well, so that each chunk is two plain GEMMs (no transposes).
    nonzero = (offsets != 0).any(1)
    mats += [mats[j].T for j in torch.nonzero(nonzero).flatten().tolist()]
    flat = torch.stack(mats).reshape(len(mats), r * r)
    offsets = torch.cat([offsets, -offsets[nonzero]])
    theta = _phases(offsets, freqs, torus_hw, prob.dilation)
    cos, sin = torch.cos(theta), torch.sin(theta)
    proxy = cos @ torch.diagonal(flat.reshape(-1, r, r), dim1=1, dim2=2).sum(1)
    # (r², 2B) = flatᵀ @ [cos | −sin] reads the M_Δ once per chunk and lands real and imaginary
    # parts interleaved, so the complex Gram matrices are views, not copies.
    twiddle = torch.stack([cos, -sin], dim=2)  # (n_freq, D, 2)
    chunk = max(1, _CHUNK_BYTES // (16 * r * r))

    def chunks(order: torch.Tensor) -> Iterator[torch.Tensor]:
        for start in range(0, order.numel(), chunk):
            w = twiddle[order[start : start + chunk]]
            b = w.shape[0]
            out = flat.T @ w.permute(1, 0, 2).reshape(-1, 2 * b)
            yield torch.view_as_complex(out.view(r * r, b, 2).permute(1, 0, 2)).view(b, r, r)

    # Every product K_t[o, j]·K_t'[o, k] enters one GEMM sum (length <= T·m), then one twiddle
    # sum of D terms with twiddles off by <= 16ε: |ΔG| <= 2γ_{Tm + D + 40} (Σ_t|K_t|)ᵀ(Σ_t|K_t|),
    # and ‖(Σ_t|K_t|)ᵀ(Σ_t|K_t|)‖ <= T·‖K'‖_F² <= T·r·‖C‖² by Parseval (taps never alias).
    # cholesky_ex and eigvalsh read one triangle only, and both triangles obey this bound.
    eta = 2 * t * r * _gamma(t * m + offsets.shape[0] + 40)
    return proxy, chunks, eta


def _estimate(g: torch.Tensor) -> float:
    """Largest eigenvalue over a batch of Hermitian matrices, estimated (not certified)."""
    if g.shape[-1] <= _EIG_MAX_DIM:
        return float(torch.linalg.eigvalsh(g)[:, -1].max())
    return max(_lanczos_top(gi) for gi in g)


def _torus(prob: _Problem, torus_hw: tuple[int, int]) -> float:
    t, m, r = prob.taps.shape
    if not prob.pos:
        return 0.0
    # One tap: K̂(ω) = e^{−iθ(ω)}·K_t has the same singular values at every ω.
    freqs = _half_spectrum(*torus_hw) if t > 1 else torch.zeros(1, 2, dtype=torch.int64)
    n_freq = freqs.shape[0]
    n_off = 2 * _offsets(prob.pos)[2].shape[0] - 1
    # Real-flop counts of the two routes (a complex GEMM is four real ones).  The
    # autocorrelation route has a looser (still tiny) error bound and a per-offset overhead, so
    # it is taken only where it saves much, and only if its M_Δ fit the memory budget.
    direct_cost = n_freq * (8 * m * r * r + 4 * t * m * r)
    auto_cost = t * (t + 1) * m * r * r + n_freq * 4 * n_off * r * r
    if direct_cost > 5e7 and 2 * auto_cost < direct_cost and 8 * n_off * r * r <= 2 * _CHUNK_BYTES:
        proxy, chunks, eta_gram = _grams_autocorr(prob, torus_hw, freqs)
    else:
        proxy, chunks, eta_gram = _grams_direct(prob, torus_hw, freqs)
    # Frequencies in decreasing ‖K̂(ω)‖_F²: the first few set the level μ, and every frequency is
    # then only checked against μ by one Cholesky factorisation; an eigen-estimate is spent
    # only where that check fails.
    order = torch.argsort(proxy, descending=True)
    delta0 = _delta0(r)
    mu = 0.0
    cert = 0.0
    for g in chunks(order):
        if r <= _EIG_MAX_DIM:
            if mu == 0.0:
                mu = _estimate(g[:4])
            level = max(mu, 2.0**-900) * (1.0 + delta0)
            eye = torch.eye(r, dtype=g.dtype)
            bad = torch.linalg.cholesky_ex(level * eye - g)[1] != 0
            cert = max(cert, level)
            if bool(bad.any()):
                # These frequencies beat the current level: estimate them, then certify afresh.
                mu = max(mu, _estimate(g[bad]))
                start = torch.full((int(bad.sum()),), mu, dtype=torch.float64)
                cert = max(cert, float(_certify(g[bad], start, delta0).max()))
            continue
        for gi in g:
            level = mu * (1.0 + delta0)
            if mu > 0.0 and _factorable(gi, level):
                cert = max(cert, level)
                continue
            # A new record (the λ are typically within a few % of each other, so a handful of
            # records occur in any order): estimate this frequency, then certify it.
            mu = max(mu, _lanczos_top(gi))
            start = torch.tensor([mu], dtype=torch.float64)
            cert = max(cert, float(_certify(gi[None], start, delta0)[0]))
    eta = 0.5 * (eta_gram + _chol_eta(r))
    return math.ldexp(math.sqrt(cert) * (1.0 + _margin(eta)), prob.scale_exp)


def torus_size(
    in_hw: IntPair,
    kernel_hw: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> tuple[int, int]:
    r"""Smallest torus ``N × N'`` on which the linear conv is a compression of the circular one.

    Per axis, the smallest ``N >= H`` such that every window of an active output reads on the
    torus exactly what it reads in the zero-padded image and active outputs sit at distinct torus
    positions (see the module docstring).  Zero padding gives ``N = H``.

    Args:
        in_hw (int or pair of ints): input height and width.
        kernel_hw (int or pair of ints): kernel height and width.
        stride (int or pair of ints): stride. Default: 1.
        padding (int or pair of ints): zero padding. Default: 0.
        dilation (int or pair of ints): dilation. Default: 1.

    Returns:
        tuple[int, int]: the torus height ``N`` and width ``N'``.
    """
    hw = _pair("in_hw", in_hw, 1)
    khw = _pair("kernel_hw", kernel_hw, 1)
    s = _pair("stride", stride, 1)
    p = _pair("padding", padding, 0)
    d = _pair("dilation", dilation, 1)
    conv_output_shape(hw, khw, s, p, d)
    return (
        _min_torus(_axis(hw[0], khw[0], s[0], p[0], d[0])),
        _min_torus(_axis(hw[1], khw[1], s[1], p[1], d[1])),
    )


def conv_norm_triangle(
    kernel: torch.Tensor,
    in_hw: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> float:
    r"""Triangle-inequality upper bound ``Σ_t ‖K_t‖₂`` on the conv's ℓ2 operator norm.

    Only taps that ever read an image pixel for this input shape are summed; each ``‖K_t‖₂`` is
    certified by a Cholesky factorisation and the sum is inflated by the rounding margin.

    Args:
        kernel (torch.Tensor): real kernel of shape ``(c_out, c_in, kh, kw)``, all finite.
        in_hw (int or pair of ints): input height and width.
        stride (int or pair of ints): stride. Default: 1.
        padding (int or pair of ints): zero padding. Default: 0.
        dilation (int or pair of ints): dilation. Default: 1.

    Returns:
        float: an upper bound on ``‖T‖₂`` (``0.0`` when ``T`` is identically zero).
    """
    _, prob = _setup(kernel, in_hw, stride, padding, dilation)
    return _triangle(prob)


def conv_norm_torus(
    kernel: torch.Tensor,
    in_hw: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    torus_hw: IntPair | None = None,
) -> float:
    r"""Torus (Fourier) upper bound ``max_ω σ_max(K̂(ω))`` on the conv's ℓ2 operator norm.

    Args:
        kernel (torch.Tensor): real kernel of shape ``(c_out, c_in, kh, kw)``, all finite.
        in_hw (int or pair of ints): input height and width.
        stride (int or pair of ints): stride. Default: 1.
        padding (int or pair of ints): zero padding. Default: 0.
        dilation (int or pair of ints): dilation. Default: 1.
        torus_hw (int or pair of ints, optional): torus size to use instead of the smallest
            safe one from :func:`torus_size`; it must itself be safe. Default: ``None``.

    Returns:
        float: an upper bound on ``‖T‖₂`` (``0.0`` when ``T`` is identically zero).

    Raises:
        ValueError: if ``torus_hw`` is given and the compression argument fails for it.
    """
    _, prob = _setup(kernel, in_hw, stride, padding, dilation)
    if torus_hw is None:
        size = (_min_torus(prob.axes[0]), _min_torus(prob.axes[1]))
    else:
        size = _pair("torus_hw", torus_hw, 1)
        for name, axis, n in zip(("height", "width"), prob.axes, size, strict=True):
            if axis.active.numel() and not bool(_torus_ok(axis, torch.tensor([n]))[0]):
                raise ValueError(
                    f"torus {name} {n} is not safe for this conv: a window would wrap onto "
                    f"image pixels or two outputs would share a position (smallest safe: "
                    f"{_min_torus(axis)})"
                )
    return _torus(prob, size)


def conv_norm_bound(
    kernel: torch.Tensor,
    in_hw: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> float:
    r"""Certified upper bound on the ℓ2 operator norm of a 2-D convolution.

    The minimum of :func:`conv_norm_torus` (on the smallest safe torus) and
    :func:`conv_norm_triangle`; both are valid upper bounds including float64 rounding.  For a
    dense layer (``kh = kw = 1``, ``in_hw = (1, 1)``) it is the matrix spectral norm times
    ``1 + 1e-10``.

    Args:
        kernel (torch.Tensor): real kernel of shape ``(c_out, c_in, kh, kw)``, all finite.
        in_hw (int or pair of ints): input height and width.
        stride (int or pair of ints): stride. Default: 1.
        padding (int or pair of ints): zero padding. Default: 0.
        dilation (int or pair of ints): dilation. Default: 1.

    Returns:
        float: an upper bound on ``‖T‖₂`` (``0.0`` when ``T`` is identically zero).

    Raises:
        TypeError: if the kernel is not a real floating tensor or an argument is not an int or
            a pair of ints.
        ValueError: if the kernel is not 4-D, empty or not finite, an argument is out of range,
            or the conv output would be empty.
    """
    _, prob = _setup(kernel, in_hw, stride, padding, dilation)
    if not prob.pos:
        return 0.0
    torus = _torus(prob, (_min_torus(prob.axes[0]), _min_torus(prob.axes[1])))
    # Power steps give lower estimates of each ‖K_t‖; if even those sum past the torus bound,
    # the (costlier) certified triangle bound cannot win.
    taps = prob.taps
    v = torch.ones(taps.shape[0], taps.shape[2], 1, dtype=torch.float64)
    low = 0.0
    for _ in range(8):
        w = taps @ v
        v = taps.mT @ w
        low = float(torch.linalg.vector_norm(w, dim=(1, 2)).sum())
        v = v / torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True).clamp(min=1e-300)
    if math.ldexp(low, prob.scale_exp) * (1.0 - 1e-9) >= torus:
        return torus
    return min(torus, _triangle(prob))


def conv_norm_power(
    kernel: torch.Tensor,
    in_hw: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    iterations: int = 200,
    seed: int = 0,
) -> float:
    r"""Power-iteration *lower* estimate of the conv's ℓ2 operator norm, in float64.

    Iterates ``x ← TᵀT x`` on the real :func:`torch.nn.functional.conv2d` operator, with ``Tᵀ``
    given by :func:`torch.nn.functional.conv_transpose2d` (``output_padding`` restores the
    input shape exactly), and returns the largest ``‖T x‖ / ‖x‖`` seen.  Every such ratio is
    below the true norm up to the float64 error of one convolution.

    Args:
        kernel (torch.Tensor): real kernel of shape ``(c_out, c_in, kh, kw)``, all finite.
        in_hw (int or pair of ints): input height and width.
        stride (int or pair of ints): stride. Default: 1.
        padding (int or pair of ints): zero padding. Default: 0.
        dilation (int or pair of ints): dilation. Default: 1.
        iterations (int): number of ``TᵀT`` applications, ``>= 1``. Default: 200.
        seed (int): seed of the random start vector. Default: 0.

    Returns:
        float: a lower estimate of ``‖T‖₂``.
    """
    k = _check_kernel(kernel)
    hw = _pair("in_hw", in_hw, 1)
    s = _pair("stride", stride, 1)
    p = _pair("padding", padding, 0)
    d = _pair("dilation", dilation, 1)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    out_hw = conv_output_shape(hw, k.shape[2:], s, p, d)
    # conv_transpose2d maps back to (o - 1)s - 2p + d(k - 1) + 1 + output_padding rows.
    extra = tuple(
        hw[a] - ((out_hw[a] - 1) * s[a] - 2 * p[a] + d[a] * (k.shape[2 + a] - 1) + 1)
        for a in range(2)
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, k.shape[1], *hw, dtype=torch.float64, generator=gen)
    best = 0.0
    with torch.no_grad():
        for _ in range(iterations):
            nx = torch.linalg.vector_norm(x)
            if float(nx) == 0.0:
                break
            x = x / nx
            y = F.conv2d(x, k, None, s, p, d)
            best = max(best, float(torch.linalg.vector_norm(y)))
            x = F.conv_transpose2d(y, k, None, s, p, extra, 1, d)
    return best
