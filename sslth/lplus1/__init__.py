"""The l+1-depth construction (Burkholz 2022, with fixed-size subset sums): a random network with
one layer more than the target, holding ρ copies of every target neuron (docs/design.md, "The
l+1 construction"). Reached through ``sslth.prune(..., construction="l+1")``.

- :mod:`sslth.lplus1.layout`: the sizes, the random modules, the masked network;
- :mod:`sslth.lplus1.solve`: the subset-sum instances and their picks;
- :mod:`sslth.lplus1.plan`: tolerances, ρ and k per layer;
- :mod:`sslth.lplus1.certify`: the copy recursion and the rounding term;
- :mod:`sslth.lplus1.search`: the rounds of the search;
- :mod:`sslth.lplus1.preview`: ``sslth.plan``'s rows for l+1;
- :mod:`sslth.lplus1.ticket`: the ticket, its report, save and load.
"""
