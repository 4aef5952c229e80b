"""A benchmark folder: ``results.json`` saved after every entry, and the outputs kept for figures.

Both suites (the paper's and the microscopy one) write through :class:`ResultStore`, so that an
interrupted run resumes where it stopped and a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..io import atomic_path

__all__ = ["ResultStore", "load_results", "machine_info"]


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_results(out_dir: str | Path) -> dict[str, Any]:
    """Read ``results.json`` of a benchmark folder."""
    p = Path(out_dir) / "results.json"
    if not p.exists():
        raise ConfigError(f"no results.json in '{out_dir}'")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"'{p}' is not valid JSON: {exc}") from exc


class ResultStore:
    """The ``results.json`` of one benchmark folder.

    Parameters
    ----------
    out_dir : str or Path
        The folder (created if needed).
    settings : dict
        What the results depend on. A folder made with other settings is refused (use another
        folder, or the same settings to resume).
    on_entry : callable, optional
        Called with ``(key, entry)`` after each recorded entry.
    """

    def __init__(
        self,
        out_dir: str | Path,
        settings: dict[str, Any],
        on_entry: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "results.json"
        self.on_entry = on_entry
        settings = json.loads(json.dumps(settings))  # tuples to lists, as they are stored
        if self.path.exists():
            self.results = load_results(self.out)
            if self.results.get("settings") != settings:
                raise ConfigError(
                    f"'{self.path}' was made with other settings ({self.results.get('settings')}); use another"
                    f" output folder, or the same settings ({settings}) to resume"
                )
        else:
            self.results = {"settings": settings, "machine": machine_info(), "entries": {}}

    @property
    def entries(self) -> dict[str, Any]:
        """``key -> entry``, in the order they were recorded."""
        return self.results["entries"]

    def save(self) -> None:
        """Write ``results.json`` atomically."""
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.results, indent=1, default=float))

    def record(self, key: str, entry: dict[str, Any]) -> None:
        """Store one entry and save at once."""
        self.entries[key] = entry
        self.save()
        if self.on_entry is not None:
            self.on_entry(key, entry)

    def discard(self, keep: Callable[[str], bool]) -> list[str]:
        """Remove the entries whose key ``keep`` rejects; returns the removed keys."""
        gone = [k for k in self.entries if not keep(k)]
        for k in gone:
            del self.entries[k]
        if gone:
            self.save()
        return gone

    def output_path(self, case_key: str, name: str) -> Path:
        """Where the array ``name`` of case ``case_key`` (``suite/name``) is kept."""
        return self.out / "outputs" / Path(*case_key.split("/")) / f"{name}.npy"

    def keep_array(self, case_key: str, name: str, array: np.ndarray) -> None:
        """Save an array for the figures (float32, atomically)."""
        path = self.output_path(case_key, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(array, dtype=np.float32))
