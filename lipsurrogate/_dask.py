"""One way to get a Dask client: a local cluster, a scheduler address, or the user's own client.

Used by the data generation (:func:`lipsurrogate.data.distributed.generate_family`) and the
certificate (:func:`lipsurrogate.bounds.certify` with ``scheduler=``). Dask is the optional
``scale`` extra.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from ._threads import available_cores
from ._validation import positive_int
from .exceptions import ConfigurationError

__all__ = ["import_dask", "dask_client"]


def import_dask():
    """``(Client, LocalCluster, as_completed)`` of ``dask.distributed``, or an ImportError naming the extra."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise ImportError(
            "This needs Dask's distributed scheduler, an optional dependency. Install it with "
            "pip install 'lipsurrogate[scale]' (or pip install 'dask[distributed]'). "
            f"Import failed with: {err}"
        ) from None
    return Client, LocalCluster, as_completed


def check_scheduler(scheduler: Any) -> None:
    """Refuse anything but None, ``"local"``, an address string or a ``dask.distributed.Client``."""
    Client, _, _ = import_dask()
    if not (scheduler is None or isinstance(scheduler, (str, Client))):
        raise ConfigurationError(
            f"'scheduler' must be None, 'local', a Dask scheduler address or a dask.distributed.Client. "
            f"Got {type(scheduler).__name__} instead."
        )


@contextlib.contextmanager
def dask_client(scheduler: Any = None, n_workers: int | None = None) -> Iterator[tuple[Any, Any]]:
    """``(client, as_completed)`` for the duration of the block.

    ``None`` or ``"local"``: a :class:`~dask.distributed.LocalCluster` of ``n_workers`` worker
    processes with one thread each (default ``min(4, available cores)``), closed afterwards; any
    other string: the address of a running scheduler (the connection is closed afterwards); a
    ``Client``: used as it is and left open.
    """
    Client, LocalCluster, as_completed = import_dask()
    check_scheduler(scheduler)
    if n_workers is not None:
        positive_int("n_workers", n_workers)
    closers: list = []
    try:
        if scheduler is None or scheduler == "local":
            cluster = LocalCluster(n_workers=n_workers or min(4, available_cores()), threads_per_worker=1,
                                   processes=True, dashboard_address=":0")  # a free port: never collide
            closers.append(cluster)
            client = Client(cluster)
            closers.insert(0, client)
        elif isinstance(scheduler, str):
            client = Client(scheduler)
            closers.append(client)
        else:
            client = scheduler
        yield client, as_completed
    finally:
        for closer in closers:
            closer.close()
