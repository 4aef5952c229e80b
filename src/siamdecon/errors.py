"""Exceptions raised for bad user input.

All of them derive from :class:`SiamdeconError` (itself a :class:`ValueError`) so that
the command line can report them as one clean message instead of a traceback.
"""

from __future__ import annotations


class SiamdeconError(ValueError):
    """Base class of the errors that describe a problem with the user's input."""


class InputError(SiamdeconError):
    """An image, PSF or model file cannot be used as given."""


class ConfigError(SiamdeconError):
    """A configuration value or file is invalid."""
