"""Shared fixtures: a seeded numpy ``rng`` and torch generator."""

import numpy as np
import pytest
import torch


@pytest.fixture
def rng():
    """A seeded numpy Generator, so every test is reproducible."""
    return np.random.default_rng(20261122)


@pytest.fixture
def torch_gen():
    """A seeded torch Generator."""
    return torch.Generator().manual_seed(20261122)
