"""Process-level settings that make CPU training faster: keep freed memory for reuse.

A training step allocates and frees the same tensors of several megabytes every step. glibc's
``malloc`` returns such blocks to the operating system (``munmap``, or trimming the heap), so the
next step takes them back page by page: measured 13,000-16,000 page faults per step of the
``fast`` 2D fine-tuning (batch 16 of 64^2), 5-7 % of its time. Raising the thresholds below
keeps those blocks in the process and removes the faults (``benchmarks/throughput.py --malloc``).

The cost is memory held after a peak: up to :data:`TRIM_THRESHOLD` bytes of freed heap stay
mapped instead of going back to the system. It changes the whole process, so the library does it
only when asked: the ``siamdecon`` command asks (:func:`allow_keep_freed_memory`), a notebook or
script calls that function itself or sets ``SIAMDECON_MALLOC=keep``. ``SIAMDECON_MALLOC=system``
in the environment leaves ``malloc`` alone even then; explicit ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` settings and non-glibc systems are left alone too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

import torch

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "allow_keep_freed_memory", "keep_freed_memory"]

#: Blocks up to this size come from the heap instead of their own ``mmap`` (glibc's maximum).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap is returned to the system only beyond this size.
TRIM_THRESHOLD = 1024 * 1024 * 1024

_M_TRIM_THRESHOLD = -1  # from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3

_applied: bool | None = None
_allowed: bool = False


def allow_keep_freed_memory(allowed: bool = True) -> None:
    """Let (or stop letting) CPU training and prediction keep freed memory for reuse in this process.

    Off in the library unless this is called or ``SIAMDECON_MALLOC=keep`` is set; the ``siamdecon``
    command turns it on. Once applied it stays for the process's life (glibc has no undo).
    """
    global _allowed
    _allowed = bool(allowed)


def keep_freed_memory(device: str | torch.device = "cpu") -> bool:
    """Ask glibc's ``malloc`` to keep freed blocks for reuse (once per process), for CPU work.

    Called by :func:`siamdecon.training.train`, :func:`siamdecon.prior.pretrain` and tiled
    inference with the device they run on. It changes the whole process's allocator, which is why
    it only acts when allowed (:func:`allow_keep_freed_memory`, or ``SIAMDECON_MALLOC=keep``) and
    can be switched off with ``SIAMDECON_MALLOC=system``.

    Parameters
    ----------
    device : str or torch.device
        Where the caller computes; other devices than the CPU leave ``malloc`` alone.

    Returns
    -------
    bool
        True if the thresholds are (now) set, False if left alone (not allowed, another device, opted out,
        explicit ``MALLOC_*`` environment settings, not glibc, or ``mallopt`` refused).
    """
    global _applied
    if torch.device(device).type != "cpu":
        return False
    if _applied is not None:
        return _applied
    if not (_allowed or os.environ.get("SIAMDECON_MALLOC", "").lower() == "keep"):
        return False  # not asked: left alone, and a later request can still apply it
    _applied = False
    if os.environ.get("SIAMDECON_MALLOC", "").lower() == "system":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting the mmap threshold also turns off glibc's dynamic
    # threshold, which would otherwise settle at the size of the last freed block.
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
