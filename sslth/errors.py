"""The errors sslth raises on purpose, each naming what is wrong.

Everything here derives from :class:`SslthError`, so a caller (the command line among them) can
catch exactly the failures sslth reports and let any other exception surface as the bug it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sslth.ticket import Ticket


class SslthError(Exception):
    """Base class of the errors sslth raises deliberately."""


class ConfigError(SslthError, ValueError):
    """An option, a config file or a command-line flag is invalid; the message names it."""


class TargetError(SslthError, ValueError):
    """A target network sslth cannot take (bad values, shapes that do not chain, …); the
    message names the layer."""


class UnsupportedTargetError(TargetError, TypeError):
    """A target whose structure sslth does not support (a module kind, a custom forward, a
    hook); the message names the module and the reason."""


class NotATicketError(SslthError, ValueError):
    """A network or file that is not a ticket's structure, or a ticket file that fails its
    checks; the message names the module, field or file."""


class InputError(SslthError, TypeError):
    """An input a ticket module cannot take as it is (not a float tensor, or a float64 value a
    float32 module cannot represent); the message says what to do."""


class NetworkTooLarge(SslthError, MemoryError):
    """A ticket's dense network would not fit in the memory available; the message says how
    much it needs and what to use instead."""


class TicketNotFound(SslthError, RuntimeError):
    """No ticket met ε and the density within the limits.

    Attributes:
        best: the closest ticket found (None when no ticket could be built at all), with its
            report recomputed from its masks.
        best_certified_error: ``best.report.certified_error``, or None.
    """

    def __init__(self, message: str, best: Ticket | None = None) -> None:
        super().__init__(message)
        self.best = best
        self.best_certified_error = (
            None if best is None or best.report is None else best.report.certified_error
        )
