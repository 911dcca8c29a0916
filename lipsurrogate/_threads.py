"""Temporarily limiting torch's intra-op threads (small networks on a few cores run faster on one)."""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count after it.

    ``None`` leaves the count alone. For networks of a few thousand weights the per-op
    parallelism costs more than it saves, and two threads on a shared 2-core machine can make a
    training step 10-40 times slower than one.
    """
    if n is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
