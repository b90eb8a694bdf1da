"""sslth: sparse strong lottery tickets with a certified error and a chosen density."""

__version__ = "0.1.0"

from sslth.certify import certify, empirical_error  # noqa: E402
from sslth.construct import construct  # noqa: E402
from sslth.pruning import TicketNotFound, prune  # noqa: E402
from sslth.report import Report  # noqa: E402
from sslth.target import as_target  # noqa: E402
from sslth.ticket import Ticket, load  # noqa: E402

__all__ = [
    "Report",
    "Ticket",
    "TicketNotFound",
    "__version__",
    "as_target",
    "certify",
    "construct",
    "empirical_error",
    "load",
    "prune",
]
