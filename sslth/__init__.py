"""sslth: sparse strong lottery tickets with a certified error and a chosen density."""

from sslth._version import __version__
from sslth.certificate import empirical_error  # noqa: E402
from sslth.construct import construct  # noqa: E402
from sslth.errors import (  # noqa: E402
    ConfigError,
    InputError,
    NetworkTooLarge,
    NotATicketError,
    SslthError,
    TargetError,
    TicketNotFound,
    UnsupportedTargetError,
)
from sslth.network import certify  # noqa: E402
from sslth.report import Report  # noqa: E402
from sslth.search import PruneOptions, prune  # noqa: E402
from sslth.search.preview import plan  # noqa: E402
from sslth.target import as_target  # noqa: E402
from sslth.ticket import Ticket, load  # noqa: E402

__all__ = [
    "ConfigError",
    "InputError",
    "NetworkTooLarge",
    "NotATicketError",
    "PruneOptions",
    "Report",
    "SslthError",
    "TargetError",
    "Ticket",
    "TicketNotFound",
    "UnsupportedTargetError",
    "__version__",
    "as_target",
    "certify",
    "construct",
    "empirical_error",
    "load",
    "plan",
    "prune",
]
