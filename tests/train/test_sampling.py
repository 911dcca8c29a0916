"""Balanced mini-batches have exactly the promised composition, reproducibly."""

import numpy as np
import pytest
import torch

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.train import train
from lipsurrogate.train.sampling import SCHEMES, BalancedSampler


@pytest.fixture
def events(rng):
    """Imbalanced events: signal at 3 masses (900 / 90 / 9), background from 2 processes (2000 / 20)."""
    label = np.r_[np.ones(999, int), np.zeros(2020, int)]
    mass = np.r_[np.full(900, 500.0), np.full(90, 1000.0), np.full(9, 1500.0), rng.choice([500.0, 1000.0], 2020)]
    process = np.r_[np.full(999, -1), np.zeros(2000, int), np.ones(20, int)]
    return label, mass, process


@pytest.mark.parametrize("batch_size", [64, 61])
def test_full_scheme_composition(events, torch_gen, batch_size):
    label, mass, process = events
    sampler = BalancedSampler(label, "full", batch_size, mass=mass, process=process)
    n_sig, n_bkg = (batch_size + 1) // 2, batch_size // 2
    low_s, low_b = n_sig // 3, n_bkg // 2
    for _ in range(50):
        idx = sampler(torch_gen).numpy()
        assert idx.size == batch_size
        assert label[idx].sum() == n_sig
        sig, bkg = idx[label[idx] == 1], idx[label[idx] == 0]
        per_mass = [np.sum(mass[sig] == m) for m in (500.0, 1000.0, 1500.0)]
        per_proc = [np.sum(process[bkg] == p) for p in (0, 1)]
        assert sum(per_mass) == n_sig and min(per_mass) >= low_s and max(per_mass) <= low_s + (n_sig % 3 > 0)
        assert sum(per_proc) == n_bkg and min(per_proc) >= low_b and max(per_proc) <= low_b + (n_bkg % 2 > 0)
    comp = sampler.composition()
    assert comp["signal"] == {500.0: (low_s, low_s + (n_sig % 3 > 0)), 1000.0: (low_s, low_s + (n_sig % 3 > 0)),
                              1500.0: (low_s, low_s + (n_sig % 3 > 0))}


def test_remainders_are_not_biased(events, torch_gen):
    label, mass, process = events
    sampler = BalancedSampler(label, "signal", 10, mass=mass)  # 5 signal over 3 masses: 1 or 2 each
    counts = np.zeros(3)
    for _ in range(600):
        idx = sampler(torch_gen).numpy()
        sig = idx[label[idx] == 1]
        counts += [np.sum(mass[sig] == m) for m in (500.0, 1000.0, 1500.0)]
    assert np.allclose(counts / counts.sum(), 1 / 3, atol=0.03)


def test_class_signal_background_schemes(events, torch_gen):
    label, mass, process = events
    B = 400
    # class: half and half, uniform inside each class (so the rare groups stay rare)
    idx = torch.cat([BalancedSampler(label, "class", B)(torch_gen) for _ in range(20)]).numpy()
    assert label[idx].mean() == 0.5
    assert np.mean(mass[idx[label[idx] == 1]] == 500.0) == pytest.approx(900 / 999, abs=0.03)
    assert np.mean(process[idx[label[idx] == 0]] == 1) == pytest.approx(20 / 2020, abs=0.01)
    # signal: masses equal, background uniform
    idx = BalancedSampler(label, "signal", B, mass=mass)(torch_gen).numpy()
    sig = idx[label[idx] == 1]
    assert [np.sum(mass[sig] == m) for m in (500.0, 1000.0, 1500.0)] in ([67, 67, 66], [67, 66, 67], [66, 67, 67])
    # background: processes equal, signal uniform
    idx = BalancedSampler(label, "background", B, process=process)(torch_gen).numpy()
    bkg = idx[label[idx] == 0]
    assert [np.sum(process[bkg] == p) for p in (0, 1)] == [100, 100]
    # none: plain uniform draws over all events
    idx = BalancedSampler(label, "none", B)(torch_gen).numpy()
    assert idx.size == B and idx.max() < label.size


def test_seeded_and_refusals(events):
    label, mass, process = events
    s = BalancedSampler(label, "full", 32, mass=mass, process=process)
    a = s(torch.Generator().manual_seed(5))
    b = s(torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    own = BalancedSampler(label, "full", 32, mass=mass, process=process, seed=7)
    first, second = own(), own()
    assert not torch.equal(first, second)  # its own generator advances
    assert torch.equal(first, BalancedSampler(label, "full", 32, mass=mass, process=process, seed=7)())
    with pytest.raises(ConfigurationError, match="'scheme' must be one of"):
        BalancedSampler(label, "mass")
    with pytest.raises(ConfigurationError, match="needs the per-event 'mass'"):
        BalancedSampler(label, "signal")
    with pytest.raises(ConfigurationError, match="needs the per-event 'process'"):
        BalancedSampler(label, "full", mass=mass)
    with pytest.raises(ConfigurationError, match="needs signal and background"):
        BalancedSampler(np.ones(10), "class")
    with pytest.raises(ConfigurationError, match="Expected 3019 values of 'mass'"):
        BalancedSampler(label, "signal", mass=mass[:10])
    assert SCHEMES == ("none", "class", "signal", "background", "full")


def test_train_accepts_a_sampler_and_keeps_its_default(events):
    label, mass, process = events
    x = torch.randn(label.size, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor(label, dtype=torch.float32)[:, None]
    seen = []
    sampler = BalancedSampler(label, "full", 16, mass=mass, process=process)

    def recording(generator):
        idx = sampler(generator)
        seen.append(idx)
        return idx

    model = torch.nn.Linear(2, 1)
    train(model, x, y, steps=5, batch_size=16, progress=False, sampler=recording)
    assert len(seen) == 5 and all(label[i.numpy()].sum() == 8 for i in seen)
    # without a sampler the loop is unchanged: same seed, same result as before the option existed
    m1, m2 = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    m2.load_state_dict(m1.state_dict())
    train(m1, x, y, steps=5, batch_size=16, progress=False, seed=3)
    train(m2, x, y, steps=5, batch_size=16, progress=False, seed=3,
          sampler=lambda gen: torch.randint(0, label.size, (16,), generator=gen))
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
