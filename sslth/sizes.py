"""Sizes checked before anything is allocated: a target, a config's architecture or a request
that sslth cannot hold is refused in one line, computed from its shapes alone.

Two limits, both about the smallest ticket sslth could build (n = 1 neuron pair per input):

- its random pair for a layer has ``2 (d_in + bias)`` hidden neurons, so
  :func:`pair_params` (n = 1) weights: beyond ``max_random_params`` no search can draw it
  (``prune`` checks it before anything else, a config before building its target);
- one example's values in any of its layers (the input, each hidden layer of
  ``2 (c_in + bias)`` channels at the input's positions, each output) must fit in
  :data:`MAX_EXAMPLE_BYTES` as float64: sslth evaluates examples in batches of tens of MiB, and
  an example that alone takes more cannot be certified in memory (the largest images sslth is
  used on take 10⁵–10⁶ values).
"""

from __future__ import annotations

import math

from sslth.errors import TargetError

MAX_EXAMPLE_BYTES = 2**31  # 2 GiB: one example of the smallest ticket network, in float64


def pair_params(d_in: int, d_out: int, taps: int, has_bias: bool, n: int) -> int:
    """Weights of the random pair that stands in for a layer with n neurons per input: U (dense,
    2n (d_in + bias) hidden neurons), its bias, and V (``PairSpec.dense_params`` for uniform
    blocks). Plain integers: nothing is allocated whatever the sizes."""
    hidden = 2 * n * (d_in + int(has_bias))
    return hidden * d_in + (hidden if has_bias else 0) + d_out * taps * hidden


def check_random_params(
    layers, max_params: int, construction: str = "2l", option: str = "max_random_params"
) -> None:
    """Refuse when some layer's smallest random part is over ``max_params``: for the 2l
    construction its n = 1 pair (the search never tries a smaller n); for the l+1 one, the
    layer's own d_in · d_out weights (its random module has at least d_out × d_in, ρ ≥ 1).

    Args:
        layers: (name, d_in, d_out, taps, has_bias) per affine layer.
        max_params: the largest random part allowed.
        construction: "2l" or "l+1".
        option: how the message names that limit.

    Raises:
        TargetError: naming the layer and both counts.
    """
    for name, d_in, d_out, taps, has_bias in layers:
        if construction == "l+1":
            needed, what = d_in * d_out * taps, "its l+1 random module has at least"
        else:
            needed, what = pair_params(d_in, d_out, taps, has_bias, 1), "its n = 1 pair has"
        if needed > max_params:
            raise TargetError(
                f"{name} ({d_in} -> {d_out}): {what} {needed:,} weights, over {option} = "
                f"{max_params:,}: too large to hold"
            )


def check_example_size(target) -> None:
    """Refuse a target one example of whose smallest ticket network takes more than
    :data:`MAX_EXAMPLE_BYTES` in float64 in some layer.

    Raises:
        TargetError: naming the layer and the size.
    """
    check_example_values(target.input_shape, target.layers)


def check_example_values(input_shape, layers, first: int = 1) -> None:
    """:func:`check_example_size` for ``layers`` (numbered from ``first``) reading examples of
    ``input_shape``: as_target calls it on each layer as it is read, before the layer is run on
    probe inputs of that shape (which an oversized example would exhaust memory with).

    Raises:
        TargetError: naming the layer and the size.
    """
    largest, where = math.prod(input_shape), "the input"
    for index, layer in enumerate(layers, start=first):
        # named by pair: a config's messages rewrite "layer N" into its entry "layers[N]"
        hidden = 2 * (layer.d_in + int(layer.bias is not None)) * math.prod(layer.in_shape[1:])
        for values, name in (
            (hidden, f"the hidden layer of random pair {index}"),
            (math.prod(layer.out_shape), f"the output of random pair {index}"),
        ):
            if values > largest:
                largest, where = values, name
    if 8 * largest > MAX_EXAMPLE_BYTES:
        raise TargetError(
            f"one example takes {largest:,} values in {where} of the smallest ticket network "
            f"({8 * largest / 2**30:.3g} GiB in float64, over {MAX_EXAMPLE_BYTES / 2**30:g} "
            "GiB): the input shape or the widths are too large to certify"
        )


def layer_sizes(target) -> list[tuple[str, int, int, int, bool]]:
    """(name, d_in, d_out, taps, has_bias) of each layer of a target, for
    :func:`check_random_params`."""
    return [
        (f"layer {i}", layer.d_in, layer.d_out, layer.kind.taps, layer.bias is not None)
        for i, layer in enumerate(target.layers, start=1)
    ]
