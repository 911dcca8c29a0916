"""Shared fixtures: a seeded numpy ``rng`` and torch generator; one torch thread for the test run."""

import numpy as np
import pytest
import torch

# The networks in the tests are small: torch's intra-op threads cost more than they save, and on a
# shared 2-core machine two threads per process made single tests 40 times slower. The library's
# own defaults are left alone; only the test process is pinned.
torch.set_num_threads(1)


@pytest.fixture
def rng():
    """A seeded numpy Generator, so every test is reproducible."""
    return np.random.default_rng(20261122)


@pytest.fixture
def torch_gen():
    """A seeded torch Generator."""
    return torch.Generator().manual_seed(20261122)
