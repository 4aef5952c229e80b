"""The file container of saved models and priors.

A siamdecon model or prior is one ``torch.save`` file: a dict with a ``format`` name, a
``format_version`` and the payload (weights, config and PSF as plain types and tensors). Reading
unpickles only tensors and plain types, and refuses files of another kind or a newer version with
a message naming the file. Image files are :mod:`siamdecon.io`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .io import atomic_path

__all__ = ["read_torch_file", "write_torch_file"]


def read_torch_file(path: str | os.PathLike[str], fmt: str, version: int, what: str, map_location: str = "cpu") -> dict:
    """Load a siamdecon file saved with ``torch.save`` (a dict with ``format``/``format_version``).

    Only tensors and plain types are unpickled (``weights_only``). Raises :class:`InputError`
    naming the file when it is missing, unreadable, of another kind (``what``: "model", "prior")
    or written by a newer format version.
    """
    import torch

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} file '{p}' does not exist")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise InputError(f"'{p}' is not a readable siamdecon {what} file: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise InputError(f"'{p}' is not a siamdecon {what} file (no '{fmt}' header)")
    if state.get("format_version", 0) > version:
        raise InputError(
            f"{what} '{p}' was written by a newer siamdecon (format {state['format_version']});"
            " upgrade siamdecon to read it"
        )
    return state


def write_torch_file(path: str | os.PathLike[str], fmt: str, version: int, payload: dict) -> Path:
    """Save ``payload`` with ``torch.save`` atomically, under a ``format``/``format_version`` header
    that :func:`read_torch_file` checks."""
    import torch

    from ._version import __version__

    p = Path(path)
    with atomic_path(p) as tmp:
        torch.save({"format": fmt, "format_version": version, "siamdecon_version": __version__, **payload}, tmp)
    return p
