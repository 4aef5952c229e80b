"""Running siamdecon's jobs on a Dask cluster (``dask.distributed``).

``--workers N`` starts a :class:`distributed.LocalCluster` of N worker processes (one thread each)
on this machine; ``--scheduler tcp://HOST:PORT`` connects to a running Dask scheduler instead,
for example one started by ``dask-jobqueue`` on SLURM or ``dask-cuda`` with one worker per GPU.
Dask does the scheduling, the data transfer and the retries (a job whose worker dies is run again
on another); siamdecon only submits its jobs: whole files, or the channel/time-point models and
the blocks of one file. The workers must see the same file system as the client (inputs, PSFs and
outputs are passed by path) and have siamdecon installed. Needs the ``cluster`` extra.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import ConfigError

__all__ = ["DaskExecutor", "open_executor"]


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "--workers and --scheduler need the cluster extra: pip install 'siamdecon[cluster]' (dask.distributed)"
        ) from None
    return distributed


class DaskExecutor:
    """Submits siamdecon's jobs to a ``distributed.Client``.

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    threads : int or None
        Torch threads per job (a local cluster shares this machine's cores among its workers).
    """

    def __init__(self, client: Any, threads: int | None = None) -> None:
        self.client = client
        self.threads = threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        # pure=False: every call is its own job (two identical calls must both run, e.g. a retry after a kill).
        return self.client.submit(fn, *args, pure=False)

    def put(self, value: Any) -> Any:
        """Send a large argument (an image) to the cluster once, so that jobs carry only its key."""
        return self.client.scatter(value, hash=False)

    def as_completed(self, futures: Sequence[Any]) -> Iterator[Any]:
        distributed = _require_distributed()
        yield from distributed.as_completed(futures)


@contextlib.contextmanager
def open_executor(
    workers: int | None = None,
    scheduler: str | None = None,
    log: Callable[[str], None] | None = None,
    *,
    timeout: float = 30.0,
) -> Iterator[Any]:
    """Yield where jobs run: this process (neither option), a local cluster, or an existing scheduler.

    Parameters
    ----------
    workers : int, optional
        Start a ``LocalCluster`` with this many worker processes (closed on exit).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:PORT``).
    log : callable, optional
        Receives a line saying where the jobs run.
    timeout : float
        Seconds to wait for the scheduler.
    """
    from .batch import Serial

    if workers is not None and scheduler is not None:
        raise ConfigError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    if workers is None and scheduler is None:
        yield Serial()
        return
    distributed = _require_distributed()
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        cores = os.cpu_count() or 1
        threads = max(1, cores // workers)
        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                memory_limit=0,
                silence_logs=40,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            if log:
                log(f"running on a local Dask cluster: {workers} worker process(es), {threads} torch thread(s) each")
            yield DaskExecutor(client, threads)
        return
    try:
        client = distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
    try:
        n = len(client.scheduler_info().get("workers", {}))
        if log:
            log(f"running on the Dask scheduler at {scheduler} ({n} worker(s) now)")
        yield DaskExecutor(client, None)
    finally:
        client.close()
