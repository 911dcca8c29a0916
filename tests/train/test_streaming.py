"""FieldStream: every point once per epoch, bounded reads, seeded, disjoint shards; train_streaming."""

import numpy as np
import pytest
import torch

from lipsurrogate.data.dataset import save_dataset
from lipsurrogate.data.generators import heat2d
from lipsurrogate.exceptions import ConfigurationError, DataSchemaError
from lipsurrogate.nn import LipschitzMLP
from lipsurrogate.train.streaming import FieldStream, StreamSampler, train_streaming

N = 20  # 20 samples x 3 frames x 8 x 8 = 3840 points; buffers below are a fraction of it


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    ds = heat2d(grid=8, frames=3, t_end=0.1, samples=N, seed=0, backend="numpy", diffusivity_range=(0.05, 0.1),
                progress=False)
    path = save_dataset(ds, tmp_path_factory.mktemp("stream") / "family.nc")
    return ds, path


def _table(ds):
    """Every (x, y, t, kappa, u) row of the family, in a canonical order."""
    S, T, X, Y = np.meshgrid(np.arange(N), ds.t.values, ds.x.values, ds.y.values, indexing="ij")
    rows = np.stack([X.ravel(), Y.ravel(), T.ravel(), ds.diffusivity.values[S.ravel()], ds.u.values.ravel()], 1)
    return _sorted(rows)


def _sorted(rows):
    return rows[np.lexsort(rows.T[::-1])]


def _rows(batches):
    return np.concatenate([np.concatenate([x.numpy(), y.numpy()], 1) for x, y in batches])


def test_one_epoch_yields_every_point_once_with_bounded_reads(family):
    ds, path = family
    stream = FieldStream(path, batch_size=100, buffer_points=400, read_samples=1, seed=1, dtype=torch.float64)
    assert stream.input_names == ("x", "y", "t", "diffusivity")
    batches = list(stream)
    assert all(len(x) == 100 for x, _ in batches[:-1]) and len(batches) == len(stream) == 39
    np.testing.assert_array_equal(_sorted(_rows(batches)), _table(ds))
    assert stream.reads_ == N and stream.max_read_samples_ == 1
    assert stream.max_points_held_ <= 400 + stream.points_per_sample  # buffer + one block, not the file
    assert stream.max_points_held_ < N * stream.points_per_sample
    lo, hi = stream.input_ranges()
    np.testing.assert_allclose(lo[3], ds.diffusivity.min()) and np.testing.assert_allclose(hi[2], 0.1)


def test_seeded_and_shuffled(family):
    _, path = family
    first = [y for _, y in FieldStream(path, batch_size=64, buffer_points=500, read_samples=2, seed=7)]
    again = [y for _, y in FieldStream(path, batch_size=64, buffer_points=500, read_samples=2, seed=7)]
    other = [y for _, y in FieldStream(path, batch_size=64, buffer_points=500, read_samples=2, seed=8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(torch.cat(first), torch.cat(other))


def test_shards_are_disjoint_and_cover_the_file(family):
    ds, path = family
    shards = [_rows(FieldStream(path, batch_size=50, buffer_points=300, read_samples=3, seed=2, rank=r, world_size=2,
                                dtype=torch.float64)) for r in range(2)]
    np.testing.assert_array_equal(_sorted(np.concatenate(shards)), _table(ds))
    a = {tuple(r) for r in shards[0]}
    assert not a & {tuple(r) for r in shards[1]}


def test_endless_stream_has_fixed_batches_and_trains(family, tmp_path):
    _, path = family
    stream = FieldStream(path, batch_size=128, buffer_points=1000, read_samples=2, seed=0, epochs=None)
    it = iter(stream)
    sizes = [len(next(it)[0]) for _ in range(3 * 3840 // 128)]  # three epochs
    assert set(sizes) == {128}
    # a diffusivity sweep (one initial condition): u is a function of (x, y, t, kappa), so it can be fitted
    sweep = heat2d(grid=8, frames=3, t_end=0.1, samples=6, seed=0, backend="numpy", diffusivity_range=(0.05, 0.1),
                   same_initial_condition=True, n_modes=1, k_max=1, progress=False)
    stream = FieldStream(save_dataset(sweep, tmp_path / "sweep.nc"), batch_size=128, buffer_points=1000, seed=0,
                         epochs=None)
    lo, hi = stream.input_ranges()
    model = LipschitzMLP(4, 1, [32, 32], lipschitz=8.0, input_offset=(lo + hi) / 2, input_scale=2 / (hi - lo),
                         seed=0)
    history = train_streaming(model, stream, steps=120, lr=1e-2, seed=0, progress=False, log_every=1)
    assert np.mean(history.losses[-10:]) < 0.2 * np.mean(history.losses[:10])
    loader = torch.utils.data.DataLoader(FieldStream(path, batch_size=32, seed=0), batch_size=None)
    assert next(iter(loader))[0].shape == (32, 4)


def test_single_trajectory_streams_by_frame(tmp_path):
    ds = heat2d(grid=8, frames=5, t_end=0.1, backend="numpy", progress=False)
    stream = FieldStream(save_dataset(ds, tmp_path / "one.nc"), batch_size=40, buffer_points=100, seed=0,
                         dtype=torch.float64)
    assert stream.input_names == ("x", "y", "t") and stream.block_dim == "t" and stream.read_samples == 1
    T, X, Y = np.meshgrid(ds.t.values, ds.x.values, ds.y.values, indexing="ij")
    expected = _sorted(np.stack([X.ravel(), Y.ravel(), T.ravel(), ds.u.values.ravel()], 1))
    np.testing.assert_array_equal(_sorted(_rows(stream)), expected)


def test_errors(family, tmp_path):
    _, path = family
    with pytest.raises(DataSchemaError, match="no variable 'v'"):
        FieldStream(path, "v")
    with pytest.raises(DataSchemaError, match="Input 'z'"):
        FieldStream(path, inputs=("x", "z"))
    with pytest.raises(DataSchemaError, match="does not exist"):
        FieldStream(tmp_path / "missing.nc")
    with pytest.raises(ConfigurationError, match="fewer than the 2 shards"):
        next(iter(FieldStream(path, read_samples=N, rank=1, world_size=2)))
    sampler = StreamSampler(FieldStream(path, batch_size=4000))
    sampler()
    with pytest.raises(ConfigurationError, match="epochs=None"):
        sampler()
