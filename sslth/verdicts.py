"""The two verdicts on a ticket, each defined once, and the density they judge.

Every place that decides whether a ticket (or a candidate of the search) is good enough asks
these: the search's rounds and refine, ``prune``'s final check, the report and ``sslth verify``.
Ties meet: a certified error equal to ε, or a density equal to the limit, is within the request.
"""

from __future__ import annotations


def meets_epsilon(certified_error: float, epsilon: float) -> bool:
    """Whether a certified error is within ε.

    Args:
        certified_error: the certificate's bound (exact part plus rounding).
        epsilon: the requested ε.

    Returns:
        ``certified_error <= epsilon``.
    """
    return certified_error <= epsilon


def meets_density(density: float, limit: float) -> bool:
    """Whether a measured density is within the requested limit.

    Args:
        density: kept weights over all weights of the random network (:func:`measured_density`).
        limit: the requested density.

    Returns:
        ``density <= limit``.
    """
    return density <= limit


def measured_density(kept: int, params: int) -> float:
    """The measured density: weights kept over all weights of the dense random network (the
    paper's count, U with its bias and V).

    Args:
        kept: weights the masks keep.
        params: weights of the dense random network (``PairSpec.dense_params``, summed).

    Returns:
        ``kept / params``.
    """
    return kept / params
