r"""Mini-batches of (points, values) streamed from a dataset file that need not fit in memory.

A field ``u`` with dimensions such as ``(sample, t, x, y)`` in a NetCDF-4/HDF5 file (written by
:func:`~lipsurrogate.data.save_dataset` or :func:`~lipsurrogate.data.distributed.generate_family`)
is read in *blocks* of ``read_samples`` consecutive samples (one HDF5 slice each). Every grid
value becomes one training point: the inputs are the coordinates of its cell (``x``, ``y``,
``t``) and per-sample variables such as ``diffusivity``, the target is the value of the field.

Shuffling uses a buffer: blocks are read in a seeded random order, appended to a buffer of at
most ``buffer_points`` points (plus one block), the buffer is permuted, and batches are taken
from it while half of it stays to mix with the next block. At most
``buffer_points + read_samples * points_per_sample`` points are held at any time, whatever the
size of the file. The shuffle is therefore *local* (a point meets the points of the blocks
read around it); with ``buffer_points`` at least the size of the file it is a full shuffle.

Sharding: with ``world_size > 1`` (data-parallel ranks) and/or DataLoader workers, the blocks of
every epoch are permuted with the same seed on every shard and dealt out in turn, so the shards
are disjoint and together cover the file once per epoch.

With :func:`lipsurrogate.train.train`: :class:`StreamSampler` plugs a stream into the loop's
``sampler=`` hook (each step copies the next streamed batch into a batch-sized buffer), so the
loop, its schedule, projection and progress bar are the same as for in-memory data;
:func:`train_streaming` does it in one call.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .._validation import positive_int
from ..exceptions import ConfigurationError, DataSchemaError
from .loop import TrainingHistory, train

__all__ = ["FieldStream", "StreamSampler", "train_streaming"]


class FieldStream(torch.utils.data.IterableDataset):
    """Shuffled mini-batches ``(points, values)`` read from a dataset file block by block.

    Parameters
    ----------
    path : path
        A NetCDF-4/HDF5 dataset file.
    variable : str
        The field to fit.
    inputs : sequence of str, optional
        Input columns, each a dimension of ``variable`` (its coordinate values) or a variable
        along the block dimension (e.g. ``"diffusivity"`` along ``sample``). Default: the
        spatial dimensions in file order, then ``"t"``, then ``"diffusivity"`` if the file has it
        (the ``(x, y, t, kappa)`` order of the heat2d tasks).
    batch_size : int
        Points per batch.
    buffer_points : int
        Size of the shuffle buffer (see the module docstring).
    read_samples : int, optional
        Samples per read; default as many as fill a quarter of the buffer (at least one).
    seed : int
        Seeds the block order and the buffer permutations (together with the epoch and shard).
    epochs : int or None
        Passes over the file; ``None`` streams forever (for a fixed number of training steps).
        Forever, batches always hold ``batch_size`` points (the buffer carries over epochs).
    rank, world_size : int
        This shard among ``world_size`` data-parallel ranks.
    drop_last : bool
        With finite ``epochs``: drop the last, smaller batch.
    dtype : torch.dtype

    Attributes
    ----------
    in_features : int
    input_names : tuple of str
    n_blocks : int
        Blocks in the file (reads per epoch over all shards).
    points_per_sample : int
    reads_, max_read_samples_, max_points_held_ : int
        Reads made, the largest read (samples) and the most points held at once, in this process
        (a check that memory stays bounded).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        variable: str = "u",
        inputs: Sequence[str] | None = None,
        *,
        batch_size: int = 256,
        buffer_points: int = 2**18,
        read_samples: int | None = None,
        seed: int = 0,
        epochs: int | None = 1,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        import h5netcdf

        self.path = Path(path)
        if not self.path.is_file():
            raise DataSchemaError(f"Dataset file {self.path} does not exist.")
        self.variable = variable
        self.batch_size = positive_int("batch_size", batch_size)
        self.buffer_points = positive_int("buffer_points", buffer_points)
        if epochs is not None:
            positive_int("epochs", epochs)
        self.epochs, self.seed, self.drop_last, self.dtype = epochs, int(seed), bool(drop_last), dtype
        world_size = positive_int("world_size", world_size)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigurationError(f"'rank' must be an integer in [0, {world_size}). Got {rank!r} instead.")
        self.rank, self.world_size = rank, world_size
        try:
            f = h5netcdf.File(self.path, "r")
        except OSError as err:
            raise DataSchemaError(f"{self.path} is not a readable NetCDF-4/HDF5 dataset: {err}") from None
        with f:
            if variable not in f.variables:
                raise DataSchemaError(f"{self.path} has no variable {variable!r}; it has {sorted(f.variables)}.")
            var = f.variables[variable]
            self.dims = tuple(var.dimensions)
            self.shape = tuple(var.shape)
            self.block_dim = "sample" if "sample" in self.dims else self.dims[0]
            if self.dims[0] != self.block_dim:
                raise DataSchemaError(f"Expected {self.block_dim!r} as the first dimension of {variable!r}. Got {self.dims}.")
            per_block = [k for k, v in f.variables.items() if tuple(v.dimensions) == (self.block_dim,) and k != self.block_dim]
            if inputs is None:
                spatial = [d for d in self.dims if d not in ("sample", "t")]
                inputs = spatial + (["t"] if "t" in self.dims else []) + (["diffusivity"] if "diffusivity" in per_block else [])
            self.input_names = tuple(inputs)
            self._coords: dict[str, np.ndarray] = {}
            self._per_block: list[str] = []
            for name in self.input_names:
                if name in self.dims:
                    self._coords[name] = (np.asarray(f.variables[name][...], dtype=np.float64) if name in f.variables
                                          else np.arange(self.shape[self.dims.index(name)], dtype=np.float64))
                elif name in per_block:
                    self._per_block.append(name)
                else:
                    raise DataSchemaError(
                        f"Input {name!r} is neither a dimension of {variable!r} {self.dims} nor a variable along "
                        f"{self.block_dim!r} {sorted(per_block)}."
                    )
            self._ranges_per_block = {k: (float(np.min(f.variables[k][...])), float(np.max(f.variables[k][...])))
                                      for k in self._per_block}
        self.in_features = len(self.input_names)
        self.n_samples = self.shape[0]
        self.points_per_sample = int(np.prod(self.shape[1:], dtype=np.int64))
        if read_samples is None:
            read_samples = max(1, self.buffer_points // (4 * self.points_per_sample))
        self.read_samples = min(positive_int("read_samples", read_samples), self.n_samples)
        self.n_blocks = math.ceil(self.n_samples / self.read_samples)
        self.reads_ = 0
        self.max_read_samples_ = 0
        self.max_points_held_ = 0

    def __len__(self) -> int:
        """Batches per epoch on this shard (an estimate when shards are uneven; infinite: error)."""
        if self.epochs is None:
            raise TypeError("An endless FieldStream (epochs=None) has no length.")
        points = self.n_samples * self.points_per_sample / self.world_size
        return self.epochs * (math.floor(points / self.batch_size) if self.drop_last else math.ceil(points / self.batch_size))

    def input_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Smallest and largest value of every input column (exact: coordinates and per-sample values)."""
        lo, hi = [], []
        for name in self.input_names:
            a, b = (float(self._coords[name].min()), float(self._coords[name].max())) if name in self._coords \
                else self._ranges_per_block[name]
            lo.append(a)
            hi.append(b)
        return np.array(lo), np.array(hi)

    def _shard(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        shard, shards = self.rank * workers + worker, self.world_size * workers
        if self.n_blocks < shards:
            raise ConfigurationError(
                f"The file has {self.n_blocks} blocks of {self.read_samples} samples, fewer than the {shards} shards "
                "(ranks x DataLoader workers); pass a smaller read_samples."
            )
        return shard, shards

    def _read(self, f, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Points and values of samples ``start:stop`` (one slice of the file)."""
        values = np.asarray(f.variables[self.variable][start:stop], dtype=np.float64)
        self.reads_ += 1
        self.max_read_samples_ = max(self.max_read_samples_, stop - start)
        shape = values.shape
        columns = []
        for name in self.input_names:
            if name in self._coords:
                axis = self.dims.index(name)
                c = self._coords[name][start:stop] if axis == 0 else self._coords[name]
                view = [1] * len(shape)
                view[axis] = shape[axis]
                columns.append(np.broadcast_to(c.reshape(view), shape).reshape(-1))
            else:
                c = np.asarray(f.variables[name][start:stop], dtype=np.float64)
                columns.append(np.broadcast_to(c.reshape((-1,) + (1,) * (len(shape) - 1)), shape).reshape(-1))
        return np.stack(columns, 1), values.reshape(-1, 1)

    def _blocks(self, f, shard: int, shards: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_blocks)  # same on every shard
            for b in order[shard::shards]:
                start = int(b) * self.read_samples
                yield self._read(f, start, min(start + self.read_samples, self.n_samples))
            epoch += 1

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(x, dtype=self.dtype), torch.as_tensor(y, dtype=self.dtype)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import h5netcdf

        shard, shards = self._shard()
        rng = np.random.default_rng([self.seed, 1 + shard, shards])
        bs = self.batch_size
        with h5netcdf.File(self.path, "r") as f:
            bx = np.empty((0, self.in_features))
            by = np.empty((0, 1))
            for x, y in self._blocks(f, shard, shards):
                bx, by = np.concatenate([bx, x]), np.concatenate([by, y])
                self.max_points_held_ = max(self.max_points_held_, len(bx))
                if len(bx) < self.buffer_points:
                    continue
                perm = rng.permutation(len(bx))
                bx, by = bx[perm], by[perm]
                emit = (len(bx) - self.buffer_points // 2) // bs * bs
                for i in range(0, emit, bs):
                    yield self._tensors(bx[i : i + bs], by[i : i + bs])
                bx, by = bx[emit:], by[emit:]
            perm = rng.permutation(len(bx))  # finite epochs only: flush the buffer
            bx, by = bx[perm], by[perm]
            for i in range(0, len(bx), bs):
                if i + bs > len(bx) and self.drop_last:
                    break
                yield self._tensors(bx[i : i + bs], by[i : i + bs])


class StreamSampler:
    """Feed a :class:`FieldStream` to :func:`lipsurrogate.train.train` through ``sampler=``.

    ``train(model, sampler.inputs, sampler.targets, sampler=sampler, ...)``: each call copies the
    next streamed batch into the batch-sized tensors ``inputs``/``targets`` and returns the
    indices of its rows, which the loop then gathers. The loop's generator is not used (the
    stream is seeded by its own ``seed``).
    """

    def __init__(self, stream: FieldStream) -> None:
        self.stream = stream
        self.inputs = torch.zeros(stream.batch_size, stream.in_features, dtype=stream.dtype)
        self.targets = torch.zeros(stream.batch_size, 1, dtype=stream.dtype)
        self._iterator = iter(stream)
        self.batches_ = 0

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:  # noqa: ARG002 - hook signature
        try:
            x, y = next(self._iterator)
        except StopIteration:
            raise ConfigurationError(
                f"The stream ran out after {self.batches_} batches; use epochs=None for a fixed number of steps."
            ) from None
        k = x.shape[0]
        self.inputs[:k] = x
        self.targets[:k] = y
        self.batches_ += 1
        return torch.arange(k)


def train_streaming(model: torch.nn.Module, stream: FieldStream, loss="mse", *, steps: int = 2000,
                    **train_options) -> TrainingHistory:
    """:func:`~lipsurrogate.train.train` on batches streamed from ``stream`` (one batch per step).

    ``train_options`` are those of :func:`~lipsurrogate.train.train` (``lr``, ``schedule``,
    ``seed``, ``progress``, ``physics``, ...); ``batch_size`` comes from the stream.
    """
    if "sampler" in train_options or "batch_size" in train_options:
        raise ConfigurationError("train_streaming sets 'sampler' and 'batch_size' from the stream; do not pass them.")
    sampler = StreamSampler(stream)
    return train(model, sampler.inputs, sampler.targets, loss, steps=steps, batch_size=stream.batch_size,
                 sampler=sampler, **train_options)
